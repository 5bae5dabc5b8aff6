"""`RdsBackupTarget` (the aws profile's `backup_target`) and its wiring in definitions.py, against a real local moto server.

What this proves: a nightly backup takes a manual snapshot of the environment's instance in
`aws.region`, copies it into the DR region (both tagged with the environment and the backup's
day, the copy naming its source) and reports ARNs and numbers only; retention runs in both
regions (older shop-ops snapshots deleted, hand-made ones left alone; a dry run deletes
nothing); two backups of different days are two snapshots, however close together they run; a
restore test restores the day's DR copy to a temporary instance in the DR region and deletes it
afterwards — also when the wait for it fails; a missing backup, a missing `db_instance` setting
and the unbuilt drill fail with a BackupError naming the cause and the fix; the WAL check reads
RDS's answer; and the aws profile's Definitions build this target from config/aws.yaml, whose
`backup_store` carries the pipeline state to S3 (moto) and back.

Clients: RdsBackupTarget makes its own boto3 clients (`AwsResource.client`); the `rds` fixture
wraps that method to watch each RDS client it makes (botocore hooks: the calls per region, and
on demand a rewrite of Describe answers, as tests/ops/test_rds_backup.py does). Requests still go
to moto unchanged; the test's own look at moto's state uses plain clients, neither watched nor
rewritten.

What moto (5.2.5) does not model here, found by experiment: RDS holds no database, so
snapshots and copies are `available` in their create/copy answer and instances at once (a
stuck or failed restore is made by rewriting DescribeDBInstances); the temporary instance's
endpoint is a made-up name nothing listens on; and `LatestRestorableTime` is simply "now" on
every describe, whatever the instance's state — also with `BackupRetentionPeriod=0`, where RDS
reports none. So the healthy WAL check is moto's own answer, while a lagging or missing
`LatestRestorableTime` is moto's real DescribeDBInstances answer with that one field rewritten,
going through the same code path (`rds.describe_instance` on the client the target makes).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from shop_ops.backup import rds as rds_steps
from shop_ops.backup.crypto import generate_key_file
from shop_ops.backup.logical import BackupError
from shop_ops.backup.rds_target import RdsBackupTarget
from shop_ops.definitions import backup_target, containers_resource, postgres_resource, resources
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.backup_store import BackupStoreResource
from shop_ops.services.processes import free_port
from shop_ops.settings import load_settings
from tests.ops.conftest import REGION

ROOT = Path(__file__).resolve().parents[2]
DR_REGION = "eu-west-1"
DAY = date(2026, 3, 10)
SECRET = "not-a-real-secret-pw"  # the moto instances' master password: never in a report or message


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Rds:
    """The RDS clients the target makes, watched: calls as (region, operation, params); Describe answers rewritten."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, dict]] = []
        self.rewrites: list[tuple[str, Callable[[dict], None]]] = []  # (operation, change one item of its answer)

    def watch(self, client) -> None:
        region = client.meta.region_name

        def record(params, model, **_kwargs) -> None:
            self.items.append((region, model.name, copy.deepcopy(params)))

        def rewrite(parsed, model, **_kwargs) -> None:
            for operation, change in self.rewrites:
                if operation == model.name:
                    for item in parsed.get("DBInstances", []) + parsed.get("DBSnapshots", []):
                        change(item)

        client.meta.events.register("provide-client-params.rds", record)
        client.meta.events.register("after-call.rds", rewrite)

    def names(self, region: str | None = None) -> list[str]:
        return [name for r, name, _ in self.items if region in (None, r)]

    def params(self, name: str, region: str | None = None) -> list[dict]:
        return [p for r, n, p in self.items if n == name and region in (None, r)]


@pytest.fixture
def rds(aws, monkeypatch) -> Rds:
    watched = Rds()
    make_client = AwsResource.client

    def client(self: AwsResource, service_name: str):
        made = make_client(self, service_name)
        if service_name == "rds":
            watched.watch(made)
        return made

    monkeypatch.setattr(AwsResource, "client", client)
    return watched


@pytest.fixture
def plain(aws) -> Callable[[str], object]:
    """Unwatched RDS clients of the moto server by region: the test's own setup and look at the state."""
    session = boto3.session.Session()
    clients = {region: session.client("rds", region_name=region, endpoint_url=aws.endpoint_url) for region in (
        REGION, DR_REGION)}  # fmt: skip
    return clients.__getitem__


def make_instance(client, **extra) -> str:
    """A PostgreSQL instance in moto (no database behind it): the environment's `db_instance`."""
    instance_id = unique("shop-db")
    client.create_db_instance(
        DBInstanceIdentifier=instance_id, DBInstanceClass="db.t4g.micro", Engine="postgres",
        MasterUsername="shop", MasterUserPassword=SECRET, AllocatedStorage=20, DBName="shop", **extra,
    )  # fmt: skip
    return instance_id


def target(aws: AwsResource, tmp_path: Path, instances: dict[str, str], **overrides) -> RdsBackupTarget:
    fields: dict = {
        "backup_store": BackupStoreResource(folder=str(tmp_path / "store")),  # the pipeline state's store: unused here
        "key_file": str(tmp_path / "backup.key"), "aws": aws, "dr_region": DR_REGION, "instances": instances,
        "timeout_seconds": 5, "poll_seconds": 0.01,
    }  # fmt: skip
    fields.update(overrides)
    return RdsBackupTarget(**fields)


@pytest.fixture
def env(plain) -> tuple[str, str]:
    """(environment, its instance in moto): a fresh environment name per test, so identifiers never meet across tests."""
    return unique("stg"), make_instance(plain(REGION))


def snapshots(client, instance_id: str) -> dict[str, dict[str, str]]:
    """This tool's manual snapshots of the instance in the client's region: id -> tags."""
    raw = client.describe_db_snapshots(DBInstanceIdentifier=instance_id, SnapshotType="manual")["DBSnapshots"]
    return {
        s["DBSnapshotIdentifier"]: {t["Key"]: t["Value"] for t in s.get("TagList", [])}
        for s in raw
        if any(t["Key"] == rds_steps.TAG_MANAGED for t in s.get("TagList", []))
    }


def instance_exists(client, instance_id: str) -> bool:
    try:
        client.describe_db_instances(DBInstanceIdentifier=instance_id)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "DBInstanceNotFound"
        return False
    return True


# ------------------------------------------------------------------------------------------------- nightly backup
def test_back_up_snapshots_the_instance_and_copies_it_to_the_dr_region(aws, rds, plain, env, tmp_path):
    environment, db = env
    logs: list[str] = []

    report = target(aws, tmp_path, {environment: db}).back_up(
        environment, DAY, "shop/backend@sha256:ab", "1.2.0", logs.append
    )

    source = snapshots(plain(REGION), db)
    dr = snapshots(plain(DR_REGION), db)
    assert list(source) == [report.snapshot.id] and list(dr) == [report.copy.id]
    assert source[report.snapshot.id] == rds_steps.backup_tags(environment, DAY)
    assert dr[report.copy.id] == {
        **rds_steps.backup_tags(environment, DAY, "dr-copy"), rds_steps.TAG_SOURCE: report.snapshot.arn,
    }  # fmt: skip
    # the calls: snapshot in the source region, copy sent to the DR region, prune in both
    assert rds.names(REGION)[0] == "CreateDBSnapshot" and "CopyDBSnapshot" not in rds.names(REGION)
    assert rds.names(DR_REGION)[0] == "CopyDBSnapshot"
    [copied] = rds.params("CopyDBSnapshot")
    assert copied["SourceDBSnapshotIdentifier"] == report.snapshot.arn and copied["SourceRegion"] == REGION
    assert "DeleteDBSnapshot" not in rds.names()  # nothing old to prune yet

    meta = report.metadata()
    assert meta["location"] == report.snapshot.arn and meta["location"].startswith(f"arn:aws:rds:{REGION}:")
    assert meta["copy_location"] == report.copy.arn and meta["copy_location"].startswith(f"arn:aws:rds:{DR_REGION}:")
    assert meta["pruned"] == "none" and meta["encrypted"] is False and 0 <= meta["seconds"] < 5
    for key, value in meta.items():  # numbers, ARNs and identifiers: nothing else (no endpoint, no secret)
        assert isinstance(value, int | float) or re.fullmatch(r"[a-z0-9:/,_ -]+", value), (key, value)
    assert SECRET not in json.dumps(meta) + " ".join(logs)
    assert any(report.copy.id in line and DR_REGION in line for line in logs)


def test_later_days_prune_older_snapshots_in_both_regions_and_a_dry_run_deletes_nothing(aws, rds, plain, env, tmp_path):
    environment, db = env
    hand_made = unique("by-hand")
    plain(REGION).create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier=hand_made)
    keep_one = target(aws, tmp_path, {environment: db}, retention_daily=1, retention_monthly=0)
    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]

    # three days back to back (well within one second): three snapshots, each tagged with its own day
    reports = [keep_one.back_up(environment, day, None, "1.2.0", lambda _: None) for day in days]

    assert [r.snapshot.tags[rds_steps.TAG_DATE] for r in reports] == [d.isoformat() for d in days]
    assert len({r.snapshot.id for r in reports}) == 3
    assert reports[0].pruned == []
    for earlier, later in itertools.pairwise(reports):
        assert later.pruned == [f"{REGION}:{earlier.snapshot.id}", f"{DR_REGION}:{earlier.copy.id}"]
    assert list(snapshots(plain(REGION), db)) == [reports[-1].snapshot.id]
    assert list(snapshots(plain(DR_REGION), db)) == [reports[-1].copy.id]
    left = [
        s["DBSnapshotIdentifier"] for s in plain(REGION).describe_db_snapshots(DBInstanceIdentifier=db)["DBSnapshots"]
    ]
    assert hand_made in left  # not made by shop-ops: never pruned
    deletes = rds.params("DeleteDBSnapshot")
    assert len(rds.params("DeleteDBSnapshot", DR_REGION)) == 2 and len(deletes) == 4

    # a dry run reports what retention would delete, and deletes nothing
    dry = target(aws, tmp_path, {environment: db}, retention_daily=1, retention_monthly=0, prune_dry_run=True)
    rds.items.clear()
    fourth = dry.back_up(environment, DAY + timedelta(days=3), None, "1.2.0", lambda _: None)

    assert fourth.pruned == [f"{REGION}:{reports[-1].snapshot.id}", f"{DR_REGION}:{reports[-1].copy.id}"]
    assert "DeleteDBSnapshot" not in rds.names()
    assert set(snapshots(plain(REGION), db)) == {reports[-1].snapshot.id, fourth.snapshot.id}
    assert set(snapshots(plain(DR_REGION), db)) == {reports[-1].copy.id, fourth.copy.id}
    assert "dry run" in fourth.metadata()["pruned"]


def test_a_missing_instance_fails_with_the_setting_to_fix(aws, rds, env, tmp_path):
    environment, _ = env
    gone = target(aws, tmp_path, {environment: "shop-no-such-db"})

    with pytest.raises(BackupError, match=r"'shop-no-such-db' not found in eu-central-1: check the environment's DB"):
        gone.back_up(environment, DAY, None, "1.2.0", lambda _: None)
    assert rds.names() == ["CreateDBSnapshot"]


def test_a_dr_region_that_is_the_source_region_is_refused_naming_the_setting(aws, rds, env, tmp_path):
    environment, db = env
    same = target(aws, tmp_path, {environment: db}, dr_region=REGION)

    with pytest.raises(BackupError, match=r"DR region is the source region \(eu-central-1\): set aws\.dr_region"):
        same.back_up(environment, DAY, None, "1.2.0", lambda _: None)
    assert rds.names() == []  # refused before any snapshot was taken


def test_no_credentials_or_no_endpoint_is_a_backup_error_naming_the_fix(aws, rds, env, tmp_path, monkeypatch):
    environment, db = env
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask for here
    tgt = target(aws, tmp_path, {environment: db})

    fix = r"NoCredentialsError: Unable to locate credentials\); check the AWS credentials \(environment, AWS_PROFILE"
    with pytest.raises(BackupError, match=rf"backup of {environment} \({db}\): .*{fix}"):
        tgt.back_up(environment, DAY, None, "1.2.0", lambda _: None)
    with pytest.raises(BackupError, match=fix):
        tgt.restore_test(environment, DAY, lambda _: None)
    status = tgt.archive_status(environment)
    assert not status.ok and re.search(fix, status.describe())

    # an endpoint nothing listens on (one retry: botocore's max_attempts counts retries here)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    closed = AwsResource(region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    with pytest.raises(BackupError, match=r"EndpointConnectionError: .*\); check that http://127\.0\.0\.1:\d+ can be"):
        target(closed, tmp_path, {environment: db}).back_up(environment, DAY, None, "1.2.0", lambda _: None)


# ------------------------------------------------------------------------------------------------- restore test
def test_restore_test_restores_the_dr_copy_to_a_temporary_instance_and_deletes_it(aws, rds, plain, env, tmp_path):
    environment, db = env
    tgt = target(aws, tmp_path, {environment: db}, restore_instance_class="db.t4g.small")
    backup = tgt.back_up(environment, DAY, None, "1.2.0", lambda _: None)
    tgt.back_up(environment, DAY + timedelta(days=1), None, "1.2.0", lambda _: None)  # another day: not restored
    rds.items.clear()
    logs: list[str] = []

    report = tgt.restore_test(environment, DAY, logs.append)

    [restore] = rds.params("RestoreDBInstanceFromDBSnapshot", DR_REGION)
    assert restore["DBSnapshotIdentifier"] == backup.copy.id and restore["DBInstanceClass"] == "db.t4g.small"
    assert restore["DBInstanceIdentifier"] == report.instance and report.instance.startswith(
        f"shop-ops-restore-{environment}-"
    )
    assert rds.params("DeleteDBInstance", DR_REGION) == [
        {"DBInstanceIdentifier": report.instance, "SkipFinalSnapshot": True, "DeleteAutomatedBackups": True}
    ]
    assert rds.names(REGION) == []  # the source region is not touched: the copy is what is proven
    assert not instance_exists(plain(DR_REGION), report.instance)
    assert report.instance.endswith("-for-20260310")
    assert len(report.instance.replace(environment, "production")) <= 63  # RDS's limit for instance identifiers
    assert report.endpoint.startswith(f"{report.instance}.") and report.endpoint.endswith(":5432")
    meta = report.metadata()
    assert meta["temporary_instance"] == report.instance and 0 <= meta["rto_seconds"] < 5
    assert SECRET not in json.dumps(meta) + " ".join(logs)


@pytest.mark.parametrize(
    ("status", "timeout", "expected"),
    [
        ("creating", 0.2, r"not available after 0.2s \(last status 'creating'\).*raise the timeout"),
        ("incompatible-network", 30, "is incompatible-network: the DB subnet group has no usable subnet"),
    ],
)
def test_a_restore_that_does_not_come_up_fails_and_its_instance_is_deleted(
    aws, rds, plain, env, tmp_path, status, timeout, expected
):
    environment, db = env
    tgt = target(aws, tmp_path, {environment: db}, timeout_seconds=timeout)
    tgt.back_up(environment, DAY, None, "1.2.0", lambda _: None)
    rds.items.clear()

    def stuck(item: dict) -> None:
        if item.get("DBInstanceIdentifier", "").startswith("shop-ops-restore-"):
            item["DBInstanceStatus"] = status

    rds.rewrites.append(("DescribeDBInstances", stuck))

    with pytest.raises(BackupError, match=expected):
        tgt.restore_test(environment, DAY, lambda _: None)

    [restore] = rds.params("RestoreDBInstanceFromDBSnapshot", DR_REGION)
    temp = restore["DBInstanceIdentifier"]
    assert [p["DBInstanceIdentifier"] for p in rds.params("DeleteDBInstance", DR_REGION)] == [temp]
    assert not instance_exists(plain(DR_REGION), temp)


def test_restore_test_of_a_day_without_a_backup_names_the_fix(aws, rds, env, tmp_path):
    environment, db = env
    tgt = target(aws, tmp_path, {environment: db})
    tgt.back_up(environment, DAY, None, "1.2.0", lambda _: None)

    with pytest.raises(BackupError, match=rf"no DR copy of {environment}'s snapshot of 2026-03-09 in eu-west-1") as err:
        tgt.restore_test(environment, DAY - timedelta(days=1), lambda _: None)
    assert "run nightly_backup for 2026-03-09" in str(err.value)
    assert "RestoreDBInstanceFromDBSnapshot" not in rds.names()


# --------------------------------------------------------------------------------------- drill, missing settings
def test_the_drill_says_it_is_not_built_on_aws(aws, rds, env, tmp_path):
    environment, db = env
    with pytest.raises(BackupError, match=r"point-in-time drills on aws .* are not built yet: see docs/aws-deploy\.md"):
        target(aws, tmp_path, {environment: db}).drill(environment, None, lambda _: None)
    assert rds.names() == []


def test_an_environment_without_db_instance_names_the_setting(aws, rds, tmp_path):
    """Through definitions.py: config/aws.yaml without production's db_instance."""
    config = yaml.safe_load((ROOT / "config" / "aws.yaml").read_text())
    del config["environments"]["production"]["db_instance"]
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path)
    tgt = backup_target(settings, postgres_resource(settings), containers_resource(settings))
    assert isinstance(tgt, RdsBackupTarget) and tgt.instances == {"staging": "shop-staging"}

    fix = r"no RDS instance configured for 'production': set environments\.production\.db_instance"
    for call in (
        lambda: tgt.back_up("production", DAY, None, "1.2.0", lambda _: None),
        lambda: tgt.restore_test("production", DAY, lambda _: None),
    ):
        with pytest.raises(BackupError, match=fix):
            call()
    status = tgt.archive_status("production")
    assert not status.ok and re.search(fix, status.describe())
    assert rds.names() == []  # refused before any AWS call


# ------------------------------------------------------------------------------------------------- WAL check
def test_archive_status_reads_rds_latest_restorable_time(aws, rds, plain, env, tmp_path):
    environment, db = env
    no_backups = make_instance(plain(REGION), BackupRetentionPeriod=0)
    tgt = target(aws, tmp_path, {environment: db, "nobackups": no_backups, "gone": "shop-no-such-db"})

    # moto's own answer: LatestRestorableTime is now
    healthy = tgt.archive_status(environment)
    assert healthy.ok, healthy.describe()
    assert healthy.describe() == "point-in-time recovery reaches within 900s of now"
    assert rds.names(REGION) == ["DescribeDBInstances"]

    # RDS's answer when transaction logs stopped being backed up two hours ago (one field of moto's real answer)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    rds.rewrites.append(("DescribeDBInstances", lambda item: item.update(LatestRestorableTime=two_hours_ago)))
    lagging = tgt.archive_status(environment)
    assert not lagging.ok
    assert re.search(rf"{environment}: RDS can recover {db} only to {re.escape(two_hours_ago.isoformat())} "
                     r"\(720\ds ago, more than 900s\)", lagging.describe()), lagging.describe()  # fmt: skip
    assert "check the instance" in lagging.describe()

    # RDS's answer with automated backups off: no LatestRestorableTime at all
    rds.rewrites[:] = [("DescribeDBInstances", lambda item: item.pop("LatestRestorableTime", None))]
    missing = tgt.archive_status(environment)
    assert not missing.ok and "RDS reports no LatestRestorableTime" in missing.describe()
    assert "backup retention" in missing.describe()
    rds.rewrites.clear()

    # moto says "now" even with BackupRetentionPeriod=0 (RDS would not): retention 0 is a problem by itself
    off = tgt.archive_status("nobackups")
    assert not off.ok and re.search(r"has automated backups off \(BackupRetentionPeriod 0\).*retention", off.describe())

    gone = tgt.archive_status("gone")
    assert not gone.ok and "DB instance 'shop-no-such-db' not found in eu-central-1" in gone.describe()
    assert "environments.gone.db_instance" in gone.describe()
    for status in (healthy, lagging, missing, off, gone):
        assert status.metadata()["max_lag_seconds"] == 900


# ------------------------------------------------------------------------------------------------- definitions
def test_the_aws_definitions_build_an_rds_backup_target_from_config_aws_yaml():
    """shop_ops.definitions as the aws profile loads it (its own process: the settings are read at import)."""
    script = """
import json
import dagster as dg
from shop_ops.definitions import defs
dg.Definitions.validate_loadable(defs)
t = defs.resources["backup_target"]
print(json.dumps({
    "type": type(t).__name__, "region": t.aws.region, "endpoint": t.aws.endpoint_url, "dr_region": t.dr_region,
    "instances": t.instances, "store": t.backup_store.model_dump(), "retention": [t.retention_daily, t.retention_monthly],
    "assets": sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()),
    "database_backup": sorted(defs.resolve_assets_def(dg.AssetKey(["staging", "database_backup"])).required_resource_keys),
}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_OPS_")} | {"SHOP_OPS_PROFILE": "aws"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])

    assert loaded["type"] == "RdsBackupTarget"
    assert (loaded["region"], loaded["endpoint"], loaded["dr_region"]) == ("eu-central-1", None, "eu-west-1")
    assert loaded["instances"] == {"staging": "shop-staging", "production": "shop-production"}
    store = loaded["store"]
    assert (store["folder"], store["bucket"], store["region"]) == (None, "shop-ops-backups", "eu-central-1")
    assert (store["copy_bucket"], store["copy_region"], store["endpoint_url"]) == (
        "shop-ops-backups-dr",
        "eu-west-1",
        None,
    )
    assert loaded["retention"] == [30, 12]
    assert "backup_target" in loaded["database_backup"]
    assert {"staging/database_backup", "production/restore_test", "production/dr_drill"} <= set(loaded["assets"])
    # Dagster's own state is PostgreSQL on aws (backed up by its RDS instance): no pipeline_state_backup asset there
    assert "pipeline_state_backup" not in loaded["assets"]


def test_a_dr_region_without_a_copy_bucket_still_builds_a_usable_store(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "aws.yaml").read_text())
    del config["aws"]["backups_copy_bucket"]
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path)

    tgt = backup_target(settings, postgres_resource(settings), containers_resource(settings))

    assert tgt.dr_region == "eu-west-1"  # RDS snapshots still go to the DR region
    assert (tgt.backup_store.copy_bucket, tgt.backup_store.copy_region) == (None, None)
    assert tgt.store().describe() == "s3://shop-ops-backups/ in eu-central-1"


def test_pipeline_state_goes_to_s3_through_backup_store(aws, moto_server, monkeypatch, tmp_path):
    """The aws profile's backup_target (built by definitions.resources) backs SQLite pipeline state up to S3 and back.

    (The pipeline_state_backup asset is local-only since Dagster's state is PostgreSQL on aws; the
    target's state methods still go through the aws profile's S3 store when called.)
    """
    buckets = unique("shop-ops-backups"), unique("shop-ops-backups-dr")
    session = boto3.session.Session()
    for bucket, region in zip(buckets, (REGION, DR_REGION), strict=True):
        s3 = session.client("s3", region_name=region, endpoint_url=moto_server.url)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    config = yaml.safe_load((ROOT / "config" / "aws.yaml").read_text())
    config["state_dir"] = str(tmp_path / "aws-state")
    config["aws"].update(backups_bucket=buckets[0], backups_copy_bucket=buckets[1])
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(config))
    key_file = tmp_path / "secrets" / "backup.key"
    key_file.parent.mkdir()
    generate_key_file(key_file)
    monkeypatch.setenv("SHOP_OPS_AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("SHOP_OPS_BACKUP_KEY_FILE", str(key_file))
    ledger = tmp_path / "ledger" / "releases.db"
    ledger.parent.mkdir()
    with sqlite3.connect(ledger) as conn:
        conn.execute("CREATE TABLE releases (version TEXT, note TEXT)")
        conn.executemany("INSERT INTO releases VALUES (?, ?)", [(f"1.{i}.0", "plain-text-marker") for i in range(5)])
    conn.close()

    tgt = resources(load_settings(path))["backup_target"]
    assert isinstance(tgt, RdsBackupTarget)
    stored = tgt.back_up_state(DAY, {"ledger/releases.db": ledger}, lambda _: None)
    checked = tgt.restore_test_state(DAY, lambda _: None)

    state = stored.entry.objects["state"]
    assert state.location.startswith(f"s3://{buckets[0]}/") and state.copy_location.startswith(f"s3://{buckets[1]}/")
    assert (stored.databases, stored.rows) == (1, 5) and (checked.databases, checked.rows) == (1, 5)
    assert checked.entry.verified_at is not None
    for bucket, region in zip(buckets, (REGION, DR_REGION), strict=True):
        s3 = session.client("s3", region_name=region, endpoint_url=moto_server.url)
        body = s3.get_object(Bucket=bucket, Key=state.key)["Body"].read()
        assert len(body) == state.bytes and b"plain-text-marker" not in body  # encrypted before it left
    assert key_file.read_text().strip() not in json.dumps(stored.metadata())
