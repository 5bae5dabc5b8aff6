"""The `performance` group: a k6 baseline per release, the nightly load test checked against it, and capacity.

`<env>/load_test_baseline` is taken after a release is verified (it hangs from the deployment;
`release_staging` and `promote_production` materialize it). `<env>/nightly_load_test` (daily
partitions, job `perf_regression`) runs the same profile and compares its raw latencies with the
baseline's per endpoint (shop_ops/perf/regression.py): a regression fails the blocking check
`no_latency_regression` and the notifier is called. `capacity_report` runs the stress profile
against staging and records each scenario's breaking point with the release it measured.
Values are DataFrames analysts load with `defs.load_asset_value`; headline figures go in metadata.
The load tests themselves run in the `load_tester` resource (shop_ops/perf/loadtest.py).
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from shop_ops.perf.capacity import breaking_points, plateau_table
from shop_ops.perf.loadtest import LoadTester, LoadTestError, LoadTestRun, compare_frames
from shop_ops.perf.profiles import FLOW_SHARES, LoadProfile, stress_plateaus
from shop_ops.perf.regression import RegressionReport
from shop_ops.release.targets import ReleaseTarget
from shop_ops.resources.notifier import NotifierResource, NotifyError

GROUP = "performance"
REGRESSION_CHECK = "no_latency_regression"

# One nightly run per day (UTC); today's partition exists from midnight, the schedule runs it at 03:00.
PERF_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC", end_offset=1)


def _run(
    context: dg.AssetExecutionContext,
    environment: str,
    profile: LoadProfile,
    load_tester: LoadTester,
    release_target: ReleaseTarget,
) -> tuple[LoadTestRun, str]:
    """`profile` against `environment`'s URL (its serving containers sampled); the run and the serving release."""
    release = release_target.serving_release(environment)
    try:
        run = load_tester.run(
            environment, release_target.url(environment), release_target.serving_containers(environment), profile,
            context.log.info,
        )  # fmt: skip
    except LoadTestError as exc:
        raise dg.Failure(description=f"load test of {environment} ({release}): {exc}") from None
    return run, release


def _frame(run: LoadTestRun, release: str) -> pd.DataFrame:
    frame = run.requests.copy()
    frame.insert(0, "release", release)
    frame.insert(0, "environment", run.environment)
    return frame


def load_test_baseline(environment: str) -> dg.AssetsDefinition:
    """`<env>/load_test_baseline`: the realistic mix's raw latencies for the release serving now."""

    @dg.asset(
        key=[environment, "load_test_baseline"],
        group_name=GROUP,
        deps=[dg.AssetKey([environment, "deployment"])],
        kinds={"k6", "pandas"},
        tags={"environment": environment},
        description=(
            f"k6's realistic mix (load profile) against {environment} right after a verified release: one row per "
            "request; the baseline nightly runs are compared with"
        ),
    )
    def _baseline(
        context: dg.AssetExecutionContext, load_tester: LoadTester, release_target: ReleaseTarget
    ) -> dg.MaterializeResult[pd.DataFrame]:
        run, release = _run(context, environment, load_tester.load_profile(), load_tester, release_target)
        if not run.summary.passed:
            # A baseline is a reference: one that broke its own thresholds would make every later run look good.
            raise dg.Failure(
                description=f"{environment}'s baseline broke its thresholds ({', '.join(run.summary.failed_thresholds)})",
                metadata=run.metadata(),
            )
        return dg.MaterializeResult(value=_frame(run, release), metadata={**run.metadata(), "release": release})

    return _baseline


def nightly_load_test(environment: str) -> dg.AssetsDefinition:
    """`<env>/nightly_load_test`: tonight's run of the same mix, compared with the baseline (blocking check)."""
    check = dg.AssetCheckSpec(
        REGRESSION_CHECK,
        asset=dg.AssetKey([environment, "nightly_load_test"]),
        blocking=True,
        description=(
            "no endpoint slower than the release's baseline: p95 up more than max(5 ms, 10%) with Mann-Whitney U "
            "or the p95 bootstrap at p < 0.01 fails"
        ),
    )

    @dg.asset(
        key=[environment, "nightly_load_test"],
        group_name=GROUP,
        partitions_def=PERF_PARTITIONS,
        ins={"baseline": dg.AssetIn(key=dg.AssetKey([environment, "load_test_baseline"]))},
        check_specs=[check],
        kinds={"k6", "pandas"},
        tags={"environment": environment},
        description=(
            f"The night's k6 run against {environment} (the baseline's profile), one row per request, with a "
            "per-endpoint statistical comparison against the release's baseline"
        ),
    )
    def _nightly(  # noqa: ANN202 (see the comment in the body)
        context: dg.AssetExecutionContext,
        baseline: pd.DataFrame,
        load_tester: LoadTester,
        release_target: ReleaseTarget,
        notifier: NotifierResource,
    ):
        # and refuses `MaterializeResult[pd.DataFrame]` on an asset with checks (multiple outputs)
        today = datetime.now(UTC).date().isoformat()
        if context.partition_key != today:
            raise dg.Failure(
                description=(
                    f"partition {context.partition_key} is not today ({today} UTC): a load test measures the shop as "
                    "it is now, so only today's partition can be run"
                )
            )
        run, release = _run(context, environment, load_tester.load_profile(), load_tester, release_target)
        report = compare_frames(baseline, run.requests)
        baseline_release = str(baseline["release"].iloc[0]) if len(baseline) else "unknown"
        context.log.info(f"{environment} vs baseline of {baseline_release}: {report.summary()}")
        if not report.passed:
            _alert(context, notifier, environment, release, baseline_release, report.summary(), report.markdown())
        return dg.MaterializeResult(
            value=_frame(run, release),
            metadata={**run.metadata(), "release": release, "baseline_release": baseline_release},
            check_results=[
                dg.AssetCheckResult(
                    check_name=REGRESSION_CHECK,
                    passed=report.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={**_check_metadata(report), "baseline_release": baseline_release},
                )
            ],
        )

    return _nightly


def _check_metadata(report: RegressionReport) -> dict[str, Any]:
    """The report's statistics per endpoint (JSON), its table (markdown) and each endpoint's effect as a number."""
    metadata = report.metadata()
    effects = {
        f"effect_ms {c.name}": float(c.effect_ms) for c in report.comparisons if c.effect_ms is not None
    }  # fmt: skip
    return {
        **effects,
        "passed": report.passed,
        "summary": report.summary(),
        "problems": "; ".join(report.problems) or "none",
        "rule": dg.MetadataValue.json(metadata["rule"]),
        "endpoints": dg.MetadataValue.json(metadata["endpoints"]),
        "table": dg.MetadataValue.md(metadata["table"]),
    }


def _alert(
    context: dg.AssetExecutionContext,
    notifier: NotifierResource,
    environment: str,
    release: str,
    baseline_release: str,
    summary: str,
    table: str,
) -> None:
    subject = f"[shop-ops] latency regression in {environment}"
    text = (
        f"{environment} ({release}) is slower than the baseline of {baseline_release}: {summary}\n\n{table}\n\n"
        f"Run: {notifier.ui_url}/runs/{context.run.run_id}"
    )
    try:
        notifier.send(subject, text)
    except NotifyError as exc:  # the failed check still fails the run, and the run-failure alert retries
        context.log.error(f"the regression alert was not sent: {exc}")


@dg.asset(
    group_name=GROUP,
    deps=[dg.AssetKey(["staging", "deployment"])],
    kinds={"k6", "pandas"},
    description=(
        "Staging under the stress profile (arrival rate climbing in stages): per scenario, the highest rate with "
        "p95 below the threshold and errors below 1% (the breaking point), with the release it measured"
    ),
)
def capacity_report(
    context: dg.AssetExecutionContext, load_tester: LoadTester, release_target: ReleaseTarget
) -> dg.MaterializeResult[pd.DataFrame]:
    profile = load_tester.stress_profile()
    run, release = _run(context, "staging", profile, load_tester, release_target)
    plateaus = plateau_table(run.requests, stress_plateaus(profile), FLOW_SHARES, profile.p95_ms)
    capacity = breaking_points(plateaus)
    capacity.insert(0, "release", release)
    context.log.info(f"breaking points of {release}:\n{capacity.to_string(index=False)}")
    numbers = {f"breaking_rate_{row.scenario}": float(row.breaking_rate) for row in capacity.itertuples()}
    numbers.update(_capacity_change(context, numbers))
    return dg.MaterializeResult(
        value=capacity,
        metadata={
            **numbers,
            "release": release,
            "stress_p95_ms": float(run.summary.p95_ms),
            "breaking_points": dg.MetadataValue.md(capacity.to_markdown(index=False, floatfmt=".4g")),
            "stages": dg.MetadataValue.md(plateaus.to_markdown(index=False, floatfmt=".4g")),
            "usage": run.metadata()["usage"],
        },
    )


def _capacity_change(context: dg.AssetExecutionContext, numbers: dict[str, float]) -> dict[str, float]:
    """Each breaking rate's change in % against the previous capacity report (a capacity regression shows)."""
    previous = context.instance.get_latest_materialization_event(context.asset_key)
    before = previous.asset_materialization.metadata if previous and previous.asset_materialization else {}
    changes = {}
    for name, value in numbers.items():
        old = before.get(name)
        if old is not None and isinstance(old.value, (int, float)) and old.value > 0:
            changes[name.replace("breaking_rate_", "change_pct_")] = round(100 * (value - old.value) / old.value, 1)
            if value < old.value:
                context.log.warning(f"{name}: {value:g} it/s, down from {old.value:g} in the previous report")
    return changes
