"""slo_report reads a real Prometheus whose TSDB holds two known days of the shop's metrics.

The days are written as OpenMetrics and turned into TSDB blocks by `promtool tsdb
create-blocks-from openmetrics` (Prometheus's own backfill), so every figure is known in
advance: staging serves 100 API requests a minute with 1 % 5xx on day 0 and none on day 1 (up
to noon); production 50 a minute without errors. A /healthz series full of 5xx must be left out.
Ratios are exact; counts are within `increase`'s extrapolation.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.observability import BUDGET_CHECK, slo_report
from shop_ops.observability import prometheus as prom
from shop_ops.observability.slo import Objectives, ServiceLevels, days_back, slo_table
from shop_ops.services.processes import PrometheusServer, free_port
from shop_ops.settings import ObservabilitySettings

pytestmark = pytest.mark.services  # runs promtool and prometheus

DAY0 = datetime.now(UTC).date() - timedelta(days=3)
DAY1 = DAY0 + timedelta(days=1)
NOON1 = datetime.combine(DAY1, datetime.min.time(), UTC) + timedelta(hours=12)
# Per minute: requests by latency bucket (cumulative le -> count), and 5xx among them.
BUCKETS = ("0.05", "0.1", "0.2", "0.5", "+Inf")
STAGING = {"0.05": 50, "0.1": 90, "0.2": 96, "0.5": 100, "+Inf": 100}
PRODUCTION = {"0.05": 50, "0.1": 50, "0.2": 50, "0.5": 50, "+Inf": 50}


def openmetrics() -> str:
    """One sample a minute, DAY0 00:00 to DAY1 12:00, of the counters the SLO rules read, grouped per series."""
    start = datetime.combine(DAY0, datetime.min.time(), UTC)
    minutes = range(int((NOON1 - start).total_seconds() // 60) + 1)
    stamps = [int((start + timedelta(minutes=m)).timestamp()) for m in minutes]
    counters: list[str] = []
    histogram: list[str] = []
    for env, per_minute in (("staging", STAGING), ("production", PRODUCTION)):
        api = f'job="shop",environment="{env}",route="/api/products",method="GET"'
        # 5xx: staging one a minute on day 0 (the increment up to t belongs to the minute before t).
        errors = [min(m, 24 * 60) if env == "staging" else 0 for m in minutes]
        series = {
            f'shop_http_requests_total{{{api},status="200"}}': [
                per_minute["+Inf"] * m - e for m, e in zip(minutes, errors, strict=True)
            ],
            f'shop_http_requests_total{{{api},status="500"}}': errors,
            f'shop_http_requests_total{{job="shop",environment="{env}",route="/healthz",method="GET",status="500"}}': [
                10 * m for m in minutes
            ],
        }
        for name, values in series.items():
            counters += [f"{name} {v} {t}" for v, t in zip(values, stamps, strict=True)]
        for le in BUCKETS:
            histogram += [
                f'shop_http_request_duration_seconds_bucket{{{api},le="{le}"}} {per_minute[le] * m} {t}'
                for m, t in zip(minutes, stamps, strict=True)
            ]
        histogram += [
            f"shop_http_request_duration_seconds_count{{{api}}} {per_minute['+Inf'] * m} {t}"
            for m, t in zip(minutes, stamps, strict=True)
        ]
        histogram += [
            f"shop_http_request_duration_seconds_sum{{{api}}} {per_minute['+Inf'] * m * 0.05:.2f} {t}"
            for m, t in zip(minutes, stamps, strict=True)
        ]
    return "\n".join(
        ["# TYPE shop_http_requests counter", *counters,
         "# TYPE shop_http_request_duration_seconds histogram", *histogram, "# EOF", ""]
    )  # fmt: skip


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory, promtool: str) -> Iterator[PrometheusServer]:
    """Prometheus on a TSDB that promtool filled with the two days (nothing scraped)."""
    folder = tmp_path_factory.mktemp("slo")
    source = folder / "days.om"
    source.write_text(openmetrics())
    server = PrometheusServer(
        datadir=folder / "server", port=free_port(), config=folder / "prometheus.yml", retention="30d"
    )
    server.tsdb.mkdir(parents=True)
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(server.tsdb)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    server.config.write_text(
        prom.render_config(scrape_interval_s=1, evaluation_interval_s=1, rule_files=[], shop_targets_dir=folder)
    )
    server.start()
    yield server
    server.stop()


def test_days_back_ends_today() -> None:
    now = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    assert days_back(3, now) == [date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)]


def test_the_table_gives_each_environment_and_day_its_known_figures(backfilled: PrometheusServer) -> None:
    table = slo_table(backfilled.url, ["staging", "production"], 2, Objectives(), now=NOON1)
    assert list(table[["environment", "day"]].itertuples(index=False, name=None)) == [
        ("staging", DAY0), ("production", DAY0), ("staging", DAY1), ("production", DAY1)
    ]  # fmt: skip
    row = {(r.environment, r.day): r for r in table.itertuples()}
    s0, s1, p0 = row["staging", DAY0], row["staging", DAY1], row["production", DAY0]
    assert s0.requests == pytest.approx(144_000, rel=0.02)  # /healthz's 5xx are not API requests
    assert s1.requests == pytest.approx(72_000, rel=0.02)
    assert s0.availability == pytest.approx(0.99, abs=1e-6)
    assert s1.availability == pytest.approx(1.0, abs=1e-9)
    # 95th of 100 falls in (0.1, 0.2] between the 90th and 96th: 100 + 5/6 * 100 ms.
    assert s0.p95_ms == pytest.approx(183.333, abs=0.01)
    assert s0.within_latency_objective == pytest.approx(0.96, abs=1e-6)
    # 30-day budgets: day 0 spent 1 % of the 0.5 % allowed (twice over); by noon of day 1, 1440 of 216,000.
    assert s0.availability_budget_left == pytest.approx(-1.0, abs=1e-6)
    assert s1.availability_budget_left == pytest.approx(1 - (1440 / 216_000) / 0.005, abs=1e-3)
    assert s0.latency_budget_left == pytest.approx(1 - 0.04 / 0.05, abs=1e-6)
    assert p0.availability == 1.0 and p0.availability_budget_left == 1.0 and p0.latency_budget_left == 1.0
    assert p0.p95_ms == pytest.approx(47.5, abs=0.01)


def test_a_day_without_traffic_has_no_ratios(backfilled: PrometheusServer) -> None:
    before = slo_table(
        backfilled.url,
        ["staging"],
        1,
        Objectives(),
        now=datetime.combine(DAY0, datetime.min.time(), UTC) - timedelta(hours=1),
    )
    only = before.iloc[0]
    assert math.isnan(only.availability_budget_left)  # nothing in the 30 days before either
    assert only.requests == 0 and math.isnan(only.availability) and math.isnan(only.p95_ms)


def test_slo_report_materializes_the_table_and_warns_on_an_overspent_budget(backfilled: PrometheusServer) -> None:
    levels = ServiceLevels(prometheus_url=backfilled.url, environments=["staging", "production"], days=7)
    result = dg.materialize([slo_report], resources={"service_levels": levels})
    table = result.output_for_node("slo_report")
    assert len(table) == 14 and set(table["day"]) == set(days_back(7, datetime.now(UTC)))
    # Today (3 days after DAY0) has no traffic, but its 30-day window holds day 0's errors: overspent.
    today = table[table["day"] == table["day"].max()].set_index("environment")
    assert today.loc["staging", "requests"] == 0 and math.isnan(today.loc["staging", "availability"])
    assert today.loc["staging", "availability_budget_left"] == pytest.approx(1 - (1440 / 216_000) / 0.005, abs=1e-3)
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == BUDGET_CHECK and not check.passed
    assert check.metadata["overspent"].value == "staging"
    assert check.severity == dg.AssetCheckSeverity.WARN
    staging_day0 = table[(table["environment"] == "staging") & (table["day"] == DAY0)].iloc[0]
    assert staging_day0.availability == pytest.approx(0.99, abs=1e-6)


def test_an_unreachable_prometheus_fails_the_run_naming_it() -> None:
    levels = ServiceLevels(prometheus_url="http://127.0.0.1:9", environments=["staging"], days=1)
    with pytest.raises(dg.Failure, match=r"Prometheus at http://127\.0\.0\.1:9/api/v1/query cannot be reached"):
        dg.materialize([slo_report], resources={"service_levels": levels}, raise_on_error=True)


def test_the_default_objectives_are_the_alert_rules_objectives() -> None:
    """The report's SLOs (settings defaults) and the burn-rate alerts of shop-slo.yml must not drift apart."""
    rules = (Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "rules" / "shop-slo.yml").read_text()
    obs = ObservabilitySettings()
    objectives = Objectives(obs.availability_objective, obs.latency_objective_ms, obs.latency_objective_ratio)
    assert f"ratio_rate1h > (14.4 * {1 - objectives.availability:.3g})" in rules
    assert f"slow:ratio_rate1h > (14.4 * {1 - objectives.latency_ratio:.3g})" in rules
    assert f'le="{objectives.latency_bucket}"' in rules
