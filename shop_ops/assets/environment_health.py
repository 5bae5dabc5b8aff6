"""Environment health: probes each environment's /readyz as a load balancer would and records up or down.

The probe is a plain function over httpx (`probe`); the asset only wires them to
Dagster (each environment's URL from `release_target`: its router locally, its public URL on aws)
and writes the result as metadata: per environment `<env>_up` (bool), `<env>_ms` (number,
plotted over time) and a markdown table. A down environment does not fail the materialization:
being down is the observation. The job `check_environment_health` is small and image-only (httpx, no
shell-outs), so it is also the job that proves a run launcher works end to end.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation as a type.
import time
from dataclasses import dataclass

import dagster as dg
import httpx
from dagster import AssetExecutionContext

from shop_ops.release.targets import ReleaseTarget
from shop_ops.settings import ENVIRONMENTS

READYZ_PATH = "/readyz"
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Probe:
    """One readiness probe: where, whether it answered ready, and what it said."""

    environment: str
    url: str
    up: bool
    status_code: int | None
    milliseconds: float
    detail: str


def probe(environment: str, url: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """GET `url`; up means HTTP 200 and, when the body is the shop's readiness document, status "ready"."""
    started = time.perf_counter()
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return Probe(environment, url, False, None, round(elapsed, 1), f"{type(exc).__name__}: {exc}"[:200])
    elapsed = (time.perf_counter() - started) * 1000
    try:
        body = response.json()
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    up = response.status_code == 200 and status in (None, "ready")
    detail = f"status {status}" if status else f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("db_revision"):
        detail += f", db revision {body['db_revision']}"
    return Probe(environment, url, up, response.status_code, round(elapsed, 1), detail)


def health_metadata(probes: list[Probe]) -> dict[str, dg.MetadataValue]:
    """Numbers as numbers (the UI plots them), plus one markdown table for people."""
    metadata: dict[str, dg.MetadataValue] = {}
    rows = ["| environment | up | ms | url | detail |", "| --- | --- | --- | --- | --- |"]
    for p in probes:
        metadata[f"{p.environment}_up"] = dg.MetadataValue.bool(p.up)
        metadata[f"{p.environment}_ms"] = dg.MetadataValue.float(p.milliseconds)
        detail = p.detail.replace("|", "/")
        rows.append(f"| {p.environment} | {'up' if p.up else 'down'} | {p.milliseconds} | {p.url} | {detail} |")
    metadata["environments_up"] = dg.MetadataValue.int(sum(p.up for p in probes))
    metadata["probes"] = dg.MetadataValue.md("\n".join(rows))
    return metadata


@dg.asset(
    group_name="deployments",
    description="Readiness of each environment (GET /readyz), probed as a load balancer would.",
)
def environment_health(context: AssetExecutionContext, release_target: ReleaseTarget) -> dg.MaterializeResult:
    urls = {name: release_target.url(name).rstrip("/") + READYZ_PATH for name in ENVIRONMENTS}
    probes = [probe(name, url) for name, url in urls.items()]
    for p in probes:
        context.log.info(f"{p.environment}: {'up' if p.up else 'down'} ({p.detail}) {p.url}")
    return dg.MaterializeResult(metadata=health_metadata(probes))
