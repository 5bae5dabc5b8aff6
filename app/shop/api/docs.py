"""Documentation routes: the OpenAPI document, Swagger UI and ReDoc under /api/, with their assets served here.

Under /api/ so that each environment's router sends them to the backend (its `/` goes to the storefront).
No CDN and no inline script: the pages load Swagger UI's and ReDoc's files from the pinned `fastapi-offline`
package (only its static files; its own pages use inline scripts) and a small start script of ours, under a
Content-Security-Policy of 'self'. ReDoc styles itself with <style> elements (styled-components) and runs its
search in a worker made from a blob: URL, so its page allows inline styles and blob: workers, no more. (ReDoc
also always tries to show Redocly's logo from their CDN: the policy blocks that request, on purpose.)
The old `/openapi.json`, `/docs` and `/redoc` on the backend's own port redirect here (308).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shop.openapi import DOCS_PATH, OPENAPI_PATH, REDOC_PATH, for_request

router = APIRouter(include_in_schema=False)

_COMMON_CSP = (
    "default-src 'none'; script-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SWAGGER_CSP = f"{_COMMON_CSP}; style-src 'self'"
REDOC_CSP = f"{_COMMON_CSP}; style-src 'self' 'unsafe-inline'; worker-src blob:"
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}
# The vendored files change only with the pinned package, i.e. with a release of the backend.
ASSET_CACHE = "public, max-age=3600"

# Relative URLs: the pages work under whatever origin serves /api/ (router, storefront proxy, backend port).
SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Shop API - Swagger UI</title>
<link rel="icon" type="image/png" href="docs/favicon.png">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-init.js"></script>
</body>
</html>
"""
SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  validatorUrl: null,
  tryItOutEnabled: false,
  displayRequestDuration: true,
});
"""
REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Shop API - ReDoc</title>
<link rel="icon" type="image/png" href="docs/favicon.png">
</head>
<body>
<div id="redoc"></div>
<script src="redoc/redoc.standalone.js"></script>
<script src="redoc/redoc-init.js"></script>
</body>
</html>
"""
REDOC_INIT = """Redoc.init("openapi.json", { expandResponses: "200,201", hideDownloadButton: false },
  document.getElementById("redoc"));
"""
VENDORED = {
    "docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "docs/swagger-ui.css": ("swagger-ui.css", "text/css"),
    "docs/favicon.png": ("favicon.png", "image/png"),
    "redoc/redoc.standalone.js": ("redoc.standalone.js", "text/javascript"),
}


@cache
def vendored(name: str) -> bytes:
    """A static file of the fastapi-offline package, read once per worker."""
    return (files("fastapi_offline") / "static" / name).read_bytes()


def _asset(content: bytes, media_type: str) -> Response:
    headers = {"Cache-Control": ASSET_CACHE, "X-Content-Type-Options": "nosniff"}
    return Response(content, media_type=media_type, headers=headers)


@router.get(OPENAPI_PATH)
async def openapi_document(request: Request) -> Response:
    """The document, its server the URL it was read through (Host and X-Forwarded-Proto)."""
    return Response(for_request(request.app, request.headers, request.url.scheme), media_type="application/json")


@router.get(DOCS_PATH)
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER_PAGE, headers={**PAGE_HEADERS, "Content-Security-Policy": SWAGGER_CSP})


@router.get(REDOC_PATH)
async def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC_PAGE, headers={**PAGE_HEADERS, "Content-Security-Policy": REDOC_CSP})


@router.get(f"{DOCS_PATH}/swagger-init.js")
async def swagger_init() -> Response:
    return _asset(SWAGGER_INIT.encode(), "text/javascript")


@router.get(f"{REDOC_PATH}/redoc-init.js")
async def redoc_init() -> Response:
    return _asset(REDOC_INIT.encode(), "text/javascript")


def _vendored_route(path: str, name: str, media_type: str) -> None:
    async def asset() -> Response:
        return _asset(vendored(name), media_type)

    router.add_api_route(f"/api/{path}", asset, methods=["GET"], name=f"docs asset {name}")


# One route per file: a pattern route (/api/{area}/{name}) would also catch unknown /api/ paths and their 404s.
for _path, (_name, _media_type) in VENDORED.items():
    _vendored_route(_path, _name, _media_type)


def _moved(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=308)


@router.get("/openapi.json")
async def old_openapi() -> RedirectResponse:
    return _moved(OPENAPI_PATH)


@router.get("/docs")
async def old_docs() -> RedirectResponse:
    return _moved(DOCS_PATH)


@router.get("/redoc")
async def old_redoc() -> RedirectResponse:
    return _moved(REDOC_PATH)
