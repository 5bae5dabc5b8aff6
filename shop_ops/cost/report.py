"""The cost report's arithmetic: estimate against actual, the month's forecast against budgets, right-sizing, cost per order.

Plain functions over DataFrames: the estimate's lines (`estimate.COLUMNS`), the spend rows
(`actual.SPEND_COLUMNS`) and the load tests' container usage. A month is prorated by whole
days: Cost Explorer's daily rows end yesterday, so "to date" means the days before `today`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import pandas as pd

# The budget that covers every row, the tagged environments, `shared` and the untagged alike.
ACCOUNT = "account"

# Right-sizing rule, on the container usage the load tests sampled (CPU in % of one core, memory in MiB),
# against the task's vCPU and memory: above HIGH of either is under-provisioned; CPU below LOW_CPU with
# memory below LOW_MEMORY over-provisioned.
HIGH = 0.8
LOW_CPU = 0.3
LOW_MEMORY = 0.5


class Budgets(dg.ConfigurableResource):
    """Monthly budgets in USD (`budgets`): an Environment tag (staging, production, shared) or ACCOUNT."""

    usd: dict[str, float]


@dataclass(frozen=True)
class Month:
    """A calendar month: [start, end)."""

    start: date

    @classmethod
    def of(cls, key: str) -> Month:
        """From a partition key such as `2026-11-01` (the first day)."""
        start = date.fromisoformat(key)
        if start.day != 1:
            raise ValueError(f"{key} is not the first day of a month")
        return cls(start)

    @property
    def days(self) -> int:
        return calendar.monthrange(self.start.year, self.start.month)[1]

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days)

    def to_date(self, today: date) -> date:
        """The end (exclusive) of the days billed so far: today, bounded by the month."""
        return min(max(today, self.start), self.end)

    def elapsed(self, today: date) -> float:
        """The share of the month's days before `today` (0 before it starts, 1 once it is over)."""
        return (self.to_date(today) - self.start).days / self.days


def monthly_estimate(lines: pd.DataFrame) -> pd.DataFrame:
    """The estimate's monthly USD per environment and component."""
    return lines.groupby(["environment", "component"], as_index=False)["monthly_usd"].sum()


def variance(lines: pd.DataFrame, spend: pd.DataFrame, measured: bool, month: Month, today: date) -> pd.DataFrame:
    """Per environment and component: the month's estimate, its share to date, the actual to date and the difference.

    Components billed but not estimated (and the untagged) appear with a zero estimate. Without a
    measured spend the actual columns are empty (NaN), never zero.
    """
    estimate = monthly_estimate(lines).rename(columns={"monthly_usd": "estimate_month_usd"})
    actual = spend.groupby(["environment", "component"], as_index=False)["usd"].sum()
    actual = actual.rename(columns={"usd": "actual_to_date_usd"})
    frame = estimate.merge(actual, on=["environment", "component"], how="outer")
    frame["estimate_month_usd"] = frame["estimate_month_usd"].fillna(0.0)
    frame["estimate_to_date_usd"] = frame["estimate_month_usd"] * month.elapsed(today)
    frame["actual_to_date_usd"] = frame["actual_to_date_usd"].fillna(0.0) if measured else float("nan")
    frame["variance_usd"] = frame["actual_to_date_usd"] - frame["estimate_to_date_usd"]
    base = frame["estimate_to_date_usd"].where(frame["estimate_to_date_usd"] > 0)
    frame["variance_pct"] = 100 * frame["variance_usd"] / base
    columns = ["environment", "component", "estimate_month_usd", "estimate_to_date_usd", "actual_to_date_usd",
               "variance_usd", "variance_pct"]  # fmt: skip
    return frame[columns].sort_values(["environment", "component"], ignore_index=True)


def forecast(
    lines: pd.DataFrame, spend: pd.DataFrame, measured: bool, month: Month, today: date, budgets: dict[str, float]
) -> pd.DataFrame:
    """The month's forecast per budget: actual to date plus the estimate for the days left; over_usd past the budget.

    Each budget is an environment tag (`staging`, `production`, `shared`) or ACCOUNT (everything).
    Without a measured spend the forecast is the estimate alone (`basis` says which).
    """
    rest = 1 - month.elapsed(today)
    rows = []
    for name, budget in budgets.items():
        own_lines = lines if name == ACCOUNT else lines[lines["environment"] == name]
        own_spend = spend if name == ACCOUNT else spend[spend["environment"] == name]
        estimate = float(own_lines["monthly_usd"].sum())
        actual = float(own_spend["usd"].sum()) if measured else 0.0
        to_come = estimate * rest if measured else estimate
        total = actual + to_come
        rows.append(
            {
                "budget": name,
                "budget_usd": float(budget),
                "actual_to_date_usd": actual if measured else float("nan"),
                "estimate_rest_usd": to_come,
                "forecast_usd": total,
                "over_usd": max(0.0, total - budget),
                "basis": "actual to date + estimate" if measured else "estimate (no actual spend)",
            }
        )
    return pd.DataFrame(rows)


def budget_findings(forecasts: pd.DataFrame, report: pd.DataFrame, top: int = 3) -> list[str]:
    """One sentence per budget the forecast passes: by how much, and the components that weigh most in it."""
    findings = []
    for row in forecasts[forecasts["over_usd"] > 0].itertuples():
        own = report if row.budget == ACCOUNT else report[report["environment"] == row.budget]
        weight = own["estimate_month_usd"] + own["variance_usd"].fillna(0.0)
        heaviest = own.assign(weight=weight).nlargest(top, "weight")
        where = ", ".join(
            f"{r.environment}/{r.component} {r.weight:,.0f} USD"
            + (f" ({r.variance_usd:+,.0f} against the estimate so far)" if pd.notna(r.variance_usd) else "")
            for r in heaviest.itertuples()
        )
        pct = 100 * row.over_usd / row.budget_usd
        findings.append(
            f"{row.budget}: forecast {row.forecast_usd:,.2f} USD is {row.over_usd:,.2f} USD ({pct:.0f}%) over its "
            f"budget of {row.budget_usd:,.2f} USD; largest: {where or 'no rows'}"
        )
    return findings


@dataclass(frozen=True)
class MeasuredUsage:
    """The shop's containers under a load test (their sum): what the right-sizing is judged on."""

    environment: str
    source: str  # the asset and run it comes from
    req_per_s: float
    cpu_p95_percent: float  # of one core
    memory_max_mb: float


def rightsizing(tasks: pd.DataFrame, usage: dict[str, MeasuredUsage]) -> pd.DataFrame:
    """Per environment's ECS task (columns environment, address, vcpu, memory_mb): the load test's peak against it."""
    rows = []
    for task in tasks.itertuples():
        measured = usage.get(task.environment)
        row = {"environment": task.environment, "task": task.address, "vcpu": task.vcpu, "memory_mb": task.memory_mb}
        if measured is None:
            rows.append({**row, "suggestion": "no container usage measured (a load test samples them locally)"})
            continue
        cpu = measured.cpu_p95_percent / (100 * task.vcpu)
        memory = measured.memory_max_mb / task.memory_mb
        if cpu > HIGH or memory > HIGH:
            suggestion = "under-provisioned: a larger task"
        elif cpu < LOW_CPU and memory < LOW_MEMORY:
            suggestion = "over-provisioned: a smaller task would hold this peak"
        else:
            suggestion = "right-sized"
        rows.append(
            {
                **row,
                "measured_req_per_s": measured.req_per_s,
                "cpu_p95_percent_of_one_core": measured.cpu_p95_percent,
                "memory_max_mb": measured.memory_max_mb,
                "cpu_utilization": cpu,
                "memory_utilization": memory,
                "suggestion": f"{suggestion} (at {measured.req_per_s:.0f} req/s, {measured.source})",
            }
        )
    return pd.DataFrame(rows)


def per_thousand_orders(usd: float, orders: int) -> float | None:
    """USD per 1,000 orders; None without orders (a ratio over nothing is not zero)."""
    return 1000 * usd / orders if orders > 0 else None
