"""The cost report's arithmetic: months prorated by days, variance, the forecast against budgets, right-sizing."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest

from shop_ops.cost.actual import spend_frame
from shop_ops.cost.report import (
    ACCOUNT,
    MeasuredUsage,
    Month,
    budget_findings,
    forecast,
    per_thousand_orders,
    rightsizing,
    variance,
)
from tests.support import cost_explorer_page

NOVEMBER = Month.of("2026-11-01")  # 30 days


def lines(*rows: tuple[str, str, float]) -> pd.DataFrame:
    """Estimate lines with what the report reads: environment, component, monthly_usd."""
    return pd.DataFrame([{"environment": e, "component": c, "monthly_usd": usd} for e, c, usd in rows])


def spend(*rows: tuple[str, str, str, float]) -> pd.DataFrame:
    """Spend rows as Cost Explorer's answer gives them (one page, one group per row)."""
    return spend_frame([cost_explorer_page(list(rows), estimated=True)])


ESTIMATE = lines(("staging", "database", 60.0), ("staging", "ecs", 30.0), ("production", "database", 300.0))


def test_a_month_is_prorated_by_the_days_billed_before_today() -> None:
    assert (NOVEMBER.days, NOVEMBER.end) == (30, date(2026, 12, 1))
    assert NOVEMBER.elapsed(date(2026, 11, 1)) == 0
    assert NOVEMBER.elapsed(date(2026, 11, 16)) == pytest.approx(0.5)
    assert NOVEMBER.elapsed(date(2027, 1, 5)) == 1  # over: every day billed
    assert NOVEMBER.elapsed(date(2026, 10, 3)) == 0  # not begun
    assert Month.of("2028-02-01").days == 29
    with pytest.raises(ValueError, match="not the first day"):
        Month.of("2026-11-02")


def test_spend_rows_keep_untagged_cost_apart() -> None:
    frame = spend(("2026-11-01", "staging", "database", 1.5), ("2026-11-01", "", "", 0.25))
    assert frame[["environment", "component"]].values.tolist() == [["staging", "database"], ["untagged", "untagged"]]
    assert frame["usd"].sum() == pytest.approx(1.75) and frame["estimated"].all()


def test_variance_compares_actual_with_the_estimates_share_to_date() -> None:
    actual = spend(
        *[(f"2026-11-{d:02d}", "staging", "database", 3.0) for d in range(1, 16)],  # 45 against 30 expected
        ("2026-11-03", "staging", "nat", 4.0),  # billed, never estimated
    )
    report = variance(ESTIMATE, actual, True, NOVEMBER, date(2026, 11, 16)).set_index(["environment", "component"])
    db = report.loc[("staging", "database")]
    assert (db.estimate_to_date_usd, db.actual_to_date_usd, db.variance_usd) == pytest.approx((30.0, 45.0, 15.0))
    assert db.variance_pct == pytest.approx(50.0)
    nat = report.loc[("staging", "nat")]
    assert (nat.estimate_month_usd, nat.actual_to_date_usd) == (0.0, 4.0) and math.isnan(nat.variance_pct)
    assert report.loc[("production", "database")].actual_to_date_usd == 0.0  # measured: nothing billed is zero


def test_without_a_measured_spend_the_actual_is_unknown_not_zero() -> None:
    report = variance(ESTIMATE, spend(), False, NOVEMBER, date(2026, 11, 16))
    assert report["actual_to_date_usd"].isna().all() and report["variance_usd"].isna().all()


def test_the_forecast_adds_the_estimate_for_the_days_left_and_says_by_how_much_and_where() -> None:
    actual = spend(*[(f"2026-11-{d:02d}", "staging", "database", 10.0) for d in range(1, 11)])  # 100 in 10 days
    today = date(2026, 11, 11)  # 10 of 30 days billed: 2/3 of the month to come
    budgets = {"staging": 120.0, "production": 400.0, ACCOUNT: 1000.0}
    result = forecast(ESTIMATE, actual, True, NOVEMBER, today, budgets).set_index("budget")
    staging = result.loc["staging"]
    assert staging.forecast_usd == pytest.approx(100 + 90 * 2 / 3)  # 160
    assert staging.over_usd == pytest.approx(40.0)
    assert result.loc["production"].forecast_usd == pytest.approx(200.0) and result.loc["production"].over_usd == 0
    assert result.loc[ACCOUNT].forecast_usd == pytest.approx(360.0)

    report = variance(ESTIMATE, actual, True, NOVEMBER, today)
    (finding,) = budget_findings(result.reset_index(), report)
    assert finding.startswith("staging: forecast 160.00 USD is 40.00 USD (33%) over its budget of 120.00 USD")
    assert "staging/database" in finding and "+80 against the estimate so far" in finding


def test_without_actual_spend_the_forecast_is_the_estimate() -> None:
    result = forecast(ESTIMATE, spend(), False, NOVEMBER, date(2026, 11, 20), {"production": 250.0})
    assert result.loc[0, "forecast_usd"] == 300.0 and result.loc[0, "over_usd"] == 50.0
    assert result.loc[0, "basis"].startswith("estimate")


def test_rightsizing_judges_the_task_by_the_load_tests_peak() -> None:
    tasks = pd.DataFrame(
        [
            {"environment": "staging", "address": "t", "vcpu": 0.5, "memory_mb": 1024},
            {"environment": "production", "address": "t", "vcpu": 1.0, "memory_mb": 2048},
        ]
    )
    idle = MeasuredUsage("staging", "staging/nightly_load_test", req_per_s=40, cpu_p95_percent=10, memory_max_mb=200)
    busy = MeasuredUsage(
        "production", "production/load_test_baseline", req_per_s=900, cpu_p95_percent=90, memory_max_mb=1800
    )
    result = rightsizing(tasks, {"staging": idle, "production": busy}).set_index("environment")
    assert result.loc["staging", "cpu_utilization"] == pytest.approx(0.2)
    assert result.loc["staging", "suggestion"].startswith("over-provisioned")
    assert "at 40 req/s" in result.loc["staging", "suggestion"]
    assert result.loc["production", "suggestion"].startswith("under-provisioned")  # memory at 88%
    unmeasured = rightsizing(tasks, {}).set_index("environment")
    assert unmeasured.loc["staging", "suggestion"].startswith("no container usage measured")


def test_cost_per_thousand_orders_needs_orders() -> None:
    assert per_thousand_orders(250.0, 5000) == pytest.approx(50.0)
    assert per_thousand_orders(250.0, 0) is None
