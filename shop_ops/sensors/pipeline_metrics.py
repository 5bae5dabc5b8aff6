"""`pipeline_metrics_sensor`: the pipeline's own figures, read from Dagster and the ledger, pushed to the Pushgateway.

Every minute: the latest finished run of each job (outcome, duration), the release serving each
environment (version, slot, lead time: from its digest's first staging release attempt to
serving), the newest backup, restore test and DR drill per environment, and the newest load-test
p95 against its baseline. Prometheus scrapes them from the Pushgateway for the dashboards; they
page nobody (failed runs belong to run_failure_alert_sensor, backup age to the freshness checks).
A Pushgateway that does not answer skips the tick with a reason that names its URL.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from prometheus_client import CollectorRegistry

from shop_ops.observability import pipeline_metrics as pm
from shop_ops.resources.ledger import LedgerResource, ReleaseLedger

SENSOR_NAME = "pipeline_metrics_sensor"
RUNS_LOOKED_AT = 200
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]


def run_outcomes(instance: dg.DagsterInstance, limit: int = RUNS_LOOKED_AT) -> list[pm.RunOutcome]:
    """The newest finished runs (their job, outcome, wall time, end, environment tag or partition)."""
    outcomes = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=FINISHED), limit=limit):
        if record.start_time is None or record.end_time is None:
            continue
        run = record.dagster_run
        environment = run.tags.get("environment") or None
        outcomes.append(
            pm.RunOutcome(
                job=run.job_name, succeeded=run.status == dg.DagsterRunStatus.SUCCESS,
                duration_s=max(0.0, record.end_time - record.start_time), finished_at=record.end_time,
                environment=environment,
            )
        )  # fmt: skip
    return outcomes


def _latest(instance: dg.DagsterInstance, key: list[str]) -> tuple[float, dict[str, float]] | None:
    """(timestamp, numeric metadata) of the asset's newest materialization, None if it has none."""
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        return None
    numbers = {
        name: float(value.value)
        for name, value in event.asset_materialization.metadata.items()
        if isinstance(value, dg.FloatMetadataValue | dg.IntMetadataValue) and value.value is not None
    }
    return event.timestamp, numbers


def release_lead_time(ledger: ReleaseLedger, environment: str) -> tuple[str, str, float, float] | None:
    """(version, slot, lead time s, went live at) of the release serving `environment`, None if none serves."""
    serving = ledger.serving(environment)
    if serving is None or serving.finished_at is None:
        return None
    first = min(
        (r["started_at"] for r in ledger.history("staging") if r["backend_digest"] == serving.backend_digest),
        default=serving.started_at,
    )
    return serving.version, serving.slot, max(0.0, serving.finished_at - first), serving.finished_at


def pipeline_groups(
    instance: dg.DagsterInstance, ledger: ReleaseLedger, environments: Sequence[str]
) -> list[tuple[str, CollectorRegistry, dict[str, str]]]:
    """(Pushgateway job, metrics, grouping key) of every figure there is now."""
    groups: list[tuple[str, CollectorRegistry, dict[str, str]]] = []
    runs = run_outcomes(instance)
    if runs:
        groups.append((pm.RUNS_JOB, pm.run_metrics(runs), {}))
    for env in environments:
        key = pm.grouping_key(env)
        release = release_lead_time(ledger, env)
        if release is not None:
            version, slot, lead, live = release
            metrics = pm.release_metrics(
                environment=env, version=version, lead_time_s=lead, finished_at=live, slot=slot
            )
            groups.append((pm.RELEASES_JOB, metrics, key))
        backup = _latest(instance, [env, "database_backup"])
        if backup is not None and "bytes" in backup[1]:
            groups.append((pm.BACKUPS_JOB, pm.backup_metrics(environment=env, finished_at=backup[0], size_bytes=backup[1]["bytes"]), key))  # fmt: skip
        restore = _latest(instance, [env, "dr_drill"]) or _latest(instance, [env, "restore_test"])
        if restore is not None and "rto_seconds" in restore[1]:
            when, numbers = restore
            metrics = pm.restore_metrics(
                environment=env, rto_s=numbers["rto_seconds"], rpo_s=numbers.get("rpo_seconds", 0.0), finished_at=when
            )
            groups.append((pm.RESTORES_JOB, metrics, key))
        load = _latest(instance, [env, "nightly_load_test"]) or _latest(instance, [env, "load_test_baseline"])
        if load is not None and "p95_ms" in load[1]:
            baseline = _latest(instance, [env, "load_test_baseline"])
            base = {"mix": baseline[1]["p95_ms"] / 1000} if baseline and "p95_ms" in baseline[1] else None
            metrics = pm.load_test_metrics(
                environment=env, p95_s={"mix": load[1]["p95_ms"] / 1000}, finished_at=load[0], baseline_p95_s=base
            )
            groups.append((pm.LOAD_TESTS_JOB, metrics, key))
    return groups


def build_pipeline_metrics_sensor(
    pushgateway_url: str, environments: Sequence[str], default_status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=60,
        default_status=default_status,
        description="Every minute: run outcomes, release lead time, backup age, restore RTO, load-test p95 -> the Pushgateway",
    )
    def _sensor(context: dg.SensorEvaluationContext, ledger: LedgerResource) -> dg.SkipReason:
        if not pushgateway_url:
            return dg.SkipReason("no Pushgateway configured (observability.pushgateway_url): nothing pushed")
        groups = pipeline_groups(context.instance, ledger.open(), environments)
        try:
            for job, metrics, key in groups:
                pm.push(pushgateway_url, job, metrics, key)
        except pm.PushgatewayError as exc:
            return dg.SkipReason(str(exc))
        return dg.SkipReason(f"pushed {len(groups)} groups of figures to {pushgateway_url}")

    return _sensor
