"""The backup store: one contract for a real folder and S3 (moto), its catalog, orphans after crashes, retention."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import dagster as dg
import pytest
from botocore.exceptions import EndpointConnectionError

from shop_ops.resources.backup_store import (
    BackupStore,
    BackupStoreResource,
    CatalogEntry,
    FolderStore,
    S3Store,
    StoredObject,
    StoreError,
    object_key,
    plan_prune,
)
from shop_ops.services.processes import free_port
from tests.ops.conftest import REGION

COPY_REGION = "eu-west-1"
DAY = date(2026, 3, 14)
NOW = datetime(2026, 3, 15, 2, 0, tzinfo=UTC)
LATER = datetime.now(UTC) + timedelta(days=1)  # "now" for orphan sweeps: everything just written is old enough


@pytest.fixture
def s3_client(aws):
    """A plain client of the moto server for setup and checks, per region (one session: quick to make)."""
    session = boto3.session.Session()
    return lambda region: session.client("s3", region_name=region, endpoint_url=aws.endpoint_url)


@pytest.fixture
def buckets(s3_client) -> tuple[str, str]:
    """A fresh bucket in REGION and its copy bucket in COPY_REGION, in the session's moto server."""
    names = f"backups-{uuid.uuid4().hex[:10]}", f"backups-copy-{uuid.uuid4().hex[:10]}"
    for name, region in zip(names, (REGION, COPY_REGION), strict=True):
        s3_client(region).create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return names


def s3_resource(aws, buckets: tuple[str, str], **overrides: object) -> BackupStoreResource:
    fields: dict[str, object] = {
        "bucket": buckets[0], "prefix": "shop ops/backups", "region": REGION, "endpoint_url": aws.endpoint_url,
        "copy_bucket": buckets[1], "copy_region": COPY_REGION, "max_attempts": 2,
    }  # fmt: skip
    fields.update(overrides)
    return BackupStoreResource(**fields)


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.services)])
def store(request, tmp_path: Path) -> BackupStore:
    """The same contract over both stores: a folder with spaces in its path, or S3 with a copy bucket.

    `aws` (the moto server) is requested at run time for the S3 parameter only, so that one carries
    the `services` marker itself.
    """
    if request.param == "folder":
        return BackupStoreResource(folder=str(tmp_path / "backup store" / "nightly dumps")).store()
    aws = request.getfixturevalue("aws")
    return s3_resource(aws, request.getfixturevalue("buckets")).store()


def files(folder: Path, **contents: bytes) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in contents.items():
        path = folder / f"{name} file.{'json' if name == 'fingerprint' else 'dump'}"
        path.write_bytes(data)
        paths[name] = path
    return paths


def backup(store: BackupStore, tmp_path: Path, day: date, tag: str = "") -> CatalogEntry:
    paths = files(tmp_path / f"src-{day}{tag}", dump=f"dump of {day}{tag}".encode() * 50, fingerprint=b'{"t": 1}')
    return store.put_backup("staging", day, paths, metadata={"release": "1.2.3"})


def keys(store: BackupStore) -> list[str]:
    return [o.key for o in store.list_objects()]


def test_put_get_exists_delete(store: BackupStore, tmp_path: Path) -> None:
    source = tmp_path / "a dump with spaces.dump"
    data = b"\x00pg_dump bytes\xff" * 70_000
    source.write_bytes(data)
    key = object_key("staging", DAY, "run 1", "dump.dump")

    stored = store.put(source, key)
    assert stored.bytes == len(data) and stored.key == key
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.location == store.location(key)
    if isinstance(store, FolderStore):
        assert Path(stored.location).read_bytes() == data and " " in stored.location
        assert Path(stored.location).stat().st_mode & 0o777 == 0o600
    else:
        assert stored.location.startswith(f"s3://{store.bucket}/shop ops/backups/staging/2026-03-14/run 1/")
    assert store.exists(key) and not store.exists(key + ".other")

    fetched = store.get(key, tmp_path / "out dir" / "restored.dump", sha256=stored.sha256)
    assert fetched.read_bytes() == data
    with pytest.raises(StoreError, match=r"is corrupted: sha256 [0-9a-f]{64} differs from the recorded 0000"):
        store.get(key, tmp_path / "out dir" / "bad.dump", sha256="0000")
    assert sorted(p.name for p in (tmp_path / "out dir").iterdir()) == ["restored.dump"]  # no partial, no bad

    source.write_bytes(b"another backup")
    with pytest.raises(StoreError, match="never overwritten"):
        store.put(source, key)
    assert store.get(key, tmp_path / "again.dump").read_bytes() == data  # what was stored is untouched
    with pytest.raises(StoreError, match="catalog/ is kept for catalog entries"):
        store.put(source, "catalog/staging/2026-03-14.json")

    store.delete(key)
    store.delete(key)  # already gone: fine
    assert not store.exists(key) and keys(store) == []
    with pytest.raises(StoreError, match=f"no object {key}"):
        store.get(key, tmp_path / "missing.dump")


def test_a_backup_is_catalogued_after_its_objects(store: BackupStore, tmp_path: Path) -> None:
    assert store.catalog("staging") == [] and store.entry("staging", DAY) is None
    entry = backup(store, tmp_path, DAY)
    assert set(entry.objects) == {"dump", "fingerprint"}
    assert all(store.exists(obj.key) for obj in entry.objects.values())
    assert entry.objects["dump"].key.startswith("staging/2026-03-14/") and entry.objects["dump"].key.endswith(
        "/dump.dump"
    )
    assert store.entry("staging", DAY) == entry and store.catalog("staging") == [entry]
    assert store.catalog("production") == []
    assert entry.metadata == {"release": "1.2.3"} and not entry.verified
    assert keys(store) == sorted([entry.key, *(o.key for o in entry.objects.values())])

    verified = store.mark_verified(entry, at=NOW, metadata={"restore_seconds": 4.5})
    assert verified.verified_at == NOW and verified.metadata == {"release": "1.2.3", "restore_seconds": 4.5}
    assert store.entry("staging", DAY) == verified

    # A rerun of the day: new keys, then the entry is replaced; the first run's objects become orphans.
    rerun = backup(store, tmp_path, DAY, tag=" rerun")
    assert store.entry("staging", DAY) == rerun and not rerun.verified
    assert {o.key for o in rerun.objects.values()}.isdisjoint(o.key for o in entry.objects.values())
    with pytest.raises(StoreError, match="names other objects than the backup that was tested"):
        store.mark_verified(entry)
    assert {o.key for o in store.orphans(now=LATER)} == {o.key for o in entry.objects.values()}
    assert store.orphans() == []  # just written: may belong to a backup in progress


def test_a_failed_backup_leaves_no_entry_and_the_previous_one_untouched(store: BackupStore, tmp_path: Path) -> None:
    before = backup(store, tmp_path, DAY)
    paths = files(tmp_path / "next", dump=b"new dump", fingerprint=b"{}")
    paths["fingerprint"].unlink()  # vanishes between the dump's upload and its own

    with pytest.raises(StoreError) as failed:
        store.put_backup("staging", DAY, paths)
    message = str(failed.value)
    assert f"backup of staging for {DAY} was not stored" in message and "does not exist" in message
    assert "No catalog entry was written (an existing entry for 2026-03-14 is untouched)" in message
    assert "nothing it stored is left behind" in message
    assert store.entry("staging", DAY) == before
    assert keys(store) == sorted([before.key, *(o.key for o in before.objects.values())])

    with pytest.raises(StoreError):
        store.put_backup("staging", DAY + timedelta(days=1), paths)
    assert store.entry("staging", DAY + timedelta(days=1)) is None

    paths = files(tmp_path / "third", dump=b"new dump")
    with pytest.raises(StoreError, match="not stored: its metadata must be JSON values"):
        store.put_backup("staging", DAY, paths, metadata={"at": NOW})  # refused before anything is uploaded
    assert keys(store) == sorted([before.key, *(o.key for o in before.objects.values())])


def test_an_entry_is_refused_while_an_object_it_names_is_missing(store: BackupStore, tmp_path: Path) -> None:
    entry = backup(store, tmp_path, DAY)
    missing = StoredObject("staging/2026-03-15/r/dump", store.location("staging/2026-03-15/r/dump"), 10, "00")
    wrong_size = {**entry.objects, "dump": StoredObject(**{**entry.objects["dump"].to_dict(), "bytes": 1})}
    for objects, why in [({"dump": missing}, "does not exist"), (wrong_size, "bytes, not 1")]:
        bad = CatalogEntry("staging", DAY + timedelta(days=1), objects, created_at=NOW)
        with pytest.raises(StoreError, match=rf"not every object it names is stored .*{why}.*put every object first"):
            store.write_entry(bad)
        assert store.entry("staging", DAY + timedelta(days=1)) is None
    with pytest.raises(StoreError, match="metadata must be JSON values"):
        store.write_entry(CatalogEntry("staging", DAY, entry.objects, created_at=NOW, metadata={"at": NOW}))
    assert store.entry("staging", DAY) == entry


def test_orphans_after_a_crash_are_listed_and_removed(store: BackupStore, tmp_path: Path) -> None:
    kept = backup(store, tmp_path, DAY)
    # A crash between the uploads and the entry: objects that no entry names.
    crashed = files(tmp_path / "crashed", dump=b"half a backup")
    orphan = store.put(crashed["dump"], object_key("staging", DAY + timedelta(days=1), "crashed", "dump.dump"))
    expected = {orphan.key}
    if isinstance(store, FolderStore):  # a folder store's temp file from a crash mid-copy
        partial = Path(store.location("staging/2026-03-16/r/.dump.dump.partial-1a2b3c4d"))
        partial.parent.mkdir(parents=True)
        partial.write_bytes(b"half")
        expected.add("staging/2026-03-16/r/.dump.dump.partial-1a2b3c4d")

    assert store.orphans() == []  # too young: could be a backup still being written
    assert {o.key for o in store.orphans(now=LATER)} == expected
    assert {o.key for o in store.remove_orphans(now=LATER, dry_run=True)} == expected
    assert {o.key for o in store.orphans(min_age=timedelta(0))} == expected  # a dry run removed nothing
    assert {o.key for o in store.remove_orphans(min_age=timedelta(0))} == expected
    assert store.orphans(now=LATER) == []
    assert keys(store) == sorted([kept.key, *(o.key for o in kept.objects.values())])
    assert store.entry("staging", DAY) == kept


def test_prune_deletes_the_entry_before_its_objects(store: BackupStore, tmp_path: Path) -> None:
    days = [DAY - timedelta(days=n) for n in range(4)]  # 14th (newest) .. 11th
    entries = {day: backup(store, tmp_path, day) for day in days}
    store.mark_verified(entries[days[3]], at=NOW)  # the oldest one passed its restore test

    plan = store.prune("staging", daily=1, monthly=0, today=DAY)  # dry run by default
    assert not plan.executed
    assert [e.date for e in plan.keep] == [days[0], days[3]]  # newest, and the newest verified
    assert [e.date for e in plan.delete] == [days[1], days[2]]
    assert len(store.catalog("staging")) == 4  # nothing deleted

    # A crash (here: the store failing) while deleting the first pruned backup's objects.
    original_delete = store.delete

    def failing_delete(key: str) -> None:
        if not key.startswith("catalog/"):
            raise StoreError(f"simulated crash deleting {key}")
        original_delete(key)

    store.delete = failing_delete  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="simulated crash"):
        store.prune("staging", daily=1, monthly=0, dry_run=False, today=DAY)
    del store.delete
    # The entry went first: what is left are orphans, never an entry naming deleted objects.
    assert store.entry("staging", days[1]) is None
    assert {o.key for o in store.orphans(now=LATER)} == {o.key for o in entries[days[1]].objects.values()}

    done = store.prune("staging", daily=1, monthly=0, dry_run=False, today=DAY)
    assert done.executed and [e.date for e in done.delete] == [days[2]]
    assert [e.date for e in store.catalog("staging")] == [days[3], days[0]]
    assert not any(store.exists(o.key) for o in entries[days[2]].objects.values())
    assert all(store.exists(o.key) for d in (days[0], days[3]) for o in entries[d].objects.values())
    store.remove_orphans(min_age=timedelta(0))
    survivors = [entries[days[0]], entries[days[3]]]
    assert keys(store) == sorted([e.key for e in survivors] + [o.key for e in survivors for o in e.objects.values()])


# --- retention rules (no store) ----------------------------------------------------------------------------


def entry(day: date, verified: bool = False, env: str = "production") -> CatalogEntry:
    return CatalogEntry(env, day, {}, created_at=NOW, verified_at=NOW if verified else None)


def test_plan_keeps_the_newest_dailies_and_the_newest_of_each_month() -> None:
    today = date(2026, 3, 15)
    # Every day from 2024-12-01 to 2026-03-14 (469 backups).
    days = [date(2024, 12, 1) + timedelta(days=n) for n in range((date(2026, 3, 14) - date(2024, 12, 1)).days + 1)]
    plan = plan_prune([entry(d) for d in days], today, daily=30, monthly=12)
    kept = [e.date for e in plan.keep]
    dailies = [date(2026, 3, 14) - timedelta(days=n) for n in range(30)]
    # Months 2026-03 back to 2025-04: the newest backup of each (March's and February's are dailies too).
    monthlies = [date(2026, 3, 14), date(2026, 2, 28), date(2026, 1, 31), date(2025, 12, 31), date(2025, 11, 30)]
    monthlies += [date(2025, 10, 31), date(2025, 9, 30), date(2025, 8, 31), date(2025, 7, 31), date(2025, 6, 30)]
    monthlies += [date(2025, 5, 31), date(2025, 4, 30)]
    assert kept == sorted(set(dailies) | set(monthlies), reverse=True)
    assert len(plan.delete) == len(days) - len(kept) and date(2025, 3, 31) in [e.date for e in plan.delete]
    assert plan.reasons[date(2026, 3, 14)] == "daily (1 of the newest 30); monthly (newest of 2026-03)"
    assert plan.reasons[date(2026, 2, 13)] == "daily (30 of the newest 30)"
    assert plan.reasons[date(2026, 1, 31)] == "monthly (newest of 2026-01)"
    assert plan.reasons[date(2026, 2, 12)].startswith("beyond the newest 30 daily")
    assert set(plan.reasons) == set(days)


def test_plan_never_deletes_the_newest_verified_backup() -> None:
    today = date(2026, 6, 10)
    entries = [entry(date(2026, 6, d)) for d in range(1, 10)] + [entry(date(2025, 1, 5), verified=True)]
    plan = plan_prune(entries, today, daily=3, monthly=0)
    assert [e.date for e in plan.keep] == [date(2026, 6, 9), date(2026, 6, 8), date(2026, 6, 7), date(2025, 1, 5)]
    assert plan.reasons[date(2025, 1, 5)] == "newest verified backup (never deleted, whatever the policy says)"

    # Once a newer one is verified, the old one is no longer protected.
    entries.append(entry(date(2026, 6, 2), verified=True))
    entries = [e for e in entries if e.date != date(2026, 6, 2) or e.verified]
    plan = plan_prune(entries, today, daily=3, monthly=0)
    assert date(2026, 6, 2) in [e.date for e in plan.keep] and date(2025, 1, 5) in [e.date for e in plan.delete]

    with pytest.raises(ValueError, match="daily >= 1"):
        plan_prune(entries, today, daily=0)
    with pytest.raises(ValueError, match="one environment"):
        plan_prune([*entries, entry(date(2026, 6, 1), env="staging")], today)
    empty = plan_prune([], today)
    assert empty.keep == empty.delete == () and empty.reasons == {}


# --- S3 only: the copy bucket, multipart, faults ------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 6 << 20], ids=["single", "multipart"])
def test_s3_keeps_a_second_copy_in_another_region(aws, buckets, s3_client, size: int, tmp_path: Path) -> None:
    primary, copy = buckets
    store = S3Store(
        primary, REGION, "shop ops/backups", aws.endpoint_url, copy, COPY_REGION, max_attempts=2,
        multipart_threshold=5 << 20,
    )  # fmt: skip
    source = tmp_path / "big.dump"
    source.write_bytes(b"z" * size)
    stored = store.put(source, "staging/2026-03-14/r/dump.dump")
    full = "shop ops/backups/staging/2026-03-14/r/dump.dump"
    assert stored.copy_location == f"s3://{copy}/{full}"
    copy_client = s3_client(COPY_REGION)
    assert copy_client.get_bucket_location(Bucket=copy)["LocationConstraint"] == COPY_REGION
    for client, bucket in [(store.client, primary), (copy_client, copy)]:
        head = client.head_object(Bucket=bucket, Key=full)
        assert head["ContentLength"] == size and head["Metadata"]["sha256"] == stored.sha256
        assert head["ETag"].strip('"').endswith("-2") == (size > 5 << 20)  # multipart: two parts

    entry = store.put_backup("staging", DAY, {"dump": source})
    catalog_key = f"shop ops/backups/catalog/staging/{DAY}.json"
    assert CatalogEntry.from_json(copy_client.get_object(Bucket=copy, Key=catalog_key)["Body"].read(), "c") == entry
    store.prune("staging", daily=1, monthly=0, dry_run=False, today=DAY)  # keeps it
    store.delete(stored.key)
    for client, bucket in [(store.client, primary), (copy_client, copy)]:
        listed = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert full not in listed and catalog_key in listed


def test_an_unreachable_endpoint_fails_after_the_retries_and_changes_nothing(aws, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = BackupStoreResource(bucket="backups", region=REGION, endpoint_url=endpoint, max_attempts=3).store()
    assert isinstance(store, S3Store)
    attempts: list[str] = []
    store.client.meta.events.register("before-send.s3", lambda request, **_: attempts.append(request.url))
    source = tmp_path / "x.dump"
    source.write_bytes(b"dump")

    started = time.monotonic()
    with pytest.raises(StoreError) as failed:
        store.put(source, "staging/2026-03-14/r/dump.dump")
    assert time.monotonic() - started < 10
    assert len(attempts) == 3  # max_attempts, then the error
    message = str(failed.value)
    assert f"in bucket backups at {endpoint} failed after up to 3 attempts" in message
    assert "Could not connect to the endpoint URL" in message and message.endswith("nothing was changed")
    with pytest.raises(StoreError, match=rf"bucket backups at {endpoint} failed .*; nothing was changed"):
        store.catalog("staging")


def test_a_network_drop_mid_backup_leaves_no_entry(aws, buckets, tmp_path: Path) -> None:
    store = s3_resource(aws, buckets, max_attempts=3).store()
    assert isinstance(store, S3Store)
    before = backup(store, tmp_path, DAY)
    puts: list[str] = []

    def drop_after_the_first_upload(request, **_) -> None:
        puts.append(request.url)
        if len(puts) > 1:
            raise EndpointConnectionError(endpoint_url=request.url)

    store.client.meta.events.register("before-send.s3.PutObject", drop_after_the_first_upload)
    paths = files(tmp_path / "next", dump=b"new dump", fingerprint=b"{}")
    with pytest.raises(StoreError) as failed:
        store.put_backup("staging", DAY, paths)
    assert len(puts) == 1 + 3  # the dump, then every attempt at the fingerprint
    message = str(failed.value)
    assert f"in bucket {buckets[0]} at {aws.endpoint_url} failed after up to 3 attempts" in message
    assert "No catalog entry was written" in message and "nothing it stored is left behind" in message
    store.client.meta.events.unregister("before-send.s3.PutObject", drop_after_the_first_upload)
    assert store.entry("staging", DAY) == before
    assert keys(store) == sorted([before.key, *(o.key for o in before.objects.values())])


def test_an_entry_missing_in_the_copy_bucket_keeps_the_objects(aws, buckets, s3_client, tmp_path: Path) -> None:
    store = s3_resource(aws, buckets, max_attempts=1).store()
    assert isinstance(store, S3Store) and store.copy_client is not None

    def refuse(request, **_) -> None:  # the copy bucket's region goes down after the objects were copied
        raise EndpointConnectionError(endpoint_url=request.url)

    store.copy_client.meta.events.register("before-send.s3.PutObject", refuse)
    paths = files(tmp_path / "src", dump=b"dump", fingerprint=b"{}")
    with pytest.raises(StoreError) as failed:
        store.put_backup("staging", DAY, paths)
    message = str(failed.value)
    assert "every object is stored, but its catalog entry failed" in message
    assert f"written to {buckets[0]} but not to the copy bucket: write it again" in message
    entry = store.entry("staging", DAY)  # in the primary bucket, naming objects that are all there
    assert entry is not None and all(store.exists(o.key) for o in entry.objects.values())

    store.copy_client.meta.events.unregister("before-send.s3.PutObject", refuse)
    store.write_entry(entry)
    copy_key = f"shop ops/backups/{entry.key}"
    body = s3_client(COPY_REGION).get_object(Bucket=buckets[1], Key=copy_key)["Body"].read()
    assert CatalogEntry.from_json(body, copy_key) == entry


# --- the Dagster resource ------------------------------------------------------------------------------------


def test_the_resource_hands_out_the_store_its_fields_describe(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"exactly one of `folder`.*or `bucket`.*got neither"):
        BackupStoreResource().store()
    with pytest.raises(StoreError, match="got both"):
        BackupStoreResource(folder=str(tmp_path), bucket="b", region=REGION).store()
    with pytest.raises(StoreError, match="bucket b needs its `region`"):
        BackupStoreResource(bucket="b").store()
    with pytest.raises(StoreError, match="the copy bucket is the bucket itself"):
        BackupStoreResource(bucket="b", region=REGION, copy_bucket="b").store()
    s3 = BackupStoreResource(bucket="b", region=REGION, copy_bucket="c").store()
    assert isinstance(s3, S3Store) and s3.copy_region == REGION

    source = tmp_path / "x.dump"
    source.write_bytes(b"dump")

    @dg.asset
    def stored_dump(backup_store: BackupStoreResource) -> dg.MaterializeResult:
        entry = backup_store.store().put_backup("local", DAY, {"dump": source})
        return dg.MaterializeResult(metadata={"bytes": entry.objects["dump"].bytes})

    folder = tmp_path / "store folder"
    result = dg.materialize([stored_dump], resources={"backup_store": BackupStoreResource(folder=str(folder))})
    assert result.success
    assert FolderStore(folder).entry("local", DAY) is not None
