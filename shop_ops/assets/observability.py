"""The `observability` group: `slo_report`, the shop's service levels per environment and day, from Prometheus.

The figures come from the `service_levels` resource (shop_ops/observability/slo.py); the asset
returns them as a DataFrame, puts the newest day's numbers per environment in its metadata (so
the UI plots them over time) and checks that no environment has overspent its availability budget.
"""

import math

import dagster as dg

from shop_ops.observability.prometheus import PrometheusApiError
from shop_ops.observability.slo import ServiceLevels

GROUP = "observability"
BUDGET_CHECK = "availability_budget_left"


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


@dg.asset(
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            BUDGET_CHECK,
            asset="slo_report",
            description="no environment has spent its 30-day availability error budget (budget left >= 0)",
        )
    ],
    kinds={"prometheus", "pandas"},
    description="per environment and day: requests, availability, p95, error budgets left (30 days), from Prometheus",
)
def slo_report(context: dg.AssetExecutionContext, service_levels: ServiceLevels):  # noqa: ANN201 (checks: no typed value)
    try:
        table = service_levels.table()
    except PrometheusApiError as exc:
        raise dg.Failure(description=f"SLO report: {exc}") from None
    today = table[table["day"] == table["day"].max()]
    metadata: dict[str, object] = {"days": len(table["day"].unique())}
    for row in today.itertuples():
        for field in ("requests", "availability", "p95_ms", "availability_budget_left", "latency_budget_left"):
            value = _number(getattr(row, field))
            if value is not None:
                metadata[f"{row.environment}_{field}"] = value
    metadata["report"] = dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".4g"))
    overspent = sorted(set(today.loc[today["availability_budget_left"] < 0, "environment"]))
    context.log.info(f"SLO report over {metadata['days']} days; overspent today: {', '.join(overspent) or 'none'}")
    return dg.MaterializeResult(
        value=table,
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=BUDGET_CHECK,
                passed=not overspent,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"overspent": ", ".join(overspent) or "none"},
            )
        ],
    )
