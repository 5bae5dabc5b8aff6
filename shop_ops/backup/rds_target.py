"""`RdsBackupTarget` (aws profile): RDS snapshots as the physical layer, copied to the DR region and restore-tested.

The nightly backup takes a manual snapshot of the environment's instance, copies it to the DR
region and prunes both regions' shop-ops snapshots by the same retention as the local profile.
The restore test restores the DR copy to a temporary instance, waits until RDS reports it
available with an endpoint, and deletes it (always). What is not built on aws yet, and says so
when called: the logical dump with its fingerprint (it needs the database password from
Secrets Manager inside the run), the fingerprint and /readyz checks against the temporary
instance, and the point-in-time drill (`restore_db_instance_to_point_in_time`). The WAL-archive
check reads RDS's `LatestRestorableTime` (how far point-in-time recovery reaches now) and
`BackupRetentionPeriod` (0: automated backups off, no point-in-time recovery at all).

Snapshot and temporary-instance identifiers are `rds.snapshot_name` / `rds.temporary_name` plus
`-for-<YYYYmmdd>` (the backup's day), so backups or restore tests of two days started in the
same second (a backfill) never meet. Tested against a local moto server
(tests/ops/test_rds_backup_target.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import Field

from shop_ops.backup import rds
from shop_ops.backup.logical import BackupError
from shop_ops.backup.targets import ArchiveReport, BackupTarget, Log
from shop_ops.resources.aws import AwsResource


@dataclass(frozen=True)
class SnapshotReport:
    environment: str
    day: date
    snapshot: rds.Snapshot
    copy: rds.Snapshot | None
    seconds: float
    pruned: list[str]
    dry_run: bool = False  # `pruned` is what retention would have deleted

    def metadata(self) -> dict[str, Any]:
        pruned = ", ".join(self.pruned) or "none"
        return {
            "location": self.snapshot.arn,
            "copy_location": self.copy.arn if self.copy else "-",
            "seconds": round(self.seconds, 2),
            "encrypted": self.snapshot.encrypted,
            "pruned": f"{pruned} (dry run: nothing deleted)" if self.dry_run and self.pruned else pruned,
        }


@dataclass(frozen=True)
class TemporaryRestoreReport:
    environment: str
    day: date
    rto_seconds: float
    instance: str
    endpoint: str

    def metadata(self) -> dict[str, Any]:
        return {
            "rto_seconds": round(self.rto_seconds, 2),
            "temporary_instance": self.instance,
            "endpoint": self.endpoint,
            "checks": "RDS restore and endpoint only (fingerprint and /readyz not built on aws yet)",
        }


class RdsBackupTarget(BackupTarget):
    """aws profile: one RDS instance per environment; snapshots copied to `dr_region`."""

    aws: AwsResource
    dr_region: str
    instances: dict[str, str] = Field(description="environment -> its RDS instance identifier")
    restore_instance_class: str = "db.t4g.micro"
    restore_subnet_group: str | None = None
    restore_security_groups: list[str] = Field(default_factory=list)
    dr_kms_key_id: str | None = None
    timeout_seconds: float = 3600
    poll_seconds: float = 30
    max_restore_lag_seconds: float = 900

    def _instance(self, environment: str) -> str:
        try:
            return self.instances[environment]
        except KeyError:
            raise BackupError(
                f"no RDS instance configured for {environment!r}: set environments.{environment}.db_instance "
                "(the DB instance identifier) in the aws profile's settings (config/aws.yaml)"
            ) from None

    def _dr(self) -> Any:
        return AwsResource(
            region=self.dr_region, endpoint_url=self.aws.endpoint_url, max_attempts=self.aws.max_attempts
        ).client("rds")

    def _aws_failed(self, what: str, exc: BotoCoreError) -> BackupError:
        """A failure below the API (no credentials, endpoint unreachable) as a BackupError with the fix."""
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            fix = "check the AWS credentials (environment, AWS_PROFILE or the task role)"
        elif isinstance(exc, BotoConnectionError):
            fix = f"check that {self.aws.endpoint_url or 'the AWS endpoint'} can be reached from here"
        else:
            fix = "see the message"
        return BackupError(f"{what}: the AWS call failed before RDS answered ({type(exc).__name__}: {exc}); {fix}")

    def back_up(self, environment: str, day: date, backend_image: str | None, release: str, log: Log) -> SnapshotReport:
        started = time.monotonic()
        instance = self._instance(environment)
        if self.dr_region == self.aws.region:
            raise BackupError(
                f"the DR region is the source region ({self.aws.region}): set aws.dr_region in the aws profile's "
                "settings to another region (snapshots are copied there)"
            )
        source, dr = self.aws.client("rds"), self._dr()
        # The day is in the name: two days' backups started in the same second are two snapshots (a rerun of
        # the same day in the same second finds its own snapshot and waits for it).
        snapshot_id = f"{rds.snapshot_name(environment, datetime.now(UTC))}-for-{day:%Y%m%d}"
        try:
            snap = rds.take_snapshot(
                source, instance, snapshot_id, environment, day, self.timeout_seconds, self.poll_seconds
            )
            log(f"{environment}: snapshot {snap.id} of {instance} available")
            copy = rds.copy_to_region(
                source, dr, snap.arn, snap.id, self.dr_kms_key_id, self.timeout_seconds, self.poll_seconds
            )
            log(f"{environment}: copied to {self.dr_region} as {copy.id}")
            pruned = []
            for client in (source, dr):
                result = rds.prune_snapshots(
                    client, instance, self.retention_daily, self.retention_monthly, self.prune_dry_run, day
                )
                pruned += [f"{result.region}:{name}" for name in result.deleted]
        except rds.RdsBackupError as exc:
            raise BackupError(str(exc)) from None
        except BotoCoreError as exc:
            raise self._aws_failed(f"backup of {environment} ({instance})", exc) from None
        if pruned:
            log(f"retention {'would delete' if self.prune_dry_run else 'deleted'} {environment}: {', '.join(pruned)}")
        return SnapshotReport(environment, day, snap, copy, time.monotonic() - started, pruned, self.prune_dry_run)

    def restore_test(self, environment: str, day: date, log: Log) -> TemporaryRestoreReport:
        started = time.monotonic()
        instance = self._instance(environment)
        dr = self._dr()
        try:
            copies = [s for s in rds.list_backup_snapshots(dr, instance) if s.tags.get(rds.TAG_DATE) == day.isoformat()]
        except rds.RdsBackupError as exc:
            raise BackupError(str(exc)) from None
        except BotoCoreError as exc:
            raise self._aws_failed(f"restore test of {environment} ({instance})", exc) from None
        if not copies:
            raise BackupError(
                f"no DR copy of {environment}'s snapshot of {day} in {self.dr_region}: run nightly_backup for {day} "
                "first (the database_backup partition of that day)"
            )
        # The newest available copy; if none is available yet, the newest (its restore says to wait for it).
        chosen = ([s for s in copies if s.status == "available"] or copies)[-1]
        temp = f"{rds.temporary_name(environment, datetime.now(UTC))}-for-{day:%Y%m%d}"
        try:
            with rds.temporary_instance(
                dr, chosen.id, temp, self.restore_instance_class, self.restore_subnet_group,
                tuple(self.restore_security_groups), self.timeout_seconds, self.poll_seconds,
            ) as restored:  # fmt: skip
                log(f"{environment}: {chosen.id} restored as {restored.id} at {restored.host}:{restored.port}")
                endpoint = f"{restored.host}:{restored.port}"
        except rds.RdsBackupError as exc:
            raise BackupError(str(exc)) from None
        except BotoCoreError as exc:
            raise self._aws_failed(
                f"restore test of {environment}: temporary instance {temp} in {self.dr_region} (check that it is gone)",
                exc,
            ) from None
        return TemporaryRestoreReport(environment, day, time.monotonic() - started, temp, endpoint)

    def drill(self, environment: str, target: datetime | None, log: Log) -> Any:
        raise BackupError(
            "point-in-time drills on aws (RDS restore_db_instance_to_point_in_time + the heartbeat proof) are not "
            "built yet: see docs/aws-deploy.md, 'Backups on aws'"
        )

    def archive_status(self, environment: str) -> ArchiveReport:
        def problem(text: str) -> ArchiveReport:
            return ArchiveReport(environment, None, self.max_restore_lag_seconds, text)

        try:
            instance = self._instance(environment)
        except BackupError as exc:
            return problem(str(exc))
        try:
            db = rds.describe_instance(self.aws.client("rds"), instance)
        except rds.RdsNotFoundError as exc:
            return problem(
                f"{exc}: check environments.{environment}.db_instance and aws.region in the aws profile's settings"
            )
        except rds.RdsBackupError as exc:
            return problem(str(exc))
        except BotoCoreError as exc:
            return problem(str(self._aws_failed(f"{environment}: reading {instance}", exc)))
        fix = f"turn automated backups on for {instance} (a backup retention of 1 day or more)"
        if db.get("BackupRetentionPeriod") == 0:
            return problem(
                f"{environment}: {instance} has automated backups off (BackupRetentionPeriod 0), so no "
                f"point-in-time recovery: {fix}"
            )
        latest = db.get("LatestRestorableTime")
        if latest is None:
            return problem(f"{environment}: RDS reports no LatestRestorableTime for {instance}: {fix}")
        lag = (datetime.now(UTC) - latest).total_seconds()
        if lag > self.max_restore_lag_seconds:
            return problem(
                f"{environment}: RDS can recover {instance} only to {latest.isoformat()} ({lag:.0f}s ago, more than "
                f"{self.max_restore_lag_seconds:.0f}s): its transaction logs are not being backed up; check the "
                "instance's status (stopped? storage-full?) and its events (RDS console > Events)"
            )
        return ArchiveReport(environment, None, self.max_restore_lag_seconds, None)
