"""`RdsBackupTarget` (aws profile): RDS snapshots as the physical layer, copied to the DR region and restore-tested.

The nightly backup takes a manual snapshot of the environment's instance, copies it to the DR
region and prunes both regions' shop-ops snapshots by the same retention as the local profile.
The restore test restores the DR copy to a temporary instance, waits until RDS reports it
available with an endpoint, and deletes it (always). What is not built on aws yet, and says so
when called: the logical dump with its fingerprint (it needs the database password from
Secrets Manager inside the run), the fingerprint and /readyz checks against the temporary
instance, and the point-in-time drill (`restore_db_instance_to_point_in_time`). The WAL-archive
check reads RDS's `LatestRestorableTime` (how far point-in-time recovery reaches now).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

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

    def metadata(self) -> dict[str, Any]:
        return {
            "location": self.snapshot.arn,
            "copy_location": self.copy.arn if self.copy else "-",
            "seconds": round(self.seconds, 2),
            "encrypted": self.snapshot.encrypted,
            "pruned": ", ".join(self.pruned) or "none",
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
            raise BackupError(f"no RDS instance configured for {environment!r}") from None

    def _dr(self) -> Any:
        return AwsResource(region=self.dr_region, endpoint_url=self.aws.endpoint_url).client("rds")

    def back_up(self, environment: str, day: date, backend_image: str | None, release: str, log: Log) -> SnapshotReport:
        started = time.monotonic()
        source, dr = self.aws.client("rds"), self._dr()
        instance = self._instance(environment)
        try:
            snap = rds.take_snapshot(
                source, instance, rds.snapshot_name(environment, datetime.now(UTC)), environment, day,
                self.timeout_seconds, self.poll_seconds,
            )  # fmt: skip
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
        return SnapshotReport(environment, day, snap, copy, time.monotonic() - started, pruned)

    def restore_test(self, environment: str, day: date, log: Log) -> TemporaryRestoreReport:
        started = time.monotonic()
        dr = self._dr()
        instance = self._instance(environment)
        snapshots = [
            s for s in rds.list_backup_snapshots(dr, instance) if s.tags.get("shop-ops:date") == day.isoformat()
        ]
        if not snapshots:
            raise BackupError(
                f"no DR copy of {environment}'s snapshot of {day} in {self.dr_region}: run nightly_backup"
            )
        temp = rds.temporary_name(environment, datetime.now(UTC))
        try:
            with rds.temporary_instance(
                dr, snapshots[-1].id, temp, self.restore_instance_class, self.restore_subnet_group,
                tuple(self.restore_security_groups), self.timeout_seconds, self.poll_seconds,
            ) as restored:  # fmt: skip
                log(f"{environment}: {snapshots[-1].id} restored as {restored.id} at {restored.host}:{restored.port}")
                endpoint = f"{restored.host}:{restored.port}"
        except rds.RdsBackupError as exc:
            raise BackupError(str(exc)) from None
        return TemporaryRestoreReport(environment, day, time.monotonic() - started, temp, endpoint)

    def drill(self, environment: str, target: datetime | None, log: Log) -> Any:
        raise BackupError(
            "point-in-time drills on aws (RDS restore_db_instance_to_point_in_time + the heartbeat proof) are not "
            "built yet: see docs/aws-deploy.md, 'Backups on aws'"
        )

    def archive_status(self, environment: str) -> ArchiveReport:
        try:
            db = rds.describe_instance(self.aws.client("rds"), self._instance(environment))
        except rds.RdsBackupError as exc:
            return ArchiveReport(environment, None, self.max_restore_lag_seconds, str(exc))
        latest = db.get("LatestRestorableTime")
        if latest is None:
            return ArchiveReport(
                environment, None, self.max_restore_lag_seconds,
                f"{environment}: RDS reports no LatestRestorableTime (automated backups off?)",
            )  # fmt: skip
        lag = (datetime.now(UTC) - latest).total_seconds()
        problem = None
        if lag > self.max_restore_lag_seconds:
            problem = f"{environment}: RDS can recover only to {latest.isoformat()} ({lag:.0f}s ago)"
        return ArchiveReport(environment, None, self.max_restore_lag_seconds, problem)
