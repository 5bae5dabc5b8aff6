"""The `costs` group: the Terraform's estimate, the month's actual spend, and the report that joins them with orders.

`cost_estimate` prices infra/terraform/ (shop_ops/cost/estimate.py); `actual_spend` reads the
month's bill from Cost Explorer, or records why there is none (the local profile);
`cost_report` joins them per environment and component, adds right-sizing from the load
tests' container usage and the cost per 1,000 orders (the shop's admin statistics, synthetic
orders excluded), and its blocking check `within_budget` fails, and notifies, when the month's
forecast passes a budget. Monthly partitions: the month so far, or a month that is over. Values
are DataFrames analysts load with `defs.load_asset_value`; totals go in metadata as numbers.
"""

from datetime import UTC, date, datetime, time
from typing import Any

import dagster as dg
import pandas as pd

from shop_ops.cost.actual import SpendError, SpendSource
from shop_ops.cost.estimate import TerraformCosts
from shop_ops.cost.report import (
    ACCOUNT,
    Budgets,
    MeasuredUsage,
    Month,
    budget_findings,
    forecast,
    per_thousand_orders,
    rightsizing,
    variance,
)
from shop_ops.release.targets import ReleaseTarget
from shop_ops.resources.notifier import NotifierResource, NotifyError
from shop_ops.resources.shop_admin import ShopAdminError, ShopAdminResource
from shop_ops.settings import ENVIRONMENTS

GROUP = "costs"
BUDGET_CHECK = "within_budget"
# The month so far exists from its first day (end_offset=1); monthly_cost_schedule runs the month before.
COST_PARTITIONS = dg.MonthlyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
# The actual spend frame of a month that could not be measured says why here (pandas keeps attrs when stored).
UNMEASURED = "unmeasured_reason"
DEPLOYMENTS = [dg.AssetKey([environment, "deployment"]) for environment in ENVIRONMENTS]


def _today() -> date:
    return datetime.now(UTC).date()


def _md(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=",.2f") if not frame.empty else "none")


@dg.asset(
    group_name=GROUP,
    deps=DEPLOYMENTS,
    kinds={"terraform", "pandas"},
    description=(
        "Monthly USD of infra/terraform/ per resource, component and environment root, priced from the committed "
        "price table (hand-entered, unverified) and infra/terraform/usage.yaml"
    ),
)
def cost_estimate(context: dg.AssetExecutionContext, terraform_costs: TerraformCosts) -> dg.MaterializeResult:
    estimate = terraform_costs.estimate()
    lines = estimate.lines
    per_root = lines.groupby("environment")["monthly_usd"].sum()
    by_component = lines.groupby(["environment", "component"], as_index=False)["monthly_usd"].sum()
    unpriced = pd.DataFrame([vars(u) for u in estimate.unpriced], columns=["environment", "address", "type", "reason"])
    context.log.info(
        f"estimate: {estimate.total_usd:,.2f} USD/month ({', '.join(f'{k} {v:,.2f}' for k, v in per_root.items())})"
    )
    return dg.MaterializeResult(
        value=lines,
        metadata={
            "total_usd": estimate.total_usd,
            **{f"{root}_usd": float(usd) for root, usd in per_root.items()},
            "unverified_prices": int((~lines["verified"]).sum()),
            "unpriced_resources": len(unpriced),
            "by_component": _md(by_component),
            "unpriced": _md(unpriced),
        },
    )


@dg.asset(
    group_name=GROUP,
    deps=DEPLOYMENTS,
    partitions_def=COST_PARTITIONS,
    kinds={"aws", "pandas"},
    description=(
        "What AWS billed per day, Environment and Component tag in the month (Cost Explorer, Project tag only), "
        "up to yesterday; empty with the reason where there is no bill to read (the local profile)"
    ),
)
def actual_spend(context: dg.AssetExecutionContext, spend: SpendSource) -> dg.MaterializeResult:
    month = Month.of(context.partition_key)
    try:
        result = spend.daily_spend(month.start, month.to_date(_today()))
    except SpendError as exc:
        raise dg.Failure(description=f"actual spend of {month.start:%Y-%m}: {exc}") from None
    frame = result.frame
    if result.reason is not None:
        frame.attrs[UNMEASURED] = result.reason
        context.log.warning(f"no actual spend for {month.start:%Y-%m}: {result.reason}")
    per_env = frame.groupby("environment")["usd"].sum()
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "measured": result.measured,
            "reason": result.reason or "measured",
            "total_usd": float(frame["usd"].sum()),
            **{f"{env}_usd": float(usd) for env, usd in per_env.items()},
            "days": int(frame["date"].nunique()),
        },
    )


# A multi-asset only for its op name: the job that materializes it is named `cost_report` too (DESIGN.md),
# and an asset's op may not share its job's name.
@dg.multi_asset(
    name="report_costs",
    outs={
        "cost_report": dg.AssetOut(
            group_name=GROUP,
            kinds={"pandas"},
            description=(
                "The month's costs: estimate against actual per environment and component, the forecast against the "
                "budgets, right-sizing from the load tests' container usage, and USD per 1,000 (real) orders"
            ),
        )
    },
    deps=[dg.AssetKey([env, name]) for env in ENVIRONMENTS for name in ("load_test_baseline", "nightly_load_test")],
    partitions_def=COST_PARTITIONS,
    ins={"cost_estimate": dg.AssetIn(), "actual_spend": dg.AssetIn()},
    check_specs=[
        dg.AssetCheckSpec(
            BUDGET_CHECK,
            asset="cost_report",
            blocking=True,
            description="the month's forecast (actual to date + the estimate for the days left) within every budget",
        )
    ],
)
def cost_report(  # noqa: ANN201 (a MaterializeResult with check results: Dagster refuses a typed value here)
    context: dg.AssetExecutionContext,
    cost_estimate: pd.DataFrame,
    actual_spend: pd.DataFrame,
    terraform_costs: TerraformCosts,
    shop_admin: ShopAdminResource,
    release_target: ReleaseTarget,
    budgets: Budgets,
    notifier: NotifierResource,
):
    month, today = Month.of(context.partition_key), _today()
    measured = UNMEASURED not in actual_spend.attrs
    report = variance(cost_estimate, actual_spend, measured, month, today)
    forecasts = forecast(cost_estimate, actual_spend, measured, month, today, budgets.usd)
    orders = _orders(shop_admin, release_target, month, today)
    cost_to_date = float(actual_spend["usd"].sum()) if measured else float(report["estimate_to_date_usd"].sum())
    production_orders = int(orders.loc[orders["environment"] == "production", "orders"].sum())
    per_1000 = per_thousand_orders(cost_to_date, production_orders)
    sizing = rightsizing(terraform_costs.task_sizes(), _measured_usage(context))
    findings = budget_findings(forecasts, report)
    if findings:
        _alert(context, notifier, month, findings)
    metadata: dict[str, Any] = {
        "month": f"{month.start:%Y-%m}",
        "days_billed": (month.to_date(today) - month.start).days,
        "cost_basis": "actual spend" if measured else f"estimate ({actual_spend.attrs.get(UNMEASURED)})",
        "cost_to_date_usd": cost_to_date,
        "estimate_month_usd": float(report["estimate_month_usd"].sum()),
        "forecast_usd": float(forecasts.loc[forecasts["budget"] == ACCOUNT, "forecast_usd"].sum()),
        "production_orders": production_orders,
        "usd_per_1000_orders": dg.MetadataValue.float(per_1000) if per_1000 is not None else "no orders yet",
        "variance": _md(report),
        "forecast": _md(forecasts),
        "rightsizing": _md(sizing),
        "orders": _md(orders),
    }
    return dg.MaterializeResult(
        value={"variance": report, "forecast": forecasts, "rightsizing": sizing, "orders": orders},
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=BUDGET_CHECK,
                passed=not findings,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"findings": "; ".join(findings) or "none", "forecast": _md(forecasts)},
            )
        ],
    )


def _orders(shop_admin: ShopAdminResource, release_target: ReleaseTarget, month: Month, today: date) -> pd.DataFrame:
    """Each environment's orders in the days billed so far (the shop's admin statistics: synthetic ones apart)."""
    since = datetime.combine(month.start, time(), tzinfo=UTC)
    until = datetime.combine(month.to_date(today), time(), tzinfo=UTC)
    rows = []
    for environment in ENVIRONMENTS:
        if until <= since:
            rows.append({"environment": environment, "orders": 0, "revenue_usd": 0.0, "synthetic_orders": 0})
            continue
        try:
            stats = shop_admin.client(environment, release_target.url(environment)).order_statistics(since, until)
        except ShopAdminError as exc:
            raise dg.Failure(description=f"cannot count {environment}'s orders for the cost report: {exc}") from None
        rows.append(
            {
                "environment": environment,
                "orders": stats.orders,
                "revenue_usd": stats.revenue_cents / 100,
                "synthetic_orders": stats.synthetic_orders,
            }
        )
    return pd.DataFrame(rows)


def _measured_usage(context: dg.AssetExecutionContext) -> dict[str, MeasuredUsage]:
    """Per environment, the newest load test (baseline or nightly) that sampled the shop's containers."""
    found: dict[str, MeasuredUsage] = {}
    for environment in ENVIRONMENTS:
        newest = None
        for name in ("load_test_baseline", "nightly_load_test"):
            event = context.instance.get_latest_materialization_event(dg.AssetKey([environment, name]))
            materialization = event.asset_materialization if event else None
            if materialization is None:
                continue
            values = {k: v.value for k, v in materialization.metadata.items()}
            if not values.get("cpu_p95_percent") or not values.get("memory_max_mb"):
                continue  # not sampled (ECS tasks), or recorded before the p95 was
            if newest is None or event.timestamp > newest[0]:
                newest = (event.timestamp, name, values, event.run_id)
        if newest is not None:
            _, name, values, run_id = newest
            found[environment] = MeasuredUsage(
                environment=environment, source=f"{environment}/{name}, run {run_id[:8]}",
                req_per_s=float(values.get("req_per_s", 0.0)), cpu_p95_percent=float(values["cpu_p95_percent"]),
                memory_max_mb=float(values["memory_max_mb"]),
            )  # fmt: skip
    return found


def _alert(context: dg.AssetExecutionContext, notifier: NotifierResource, month: Month, findings: list[str]) -> None:
    subject = f"[shop-ops] cost forecast over budget for {month.start:%Y-%m}"
    text = "\n".join([*findings, "", f"Run: {notifier.ui_url}/runs/{context.run.run_id}"])
    context.log.warning(text)
    try:
        notifier.send(subject, text)
    except NotifyError as exc:  # the failed check still fails the run, and the run-failure alert retries
        context.log.error(f"the budget alert was not sent: {exc}")
