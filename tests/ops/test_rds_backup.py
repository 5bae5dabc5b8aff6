"""RDS physical backups (shop_ops.backup.rds) against a real local moto server: snapshot, DR copy, restore test, prune.

What this proves: the request shapes (botocore validates every parameter against the RDS model,
moto parses and stores them), the call sequence of a backup — CreateDBSnapshot polled until
available, CopyDBSnapshot sent to the DR region's endpoint with the source ARN and SourceRegion
(botocore adds the PreSignedUrl), RestoreDBInstanceFromDBSnapshot in the DR region polled until
available, the endpoint handed to the check, DeleteDBInstance with SkipFinalSnapshot and
DeleteAutomatedBackups afterwards even when the check raises — the tags, the refusals before any
call (encrypted copy without a DR key, untagged instance), moto's real not-found errors, and the
prune rules (pure, and against moto's snapshot list).

What it does not prove (moto 5.2.5, verified by experiment; docs/aws-deploy.md "Backups on aws"):
there is no database behind an instance, so nothing is snapshotted, copied or restored; snapshots
and copies are `available` in the very create/copy response and instances at once, so every
wait ends at its first look — stuck, failed and slow statuses are made by a botocore
`after-call` hook on the test's client that rewrites the Describe answers as RDS reports them
(requests still go to moto unchanged); the endpoint is a made-up name nothing listens on; the
pre-signed URL is not checked; an encrypted copy without a DR-region key keeps the source
region's key (RDS refuses it; the code refuses first); a restore inherits PubliclyAccessible and
DeletionProtection from the source instance (falsy overrides are dropped). The checks themselves
(fingerprint, the shop's /readyz) run against a local scratch PostgreSQL cluster in the backup
tests, not here.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from shop_ops.backup.rds import (
    TAG_DATE,
    TAG_ENVIRONMENT,
    TAG_KIND,
    TAG_MANAGED,
    TAG_SOURCE,
    TAG_TEMPORARY,
    RdsBackupError,
    RdsNotFoundError,
    RdsTimeoutError,
    Snapshot,
    TemporaryInstanceExists,
    copy_to_region,
    delete_temporary,
    plan_prune,
    prune_snapshots,
    restore_to_temporary,
    snapshot_name,
    take_snapshot,
    temporary_instance,
    temporary_name,
)
from shop_ops.resources.aws import AwsResource
from tests.ops.conftest import REGION

DR_REGION = "eu-west-1"
FAST = {"timeout_s": 5, "poll_s": 0.01}
DAY = date(2026, 3, 10)


class RdsCalls:
    """RDS operations as sent, per region: parameters as the caller gave them, and the final body (botocore hooks)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, dict]] = []
        self.bodies: dict[str, dict] = {}

    def watch(self, client) -> None:
        region = client.meta.region_name

        def record(params, model, **_kwargs):
            self.items.append((region, model.name, copy.deepcopy(params)))

        def body(params, model, **_kwargs):
            self.bodies[model.name] = copy.deepcopy(params["body"])

        client.meta.events.register("provide-client-params.rds", record)
        client.meta.events.register("before-call.rds", body)

    def names(self, region: str | None = None) -> list[str]:
        return [name for r, name, _ in self.items if region in (None, r)]

    def params(self, name: str) -> list[dict]:
        return [p for _, n, p in self.items if n == name]

    def regions(self, name: str) -> set[str]:
        return {r for r, n, _ in self.items if n == name}


@pytest.fixture
def calls() -> RdsCalls:
    return RdsCalls()


@pytest.fixture
def rds(aws, calls):
    client = aws.client("rds")
    calls.watch(client)
    return client


@pytest.fixture
def dr_aws(aws) -> AwsResource:
    return AwsResource(region=DR_REGION, endpoint_url=aws.endpoint_url)


@pytest.fixture
def dr_rds(dr_aws, calls):
    client = dr_aws.client("rds")
    calls.watch(client)
    return client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_instance(rds, **extra) -> str:
    """A PostgreSQL instance in moto (no database behind it); its identifier."""
    instance_id = unique("shop-prod")
    rds.create_db_instance(
        DBInstanceIdentifier=instance_id, DBInstanceClass="db.t4g.micro", Engine="postgres",
        MasterUsername="shop", MasterUserPassword="not-a-real-secret", AllocatedStorage=20, DBName="shop", **extra,
    )  # fmt: skip
    return instance_id


@pytest.fixture
def source_db(rds, calls) -> str:
    instance_id = make_instance(rds)
    calls.items.clear()
    return instance_id


def instance_exists(rds, instance_id: str) -> bool:
    try:
        rds.describe_db_instances(DBInstanceIdentifier=instance_id)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "DBInstanceNotFound"
        return False
    return True


def rewrite(client, operation: str, list_key: str, **fields):
    """An after-call hook that makes every item of a Describe answer report `fields` (what moto never does)."""

    def hook(parsed, **_kwargs) -> None:
        for item in parsed.get(list_key, []):
            item.update(fields)

    client.meta.events.register(f"after-call.rds.{operation}", hook)
    return hook


def network(dr_aws) -> tuple[str, list[str]]:
    """A DB subnet group and a security group in the DR region (moto's EC2); (subnet group, [security group])."""
    ec2 = dr_aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{DR_REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName=unique("restore-test"), Description="restore test", VpcId=vpc)
    name = unique("restore-test")
    dr_aws.client("rds").create_db_subnet_group(
        DBSubnetGroupName=name, DBSubnetGroupDescription="restore tests", SubnetIds=subnets
    )
    return name, [group["GroupId"]]


# ------------------------------------------------------------------------------------------ the whole sequence
def test_snapshot_copy_restore_check_delete_sequence(rds, dr_rds, dr_aws, calls, source_db):
    subnet_group, security_groups = network(dr_aws)
    snapshot_id, copy_id, temp_id = unique("shop-ops-production"), unique("shop-ops-production-dr"), unique("restore")

    snap = take_snapshot(rds, source_db, snapshot_id, "production", day=DAY, **FAST)
    dr = copy_to_region(rds, dr_rds, snap.arn, copy_id, **FAST)
    seen = []
    with temporary_instance(dr_rds, dr.id, temp_id, "db.t4g.small", subnet_group, security_groups, **FAST) as temp:
        seen.append(temp)  # the check would connect to temp.host:temp.port now
        described = dr_rds.describe_db_instances(DBInstanceIdentifier=temp_id)["DBInstances"][0]

    # the snapshot: this instance, manual, available, tagged
    assert (snap.id, snap.instance_id, snap.region, snap.status) == (snapshot_id, source_db, REGION, "available")
    assert snap.snapshot_type == "manual" and snap.day == DAY
    assert snap.tags == {
        TAG_MANAGED: "rds-backup", TAG_KIND: "snapshot", TAG_ENVIRONMENT: "production", TAG_DATE: "2026-03-10",
    }  # fmt: skip
    # the copy lives in the DR region, keeps the environment and date, names its source
    assert dr.region == DR_REGION and dr.arn.startswith(f"arn:aws:rds:{DR_REGION}:") and dr.status == "available"
    assert dr.tags == {**snap.tags, TAG_KIND: "dr-copy", TAG_SOURCE: snap.arn}
    assert dr.instance_id == source_db  # RDS keeps the source instance's identifier on copies (prune relies on it)
    # the temporary instance: the endpoint RDS reported, in the DR region, on the asked network
    [temp] = seen
    assert (temp.id, temp.region, temp.engine, temp.master_username, temp.database) == (
        temp_id, DR_REGION, "postgres", "shop", "shop",
    )  # fmt: skip
    assert (temp.host, temp.port) == (described["Endpoint"]["Address"], described["Endpoint"]["Port"])
    assert described["DBSubnetGroup"]["DBSubnetGroupName"] == subnet_group
    assert [g["VpcSecurityGroupId"] for g in described["VpcSecurityGroups"]] == security_groups
    tags = {t["Key"]: t["Value"] for t in described["TagList"]}
    assert tags[TAG_TEMPORARY] == "true" and tags[TAG_KIND] == "restore-test" and tags[TAG_SOURCE] == dr.arn
    assert tags[TAG_ENVIRONMENT] == "production" and tags[TAG_DATE] == "2026-03-10"
    # ... and gone afterwards
    assert not instance_exists(dr_rds, temp_id)

    # the calls, in order, each in its region (moto answers every wait at the first look)
    assert calls.names(REGION) == ["CreateDBSnapshot", "DescribeDBSnapshots", "DescribeDBSnapshots"]
    assert calls.names(DR_REGION) == [
        "CopyDBSnapshot", "DescribeDBSnapshots",  # the copy, waited for
        "DescribeDBSnapshots", "RestoreDBInstanceFromDBSnapshot", "DescribeDBInstances",  # the restore, waited for
        "DescribeDBInstances",  # (the test's own look, during the check)
        "DescribeDBInstances", "DeleteDBInstance",  # delete_temporary: tagged temporary? then delete
        "DescribeDBInstances",  # (the test's: gone)
    ]  # fmt: skip
    [create] = calls.params("CreateDBSnapshot")
    assert create == {"DBInstanceIdentifier": source_db, "DBSnapshotIdentifier": snapshot_id, "Tags": create["Tags"]}
    [copied] = calls.params("CopyDBSnapshot")
    assert calls.regions("CopyDBSnapshot") == {DR_REGION}
    assert copied["SourceDBSnapshotIdentifier"] == snap.arn and copied["SourceRegion"] == REGION
    assert copied["TargetDBSnapshotIdentifier"] == copy_id and "KmsKeyId" not in copied
    # botocore replaced SourceRegion by the pre-signed URL a cross-region copy needs (signed for the source region)
    body = calls.bodies["CopyDBSnapshot"]
    assert "SourceRegion" not in body and "X-Amz-Credential=testing%2F" in body["PreSignedUrl"]
    assert f"%2F{REGION}%2Frds%2F" in body["PreSignedUrl"] and f"DestinationRegion={DR_REGION}" in body["PreSignedUrl"]
    [restore] = calls.params("RestoreDBInstanceFromDBSnapshot")
    assert {k: v for k, v in restore.items() if k != "Tags"} == {
        "DBInstanceIdentifier": temp_id, "DBSnapshotIdentifier": dr.id, "DBInstanceClass": "db.t4g.small",
        "PubliclyAccessible": False, "DeletionProtection": False, "MultiAZ": False, "BackupRetentionPeriod": 0,
        "AutoMinorVersionUpgrade": False, "CopyTagsToSnapshot": False, "DBSubnetGroupName": subnet_group,
        "VpcSecurityGroupIds": security_groups,
    }  # fmt: skip
    assert calls.params("DeleteDBInstance") == [
        {"DBInstanceIdentifier": temp_id, "SkipFinalSnapshot": True, "DeleteAutomatedBackups": True}
    ]


def test_the_temporary_instance_is_deleted_when_the_check_raises(rds, dr_rds, calls, source_db):
    snap = take_snapshot(rds, source_db, unique("snap"), "staging", **FAST)
    dr = copy_to_region(rds, dr_rds, snap.arn, unique("dr"), **FAST)
    temp_id = unique("restore")

    with pytest.raises(AssertionError, match="fingerprint differs"):
        with temporary_instance(dr_rds, dr.id, temp_id, "db.t4g.micro", **FAST) as temp:
            assert instance_exists(dr_rds, temp.id)
            raise AssertionError("fingerprint differs from the backup's")

    assert not instance_exists(dr_rds, temp_id)
    assert [p["DBInstanceIdentifier"] for p in calls.params("DeleteDBInstance")] == [temp_id]

    # the same with the plain functions and the caller's own finally
    temp_id = unique("restore")
    with pytest.raises(RuntimeError, match="readyz answered 503"):
        try:
            restore_to_temporary(dr_rds, dr.arn, temp_id, "db.t4g.micro", **FAST)
            raise RuntimeError("shop /readyz answered 503")
        finally:
            assert delete_temporary(dr_rds, temp_id) == "deleting"
    assert not instance_exists(dr_rds, temp_id)
    assert delete_temporary(dr_rds, temp_id) == "absent"  # safe to call twice


def test_a_restore_that_never_becomes_available_times_out_and_is_deleted(rds, calls, source_db):
    snap = take_snapshot(rds, source_db, unique("snap"), "staging", **FAST)
    temp_id = unique("restore")
    hook = rewrite(rds, "DescribeDBInstances", "DBInstances", DBInstanceStatus="creating")

    with pytest.raises(RdsTimeoutError, match=r"not available after 0.2s \(last status 'creating'\)") as timeout:
        with temporary_instance(rds, snap.id, temp_id, "db.t4g.micro", timeout_s=0.2, poll_s=0.01):
            pytest.fail("the body must not run")

    assert timeout.value.last_status == "creating"
    assert calls.names().count("DescribeDBInstances") > 3  # polled, not judged at the first look
    assert [p["DBInstanceIdentifier"] for p in calls.params("DeleteDBInstance")] == [temp_id]
    rds.meta.events.unregister("after-call.rds.DescribeDBInstances", hook)
    assert not instance_exists(rds, temp_id)


def test_a_failed_restore_status_ends_the_wait_at_once_and_is_deleted(rds, calls, source_db):
    snap = take_snapshot(rds, source_db, unique("snap"), "staging", **FAST)
    temp_id = unique("restore")
    hook = rewrite(rds, "DescribeDBInstances", "DBInstances", DBInstanceStatus="incompatible-network")

    with pytest.raises(RdsBackupError, match="is incompatible-network: the DB subnet group has no usable subnet"):
        with temporary_instance(rds, snap.id, temp_id, "db.t4g.micro", timeout_s=30, poll_s=0.01):
            pytest.fail("the body must not run")

    rds.meta.events.unregister("after-call.rds.DescribeDBInstances", hook)
    assert calls.params("DeleteDBInstance") == [
        {"DBInstanceIdentifier": temp_id, "SkipFinalSnapshot": True, "DeleteAutomatedBackups": True}
    ]
    assert not instance_exists(rds, temp_id)


# ------------------------------------------------------------------------------------------------ the waits
def test_a_stuck_snapshot_times_out_with_its_last_status_and_a_rerun_waits_for_it(rds, calls, source_db):
    snapshot_id = unique("snap")
    hook = rewrite(rds, "DescribeDBSnapshots", "DBSnapshots", Status="creating", PercentProgress=40)

    with pytest.raises(RdsTimeoutError, match=r"not available after 0.2s \(last status 'creating', 40% done\)"):
        take_snapshot(rds, source_db, snapshot_id, "staging", timeout_s=0.2, poll_s=0.01)

    rds.meta.events.unregister("after-call.rds.DescribeDBSnapshots", hook)
    calls.items.clear()
    snap = take_snapshot(rds, source_db, snapshot_id, "staging", **FAST)  # same identifier: waits for it
    assert snap.status == "available" and snap.id == snapshot_id
    assert calls.names() == ["CreateDBSnapshot", "DescribeDBSnapshots", "DescribeDBSnapshots"]
    # someone else's snapshot by that name is not adopted
    rds.create_db_snapshot(DBInstanceIdentifier=source_db, DBSnapshotIdentifier=(other := unique("manual")))
    with pytest.raises(RdsBackupError, match=r"already exists .* not taken by shop-ops for this instance"):
        take_snapshot(rds, source_db, other, "staging", **FAST)


@pytest.mark.parametrize(
    ("status", "fix"),
    [("failed", "RDS could not create it"), ("incompatible-restore", "take a new snapshot"), ("deleting", "retention")],
)
def test_a_failed_snapshot_status_ends_the_wait_at_once(rds, calls, source_db, status, fix):
    rewrite(rds, "DescribeDBSnapshots", "DBSnapshots", Status=status)

    with pytest.raises(RdsBackupError, match=f"is {status}: .*{fix}"):
        take_snapshot(rds, source_db, unique("snap"), "staging", timeout_s=30, poll_s=0.01)

    assert calls.names() == ["CreateDBSnapshot", "DescribeDBSnapshots"]


# --------------------------------------------------------------------------------- not found, refusals
def test_not_found_errors_name_the_resource_and_region(rds, dr_rds, dr_aws, calls, source_db):
    with pytest.raises(RdsNotFoundError, match=f"DB instance 'no-such-db' not found in {REGION}: check the"):
        take_snapshot(rds, "no-such-db", unique("snap"), "staging", **FAST)

    missing = f"arn:aws:rds:{REGION}:123456789012:snapshot:no-such-snapshot"
    with pytest.raises(RdsNotFoundError, match=f"DB snapshot 'no-such-snapshot' not found in {REGION}"):
        copy_to_region(rds, dr_rds, missing, unique("dr"), **FAST)
    assert "CopyDBSnapshot" not in calls.names()

    temp_id = unique("restore")
    with pytest.raises(RdsNotFoundError, match=f"DB snapshot 'no-such-snapshot' not found in {DR_REGION}"):
        with temporary_instance(dr_rds, "no-such-snapshot", temp_id, "db.t4g.micro", **FAST):
            pytest.fail("the body must not run")
    assert "RestoreDBInstanceFromDBSnapshot" not in calls.names()

    # a source snapshot exists, the copy does not: restoring the source's ARN from the DR client is refused
    snap = take_snapshot(rds, source_db, unique("snap"), "staging", **FAST)
    with pytest.raises(RdsBackupError, match=f"is not in {DR_REGION}: restore with the client of the snapshot's"):
        restore_to_temporary(dr_rds, snap.arn, temp_id, "db.t4g.micro", **FAST)
    dr = copy_to_region(rds, dr_rds, snap.arn, unique("dr"), **FAST)
    with pytest.raises(RdsNotFoundError, match=f"DB subnet group 'no-such-group' not found in {DR_REGION}"):
        with temporary_instance(dr_rds, dr.id, temp_id, "db.t4g.micro", subnet_group="no-such-group", **FAST):
            pytest.fail("the body must not run")
    assert not instance_exists(dr_rds, temp_id)
    assert delete_temporary(dr_rds, "no-such-instance") == "absent"


def test_delete_temporary_never_deletes_an_instance_not_tagged_temporary(rds, calls, source_db):
    with pytest.raises(RdsBackupError, match=f"refusing to delete DB instance '{source_db}'.*not tagged"):
        delete_temporary(rds, source_db)

    assert instance_exists(rds, source_db) and "DeleteDBInstance" not in calls.names()


def test_a_temporary_identifier_that_exists_is_refused_and_left_alone(rds, calls, source_db):
    snap = take_snapshot(rds, source_db, unique("snap"), "staging", **FAST)
    first = unique("restore")
    with temporary_instance(rds, snap.id, first, "db.t4g.micro", **FAST):
        # a second restore test with the same identifier must not delete the first one's instance
        with pytest.raises(TemporaryInstanceExists, match=f"'{first}' already exists in {REGION}"):
            with temporary_instance(rds, snap.id, first, "db.t4g.micro", **FAST):
                pytest.fail("the body must not run")
        assert instance_exists(rds, first)
    assert not instance_exists(rds, first)
    assert len(calls.params("DeleteDBInstance")) == 1


def test_moto_keeps_the_sources_deletion_protection_and_delete_temporary_turns_it_off(rds, calls):
    """moto copies DeletionProtection from the source instance (RDS does not); the delete must still succeed."""
    protected = make_instance(rds, DeletionProtection=True)
    snap = take_snapshot(rds, protected, unique("snap"), "production", **FAST)
    temp_id = unique("restore")

    with temporary_instance(rds, snap.id, temp_id, "db.t4g.micro", **FAST):
        assert rds.describe_db_instances(DBInstanceIdentifier=temp_id)["DBInstances"][0]["DeletionProtection"]

    assert not instance_exists(rds, temp_id)
    assert calls.params("ModifyDBInstance") == [
        {"DBInstanceIdentifier": temp_id, "DeletionProtection": False, "ApplyImmediately": True}
    ]


def test_a_publicly_accessible_restore_is_refused_and_deleted(rds, calls):
    """A restore that comes up public despite PubliclyAccessible=False (in moto: inherited from the source)."""
    public = make_instance(rds, PubliclyAccessible=True)
    snap = take_snapshot(rds, public, unique("snap"), "production", **FAST)
    temp_id = unique("restore")

    with pytest.raises(RdsBackupError, match="came up publicly accessible"):
        with temporary_instance(rds, snap.id, temp_id, "db.t4g.micro", **FAST):
            pytest.fail("the body must not run")

    assert not instance_exists(rds, temp_id)


# ------------------------------------------------------------------------------------ encryption, regions
def test_an_encrypted_copy_needs_a_key_of_the_dr_region(aws, dr_aws, rds, dr_rds, calls):
    source_key = aws.client("kms").create_key(Description="rds source")["KeyMetadata"]["Arn"]
    dr_key = dr_aws.client("kms").create_key(Description="rds dr")["KeyMetadata"]["Arn"]
    encrypted = make_instance(rds, StorageEncrypted=True, KmsKeyId=source_key)
    snap = take_snapshot(rds, encrypted, unique("snap"), "production", **FAST)
    assert snap.encrypted and snap.kms_key_id == source_key

    with pytest.raises(RdsBackupError, match=f"is encrypted .* needs a KMS key of {DR_REGION}: pass kms_key_id"):
        copy_to_region(rds, dr_rds, snap.arn, unique("dr"), **FAST)  # moto itself would copy it with the source key
    with pytest.raises(RdsBackupError, match=f"is not in the DR region {DR_REGION}: KMS keys do not cross regions"):
        copy_to_region(rds, dr_rds, snap.arn, unique("dr"), kms_key_id=source_key, **FAST)
    assert "CopyDBSnapshot" not in calls.names()
    missing_key = f"arn:aws:kms:{DR_REGION}:123456789012:key/{uuid.uuid4()}"
    with pytest.raises(RdsBackupError, match=rf"is not usable in {DR_REGION} .* key policy"):
        copy_to_region(rds, dr_rds, snap.arn, unique("dr"), kms_key_id=missing_key, **FAST)

    dr = copy_to_region(rds, dr_rds, snap.arn, unique("dr"), kms_key_id=dr_key, **FAST)

    assert dr.encrypted and dr.kms_key_id == dr_key
    assert calls.params("CopyDBSnapshot")[-1]["KmsKeyId"] == dr_key
    with temporary_instance(dr_rds, dr.id, unique("restore"), "db.t4g.micro", **FAST) as temp:
        assert temp.region == DR_REGION


def test_copy_refuses_the_same_region_and_a_foreign_arn(rds, source_db):
    snap = take_snapshot(rds, source_db, unique("snap"), "staging", **FAST)
    with pytest.raises(RdsBackupError, match=f"the DR region is the source region \\({REGION}\\)"):
        copy_to_region(rds, rds, snap.arn, unique("dr"), **FAST)
    other = AwsResource(region="us-east-1", endpoint_url=rds.meta.endpoint_url).client("rds")
    with pytest.raises(RdsBackupError, match=f"is not a snapshot ARN of the source region {REGION}"):
        copy_to_region(rds, other, snap.arn.replace(REGION, "us-west-2"), unique("dr"), **FAST)


def test_a_rerun_copy_waits_for_the_existing_copy(rds, dr_rds, calls, source_db):
    snap = take_snapshot(rds, source_db, unique("snap"), "staging", **FAST)
    target = unique("dr")
    first = copy_to_region(rds, dr_rds, snap.arn, target, **FAST)

    again = copy_to_region(rds, dr_rds, snap.arn, target, **FAST)

    assert again.arn == first.arn
    other = take_snapshot(rds, source_db, unique("snap"), "staging", **FAST)
    with pytest.raises(RdsBackupError, match=f"already exists in {DR_REGION} and is not a copy of {other.arn}"):
        copy_to_region(rds, dr_rds, other.arn, target, **FAST)


def test_names_are_valid_rds_identifiers(rds, source_db):
    """The suggested identifiers pass RDS's rules (moto applies them: letter first, letters/digits/single hyphens)."""
    when = datetime(2026, 3, 11, 2, 30, 5, tzinfo=UTC)
    assert snapshot_name("production", when) == "shop-ops-production-20260311-023005"
    assert temporary_name("production", when) == "shop-ops-restore-production-20260311-023005"
    suffix = uuid.uuid4().hex[:6]
    snap = take_snapshot(rds, source_db, f"{snapshot_name('production', when)}-{suffix}", "production", **FAST)
    temp_id = f"{temporary_name('production', when)}-{suffix}"
    with temporary_instance(rds, snap.id, temp_id, "db.t4g.micro", **FAST) as temp:
        assert temp.id == temp_id and len(temp_id) <= 63


# ------------------------------------------------------------------------------------------------- prune
def snap(name: str, day: date, hour: int = 3, status: str = "available", managed: bool = True) -> Snapshot:
    tags = {TAG_MANAGED: "rds-backup", TAG_DATE: day.isoformat()} if managed else {}
    created = datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + timedelta(days=1)  # partition D on D+1
    return Snapshot(name, f"arn:{name}", REGION, "db", status, "manual", created, False, None, tags)


def test_prune_keeps_the_last_days_the_newest_of_the_last_months_and_always_the_newest():
    today = date(2026, 3, 10)
    snapshots = [
        snap("dec-31", date(2025, 12, 31)),
        snap("jan-05", date(2026, 1, 5)),
        snap("jan-20", date(2026, 1, 20)),
        snap("feb-03", date(2026, 2, 3)),
        snap("feb-27", date(2026, 2, 27)),
        snap("mar-01", date(2026, 3, 1)),
        snap("mar-07", date(2026, 3, 7)),
        snap("mar-08", date(2026, 3, 8)),
        snap("mar-09", date(2026, 3, 9)),
        snap("mar-10-early", date(2026, 3, 10), hour=1),
        snap("mar-10-rerun", date(2026, 3, 10), hour=9),
    ]

    keep = plan_prune(snapshots, keep_daily=3, keep_monthly=3, today=today)

    assert keep == {
        "mar-10-rerun": "newest",  # also today's daily and March's monthly
        "mar-09": "daily 2026-03-09",
        "mar-08": "daily 2026-03-08",
        "feb-27": "monthly 2026-02",
        "jan-20": "monthly 2026-01",
    }
    # nothing at all to keep: still the newest
    assert plan_prune(snapshots, keep_daily=0, keep_monthly=0, today=today) == {"mar-10-rerun": "newest"}
    # backups stopped weeks ago: the daily window is empty, the newest and the months remain
    assert plan_prune(snapshots[:5], keep_daily=7, keep_monthly=3, today=today) == {
        "feb-27": "newest",
        "jan-20": "monthly 2026-01",
    }
    with pytest.raises(ValueError, match=">= 0"):
        plan_prune(snapshots, keep_daily=-1, keep_monthly=0, today=today)


def test_prune_leaves_unfinished_and_future_snapshots_and_keeps_the_newest_available():
    today = date(2026, 3, 10)
    snapshots = [
        snap("old", date(2026, 1, 1)),
        snap("good", date(2026, 3, 1)),
        snap("copying", date(2026, 3, 9), status="copying"),
        snap("future", date(2026, 4, 1)),
    ]

    keep = plan_prune(snapshots, keep_daily=1, keep_monthly=0, today=today)

    assert keep == {"copying": "status copying", "good": "newest", "future": "dated 2026-04-01 (after today)"}


def test_prune_snapshots_in_moto_touches_only_this_tools_snapshots(rds, dr_rds, calls, source_db):
    today = date(2026, 3, 10)
    days = [date(2026, 1, 5), date(2026, 1, 20), date(2026, 2, 27), date(2026, 3, 8), date(2026, 3, 9), today]
    ids = {day: take_snapshot(rds, source_db, unique(f"d{day:%m%d}"), "production", day=day, **FAST) for day in days}
    copies = {day: copy_to_region(rds, dr_rds, ids[day].arn, unique(f"dr{day:%m%d}"), **FAST) for day in days[-2:]}
    hand_made = unique("by-hand")
    rds.create_db_snapshot(DBInstanceIdentifier=source_db, DBSnapshotIdentifier=hand_made)
    other_db = make_instance(rds)
    other = take_snapshot(rds, other_db, unique("other"), "staging", day=date(2025, 1, 1), **FAST)

    dry = prune_snapshots(rds, source_db, keep_daily=2, keep_monthly=2, dry_run=True, today=today)

    doomed = {ids[date(2026, 1, 5)].id, ids[date(2026, 1, 20)].id, ids[date(2026, 3, 8)].id}
    assert dry.dry_run and set(dry.deleted) == doomed and "DeleteDBSnapshot" not in calls.names()
    assert set(dry.kept) == {ids[today].id, ids[date(2026, 3, 9)].id, ids[date(2026, 2, 27)].id}

    result = prune_snapshots(rds, source_db, keep_daily=2, keep_monthly=2, today=today)

    assert set(result.deleted) == doomed
    left = {s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(DBInstanceIdentifier=source_db)["DBSnapshots"]}
    assert left >= set(dry.kept) | {hand_made} and not left & doomed
    assert any(s.startswith("rds:") for s in left)  # moto's automated snapshot of the instance: never ours to delete
    assert rds.describe_db_snapshots(DBSnapshotIdentifier=other.id)["DBSnapshots"]  # another instance's
    # the DR region on its own: the copies keep the source's instance identifier, so the same call prunes them
    dr_result = prune_snapshots(dr_rds, source_db, keep_daily=1, keep_monthly=0, today=today)
    assert dr_result.region == DR_REGION and dr_result.deleted == [copies[date(2026, 3, 9)].id]
    assert dr_result.kept == {copies[today].id: "newest"}
    # nothing of ours left to prune: nothing happens
    assert prune_snapshots(rds, unique("no-such-db"), 1, 1, today=today).deleted == []
