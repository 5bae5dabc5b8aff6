"""The `backups` group: each environment's nightly backup, its restore test and the weekly DR drill.

`<env>/database_backup` and `<env>/restore_test` are daily partitions (partition D is taken on
day D+1); `<env>/dr_drill` is not partitioned: each drill picks its own target time. The work is
done by the `backup_target` resource (shop_ops/backup/targets.py: pgBackRest + pg_dump locally,
RDS snapshots on aws); these assets only check the partition, call it and record its numbers.
"""

import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from shop_ops.backup.logical import BackupError
from shop_ops.backup.partitions import StalePartition, check_backup_partition
from shop_ops.backup.pipeline_state import sqlite_files
from shop_ops.backup.targets import BackupTarget
from shop_ops.release.targets import ReleaseTarget
from shop_ops.resources.ledger import LedgerResource

GROUP = "backups"
RESTORE_CHECK = "restored_matches_backup"
WAL_CHECK = "wal_archive_continuous"


# Daily partitions (UTC) from the first day shop-ops took backups; the newest is yesterday.
BACKUP_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC")


def _day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def _current_day(context: dg.AssetExecutionContext) -> date:
    """The partition's date if a backup taken now may carry it (the newest complete day); dg.Failure otherwise."""
    try:
        return check_backup_partition(context.partition_key, datetime.now(UTC))
    except StalePartition as exc:
        raise dg.Failure(description=str(exc)) from None


def database_backup(environment: str) -> dg.AssetsDefinition:
    """`<env>/database_backup`: physical base backup + WAL archive, and an encrypted dump with its fingerprint."""

    @dg.asset(
        key=[environment, "database_backup"],
        group_name=GROUP,
        partitions_def=BACKUP_PARTITIONS,
        deps=[dg.AssetKey([environment, "deployment"])],
        kinds={"postgres"},
        tags={"environment": environment},
        description=(
            f"{environment}'s database backed up: a pgBackRest base backup (WAL archived continuously) and a "
            "pg_dump with the fingerprint of the same snapshot, encrypted, stored and catalogued; old ones pruned"
        ),
    )
    def _backup(
        context: dg.AssetExecutionContext, backup_target: BackupTarget, release_target: ReleaseTarget
    ) -> dg.MaterializeResult:
        day = _current_day(context)
        image = release_target.serving_backend_image(environment)
        release = release_target.serving_release(environment)
        try:
            report = backup_target.back_up(environment, day, image, release, context.log.info)
        except BackupError as exc:
            raise dg.Failure(description=f"backup of {environment} for {day} failed: {exc}") from None
        return dg.MaterializeResult(metadata=report.metadata())

    return _backup


def restore_test(environment: str) -> dg.AssetsDefinition:
    """`<env>/restore_test`: the partition's backup restored into a scratch cluster, checked, served by the shop."""
    check = dg.AssetCheckSpec(
        RESTORE_CHECK,
        asset=dg.AssetKey([environment, "restore_test"]),
        blocking=True,
        description="restored fingerprints equal the backup's, and the shop serves the restored catalog",
    )

    @dg.asset(
        key=[environment, "restore_test"],
        group_name=GROUP,
        partitions_def=BACKUP_PARTITIONS,
        deps=[dg.AssetKey([environment, "database_backup"])],
        check_specs=[check],
        kinds={"postgres"},
        tags={"environment": environment},
        description=(
            f"{environment}'s backup of the day decrypted and restored into a scratch PostgreSQL; fingerprints "
            "compared; the backend that served then started against it (/readyz, catalog); RTO measured"
        ),
    )
    def _restore(context: dg.AssetExecutionContext, backup_target: BackupTarget) -> dg.MaterializeResult:
        day = _day(context)
        try:
            report = backup_target.restore_test(environment, day, context.log.info)
        except BackupError as exc:
            raise dg.Failure(description=f"restore test of {environment}'s backup of {day} failed: {exc}") from None
        metadata = report.metadata()
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[dg.AssetCheckResult(check_name=RESTORE_CHECK, passed=True, metadata=metadata)],
        )

    return _restore


STATE_CHECK = "restored_state_matches"


class StateBackupConfig(dg.Config):
    """Runs older than this many days are deleted after the backup (their events with them); 0 keeps all."""

    run_retention_days: int = 90


@dg.asset(
    group_name=GROUP,
    partitions_def=BACKUP_PARTITIONS,
    check_specs=[
        dg.AssetCheckSpec(
            STATE_CHECK,
            asset="pipeline_state_backup",
            blocking=True,
            description="the stored copy decrypts, every database passes integrity_check, row counts equal",
        )
    ],
    kinds={"sqlite"},
    description=(
        "The pipeline's own state (the release ledger, Dagster's runs, events and ticks: SQLite on one machine) "
        "copied consistently, encrypted, stored, restore-tested; runs older than the retention deleted after"
    ),
)
def pipeline_state_backup(
    context: dg.AssetExecutionContext, config: StateBackupConfig, backup_target: BackupTarget, ledger: LedgerResource
) -> dg.MaterializeResult:
    day = _current_day(context)
    databases = sqlite_files(Path(context.instance.root_directory))
    ledger_file = ledger.sqlite_path()
    if ledger_file is not None and ledger_file.exists():
        databases["ledger/" + ledger_file.name] = ledger_file
    if not databases:
        raise dg.Failure(
            description="no SQLite state to back up here: with PostgreSQL storage (aws) Dagster's database is "
            "backed up by its own RDS instance's snapshots"
        )
    try:
        stored = backup_target.back_up_state(day, databases, context.log.info)
        checked = backup_target.restore_test_state(day, context.log.info)
    except BackupError as exc:
        raise dg.Failure(description=f"pipeline state backup of {day} failed: {exc}") from None
    purged = purge_old_runs(context.instance, config.run_retention_days, context.run_id)
    context.log.info(f"run retention: {purged} runs older than {config.run_retention_days} days deleted")
    metadata = {**stored.metadata(), "restore_seconds": round(checked.seconds, 2), "runs_purged": purged}
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(check_name=STATE_CHECK, passed=True, metadata={"rows": checked.rows})],
    )


def purge_old_runs(instance: dg.DagsterInstance, days: int, current_run: str) -> int:
    """Delete finished runs (and their event logs) older than `days`; 0 keeps everything."""
    if days <= 0:
        return 0
    cutoff = datetime.now(UTC) - timedelta(days=days)
    old = instance.get_run_records(
        filters=dg.RunsFilter(created_before=cutoff, statuses=[s for s in dg.DagsterRunStatus if s.value in FINISHED])
    )
    for record in old:
        if record.dagster_run.run_id != current_run:
            instance.delete_run(record.dagster_run.run_id)
    return len(old)


FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class DrillConfig(dg.Config):
    """The recovery target: empty for a random time in the last 24 h that the WAL archive covers."""

    target_time: str = ""


def dr_drill(environment: str) -> dg.AssetsDefinition:
    """`<env>/dr_drill`: point-in-time recovery into a scratch cluster, proven on the heartbeat and orders; RTO/RPO."""

    @dg.asset(
        key=[environment, "dr_drill"],
        group_name=GROUP,
        deps=[dg.AssetKey([environment, "database_backup"])],
        kinds={"postgres"},
        tags={"environment": environment},
        description=(
            f"{environment}'s database recovered to a point in time from the newest base backup before it plus "
            "archived WAL; exactly the rows committed up to the target present; RTO and RPO in seconds"
        ),
    )
    def _drill(
        context: dg.AssetExecutionContext, config: DrillConfig, backup_target: BackupTarget
    ) -> dg.MaterializeResult:
        target = _parse_target(config.target_time)
        try:
            report = backup_target.drill(environment, target, context.log.info)
        except BackupError as exc:
            raise dg.Failure(description=f"DR drill of {environment} failed: {exc}") from None
        return dg.MaterializeResult(metadata=report.metadata())

    return _drill


def _parse_target(text: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise dg.Failure(description=f"target_time {text!r} is not an ISO time (e.g. 2026-11-30T03:15:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def wal_archive_check(environment: str) -> dg.AssetChecksDefinition:
    """The WAL archive is continuous from the oldest kept base backup and its newest segment is recent."""

    @dg.asset_check(
        asset=dg.AssetKey([environment, "database_backup"]),
        name=WAL_CHECK,
        description="no WAL segment missing since the oldest kept base backup, and the newest one archived recently",
    )
    def _check(backup_target: BackupTarget) -> dg.AssetCheckResult:
        status = backup_target.archive_status(environment)
        return dg.AssetCheckResult(
            passed=status.ok, severity=dg.AssetCheckSeverity.ERROR, description=status.describe(),
            metadata=status.metadata(),
        )  # fmt: skip

    return _check


def freshness_checks(assets: list[dg.AssetsDefinition], max_age: timedelta) -> list[dg.AssetChecksDefinition]:
    """Dagster's last-update freshness checks: each asset must have materialized within `max_age`.

    Dagster 1.13 marks these superseded by `FreshnessPolicy` on the asset, evaluated by an opt-in
    daemon (`freshness: enabled` in dagster.yaml) into a freshness state shown as a badge. We keep
    the checks: their pass/fail results are asset checks beside the asset and in the event log,
    where backup_freshness_sensor reads them, on every Dagster instance without further setup.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
        return list(
            dg.build_last_update_freshness_checks(
                assets=assets, lower_bound_delta=max_age, severity=dg.AssetCheckSeverity.ERROR
            )
        )
