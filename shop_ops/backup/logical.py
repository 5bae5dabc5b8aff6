"""Logical backups: `pg_dump -Fc` and the fingerprint at one exported snapshot, and restoring one to check it.

With a key, the dump is encrypted as it streams (shop_ops/backup/crypto.py): no plaintext copy
of the database ever touches the disk on the backup side, and a restore decrypts into a
scratch folder that is removed afterwards.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import psycopg2
import psycopg2.extensions

from shop_ops.backup.fingerprint import Fingerprint, compute_fingerprint
from shop_ops.resources.postgres import DatabaseError, DatabaseTarget
from shop_ops.services.files import fsync_dir
from shop_ops.services.processes import PostgresCluster, pg_bin

if TYPE_CHECKING:
    from shop_ops.backup.crypto import Encryptor

CHUNK = 1 << 20
STDERR_TAIL = 800


class BackupError(RuntimeError):
    """A backup or its restore check failed; the message names the cause (never a password)."""


def _client_args(db: DatabaseTarget) -> list[str]:
    """Connection options for pg_dump/pg_restore: no password here (see `_client_env`)."""
    return ["-h", db.host, "-p", str(db.port), "-U", db.user]


def _client_env(db: DatabaseTarget) -> dict[str, str]:
    """The environment of a PostgreSQL client program: the password (from its file) only here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    password = db.password()
    if password:
        env["PGPASSWORD"] = password
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _scrub(db: DatabaseTarget, message: str) -> str:
    password = db.password()
    return message.replace(password, "***") if password else message


def _connect(db: DatabaseTarget) -> psycopg2.extensions.connection:
    try:
        return db.connect()
    except DatabaseError as exc:
        raise BackupError(_scrub(db, str(exc))) from None


@dataclass(frozen=True)
class LogicalBackup:
    """A complete dump file and the fingerprint of the snapshot it holds.

    `bytes` and `sha256` describe the file as written (the ciphertext when encrypted), so they
    check the stored object; `plain_bytes` is what pg_dump produced. `key_id` names the key
    of an encrypted file (None: a plain dump).
    """

    path: Path
    bytes: int
    seconds: float
    sha256: str
    snapshot: str
    fingerprint: Fingerprint
    plain_bytes: int
    key_id: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.key_id is not None

    @property
    def mb_per_s(self) -> float:
        """pg_dump's throughput (its output, before encryption)."""
        return self.plain_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class RestoreResult:
    """A dump restored into a scratch database whose fingerprint matched the expected one."""

    database: str
    seconds: float
    restored_bytes: int
    fingerprint: Fingerprint
    kept: bool


ProgressHook = Callable[[int, "subprocess.Popen[bytes]"], None]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def exit_cause(program: str, returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        head = f"{program} was killed by signal {name}"
    else:
        head = f"{program} exited {returncode}"
    tail = stderr.strip()[-STDERR_TAIL:]
    return f"{head}: {tail}" if tail else head


class _Streamer(threading.Thread):
    """Copies pg_dump's stdout into the file, encrypting (with an encryptor) and hashing what it writes.

    `bytes`/`digest` count and hash the file's content (ciphertext when encrypted), `plain_bytes`
    pg_dump's output; the progress hook gets `plain_bytes`. The encrypted stream's final chunk is
    written by `finish`, from the caller's thread once pg_dump exited 0: a dump cut short never
    gets a final chunk, so it could not decrypt as complete even if its file survived.
    """

    def __init__(
        self,
        source: IO[bytes],
        target: IO[bytes],
        proc: subprocess.Popen[bytes],
        hook: ProgressHook | None,
        encryptor: Encryptor | None = None,
    ) -> None:
        super().__init__(name="pg_dump-stream", daemon=True)
        self.source, self.target, self.proc, self.hook, self.encryptor = source, target, proc, hook, encryptor
        self.digest = hashlib.sha256()
        self.bytes = 0
        self.plain_bytes = 0
        self.error: BaseException | None = None

    def _write(self, data: bytes) -> None:
        if data:
            self.target.write(data)
            self.digest.update(data)
            self.bytes += len(data)

    def run(self) -> None:
        try:
            while chunk := self.source.read1(CHUNK):  # type: ignore[attr-defined]
                self._write(self.encryptor.update(chunk) if self.encryptor is not None else chunk)
                self.plain_bytes += len(chunk)
                if self.hook is not None:
                    self.hook(self.plain_bytes, self.proc)
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self.error = exc
            self.proc.kill()  # pg_dump would otherwise block on a full pipe nobody reads

    def finish(self) -> None:
        """Write the encrypted stream's final chunk (nothing for a plain dump); after `join`."""
        if self.encryptor is not None:
            self._write(self.encryptor.finalize())


def dump_with_fingerprint(
    db: DatabaseTarget, out_path: Path, on_progress: ProgressHook | None = None, *, key: bytes | None = None
) -> LogicalBackup:
    """`pg_dump -Fc` of `db`'s database into `out_path`, with the fingerprint of the same snapshot.

    One REPEATABLE READ transaction exports its snapshot; pg_dump dumps that snapshot
    (`--snapshot`) while this transaction computes the fingerprint, and the transaction stays
    open until pg_dump has finished. The file is written as `.<name>.partial-*` beside
    `out_path` and renamed into place only after pg_dump exited 0 and the data is on disk; on
    any failure the partial file is removed and BackupError names the cause. `on_progress`
    (bytes so far, the pg_dump process) is called from the streaming thread after each chunk.

    With `key` (32 bytes, crypto.load_key), the file is the encrypted stream (crypto.Encryptor):
    pg_dump's output is encrypted in memory before it is written; the key goes nowhere else
    (not to pg_dump, not into the result).
    """
    from shop_ops.backup.crypto import Encryptor  # here: crypto imports BackupError from this module

    encryptor = Encryptor(key) if key is not None else None
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.parent / f".{out_path.name}.partial-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    conn = _connect(db)
    proc: subprocess.Popen[bytes] | None = None
    try:
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = str(cur.fetchone()[0])
        with open(partial, "wb") as target, tempfile.TemporaryFile() as stderr:
            cmd = [pg_bin("pg_dump"), "-Fc", f"--snapshot={snapshot}", *_client_args(db), "-d", db.database]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, env=_client_env(db))
            assert proc.stdout is not None
            streamer = _Streamer(proc.stdout, target, proc, on_progress, encryptor)
            streamer.start()
            try:
                try:
                    fingerprint = compute_fingerprint(conn)
                except psycopg2.Error as exc:
                    raise BackupError(
                        _scrub(db, f"fingerprint of {db.describe()} failed: {str(exc).strip()}")
                    ) from None
                returncode = proc.wait()
                streamer.join()
                proc.stdout.close()
                stderr.seek(0)
                err = stderr.read().decode(errors="replace")
                if streamer.error is not None:
                    raise BackupError(f"writing {partial} failed: {streamer.error}")
                if returncode != 0:
                    raise BackupError(
                        _scrub(db, f"pg_dump of {db.describe()} failed: {exit_cause('pg_dump', returncode, err)}")
                    )
                streamer.finish()
                target.flush()
                os.fsync(target.fileno())
            except BaseException:
                # Stop pg_dump and the copy before the file closes under them; the caller removes it.
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                streamer.join(timeout=10)
                raise
        conn.commit()
        size = partial.stat().st_size
        if size != streamer.bytes:
            raise BackupError(f"{partial} holds {size} bytes, pg_dump wrote {streamer.bytes}")
        os.replace(partial, out_path)
        fsync_dir(out_path.parent)
        return LogicalBackup(
            path=out_path, bytes=size, seconds=time.monotonic() - started, sha256=streamer.digest.hexdigest(),
            snapshot=snapshot, fingerprint=fingerprint, plain_bytes=streamer.plain_bytes,
            key_id=encryptor.key_id if encryptor is not None else None,
        )  # fmt: skip
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        partial.unlink(missing_ok=True)
        raise
    finally:
        conn.close()


def restore_and_verify(
    dump_path: Path,
    expected: Fingerprint,
    scratch: PostgresCluster,
    *,
    sha256: str | None = None,
    database: str | None = None,
    keep: bool = False,
    key: bytes | None = None,
    workdir: Path | None = None,
) -> RestoreResult:
    """`pg_restore` the dump into a new database of `scratch`, fingerprint it, compare with `expected`.

    `sha256` (of the stored file: the ciphertext when encrypted) is checked first when given.
    An encrypted dump needs its `key`: it is decrypted, every chunk authenticated, into a
    temporary folder under `workdir` (default: the system's temp folder), which is removed
    when the restore ends, however it ends. A mismatch, an unreadable, truncated or
    undecryptable dump, or a failed restore raises BackupError naming the cause; the scratch
    database is dropped then, and also on success unless `keep` (a caller that starts the shop
    against it drops it itself).
    """
    from shop_ops.backup.crypto import decrypt_file, read_key_id  # here: crypto imports this module

    dump_path = Path(dump_path)
    started = time.monotonic()
    if not dump_path.is_file():
        raise BackupError(f"dump {dump_path} does not exist")
    if sha256 is not None:
        actual = sha256_of(dump_path)
        if actual != sha256:
            raise BackupError(f"dump {dump_path} is corrupted: sha256 {actual} differs from the recorded {sha256}")
    file_key_id = read_key_id(dump_path)
    if file_key_id is None and key is not None:
        raise BackupError(f"dump {dump_path} is not encrypted, but a key was given: is it the file that was meant?")
    if file_key_id is not None and key is None:
        raise BackupError(f"dump {dump_path} is encrypted (key id {file_key_id}): restore it with its key")
    if key is None:
        return _restore_plain(dump_path, expected, scratch, started, database, keep)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shop-ops-restore-", dir=workdir) as folder:
        plain = Path(folder) / "dump"
        decrypt_file(dump_path, plain, key)
        return _restore_plain(plain, expected, scratch, started, database, keep, shown_as=dump_path)


def _restore_plain(
    dump_path: Path,
    expected: Fingerprint,
    scratch: PostgresCluster,
    started: float,
    database: str | None,
    keep: bool,
    shown_as: Path | None = None,
) -> RestoreResult:
    """The restore check of a plain dump file; messages name `shown_as` (the encrypted original) when given."""
    shown = shown_as or dump_path
    name = database or f"restore_{uuid.uuid4().hex[:12]}"
    target = DatabaseTarget(port=scratch.port, database=name, user=scratch.user)
    listed = subprocess.run([pg_bin("pg_restore"), "--list", str(dump_path)], capture_output=True, text=True)
    if listed.returncode != 0:
        cause = exit_cause("pg_restore --list", listed.returncode, listed.stderr)
        raise BackupError(f"dump {shown} is not a readable archive (truncated or corrupted?): {cause}")
    scratch.psql(f'CREATE DATABASE "{name}"')
    try:
        restored = subprocess.run(
            [pg_bin("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges", *_client_args(target),
             "-d", name, str(dump_path)],
            capture_output=True, text=True, env=_client_env(target),
        )  # fmt: skip
        if restored.returncode != 0:
            cause = exit_cause("pg_restore", restored.returncode, restored.stderr)
            raise BackupError(f"restoring {shown} failed (truncated or corrupted dump?): {cause}")
        conn = _connect(target)
        try:
            conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
            actual_fp = compute_fingerprint(conn)
            with conn.cursor() as cur:
                cur.execute("SELECT pg_database_size(current_database())")
                size = int(cur.fetchone()[0])
            conn.rollback()
        finally:
            conn.close()
        problems = expected.diff(actual_fp)
        if problems:
            raise BackupError(f"restored {shown} does not match its fingerprint: " + "; ".join(problems))
        result = RestoreResult(name, time.monotonic() - started, size, actual_fp, keep)
    except BaseException:
        drop_database(scratch, name)
        raise
    if not keep:
        drop_database(scratch, name)
    return result


def drop_database(scratch: PostgresCluster, name: str) -> None:
    scratch.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
