"""JSON answers of the routes and the error body, serialized with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

JSON = "application/json"


def json_response(body: bytes | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer from ready-made bytes (cached pages) or a dict."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content=content, status_code=status, media_type=JSON, headers=headers)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    dependency: str | None = None,
) -> Response:
    """The ErrorBody answer, carrying the request id the middleware assigned (and the unavailable dependency)."""
    request_id = request.scope.get("state", {}).get("request_id", "")
    error = {"code": code, "message": message, "request_id": request_id}
    if dependency is not None:
        error["dependency"] = dependency
    return json_response({"error": error}, status, headers)
