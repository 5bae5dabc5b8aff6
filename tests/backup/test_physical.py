"""Physical backups and PITR against real PostgreSQL 15 and pgBackRest 2.45: one source cluster for the module.

The source archives every WAL segment into an encrypted repository under a folder whose path has
a space. Tests that damage a repository (a deleted segment, expire) work on a copy of it, so the
shared one stays whole whatever the order.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shop_ops.backup.logical import BackupError
from shop_ops.backup.physical import (
    PgBackRest,
    PhysicalBackup,
    new_key_file,
    segment_name,
    segment_position,
)
from shop_ops.services.processes import PostgresCluster, free_port, hand_to_pg_user


def _new_key(path: Path) -> Path:
    new_key_file(path)
    return path


pytestmark = pytest.mark.services

_ids = itertools.count(1000)


@dataclass(frozen=True)
class Source:
    cluster: PostgresCluster
    pgbr: PgBackRest
    root: Path
    key: str
    full: PhysicalBackup


@dataclass(frozen=True)
class History:
    """Rows 1-4 committed after the full backup, then an incremental backup, then rows 5-8."""

    commits: dict[int, datetime]
    incr: PhysicalBackup


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    root = Path(tempfile.mkdtemp(prefix="shop-ops-test-pgbr-"))
    root.chmod(0o755)  # PostgreSQL and pgBackRest run as the postgres OS user
    cluster = PostgresCluster(datadir=root / "pg data", port=free_port())
    key_file = _new_key(root / "keys" / "repo key")
    pgbr = PgBackRest.for_cluster(cluster, "shop", root / "pg backrest", key_file, retention_full=10)
    # archive_timeout small: a quiet source still ships its WAL within seconds; tests force
    # segment switches with `pgbackrest check` rather than waiting for it.
    cluster.extra_conf = pgbr.postgres_settings(archive_timeout=5)
    try:
        pgbr.write_config()
        cluster.init()
        cluster.start()
        pgbr.stanza_create()
        pgbr.check()
        cluster.psql("CREATE TABLE ledger (id int PRIMARY KEY, note text)")
        full = pgbr.backup("full")
        yield Source(cluster, pgbr, root, key_file.read_text().strip(), full)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def write_rows(cluster: PostgresCluster, ids: list[int], pause: float = 0.12) -> None:
    """One row per transaction (psql commits each statement), `pause` seconds apart."""
    cluster.psql("".join(f"INSERT INTO ledger VALUES ({i}, 'row {i}'); SELECT pg_sleep({pause});\n" for i in ids))


def commits(cluster: PostgresCluster) -> dict[int, datetime]:
    """Each row's commit time (track_commit_timestamp is on)."""
    rows = cluster.psql("SELECT id, pg_xact_commit_timestamp(xmin) FROM ledger ORDER BY id")
    return {int(i): datetime.fromisoformat(ts) for i, ts in (row.split("|") for row in rows.splitlines())}


def row_ids(cluster: PostgresCluster) -> set[int]:
    return {int(i) for i in cluster.psql("SELECT id FROM ledger").split()}


def between(a: datetime, b: datetime) -> datetime:
    return a + (b - a) / 2


@pytest.fixture(scope="module")
def history(source: Source) -> History:
    write_rows(source.cluster, [1, 2, 3, 4])
    incr = source.pgbr.backup("incr")
    # pgBackRest compares whole seconds (stop second < target second): rows 5-8 start a second
    # after the incremental's recorded stop, so a target among them restores from it.
    time.sleep(max(0.0, incr.stopped_at.timestamp() + 1 - time.time()))
    write_rows(source.cluster, [5, 6, 7, 8])
    source.pgbr.check()  # the segment holding row 8 is archived
    return History(commits(source.cluster), incr)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder the postgres OS user may enter (not pytest's 0700 tmp_path); any cluster started in it is stopped."""
    root = Path(tempfile.mkdtemp(prefix="shop-ops-test-pitr-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for folder in root.iterdir():
            if (folder / "postmaster.pid").exists():
                PostgresCluster(datadir=folder, port=0).stop()
        shutil.rmtree(root, ignore_errors=True)


def copy_repo(pgbr: PgBackRest, base: Path) -> PgBackRest:
    """The same stanza over a copy of the repository (the source keeps archiving into the original only)."""
    base.mkdir()
    shutil.copytree(pgbr.repo, base / "repo", symlinks=True)
    hand_to_pg_user(base / "repo")
    copy = replace(pgbr, base=base)
    copy.write_config()
    return copy


def segment_files(repo: Path, name: str) -> list[Path]:
    return list(repo.glob(f"archive/*/*/{name[:16]}/{name}-*"))


def test_backup_verify_info_round_trip_never_shows_the_key(source: Source, scratch: Path) -> None:
    seen: list[str] = []
    pgbackrest_seen = threading.Event()
    done = threading.Event()

    def sample_argv() -> None:
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "pgbackrest" in argv:
                    pgbackrest_seen.set()
                if source.key in argv:
                    seen.append(argv)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample_argv, daemon=True)
    sampler.start()
    try:
        write_rows(source.cluster, [next(_ids)], pause=0)
        diff = source.pgbr.backup("diff")
    finally:
        done.set()
        sampler.join()
    assert pgbackrest_seen.is_set() and not seen  # pgbackrest ran while sampled; its argv never held the key

    assert diff.kind == "diff" and diff.label.endswith("D") and diff.prior == source.full.label
    assert diff.started_at <= diff.stopped_at and diff.seconds > 0
    assert segment_position(diff.wal_start) <= segment_position(diff.wal_stop)
    assert diff.database_bytes > 1_000_000 and 0 < diff.repo_bytes < diff.database_bytes
    info = source.pgbr.info()
    labels = [b.label for b in info.backups]
    assert source.full.label in labels and labels[-1] == diff.label
    assert info.archive_id == "15-1"
    assert info.archive_min is not None and info.archive_max is not None
    assert segment_position(info.archive_min) <= segment_position(source.full.wal_start)
    assert segment_position(info.archive_max) >= segment_position(diff.wal_stop)
    result = source.pgbr.verify()
    assert result.backups_checked == len(labels) and result.wal_checked > 0

    # The pass is only in the key file: not in pgbackrest.conf, PostgreSQL's settings, or any log.
    config = source.pgbr.config.read_text()
    assert "repo1-cipher-type=aes-256-cbc" in config and "cipher-pass" not in config and source.key not in config
    archive_command = source.cluster.psql("SHOW archive_command")
    assert "PGBACKREST_REPO1_CIPHER_PASS=\"$(cat '" in archive_command and source.key not in archive_command
    texts = [source.cluster.datadir / name for name in ("postgresql.conf", "postgresql.auto.conf", "server.log")]
    texts += list(source.pgbr.log_dir.iterdir())
    for path in texts:
        assert source.key not in path.read_text(errors="replace"), path

    # A failing command names the cause, without the key.
    wrong_port = replace(source.pgbr, base=scratch / "wrong port", pg_port=free_port())
    wrong_port.write_config()
    with pytest.raises(BackupError, match=r"pgbackrest check .* cannot reach PostgreSQL on port") as failed:
        wrong_port.check()
    assert source.key not in str(failed.value)


def test_pitr_pauses_exactly_at_target_then_replays_the_rest(source: Source, history: History, scratch: Path) -> None:
    ts = history.commits
    target = between(ts[2], ts[3])
    expected = source.pgbr.info().newest_before(target)
    # An older backup than the incremental (the full, or the diff of the first test if it ran first).
    assert expected is not None and expected.label != history.incr.label

    restored = source.pgbr.restore(scratch / "paused", target_time=target, target_action="pause")
    scratch_cluster = restored.cluster
    # pgBackRest itself chose the newest backup that had finished before the target.
    assert restored.backup_label == expected.label
    assert restored.paused and scratch_cluster.psql("SELECT pg_get_wal_replay_pause_state()") == "paused"
    source_ids = {i for i, at in commits(source.cluster).items() if i < 1000}
    assert row_ids(scratch_cluster) & source_ids == {i for i in source_ids if ts[i] <= target} == {1, 2}
    assert restored.recovered_to == ts[2]
    assert restored.seconds > 0
    # Its own port and socket folder.
    assert scratch_cluster.port != source.cluster.port
    assert (scratch_cluster.socket_dir / f".s.PGSQL.{scratch_cluster.port}").exists()
    assert scratch_cluster.psql("SHOW unix_socket_directories") == f'"{scratch_cluster.socket_dir}"'

    source.pgbr.check()  # everything committed so far is archived
    newest = commits(source.cluster)
    continued = source.pgbr.continue_to_end_of_archive(restored)
    assert not continued.paused and scratch_cluster.psql("SELECT pg_is_in_recovery()") == "f"
    assert row_ids(scratch_cluster) == set(newest)  # the RPO: the newest archived commit
    assert continued.recovered_to is not None and continued.recovered_to >= max(newest.values())
    assert continued.seconds > 0


def test_pitr_promotes_from_the_incremental_and_never_archives(source: Source, history: History, scratch: Path) -> None:
    ts = history.commits
    target = between(ts[6], ts[7])
    restored = source.pgbr.restore(scratch / "promoted", target_time=target)
    restored_cluster = restored.cluster
    assert restored.backup_label == history.incr.label
    assert not restored.paused and restored_cluster.psql("SELECT pg_is_in_recovery()") == "f"
    assert {i for i in row_ids(restored_cluster) if i < 1000} == {1, 2, 3, 4, 5, 6}
    assert restored.recovered_to == ts[6]

    # Writable, on a new timeline, and archiving nothing into the source's repository.
    restored_cluster.psql("INSERT INTO ledger VALUES (-1, 'after promotion')")
    assert restored_cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())").startswith("00000002")
    assert restored_cluster.psql("SHOW archive_mode") == "off"
    restored_cluster.psql("SELECT pg_switch_wal()")
    assert not list(source.pgbr.repo.glob("archive/*/*/00000002*")), "the scratch cluster archived into the source repo"


@dataclass(frozen=True)
class Gap:
    repo: PgBackRest
    missing: str
    target: datetime


@pytest.fixture(scope="module")
def gapped(source: Source) -> Iterator[Gap]:
    """A copy of the repository without the WAL segment holding one commit; the target lies after it."""
    root = Path(tempfile.mkdtemp(prefix="shop-ops-test-gap-"))
    root.chmod(0o755)
    try:
        before, after = next(_ids), next(_ids)
        cluster = source.cluster
        cluster.psql("SELECT pg_switch_wal()")
        segment = cluster.psql(
            f"INSERT INTO ledger VALUES ({before}, 'in the lost segment');\n"
            "SELECT pg_walfile_name(pg_current_wal_lsn());"
        ).splitlines()[-1]
        cluster.psql("SELECT pg_switch_wal(); SELECT pg_sleep(0.1);")
        write_rows(cluster, [after], pause=0)
        source.pgbr.check()
        ts = commits(cluster)
        copy = copy_repo(source.pgbr, root / "gap copy")
        files = segment_files(copy.repo, segment)
        assert len(files) == 1, files
        files[0].unlink()
        yield Gap(copy, segment, between(ts[before], ts[after]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_missing_wal_segment_is_named(source: Source, gapped: Gap, scratch: Path) -> None:
    with pytest.raises(BackupError) as failed:
        gapped.repo.restore(scratch / "gap", target_time=gapped.target)
    message = str(failed.value)
    assert f"WAL segment {gapped.missing} is missing from the archive" in message
    assert "recovery ended before configured recovery target was reached" in message
    assert not (scratch / "gap" / "postmaster.pid").exists()  # the failed scratch server is stopped
    assert source.key not in message


def test_archive_continuity_detects_a_gap(source: Source, gapped: Gap) -> None:
    whole = source.pgbr.archive_continuity()
    assert whole.continuous and whole.first_missing is None and whole.problem is None
    assert whole.from_segment == source.pgbr.info().backups[0].wal_start
    assert whole.newest_archived_at is not None
    ago = whole.last_archived_seconds_ago()
    assert ago is not None and -5 < ago < 60

    broken = gapped.repo.archive_continuity()
    assert not broken.continuous and broken.first_missing == gapped.missing and broken.missing == 1
    assert broken.problem is not None and gapped.missing in broken.problem
    with pytest.raises(BackupError, match=f"{gapped.missing} is missing"):
        gapped.repo.verify()


def test_verify_names_a_corrupted_backup_file(source: Source, scratch: Path) -> None:
    copy = copy_repo(source.pgbr, scratch / "corrupt copy")
    label = source.full.label
    victim = sorted((copy.repo / "backup" / "shop" / label / "pg_data" / "base").rglob("*.zst"))[0]
    data = bytearray(victim.read_bytes())
    data[40:44] = bytes(b ^ 0xFF for b in data[40:44])
    victim.write_bytes(bytes(data))
    relative = victim.relative_to(copy.repo / "backup" / "shop")
    with pytest.raises(BackupError, match=f"invalid checksum '{relative}'") as failed:
        copy.verify()
    assert f"backup: {label}, status: invalid" in str(failed.value)


def test_wrong_key_is_named(source: Source, scratch: Path) -> None:
    wrong_file = _new_key(scratch / "keys" / "wrong key")
    wrong_key = wrong_file.read_text().strip()
    wrong = replace(source.pgbr, key_file=wrong_file)
    for attempt in (wrong.info, lambda: wrong.restore(scratch / "wrong", target_action="promote")):
        with pytest.raises(BackupError, match=r"the backup key does not decrypt this repository \(wrong key\?\)") as e:
            attempt()
        assert source.key not in str(e.value) and wrong_key not in str(e.value)


def test_no_backup_before_the_target(source: Source, scratch: Path) -> None:
    too_early = source.full.started_at - timedelta(hours=1)
    with pytest.raises(BackupError, match=r"no backup before .*: the archive covers \S+ \S+\.\.\S+ \S+"):
        source.pgbr.restore(scratch / "early", target_time=too_early)
    assert not (scratch / "early").exists()


def test_restore_needs_a_folder_postgres_can_enter(source: Source, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match=r"cannot enter .*restore somewhere it can reach"):
        source.pgbr.restore(tmp_path / "data")  # pytest's tmp_path is mode 700


def test_apply_settings_switches_a_running_cluster_from_cp_archiving(scratch: Path) -> None:
    """An environment initialised with the old `cp` archive_command moves to pgBackRest without a new initdb."""
    cluster = PostgresCluster(datadir=scratch / "old env", port=free_port(), wal_archive=scratch / "old wal")
    cluster.init()
    cluster.start()
    pgbr = PgBackRest.for_cluster(cluster, "old-env", scratch / "old env backrest", _new_key(scratch / "old.key"))
    pgbr.write_config()
    assert "cp " in cluster.psql("SHOW archive_command")
    assert pgbr.apply_settings(cluster, archive_timeout=5)  # track_commit_timestamp needs a restart
    assert cluster.psql("SHOW track_commit_timestamp") == "on"
    assert "archive-push" in cluster.psql("SHOW archive_command")
    assert not pgbr.apply_settings(cluster, archive_timeout=5)  # already applied: no restart
    pgbr.stanza_create()
    pgbr.check()  # a WAL segment went through the new archive_command into the encrypted repository
    assert pgbr.info().archive_max is not None


def test_expire_dry_run_removes_nothing_then_keeps_the_newest(source: Source, scratch: Path) -> None:
    newest_full = source.pgbr.backup("full")
    write_rows(source.cluster, [next(_ids)], pause=0)
    source.pgbr.check()
    expected_rows = row_ids(source.cluster)
    copy = copy_repo(source.pgbr, scratch / "expire copy")
    before = copy.info()
    older = tuple(b.label for b in before.backups if b.label != newest_full.label)
    assert older and before.newest is not None and before.newest.label == newest_full.label

    dry = copy.expire(retention_full=1, dry_run=True)
    assert dry.dry_run and set(dry.expired) == set(older) and dry.kept == (newest_full.label,)
    assert dry.archive_removed  # the WAL only the expired backups needed
    unchanged = copy.info()
    assert [b.label for b in unchanged.backups] == [b.label for b in before.backups]
    assert unchanged.archive_min == before.archive_min

    done = copy.expire(retention_full=1, dry_run=False)
    assert set(done.expired) == set(older) and done.kept == (newest_full.label,)
    after = copy.info()
    assert [b.label for b in after.backups] == [newest_full.label]
    assert after.archive_min is not None
    assert segment_position(after.archive_min) == segment_position(newest_full.wal_start)
    assert copy.archive_continuity().continuous

    # What is left still restores, to the end of the archive.
    restored = copy.restore(scratch / "after expire")
    assert restored.backup_label == newest_full.label and restored.target_time is None
    assert row_ids(restored.cluster) == expected_rows


def test_segment_names_wrap_at_256_per_log() -> None:
    assert segment_position("0000000100000001000000FF") == 511
    assert segment_name(1, 512) == "000000010000000200000000"
