"""The pipeline's own state on one machine (SQLite: the release ledger, Dagster's runs, events and ticks), backed up and checked.

Each database is copied with SQLite's online backup API (a consistent copy while Dagster and
the ledger keep writing), the copies go into one tar file, and the row count of every table of
every copy is recorded: a restore test unpacks the tar, runs `PRAGMA integrity_check` on each
database and compares the row counts. On aws the same state is in Dagster's PostgreSQL
database, which is backed up like an environment's (logical dump + fingerprint).
"""

from __future__ import annotations

import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from shop_ops.backup.logical import BackupError

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class StateSnapshot:
    """A tar of consistent copies of the state's SQLite databases, and each table's row count."""

    path: Path
    databases: dict[str, dict[str, int]]  # relative path -> table -> rows
    seconds: float

    @property
    def rows(self) -> int:
        return sum(sum(tables.values()) for tables in self.databases.values())


def sqlite_files(*folders: Path) -> dict[str, Path]:
    """Every SQLite database under `folders` (by header, not name), keyed by a stable relative name."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith(("-wal", "-shm", "-journal")) and _is_sqlite(path):
                found[f"{folder.name}/{path.relative_to(folder)}"] = path
    return found


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_HEADER
    except OSError:
        return False


def table_rows(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]) for name in names}
    finally:
        conn.close()


def snapshot_state(databases: dict[str, Path], out: Path) -> StateSnapshot:
    """Consistent copies of `databases` (online backup API) packed into the tar `out`, with row counts."""
    started = time.monotonic()
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="shop-ops-state-") as tmp:
        with tarfile.open(out, "w") as tar:
            for name, source in databases.items():
                copy = Path(tmp) / f"{len(counts)}.sqlite"
                src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
                dst = sqlite3.connect(copy)
                try:
                    src.backup(dst)
                except sqlite3.Error as exc:
                    raise BackupError(f"copying the SQLite database {source} failed: {exc}") from None
                finally:
                    dst.close()
                    src.close()
                counts[name] = table_rows(copy)
                tar.add(copy, arcname=name)
    return StateSnapshot(out, counts, time.monotonic() - started)


def check_state_snapshot(tar_path: Path, expected: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Unpack the tar, check every database's integrity and row counts against `expected`; BackupError naming what differs."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="shop-ops-state-check-") as tmp:
        try:
            with tarfile.open(tar_path) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise BackupError(
                f"state backup {tar_path} is not a readable tar (truncated or corrupted?): {exc}"
            ) from None
        found = {}
        for name, tables in expected.items():
            db = Path(tmp) / name
            if not db.is_file():
                problems.append(f"{name}: missing from the backup")
                continue
            conn = sqlite3.connect(db)
            try:
                verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                verdict = str(exc)
            finally:
                conn.close()
            if verdict != "ok":
                problems.append(f"{name}: integrity_check says {verdict}")
                continue
            found[name] = rows = table_rows(db)
            for table in sorted(tables.keys() | rows.keys()):
                if tables.get(table) != rows.get(table):
                    problems.append(f"{name} table {table}: rows {tables.get(table)} -> {rows.get(table)}")
    if problems:
        raise BackupError("restored pipeline state does not match its backup: " + "; ".join(problems))
    return found
