"""The shop's service levels per environment and day, read from Prometheus: availability, p95 and error budget left.

The SLOs are those of infra/prometheus/rules/shop-slo.yml (requests to the API, `route=~"/api/.+"`):
availability (no 5xx) and latency (within the objective, a bucket boundary of
shop_http_request_duration_seconds). A day is a UTC calendar day, up to now for today; its figures
are `increase` over that window, evaluated at the window's end. The error budgets left are over
the rolling 30 days that end with that window: 1 - observed bad ratio / allowed bad ratio, so 1.0
is untouched and a negative value is overspent. A day without requests has no ratios (NaN), not 100 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd

from shop_ops.observability.prometheus import PrometheusApiError, query

BUDGET_WINDOW = timedelta(days=30)
COLUMNS = [
    "environment", "day", "requests", "errors", "availability", "p95_ms", "within_latency_objective",
    "availability_budget_left", "latency_budget_left",
]  # fmt: skip
_API = 'job="shop", route=~"/api/.+"'

Query = Callable[[str, float], list[dict[str, Any]]]


@dataclass(frozen=True)
class Objectives:
    """The SLOs: share of requests answered without a 5xx, and share answered within `latency_ms`."""

    availability: float = 0.995
    latency_ms: float = 200
    latency_ratio: float = 0.95

    @property
    def latency_bucket(self) -> str:
        """The histogram's `le` label of the latency objective (Python's float text, as prometheus_client writes it)."""
        return repr(self.latency_ms / 1000)


def days_back(count: int, now: datetime) -> list[date]:
    """The last `count` UTC days, oldest first, today included."""
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=back) for back in range(count - 1, -1, -1)]


def _by_environment(result: list[dict[str, Any]]) -> dict[str, float]:
    return {s["metric"].get("environment", ""): float(s["value"][1]) for s in result}


def _window(seconds: float) -> str:
    return f"{max(1, int(seconds))}s"


def day_figures(run: Query, day: date, now: datetime, objectives: Objectives) -> dict[str, dict[str, float]]:
    """environment -> the day's figures (requests, errors, availability, p95_ms, ...) from one Prometheus."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    end = min(start + timedelta(days=1), now.astimezone(UTC))
    at = end.timestamp()
    w = _window((end - start).total_seconds())
    b = _window(BUDGET_WINDOW.total_seconds())
    le = objectives.latency_bucket

    def per_env(promql: str) -> dict[str, float]:
        return _by_environment(run(promql, at))

    def increase(metric: str, extra: str, window: str) -> str:
        return f"sum by (environment) (increase({metric}{{{_API}{extra}}}[{window}]))"

    requests = per_env(increase("shop_http_requests_total", "", w))
    errors = per_env(increase("shop_http_requests_total", ', status=~"5.."', w))
    timed = per_env(increase("shop_http_request_duration_seconds_count", "", w))
    fast = per_env(increase("shop_http_request_duration_seconds_bucket", f', le="{le}"', w))
    p95 = per_env(
        "histogram_quantile(0.95, sum by (environment, le) "
        f"(increase(shop_http_request_duration_seconds_bucket{{{_API}}}[{w}])))"
    )
    requests_30 = per_env(increase("shop_http_requests_total", "", b))
    errors_30 = per_env(increase("shop_http_requests_total", ', status=~"5.."', b))
    timed_30 = per_env(increase("shop_http_request_duration_seconds_count", "", b))
    fast_30 = per_env(increase("shop_http_request_duration_seconds_bucket", f', le="{le}"', b))
    figures: dict[str, dict[str, float]] = {}
    # An environment without requests that day still has a 30-day budget (from the days before).
    for env in sorted(set(requests) | set(requests_30)):
        count = requests.get(env, 0.0)
        figures[env] = {
            "requests": count,
            "errors": errors.get(env, 0.0),
            "availability": _ratio(count - errors.get(env, 0.0), count),
            "p95_ms": p95.get(env, math.nan) * 1000 if count > 0 else math.nan,
            "within_latency_objective": _ratio(fast.get(env, 0.0), timed.get(env, 0.0)),
            "availability_budget_left": _budget_left(
                errors_30.get(env, 0.0), requests_30.get(env, 0.0), 1 - objectives.availability
            ),
            "latency_budget_left": _budget_left(
                timed_30.get(env, 0.0) - fast_30.get(env, 0.0), timed_30.get(env, 0.0), 1 - objectives.latency_ratio
            ),
        }
    return figures


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else math.nan


def _budget_left(bad: float, total: float, allowed: float) -> float:
    """1 - (bad / total) / allowed: 1.0 untouched, 0 spent, below 0 overspent; NaN without requests."""
    return 1 - _ratio(bad, total) / allowed if total > 0 else math.nan


def slo_table(
    prometheus_url: str,
    environments: Sequence[str],
    days: int,
    objectives: Objectives,
    now: datetime | None = None,
) -> pd.DataFrame:
    """One row per environment and day (the last `days` UTC days), COLUMNS; an environment without
    traffic on a day has requests 0 and NaN ratios."""
    moment = now or datetime.now(UTC)

    def run(promql: str, at: float) -> list[dict[str, Any]]:
        return query(prometheus_url, promql, at=at)

    rows: list[dict[str, Any]] = []
    for day in days_back(days, moment):
        figures = day_figures(run, day, moment, objectives)
        for env in environments:
            empty = {column: math.nan for column in COLUMNS[2:]} | {"requests": 0.0, "errors": 0.0}
            rows.append({"environment": env, "day": day, **figures.get(env, empty)})
    return pd.DataFrame(rows, columns=COLUMNS)


class ServiceLevels(dg.ConfigurableResource):
    """The SLO report's source (`service_levels`): a Prometheus with the shop's metrics, and the objectives."""

    prometheus_url: str
    environments: list[str]
    days: int = 7
    availability: float = 0.995
    latency_ms: float = 200
    latency_ratio: float = 0.95

    def table(self, now: datetime | None = None) -> pd.DataFrame:
        """slo_table over the last `days` days; PrometheusApiError (naming the URL) if Prometheus does not answer."""
        if not self.prometheus_url:
            raise PrometheusApiError(
                "no Prometheus configured: set observability.prometheus_url in the profile's settings "
                "(the local profile uses the Prometheus of `shop-ops local up`)"
            )
        objectives = Objectives(self.availability, self.latency_ms, self.latency_ratio)
        return slo_table(self.prometheus_url, self.environments, self.days, objectives, now)
