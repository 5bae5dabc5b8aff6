"""Physical backups on aws: RDS manual snapshots, a copy in the DR region, a restore test on a temporary instance.

Plain functions over boto3 RDS clients (`AwsResource.client("rds")`, one client per region),
the aws-profile counterpart of pgBackRest:

1. `take_snapshot`: `create_db_snapshot` of the environment's instance, tagged by this tool
   (`shop-ops:managed`, `:kind`, `:environment`, `:date`), polled until `available`;
2. `copy_to_region`: `copy_db_snapshot` called on the **DR region's** client, with the source
   snapshot's ARN and `SourceRegion` (botocore then adds the pre-signed URL cross-region copies
   need); an encrypted snapshot needs a KMS key of the DR region (`kms_key_id`), checked here
   before the call; polled until `available`;
3. `restore_to_temporary`: `restore_db_instance_from_db_snapshot` to a new instance that is not
   publicly accessible, has no deletion protection, no automated backups, and is tagged
   `shop-ops:temporary=true`; polled until `available`, then its endpoint (host, port);
4. the checks (fingerprint, the shop's /readyz) run against that endpoint — not here;
5. `delete_temporary` in a `finally`: `delete_db_instance` with SkipFinalSnapshot and
   DeleteAutomatedBackups; it refuses an instance without the temporary tag, so a wrong
   identifier can never delete a real database. `temporary_instance` is the context manager
   doing 3 and 5.
6. `prune_snapshots`: this tool's manual snapshots of one instance in one region (run it with
   each region's client: DR copies keep the source's DBInstanceIdentifier), keeping every day of
   the last `keep_daily` days and the newest of each of the last `keep_monthly` months; the
   newest available snapshot is never deleted, snapshots not made by this tool never touched.

Waiting is polled by hand (like `shop_ops.release.ecs`) so the timeout is in seconds, a failed
status ends the wait at once, and a timeout names the last status seen. Errors are
`RdsBackupError` (or its subclasses `RdsNotFoundError`, `RdsTimeoutError`) with the cause and the fix.

Tested against a local moto server (tests/ops/test_rds_backup.py). moto 5.2.5's RDS holds no
database: snapshots and copies are `available` in the create/copy response itself, restored
instances `available` at once with a made-up endpoint (`<id>.aaaaaaaaaa.<region>.rds.amazonaws.com`)
nothing listens on, deletion is immediate, cross-region copy is a lookup in the other region's
in-memory state (no pre-signed URL check, no transfer), and an encrypted copy without a
DR-region key silently keeps the source region's key (real RDS refuses: that is why the check
is here). So the tests prove request shapes, the call sequence, tags, the cleanup and the
prune rules; the checks themselves (fingerprint, shop /readyz) run against a local scratch
PostgreSQL cluster in tests. docs/aws-deploy.md, "Backups on aws", has the whole list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from botocore.exceptions import ClientError

TAG_MANAGED = "shop-ops:managed"  # "rds-backup" on every snapshot, copy and temporary instance made here
TAG_KIND = "shop-ops:kind"  # snapshot | dr-copy | restore-test
TAG_ENVIRONMENT = "shop-ops:environment"
TAG_DATE = "shop-ops:date"  # YYYY-MM-DD: the backup's day (the daily partition), not necessarily its creation day
TAG_SOURCE = "shop-ops:source"  # a copy: the source snapshot's ARN; a temporary instance: the snapshot restored
TAG_TEMPORARY = "shop-ops:temporary"  # "true" on restore-test instances: the only ones delete_temporary deletes
TAG_CREATED = "shop-ops:created"  # a temporary instance's creation time (UTC, ISO), for finding leftovers
MANAGED = "rds-backup"

# The botocore waiters' failure states (DBSnapshotAvailable, DBInstanceAvailable) plus the instance
# states a fresh restore does not leave by itself; each with what to do about it.
SNAPSHOT_FAILED = {
    "failed": "RDS could not create it; see the instance's events (RDS console > Events) and take a new one",
    "incompatible-restore": "it cannot be restored; take a new snapshot",
    "incompatible-parameters": "it cannot be restored; take a new snapshot",
    "deleting": "someone is deleting it (a retention job?); take a new one",
    "deleted": "it was deleted; take a new one",
}
INSTANCE_FAILED = {
    "failed": "RDS could not create it; see its events (RDS console > Events)",
    "incompatible-restore": "the snapshot cannot be restored on this engine version/instance class; try another snapshot or class",
    "restore-error": "the restore failed; see its events and try another snapshot",
    "incompatible-parameters": "the parameter group does not fit the instance class (memory settings); use a larger class",
    "incompatible-network": "the DB subnet group has no usable subnet/free IP in its availability zones; check the subnet group",
    "incompatible-option-group": "the option group does not fit; restore with a default option group",
    "inaccessible-encryption-credentials": "the KMS key is disabled or not usable by RDS; check the key and its policy in this region",
    "insufficient-capacity": "no capacity for this instance class in the availability zone; use another instance class",
    "storage-full": "the instance ran out of storage while restoring",
    "deleting": "someone is deleting it",
    "deleted": "it was deleted",
}  # fmt: skip


class RdsBackupError(RuntimeError):
    """An RDS backup step failed or was refused; the message names the resource, the region, the cause and the fix."""


class RdsNotFoundError(RdsBackupError):
    """The DB instance or snapshot does not exist in that region."""


class RdsTimeoutError(RdsBackupError):
    """A wait ran out of time; `last_status` is what RDS said last (the resource may still finish by itself)."""

    def __init__(self, message: str, last_status: str) -> None:
        super().__init__(message)
        self.last_status = last_status


class TemporaryInstanceExists(RdsBackupError):
    """A DB instance with the temporary instance's identifier exists already; it was not created (nor deleted) here."""


@dataclass(frozen=True)
class Snapshot:
    """One DB snapshot as `describe_db_snapshots` shows it."""

    id: str
    arn: str
    region: str
    instance_id: str
    status: str
    snapshot_type: str
    created: datetime | None
    encrypted: bool
    kms_key_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    progress: int | None = None  # PercentProgress while creating/copying

    @property
    def managed(self) -> bool:
        """Made by this tool (tagged `shop-ops:managed=rds-backup`)."""
        return self.tags.get(TAG_MANAGED) == MANAGED

    @property
    def day(self) -> date | None:
        """The backup's day: the `shop-ops:date` tag, else the creation day (UTC), else None."""
        try:
            return date.fromisoformat(self.tags[TAG_DATE])
        except (KeyError, ValueError):
            return self.created.astimezone(UTC).date() if self.created else None


@dataclass(frozen=True)
class TemporaryInstance:
    """A restored, available DB instance: where the checks connect (with the source's master user and password)."""

    id: str
    host: str
    port: int
    region: str
    arn: str
    engine: str
    master_username: str | None
    database: str | None  # DBName, if the source instance was created with one


@dataclass(frozen=True)
class PruneResult:
    """What `prune_snapshots` kept (id -> why) and deleted (or would delete, with dry_run)."""

    region: str
    instance_id: str
    kept: dict[str, str]
    deleted: list[str]
    dry_run: bool


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def region_of(rds: Any) -> str:
    return str(rds.meta.region_name)


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if arn.startswith("arn:") and len(parts) > 5 else None


def _arn_name(arn: str) -> str:
    """`name` of `arn:aws:rds:<region>:<account>:snapshot:name` (or the identifier itself)."""
    return arn.rsplit(":", 1)[-1] if arn.startswith("arn:") else arn


def _tags(pairs: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in pairs or ()}


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _snapshot(raw: Mapping[str, Any], region: str) -> Snapshot:
    return Snapshot(
        id=str(raw["DBSnapshotIdentifier"]),
        arn=str(raw.get("DBSnapshotArn", "")),
        region=_arn_region(str(raw.get("DBSnapshotArn", ""))) or region,
        instance_id=str(raw.get("DBInstanceIdentifier", "")),
        status=str(raw.get("Status", "")),
        snapshot_type=str(raw.get("SnapshotType", "")),
        created=raw.get("SnapshotCreateTime"),
        encrypted=bool(raw.get("Encrypted")),
        kms_key_id=raw.get("KmsKeyId"),
        tags=_tags(raw.get("TagList")),
        progress=raw.get("PercentProgress"),
    )


def describe_snapshot(rds: Any, snapshot_id: str) -> Snapshot:
    """The snapshot by identifier; RdsNotFoundError when the region has no such snapshot."""
    region = region_of(rds)
    try:
        found = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
    except ClientError as exc:
        if _error_code(exc) == "DBSnapshotNotFound":
            raise RdsNotFoundError(
                f"DB snapshot {snapshot_id!r} not found in {region}: check the identifier and that the client "
                "is for the region that holds it (a DR copy lives in the DR region)"
            ) from None
        raise RdsBackupError(f"describe_db_snapshots {snapshot_id!r} in {region} failed: {exc}") from None
    if not found:
        raise RdsNotFoundError(f"DB snapshot {snapshot_id!r} not found in {region}")
    return _snapshot(found[0], region)


def describe_instance(rds: Any, instance_id: str) -> dict[str, Any]:
    """The DB instance as `describe_db_instances` shows it; RdsNotFoundError when the region has none by that name."""
    region = region_of(rds)
    try:
        found = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"]
    except ClientError as exc:
        if _error_code(exc) == "DBInstanceNotFound":
            raise RdsNotFoundError(f"DB instance {instance_id!r} not found in {region}") from None
        raise RdsBackupError(f"describe_db_instances {instance_id!r} in {region} failed: {exc}") from None
    if not found:
        raise RdsNotFoundError(f"DB instance {instance_id!r} not found in {region}")
    return dict(found[0])


def wait_for_snapshot(
    rds: Any,
    snapshot_id: str,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Snapshot:
    """Poll until the snapshot is `available`; RdsBackupError on a failed status, RdsTimeoutError with the last one."""
    region = region_of(rds)
    deadline = clock() + timeout_s
    while True:
        snap = describe_snapshot(rds, snapshot_id)
        if snap.status == "available":
            return snap
        if snap.status in SNAPSHOT_FAILED:
            raise RdsBackupError(
                f"DB snapshot {snapshot_id!r} in {region} is {snap.status}: {SNAPSHOT_FAILED[snap.status]}"
            )
        remaining = deadline - clock()
        if remaining <= 0:
            progress = f", {snap.progress}% done" if snap.progress is not None else ""
            raise RdsTimeoutError(
                f"DB snapshot {snapshot_id!r} in {region} not available after {timeout_s:g}s "
                f"(last status {snap.status!r}{progress}); it may still finish: raise the timeout and run "
                "again, which waits for the same snapshot instead of taking another",
                snap.status,
            )
        sleep(min(poll_s, remaining))


def wait_for_instance(
    rds: Any,
    instance_id: str,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the DB instance is `available` (and has an endpoint); errors as `wait_for_snapshot`."""
    region = region_of(rds)
    deadline = clock() + timeout_s
    while True:
        db = describe_instance(rds, instance_id)
        status = str(db.get("DBInstanceStatus", ""))
        if status == "available" and db.get("Endpoint", {}).get("Address"):
            return db
        if status in INSTANCE_FAILED:
            raise RdsBackupError(f"DB instance {instance_id!r} in {region} is {status}: {INSTANCE_FAILED[status]}")
        remaining = deadline - clock()
        if remaining <= 0:
            raise RdsTimeoutError(
                f"DB instance {instance_id!r} in {region} not available after {timeout_s:g}s "
                f"(last status {status!r}); a large snapshot takes longer to restore: raise the timeout",
                status,
            )
        sleep(min(poll_s, remaining))


def backup_tags(environment: str, day: date, kind: str = "snapshot") -> dict[str, str]:
    """The tags this tool puts on a snapshot or copy: managed, kind, environment, date."""
    return {TAG_MANAGED: MANAGED, TAG_KIND: kind, TAG_ENVIRONMENT: environment, TAG_DATE: day.isoformat()}


def snapshot_name(environment: str, when: datetime) -> str:
    """A snapshot identifier for one backup: `shop-ops-<environment>-<YYYYmmdd>-<HHMMSS>` (UTC)."""
    return f"shop-ops-{environment}-{when.astimezone(UTC):%Y%m%d-%H%M%S}"


def temporary_name(environment: str, when: datetime) -> str:
    """A temporary instance identifier for one restore test: `shop-ops-restore-<environment>-<YYYYmmdd-HHMMSS>` (UTC).

    Unique per test run, so a second restore test never meets the first one's instance.
    """
    return f"shop-ops-restore-{environment}-{when.astimezone(UTC):%Y%m%d-%H%M%S}"


def take_snapshot(
    rds: Any,
    instance_id: str,
    snapshot_id: str,
    environment: str,
    day: date | None = None,
    timeout_s: float = 3600,
    poll_s: float = 30,
) -> Snapshot:
    """Take a manual snapshot of `instance_id` tagged for `environment` and `day` (default today, UTC); wait for it.

    When the snapshot exists already and is this tool's snapshot of the same instance (an earlier
    attempt that timed out), it is waited for instead of failing.
    """
    region = region_of(rds)
    day = day or datetime.now(UTC).date()
    tags = backup_tags(environment, day)
    try:
        rds.create_db_snapshot(DBInstanceIdentifier=instance_id, DBSnapshotIdentifier=snapshot_id, Tags=_tag_list(tags))
    except ClientError as exc:
        code = _error_code(exc)
        if code == "DBInstanceNotFound":
            raise RdsNotFoundError(
                f"DB instance {instance_id!r} not found in {region}: check the environment's DB instance "
                "identifier in the settings and the region (aws.region)"
            ) from None
        if code == "DBSnapshotAlreadyExists":
            existing = describe_snapshot(rds, snapshot_id)
            if existing.managed and existing.instance_id.lower() == instance_id.lower():
                return wait_for_snapshot(rds, snapshot_id, timeout_s, poll_s)
            raise RdsBackupError(
                f"DB snapshot {snapshot_id!r} already exists in {region} (of {existing.instance_id!r}, "
                "not taken by shop-ops for this instance): pick another snapshot identifier"
            ) from None
        if code == "InvalidDBInstanceState":
            raise RdsBackupError(
                f"DB instance {instance_id!r} in {region} cannot be snapshotted now ({_error_message(exc)}): "
                "wait until it is available (not backing-up, modifying, stopping) and run again"
            ) from None
        if code == "SnapshotQuotaExceeded":
            raise RdsBackupError(
                f"the manual snapshot quota of {region} is used up: prune old snapshots (prune_snapshots) "
                "or ask AWS for a higher quota"
            ) from None
        raise RdsBackupError(
            f"create_db_snapshot {snapshot_id!r} of {instance_id!r} in {region} failed: {exc}"
        ) from None
    return wait_for_snapshot(rds, snapshot_id, timeout_s, poll_s)


def copy_to_region(
    source_rds: Any,
    dr_rds: Any,
    snapshot_arn: str,
    target_id: str,
    kms_key_id: str | None = None,
    timeout_s: float = 4 * 3600,
    poll_s: float = 30,
) -> Snapshot:
    """Copy the snapshot `snapshot_arn` (of `source_rds`'s region) into `dr_rds`'s region as `target_id`; wait for it.

    The copy carries the source's shop-ops tags with kind `dr-copy` and `shop-ops:source` = the
    source ARN. An encrypted source needs `kms_key_id`, a KMS key of the DR region (KMS keys do
    not cross regions); that is refused here before any copy starts. A copy that exists already
    with the same source (an earlier attempt that timed out) is waited for instead.
    """
    source_region, dr_region = region_of(source_rds), region_of(dr_rds)
    if source_region == dr_region:
        raise RdsBackupError(f"the DR region is the source region ({dr_region}): set the DR region to another region")
    if _arn_region(snapshot_arn) != source_region:
        raise RdsBackupError(
            f"{snapshot_arn!r} is not a snapshot ARN of the source region {source_region}: pass the ARN "
            "take_snapshot returned (Snapshot.arn)"
        )
    source = describe_snapshot(source_rds, _arn_name(snapshot_arn))
    if source.status != "available":
        raise RdsBackupError(
            f"DB snapshot {source.id!r} in {source_region} is {source.status}, not available: "
            "wait for it (take_snapshot does) before copying"
        )
    if kms_key_id is not None and _arn_region(kms_key_id) not in (None, dr_region):
        raise RdsBackupError(
            f"KMS key {kms_key_id!r} is not in the DR region {dr_region}: KMS keys do not cross regions; "
            "use a key (ARN, id or alias) of the DR region"
        )
    if source.encrypted and kms_key_id is None:
        raise RdsBackupError(
            f"DB snapshot {source.id!r} is encrypted (key {source.kms_key_id}); a copy to {dr_region} "
            f"needs a KMS key of {dr_region}: pass kms_key_id (the DR region's key for RDS snapshots)"
        )
    tags = {k: v for k, v in source.tags.items() if k.startswith("shop-ops:")}
    tags.update({TAG_MANAGED: MANAGED, TAG_KIND: "dr-copy", TAG_SOURCE: source.arn})
    params: dict[str, Any] = {
        "SourceDBSnapshotIdentifier": source.arn,
        "TargetDBSnapshotIdentifier": target_id,
        "SourceRegion": source_region,  # botocore turns this into the PreSignedUrl of a cross-region copy
        "Tags": _tag_list(tags),
    }
    if kms_key_id is not None:
        params["KmsKeyId"] = kms_key_id
    try:
        dr_rds.copy_db_snapshot(**params)
    except ClientError as exc:
        code = _error_code(exc)
        if code == "DBSnapshotAlreadyExists":
            existing = describe_snapshot(dr_rds, target_id)
            if existing.managed and existing.tags.get(TAG_SOURCE) == source.arn:
                return wait_for_snapshot(dr_rds, target_id, timeout_s, poll_s)
            raise RdsBackupError(
                f"DB snapshot {target_id!r} already exists in {dr_region} and is not a copy of {source.arn}: "
                "pick another target identifier"
            ) from None
        if code == "DBSnapshotNotFound":
            raise RdsNotFoundError(
                f"source snapshot {source.arn} not found from {dr_region}: {_error_message(exc)}"
            ) from None
        if code == "KMSKeyNotAccessibleFault":
            raise RdsBackupError(
                f"KMS key {kms_key_id!r} is not usable in {dr_region} ({_error_message(exc)}): check that the "
                "key exists in that region, is enabled, and its key policy lets this role use it for RDS"
            ) from None
        if code == "SnapshotQuotaExceeded":
            raise RdsBackupError(
                f"the manual snapshot quota of {dr_region} is used up: prune old DR copies "
                "(prune_snapshots with the DR region's client)"
            ) from None
        raise RdsBackupError(f"copy_db_snapshot {source.arn} -> {dr_region}/{target_id} failed: {exc}") from None
    return wait_for_snapshot(dr_rds, target_id, timeout_s, poll_s)


def _temporary_instance(db: Mapping[str, Any], region: str) -> TemporaryInstance:
    endpoint = db.get("Endpoint") or {}
    return TemporaryInstance(
        id=str(db["DBInstanceIdentifier"]),
        host=str(endpoint["Address"]),
        port=int(endpoint["Port"]),
        region=region,
        arn=str(db.get("DBInstanceArn", "")),
        engine=str(db.get("Engine", "")),
        master_username=db.get("MasterUsername"),
        database=db.get("DBName"),
    )


def restore_to_temporary(
    rds: Any,
    snapshot_id: str,
    temp_instance_id: str,
    instance_class: str,
    subnet_group: str | None = None,
    security_groups: Sequence[str] = (),
    timeout_s: float = 3600,
    poll_s: float = 30,
) -> TemporaryInstance:
    """Restore the snapshot (identifier, or ARN of `rds`'s region) to a new temporary instance; its endpoint.

    The instance is not publicly accessible, has no deletion protection, no Multi-AZ and no
    automated backups, and is tagged `shop-ops:temporary=true` (with the snapshot and the
    snapshot's environment and date). The caller deletes it with `delete_temporary` in a
    `finally` — or uses `temporary_instance`. Without `subnet_group` RDS uses the region's default
    VPC; without `security_groups`, that VPC's default security group. TemporaryInstanceExists
    when an instance by that identifier exists already (nothing was created).
    """
    region = region_of(rds)
    if _arn_region(snapshot_id) not in (None, region):
        raise RdsBackupError(
            f"{snapshot_id!r} is not in {region}: restore with the client of the snapshot's region "
            "(the DR copy: the DR region's client)"
        )
    snap = describe_snapshot(rds, _arn_name(snapshot_id))
    if snap.status != "available":
        raise RdsBackupError(
            f"DB snapshot {snap.id!r} in {region} is {snap.status}, not available: wait for it before restoring"
        )
    tags = {k: v for k, v in snap.tags.items() if k in (TAG_ENVIRONMENT, TAG_DATE)}
    tags.update({
        TAG_MANAGED: MANAGED, TAG_KIND: "restore-test", TAG_TEMPORARY: "true", TAG_SOURCE: snap.arn or snap.id,
        TAG_CREATED: datetime.now(UTC).isoformat(timespec="seconds"),
    })  # fmt: skip
    params: dict[str, Any] = {
        "DBInstanceIdentifier": temp_instance_id,
        "DBSnapshotIdentifier": snap.id,
        "DBInstanceClass": instance_class,
        "PubliclyAccessible": False,
        "DeletionProtection": False,
        "MultiAZ": False,
        "BackupRetentionPeriod": 0,  # no automated backups: faster to create and to delete
        "AutoMinorVersionUpgrade": False,
        "CopyTagsToSnapshot": False,
        "Tags": _tag_list(tags),
    }
    if subnet_group:
        params["DBSubnetGroupName"] = subnet_group
    if security_groups:
        params["VpcSecurityGroupIds"] = list(security_groups)
    try:
        rds.restore_db_instance_from_db_snapshot(**params)
    except ClientError as exc:
        code, message = _error_code(exc), _error_message(exc)
        if code == "DBInstanceAlreadyExists":
            raise TemporaryInstanceExists(
                f"DB instance {temp_instance_id!r} already exists in {region}: a restore test still running, "
                "or one that left its instance behind; use a unique temporary identifier, or delete the "
                "leftover (delete_temporary deletes it only if it is tagged shop-ops:temporary=true)"
            ) from None
        if code == "DBSubnetGroupNotFoundFault":
            raise RdsNotFoundError(
                f"DB subnet group {subnet_group!r} not found in {region}: create it there or fix its name"
            ) from None
        fixes = {
            "InsufficientDBInstanceCapacity": f"no {instance_class} capacity: use another instance class",
            "InvalidVPCNetworkStateFault": "the subnet group or security groups are not usable: check them",
            "InvalidSubnet": "a subnet of the subnet group is not usable: check the subnet group",
            "KMSKeyNotAccessibleFault": "the snapshot's KMS key is not usable here: check the key and its policy",
            "InstanceQuotaExceeded": "the region's DB instance quota is used up: delete leftovers or raise it",
            "StorageQuotaExceeded": "the region's storage quota is used up: delete leftovers or raise it",
            "InvalidDBSnapshotState": "the snapshot is not available: wait for it",
        }
        fix = fixes.get(code, "see the message")
        raise RdsBackupError(
            f"restoring {snap.id!r} to {temp_instance_id!r} in {region} failed ({code}: {message}): {fix}"
        ) from None
    db = wait_for_instance(rds, temp_instance_id, timeout_s, poll_s)
    if db.get("PubliclyAccessible"):
        raise RdsBackupError(
            f"the temporary instance {temp_instance_id!r} in {region} came up publicly accessible although "
            "PubliclyAccessible=False was asked for: delete it (delete_temporary) and check the subnet group"
        )
    return _temporary_instance(db, region)


def delete_temporary(rds: Any, temp_instance_id: str) -> str:
    """Delete a temporary instance (no final snapshot, automated backups too); what happened, in a word.

    `absent` when there is no such instance (already deleted: safe to call twice), `deleting`
    when the delete was accepted or was under way already. Refuses (RdsBackupError) an instance
    without the tag `shop-ops:temporary=true`: this never deletes a real database. Deletion
    protection, if the instance somehow has it, is turned off first. Does not wait for the
    deletion to finish (minutes on RDS).
    """
    region = region_of(rds)
    try:
        db = describe_instance(rds, temp_instance_id)
    except RdsNotFoundError:
        return "absent"
    tags = _tags(db.get("TagList"))
    if tags.get(TAG_TEMPORARY) != "true":
        raise RdsBackupError(
            f"refusing to delete DB instance {temp_instance_id!r} in {region}: it is not tagged "
            f"{TAG_TEMPORARY}=true, so it is not a restore test's temporary instance"
        )
    if db.get("DBInstanceStatus") == "deleting":
        return "deleting"
    try:
        if db.get("DeletionProtection"):
            rds.modify_db_instance(
                DBInstanceIdentifier=temp_instance_id, DeletionProtection=False, ApplyImmediately=True
            )
        rds.delete_db_instance(
            DBInstanceIdentifier=temp_instance_id, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
        )
    except ClientError as exc:
        if _error_code(exc) == "DBInstanceNotFound":
            return "absent"
        raise RdsBackupError(
            f"deleting the temporary DB instance {temp_instance_id!r} in {region} failed ({exc}): it is still "
            "there and costs money; delete it by hand (RDS console, or `aws rds delete-db-instance "
            f"--db-instance-identifier {temp_instance_id} --skip-final-snapshot --delete-automated-backups`)"
        ) from None
    return "deleting"


@contextmanager
def temporary_instance(
    rds: Any,
    snapshot_id: str,
    temp_instance_id: str,
    instance_class: str,
    subnet_group: str | None = None,
    security_groups: Sequence[str] = (),
    timeout_s: float = 3600,
    poll_s: float = 30,
) -> Iterator[TemporaryInstance]:
    """`restore_to_temporary`, the body, then `delete_temporary` whatever happened (also when the restore failed).

    The one exception: TemporaryInstanceExists (this call created nothing; another restore test
    may be using that instance) — then nothing is deleted. A failed delete raises after the
    body's own error (chained), so a leaked instance is never silent.
    """
    try:
        instance = restore_to_temporary(
            rds, snapshot_id, temp_instance_id, instance_class, subnet_group, security_groups, timeout_s, poll_s
        )
    except TemporaryInstanceExists:
        raise
    except BaseException:
        delete_temporary(rds, temp_instance_id)  # the request may have created it before the wait failed
        raise
    try:
        yield instance
    finally:
        delete_temporary(rds, temp_instance_id)


def list_backup_snapshots(rds: Any, instance_id: str) -> list[Snapshot]:
    """This tool's manual snapshots (and DR copies) of `instance_id` in `rds`'s region, oldest first."""
    region = region_of(rds)
    snapshots: list[Snapshot] = []
    try:
        pages = rds.get_paginator("describe_db_snapshots").paginate(
            DBInstanceIdentifier=instance_id, SnapshotType="manual"
        )
        for page in pages:
            snapshots.extend(_snapshot(raw, region) for raw in page.get("DBSnapshots", []))
    except ClientError as exc:
        raise RdsBackupError(f"listing the snapshots of {instance_id!r} in {region} failed: {exc}") from None
    ours = [s for s in snapshots if s.managed and s.instance_id.lower() == instance_id.lower()]
    return sorted(ours, key=_age_key)


def _age_key(snap: Snapshot) -> tuple[date, datetime, str]:
    created = snap.created or datetime.min.replace(tzinfo=UTC)
    return (snap.day or created.date(), created, snap.id)


def plan_prune(snapshots: Sequence[Snapshot], keep_daily: int, keep_monthly: int, today: date) -> dict[str, str]:
    """Which snapshots to keep (id -> why); the others of `snapshots` are to be deleted.

    Kept: every snapshot not `available` (creating, copying: left alone); the newest available
    one (dated today or before), always; for each of the last `keep_daily` days (today included)
    that day's newest; for each of the last `keep_monthly` calendar months (this one included)
    that month's newest; anything dated after today (a clock or tag error is no reason to
    delete). A snapshot's day is its `shop-ops:date` tag (the backup's partition), else its
    creation day (UTC). The windows are calendar days and months counted back from `today`.
    """
    if keep_daily < 0 or keep_monthly < 0:
        raise ValueError("keep_daily and keep_monthly must be >= 0")
    keep: dict[str, str] = {}
    available = []
    for snap in snapshots:
        if snap.status != "available":
            keep[snap.id] = f"status {snap.status}"
        else:
            available.append(snap)
    if not available:
        return keep
    newest_first = sorted(available, key=_age_key, reverse=True)
    current = [s for s in newest_first if s.day is None or s.day <= today]
    if current:
        keep[current[0].id] = "newest"
    first_daily = date.fromordinal(today.toordinal() - keep_daily + 1) if keep_daily else None
    months = {(today.year * 12 + today.month - 1 - i) for i in range(keep_monthly)}
    seen_days: set[date] = set()
    seen_months: set[int] = set()
    for snap in newest_first:
        day = snap.day
        if day is None:
            keep.setdefault(snap.id, "no date")
            continue
        if day > today:
            keep.setdefault(snap.id, f"dated {day} (after today)")
            continue
        if first_daily is not None and day >= first_daily and day not in seen_days:
            seen_days.add(day)
            keep.setdefault(snap.id, f"daily {day}")
        month = day.year * 12 + day.month - 1
        if month in months and month not in seen_months:
            seen_months.add(month)
            keep.setdefault(snap.id, f"monthly {day:%Y-%m}")
    return keep


def prune_snapshots(
    rds: Any,
    instance_id: str,
    keep_daily: int,
    keep_monthly: int,
    dry_run: bool = False,
    today: date | None = None,
) -> PruneResult:
    """Delete this tool's snapshots of `instance_id` in `rds`'s region that `plan_prune` does not keep.

    Only manual snapshots tagged `shop-ops:managed=rds-backup` are considered: automated
    snapshots, AWS Backup's and anyone else's are never touched. `dry_run` deletes nothing and
    reports what would go. Run it once per region (source and DR).
    """
    region = region_of(rds)
    today = today or datetime.now(UTC).date()
    snapshots = list_backup_snapshots(rds, instance_id)
    keep = plan_prune(snapshots, keep_daily, keep_monthly, today)
    doomed = [s.id for s in snapshots if s.id not in keep]
    deleted: list[str] = []
    for snapshot_id in doomed:
        if dry_run:
            deleted.append(snapshot_id)
            continue
        try:
            rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot_id)
        except ClientError as exc:
            if _error_code(exc) == "DBSnapshotNotFound":  # gone meanwhile: the goal is reached
                continue
            done = ", ".join(deleted) or "none"
            raise RdsBackupError(
                f"deleting DB snapshot {snapshot_id!r} in {region} failed ({exc}); deleted before it: {done}. "
                "Run the prune again once the cause is fixed"
            ) from None
        deleted.append(snapshot_id)
    return PruneResult(region=region, instance_id=instance_id, kept=keep, deleted=deleted, dry_run=dry_run)
