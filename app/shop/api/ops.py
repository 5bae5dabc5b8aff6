"""Operations routes: liveness, readiness by schema revision, version, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from shop import metrics
from shop.api.deps import ServicesDep
from shop.api.responses import json_response
from shop.migrate import schema_state
from shop.schemas import Readiness, VersionInfo

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(svc: ServicesDep) -> Response:
    """Database and Redis answer, and the schema is not behind this code (503 otherwise).

    Answers within a second whatever hangs: both are checked at once, each for at most 0.8 s, and a
    dependency that has not answered is reported as `error: TimeoutError` (shop/health.py).
    """
    revision, database, redis = await svc.readiness.check()
    doc: dict[str, Any] = {"status": "ready", "database": database, "redis": redis, "db_revision": revision}
    doc["schema_state"] = schema_state(doc["db_revision"], svc.known_revisions, svc.contract_revisions)
    doc["code_revision"] = svc.known_revisions[-1]
    ok = doc["database"] == "ok" and doc["redis"] == "ok" and doc["schema_state"] != "behind"
    doc["status"] = "ready" if ok else "not_ready"
    return json_response(doc, 200 if ok else 503)


@router.get("/version", response_model=VersionInfo)
async def version(svc: ServicesDep) -> dict[str, str]:
    return {
        "version": svc.settings.version,
        "git_commit": svc.settings.git_commit,
        "schema_head": svc.known_revisions[-1],
    }


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(svc: ServicesDep) -> Response:
    """Prometheus metrics, scraped on the backend's own port: an environment's router does not forward `/metrics`."""
    pool = svc.engine.pool
    metrics.DB_POOL_CHECKED_OUT.set(pool.checkedout())  # type: ignore[attr-defined]
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
