"""Prometheus for the shop: the rendered prometheus.yml, file-based discovery of the serving slots, an HTTP API client.

`render_config` builds the configuration as data (yaml.safe_dump, no templates). The shop's
backends are discovered from one JSON file per environment (`shop-<environment>.json` in a
folder the configuration names, written by shop_ops/services/discovery.py); a router's
blue/green switch rewrites that file, and Prometheus follows it without a reload. `query`,
`targets`, `rule_groups` and `reload` talk to a running server over its HTTP API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from shop_ops.services.discovery import ADDRESS as _ADDRESS
from shop_ops.services.discovery import SHOP_TARGETS_GLOB

# Prometheus's default scrape timeout; a shorter scrape interval caps it.
DEFAULT_SCRAPE_TIMEOUT_S = 10.0


class PrometheusApiError(RuntimeError):
    """Prometheus's HTTP API did not answer with success; the message says what it answered."""


@dataclass(frozen=True)
class Target:
    """One scrape target: `host:port`, the environment it serves (None: it serves both), and its role
    where a job has several kinds of server (Redis: cache, carts, carts-replica, sentinel; PostgreSQL:
    primary, replica; None: no `role` label)."""

    address: str
    environment: str | None = None
    role: str | None = None


def duration(seconds: float) -> str:
    """A Prometheus duration: whole seconds as "15s", anything finer in milliseconds ("500ms")."""
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {seconds}")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a duration must be at least 1 ms, got {seconds}")
    return f"{millis}ms"


def _static_job(name: str, targets: Sequence[Target]) -> dict[str, Any]:
    """A job with one static_configs entry per environment and role (targets serving both environments
    get no `environment`, targets without a role no `role`)."""
    groups: dict[tuple[str | None, str | None], list[str]] = {}
    for target in targets:
        if not _ADDRESS.match(target.address):
            raise ValueError(f"target {target.address!r} of job {name} is not host:port")
        groups.setdefault((target.environment, target.role), []).append(target.address)
    configs: list[dict[str, Any]] = []
    for (environment, role), addresses in groups.items():
        config: dict[str, Any] = {"targets": addresses}
        labels = {k: v for k, v in (("environment", environment), ("role", role)) if v is not None}
        if labels:
            config["labels"] = labels
        configs.append(config)
    return {"job_name": name, "static_configs": configs}


def render_config(
    *,
    scrape_interval_s: float,
    evaluation_interval_s: float,
    rule_files: Sequence[Path],
    shop_targets_dir: Path,
    alertmanagers: Sequence[str] = (),
    postgres: Sequence[Target] = (),
    pgbouncer: Sequence[Target] = (),
    redis: Sequence[Target] = (),
    router: Sequence[Target] = (),
    node: Sequence[Target] = (),
    prometheus: str | None = None,
    pushgateway: str | None = None,
    discovery_refresh_s: float = 30,
) -> str:
    """prometheus.yml as text.

    Jobs (the `job` label the rules in infra/prometheus/rules expect): `shop` from the discovery
    files in `shop_targets_dir` (labels environment and slot come from the files), `postgres`,
    `pgbouncer`, `redis`, `router` and `node` from their static targets (with `environment` where a
    target serves one, `role` where the job has several kinds of server), `prometheus` (itself, if its address is given) and `alertmanager` (the
    Alertmanagers it sends to, which it also scrapes) and `pushgateway` (the pipeline's own
    figures, pushed there: `honor_labels` keeps their `job` and `environment`). A job without
    targets is left out.
    `rule_files` and `shop_targets_dir` must be absolute: Prometheus resolves relative paths
    against the configuration file's folder. `discovery_refresh_s` is the re-read period of the
    discovery files beside inotify, which normally sees a rewrite at once.
    """
    for path in [*rule_files, shop_targets_dir]:
        if not Path(path).is_absolute():
            raise ValueError(f"{path} is not absolute: Prometheus would resolve it against the config's folder")
    scrape_timeout_s = min(scrape_interval_s, DEFAULT_SCRAPE_TIMEOUT_S)
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": duration(scrape_interval_s),
            "scrape_timeout": duration(scrape_timeout_s),
            "evaluation_interval": duration(evaluation_interval_s),
        },
        "rule_files": [str(path) for path in rule_files],
    }
    if alertmanagers:
        for address in alertmanagers:
            if not _ADDRESS.match(address):
                raise ValueError(f"Alertmanager {address!r} is not host:port")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "shop",
            "file_sd_configs": [
                {
                    "files": [str(shop_targets_dir / SHOP_TARGETS_GLOB)],
                    "refresh_interval": duration(discovery_refresh_s),
                }
            ],
        }
    ]
    for name, targets in (
        ("postgres", postgres), ("pgbouncer", pgbouncer), ("redis", redis), ("router", router), ("node", node),
    ):  # fmt: skip
        if targets:
            jobs.append(_static_job(name, targets))
    if prometheus is not None:
        jobs.append(_static_job("prometheus", [Target(prometheus)]))
    if alertmanagers:
        jobs.append(_static_job("alertmanager", [Target(address) for address in alertmanagers]))
    if pushgateway is not None:
        jobs.append({**_static_job("pushgateway", [Target(pushgateway)]), "honor_labels": True})
    config["scrape_configs"] = jobs
    return yaml.safe_dump(config, sort_keys=False)


def _api(method: str, url: str, timeout: float, **kwargs: Any) -> Any:
    """The `data` of a Prometheus API answer; PrometheusApiError unless it says success."""
    try:
        response = httpx.request(method, url, timeout=timeout, **kwargs)
    except httpx.TransportError as exc:
        raise PrometheusApiError(f"Prometheus at {url} cannot be reached: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") != "success" or response.status_code != 200:
        detail = f"{body.get('errorType')}: {body.get('error')}" if isinstance(body, dict) else response.text[:500]
        raise PrometheusApiError(f"Prometheus {method} {url} answered {response.status_code}: {detail}")
    return body.get("data")


def query(base_url: str, promql: str, timeout: float = 10, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query's result (at Unix time `at`, else now): [{"metric": {labels}, "value": [time, "text"]}, ...]."""
    params: dict[str, Any] = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    data = _api("GET", f"{base_url.rstrip('/')}/api/v1/query", timeout, params=params)
    if data.get("resultType") not in ("vector", "matrix"):
        raise PrometheusApiError(f"query {promql!r} gave a {data.get('resultType')}, not series")
    return list(data["result"])


def targets(base_url: str, timeout: float = 10) -> list[dict[str, Any]]:
    """The active scrape targets: each with "labels" (job, instance, environment, slot, ...), "health", "lastError"."""
    data = _api("GET", f"{base_url.rstrip('/')}/api/v1/targets", timeout, params={"state": "active"})
    return list(data["activeTargets"])


def rule_groups(base_url: str, timeout: float = 10) -> list[dict[str, Any]]:
    """The loaded rule groups: each with "file", "name" and "rules" (each rule with "health" and "lastError")."""
    data = _api("GET", f"{base_url.rstrip('/')}/api/v1/rules", timeout)
    return list(data["groups"])


def reload(base_url: str, timeout: float = 30) -> None:
    """Make Prometheus re-read its configuration and rules (needs --web.enable-lifecycle)."""
    url = f"{base_url.rstrip('/')}/-/reload"
    try:
        response = httpx.post(url, timeout=timeout)
    except httpx.TransportError as exc:
        raise PrometheusApiError(f"Prometheus at {url} cannot be reached: {exc}") from exc
    if response.status_code != 200:
        raise PrometheusApiError(
            f"Prometheus did not reload its configuration ({response.status_code}): {response.text[:500]}"
        )
