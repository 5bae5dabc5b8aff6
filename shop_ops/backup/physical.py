"""Physical backups and point-in-time recovery of a PostgreSQL 15 cluster through pgBackRest.

One `PgBackRest` describes one stanza: a cluster (data folder, port, socket folder) and an
encrypted posix repository under `base/repo`, with pgBackRest's config, log, lock and spool
folders beside it. PostgreSQL archives every WAL segment into the repository (`archive_command`
runs `pgbackrest archive-push`); backups are full, differential or incremental; a restore
writes a new data folder and starts it as a scratch cluster on its own port, recovered to a
point in time or to the end of the archive.

The repository's cipher pass lives only in `key_file` (mode 600, owned by the OS user
PostgreSQL runs as). pgBackRest gets it only through the environment variable
PGBACKREST_REPO1_CIPHER_PASS: from this module's own environment for the commands run here,
and from `$(cat key_file)` inside the shell of `archive_command` / `restore_command`. It is
never in argv, in pgbackrest.conf, in postgresql.conf or in a message raised here.

Every pgbackrest command runs as the cluster's owner (`as_pg_user`), as pgBackRest requires.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from shop_ops.backup.crypto import generate_key_file
from shop_ops.backup.logical import BackupError, exit_cause
from shop_ops.services.processes import (
    PostgresCluster,
    ServiceError,
    as_pg_user,
    conf_string,
    free_port,
    hand_to_pg_user,
    pg_os_user,
    pg_shell_word,
    pg_user_can_enter,
)

CIPHER_PASS_ENV = "PGBACKREST_REPO1_CIPHER_PASS"
DEFAULT_ARCHIVE_TIMEOUT = 20
WAL_SEGMENT_BYTES = 16 * 1024 * 1024  # PostgreSQL's default (initdb --wal-segsize)
STATUS_TAIL = 800

BackupKind = Literal["full", "diff", "incr"]
TargetAction = Literal["promote", "pause"]

_STANZA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A WAL segment in the repository: `<timeline 8><log 8><segment 8>-<sha1>[.<compression>]`.
_REPO_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})-[0-9a-f]{40}(\.[a-z0-9]+)?$")
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ P\d+ ")
_RESTORED = re.compile(r'restored log file "([0-9A-F]{24})" from archive')
_RECOVERY_STATE = "SELECT CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'promoted' END"
# What pgBackRest reports when the pass does not decrypt its info files: the decrypted bytes
# are garbage (FormatError) or the cipher's padding check fails (CryptoError).
_CIPHER_FAILURE = re.compile(r"CryptoError|cipher header invalid|unable to load info file[^\n]*\n\s*FormatError")


@dataclass(frozen=True)
class PhysicalBackup:
    """One backup set in the repository, as `pgbackrest info` reports it.

    `seconds` is the measured wall time of `PgBackRest.backup()` for a backup just taken, and
    stop - start (whole seconds, as pgBackRest records them) for one listed by `info()`.
    `repo_bytes` is what this set added to the repository (compressed and encrypted), which is
    the whole set for a full backup and only the changed files for diff/incr.
    """

    label: str
    kind: str
    started_at: datetime
    stopped_at: datetime
    wal_start: str
    wal_stop: str
    database_bytes: int
    repo_bytes: int
    seconds: float
    prior: str | None = None


@dataclass(frozen=True)
class RepositoryInfo:
    """The stanza's backups (oldest first) and the range of WAL segments its archive holds."""

    backups: tuple[PhysicalBackup, ...]
    archive_id: str | None
    archive_min: str | None
    archive_max: str | None
    seconds: float

    @property
    def newest(self) -> PhysicalBackup | None:
        return self.backups[-1] if self.backups else None

    def newest_before(self, when: datetime) -> PhysicalBackup | None:
        """The backup a restore to `when` starts from: pgBackRest 2.45's own choice.

        pgBackRest records a backup's stop time in whole seconds, at the start of the backup's
        stop, and reads a time target to whole seconds too (the fraction dropped); it takes the
        newest backup whose stop second is strictly before the target's second. So a target in
        the same second as a backup's stop restores from the backup before that one.
        """
        target_second = int(when.timestamp() // 1)
        done = [b for b in self.backups if int(b.stopped_at.timestamp()) < target_second]
        return done[-1] if done else None


@dataclass(frozen=True)
class VerifyResult:
    """`pgbackrest verify` found every backup file and archived segment valid, and no WAL gap."""

    backups_checked: int
    wal_checked: int
    seconds: float


@dataclass(frozen=True)
class ExpireResult:
    """What `expire` removed (or, in a dry run, would remove) and which backups it keeps."""

    dry_run: bool
    retention_full: int
    expired: tuple[str, ...]
    archive_removed: tuple[tuple[str, str], ...]  # (first, last) segment of each removed range
    kept: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class ArchiveContinuity:
    """Whether every WAL segment from the oldest backup's start to the newest archived one is there.

    Segments are compared by position (log, segment), whatever their timeline, so a timeline
    switch inside the range is not reported as a gap.
    """

    continuous: bool
    from_segment: str | None
    to_segment: str | None
    first_missing: str | None
    missing: int
    newest_archived_at: datetime | None
    problem: str | None
    seconds: float

    def last_archived_seconds_ago(self, now: datetime | None = None) -> float | None:
        """Seconds since the newest segment reached the repository ("last archived X s ago")."""
        if self.newest_archived_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.newest_archived_at).total_seconds()


@dataclass(frozen=True)
class PhysicalRestore:
    """A scratch cluster restored from the repository, started and accepting connections.

    `paused`: recovery waits at `target_time` (target_action "pause"; read-only, see
    `continue_to_end_of_archive`); otherwise it was promoted and accepts writes on a new
    timeline. `recovered_to` is the commit time of the last transaction replayed.
    `seconds` runs from the call until recovery reached that state.
    """

    cluster: PostgresCluster
    backup_label: str
    target_time: datetime | None
    target_action: TargetAction
    paused: bool
    recovered_to: datetime | None
    seconds: float


def pgbackrest_bin() -> str:
    """Path of the pgbackrest program; BackupError saying how to install it when missing."""
    found = shutil.which("pgbackrest") or ("/usr/bin/pgbackrest" if Path("/usr/bin/pgbackrest").exists() else None)
    if found is None:
        raise BackupError("pgbackrest not found: install it (apt-get install pgbackrest)")
    return found


def new_key_file(path: Path) -> str:
    """A new backup key (`crypto.generate_key_file`) that PostgreSQL's OS user can read: its archive_command
    decrypts with it. The key id (never the key)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key_id = generate_key_file(path)
    hand_to_pg_user(path)
    return key_id


def segment_position(name: str, wal_segment_bytes: int = WAL_SEGMENT_BYTES) -> int:
    """The position of WAL segment `name` (timeline ignored): log * segments-per-log + segment."""
    if not _SEGMENT.match(name):
        raise ValueError(f"{name!r} is not a WAL segment name")
    per_log = 0x100000000 // wal_segment_bytes
    return int(name[8:16], 16) * per_log + int(name[16:24], 16)


def segment_name(timeline: int, position: int, wal_segment_bytes: int = WAL_SEGMENT_BYTES) -> str:
    """The WAL segment at `position` on `timeline` (the inverse of `segment_position`)."""
    per_log = 0x100000000 // wal_segment_bytes
    return f"{timeline:08X}{position // per_log:08X}{position % per_log:08X}"


def _printable(text: str) -> str:
    """Text without control characters (decrypted garbage, terminal escapes)."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text)


def _epoch(value: int | float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _pg_time(value: datetime) -> str:
    """A timestamp PostgreSQL and pgBackRest both parse exactly: UTC, microseconds when there are any."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f+00" if value.microsecond else "%Y-%m-%d %H:%M:%S+00")


def _parse_pg_time(value: str) -> datetime | None:
    """A timestamptz as psql prints it ("2026-11-30 09:28:15.39256+00"); None for NULL."""
    value = value.strip()
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class PgBackRest:
    """One pgBackRest stanza: the cluster it backs up and its encrypted posix repository under `base`.

    `base` holds `pgbackrest.conf`, `repo/`, `log/`, `lock/` and `spool/`; it (and every folder
    above it) must let PostgreSQL's OS user through, since pgBackRest runs as that user.
    `key_file` holds the repository's cipher pass: the backup key (crypto.generate_key_file), owned by PostgreSQL's OS user.
    """

    stanza: str
    base: Path
    pg_datadir: Path
    pg_port: int
    pg_socket_dir: Path
    key_file: Path
    process_max: int = 2
    compress_type: str = "zst"
    retention_full: int = 2
    pg_user: str = "postgres"

    @classmethod
    def for_cluster(
        cls, cluster: PostgresCluster, stanza: str, base: Path, key_file: Path, **options: Any
    ) -> PgBackRest:
        """The stanza for `cluster` (its data folder, port, socket folder and superuser)."""
        return cls(
            stanza=stanza, base=Path(base).absolute(), pg_datadir=cluster.datadir.absolute(), pg_port=cluster.port,
            pg_socket_dir=cluster.socket_dir.absolute(), key_file=Path(key_file).absolute(), pg_user=cluster.user,
            **options,
        )  # fmt: skip

    @property
    def config(self) -> Path:
        return self.base / "pgbackrest.conf"

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    @property
    def lock_dir(self) -> Path:
        return self.base / "lock"

    @property
    def spool_dir(self) -> Path:
        return self.base / "spool"

    # -- configuration -----------------------------------------------------------------------

    def write_config(self) -> Path:
        """Write `pgbackrest.conf` (no cipher pass in it); give repo/log/lock/spool to PostgreSQL's OS user.

        Checks first that that user can enter `base` and read `key_file`, and that the key file
        is closed to everybody else: the same checks archive_command would otherwise fail on
        later, in PostgreSQL's log only.
        """
        if not _STANZA.match(self.stanza):
            raise BackupError(f"stanza name {self.stanza!r}: use letters, digits, '_', '-' or '.'")
        for path in (self.base, self.pg_datadir, self.pg_socket_dir, self.key_file):
            if "\n" in str(path) or str(path) != str(path).strip():
                raise BackupError(
                    f"path {str(path)!r} has a newline or surrounding blanks: pgbackrest.conf cannot hold it"
                )
        if self.retention_full < 1:
            raise BackupError(f"retention_full={self.retention_full}: keep at least one full backup")
        self.base.mkdir(parents=True, exist_ok=True)
        if not pg_user_can_enter(self.base):
            raise BackupError(
                f"pgBackRest runs as the OS user {pg_os_user()}, which cannot enter {self.base} (a folder above it "
                "is closed to other users, e.g. mode 700): put the backup folder where that user can reach it"
            )
        self._check_key_file()
        for folder in (self.repo, self.log_dir, self.lock_dir, self.spool_dir):
            if not folder.exists():
                folder.mkdir(mode=0o750)
                hand_to_pg_user(folder)
            elif pg_os_user() and folder.owner() != pg_os_user():
                hand_to_pg_user(folder)
        text = (
            "# Written by shop_ops.backup.physical. The cipher pass is not here: pgBackRest reads it from\n"
            f"# {CIPHER_PASS_ENV}, which is set from the key file.\n"
            "[global]\n"
            "repo1-type=posix\n"
            f"repo1-path={self.repo}\n"
            "repo1-cipher-type=aes-256-cbc\n"
            f"repo1-retention-full={self.retention_full}\n"
            f"process-max={self.process_max}\n"
            f"compress-type={self.compress_type}\n"
            "start-fast=y\n"
            "archive-async=n\n"
            f"log-path={self.log_dir}\n"
            f"lock-path={self.lock_dir}\n"
            f"spool-path={self.spool_dir}\n"
            "log-level-console=warn\n"
            "log-level-file=info\n"
            "\n"
            f"[{self.stanza}]\n"
            f"pg1-path={self.pg_datadir}\n"
            f"pg1-port={self.pg_port}\n"
            f"pg1-socket-path={self.pg_socket_dir}\n"
            f"pg1-user={self.pg_user}\n"
        )
        partial = self.config.with_name(self.config.name + ".partial")
        partial.write_text(text)
        partial.chmod(0o644)
        os.replace(partial, self.config)
        return self.config

    def _check_key_file(self) -> None:
        key = self.key_file
        if not key.is_file():
            raise BackupError(
                f"backup key file {key} does not exist: create it (python -m shop_ops.backup.crypto new-key PATH) or restore it from the vault"
            )
        mode = key.stat().st_mode & 0o777
        if mode & 0o077:
            raise BackupError(f"backup key file {key} is open to other users (mode {mode:o}): chmod 600 it")
        user = pg_os_user()
        if user and subprocess.run(as_pg_user(["test", "-r", str(key)]), capture_output=True).returncode != 0:
            raise BackupError(
                f"backup key file {key} is not readable by the OS user {user}, which runs archive_command: "
                f"chown {user} it (and let {user} enter its folder)"
            )
        if not self._cipher_pass():
            raise BackupError(f"backup key file {key} is empty")

    def _cipher_pass(self) -> str:
        try:
            # As the shell's $(cat key_file) does in archive_command: trailing newlines dropped.
            return self.key_file.read_text().rstrip("\n")
        except OSError as exc:
            raise BackupError(f"backup key file {self.key_file}: {exc.strerror}") from None

    def _shell_command(self, *args: str) -> str:
        """A shell command (archive_command/restore_command) running pgbackrest with the pass from the key file."""
        words = [pgbackrest_bin(), f"--config={self.config}", f"--stanza={self.stanza}"]
        quoted = " ".join(pg_shell_word(word) for word in words)
        return f'{CIPHER_PASS_ENV}="$(cat {pg_shell_word(str(self.key_file))})" exec {quoted} {" ".join(args)}'

    def _settings(self, archive_timeout: int) -> dict[str, str]:
        if not 1 <= archive_timeout <= 3600:
            raise BackupError(f"archive_timeout={archive_timeout}: use 15-30 s (at most 3600)")
        return {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": self._shell_command("archive-push", "%p"),
            # A quiet database still archives its last writes within this many seconds (the RPO).
            "archive_timeout": str(archive_timeout),
            # The recovery drill proves its recovery point with pg_xact_commit_timestamp(xmin).
            "track_commit_timestamp": "on",
        }

    def postgres_settings(self, archive_timeout: int = DEFAULT_ARCHIVE_TIMEOUT) -> dict[str, str]:
        """Settings for `PostgresCluster.extra_conf` (postgresql.conf literals): archive every WAL segment here.

        archive_command reads the pass from the key file in its own shell; `archive_timeout`
        (15-30 s in production) bounds how old the newest archived commit can be on a quiet day.
        """
        return {name: conf_string(value) for name, value in self._settings(archive_timeout).items()}

    def start_new_cluster(self, cluster: PostgresCluster, archive_timeout: int = DEFAULT_ARCHIVE_TIMEOUT) -> None:
        """initdb `cluster` with this stanza's archive settings, start it and create the stanza."""
        self.write_config()
        cluster.extra_conf = {**cluster.extra_conf, **self.postgres_settings(archive_timeout)}
        cluster.init()
        cluster.start()
        self.stanza_create()

    def apply_settings(
        self, cluster: PostgresCluster, archive_timeout: int = DEFAULT_ARCHIVE_TIMEOUT, timeout: float = 30
    ) -> bool:
        """Switch a running, already initialised cluster to these settings; True if it had to restart.

        ALTER SYSTEM (postgresql.auto.conf overrides an older `cp` archive_command in
        postgresql.conf), then a reload; wal_level, archive_mode and track_commit_timestamp only
        change with a restart, done here when one of them differs (`PostgresCluster.apply_settings`).
        """
        settings = self._settings(archive_timeout)
        restart = cluster.apply_settings(settings, timeout=timeout)
        # A new session sees the archive_command (apply_settings waited for the reload).
        deadline = time.monotonic() + timeout
        while cluster.psql("SELECT current_setting('archive_command')") != settings["archive_command"]:
            if time.monotonic() > deadline:
                raise BackupError(
                    f"PostgreSQL on port {cluster.port} did not take the new archive_command within {timeout:.0f}s"
                )
            time.sleep(0.1)
        return restart

    # -- running pgbackrest ------------------------------------------------------------------

    def _wrong_key(self) -> BackupError:
        return BackupError(
            f"the backup key does not decrypt this repository (wrong key?): the pass in {self.key_file} is not the "
            f"one repository {self.repo} (stanza {self.stanza}) was encrypted with; use that repository's key file"
        )

    def _pgbackrest(self, command: str, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run `pgbackrest <command>` as PostgreSQL's OS user, the pass only in its environment.

        BackupError on failure, naming the cause; a wrong key gets its own message. The pass is
        scrubbed from everything returned or raised.
        """
        secret = self._cipher_pass()
        cmd = as_pg_user([pgbackrest_bin(), f"--config={self.config}", f"--stanza={self.stanza}", command, *args])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGBACKREST_")}
        env[CIPHER_PASS_ENV] = secret
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", env=env, cwd="/",
                timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BackupError(
                f"pgbackrest {command} (stanza {self.stanza}) did not finish within {timeout:.0f}s"
            ) from None
        if result.returncode != 0:
            output = _printable(_scrub(result.stderr or result.stdout, secret))
            if _CIPHER_FAILURE.search(output):
                raise self._wrong_key()
            if "requires option: repo1-cipher-pass" in output:
                raise BackupError(f"pgbackrest {command}: the backup key file {self.key_file} is empty")
            cause = exit_cause("pgbackrest", result.returncode, output)
            hint = ""
            if "[DbConnectError]" in output:
                hint = (
                    f" (pgBackRest cannot reach PostgreSQL on port {self.pg_port} through {self.pg_socket_dir}: "
                    "is the cluster running, and are pg_port/pg_socket_dir its own?)"
                )
            raise BackupError(
                f"pgbackrest {command} (stanza {self.stanza}, repository {self.repo}) failed{hint}: {cause}"
            )
        result.stdout = _scrub(result.stdout, secret)
        result.stderr = _scrub(result.stderr, secret)
        return result

    def stanza_create(self) -> float:
        """Create the stanza in the repository (the cluster must be running); seconds taken. Idempotent."""
        started = time.monotonic()
        self._pgbackrest("stanza-create")
        return time.monotonic() - started

    def check(self) -> float:
        """`pgbackrest check`: switches to a new WAL segment and waits until it is archived; seconds taken."""
        started = time.monotonic()
        self._pgbackrest("check")
        return time.monotonic() - started

    def backup(self, kind: BackupKind = "full") -> PhysicalBackup:
        """Take a backup (diff/incr build on the newest full/any backup); expires what exceeds `retention_full`."""
        if kind not in ("full", "diff", "incr"):
            raise BackupError(f"backup kind {kind!r}: use full, diff or incr")
        started = time.monotonic()
        result = self._pgbackrest("backup", f"--type={kind}", "--log-level-console=info")
        seconds = time.monotonic() - started
        found = re.search(r"new backup label = (\S+)", result.stdout)
        if found is None:
            raise BackupError(f"pgbackrest backup (stanza {self.stanza}) did not report its label")
        label = found.group(1)
        for backup in self.info().backups:
            if backup.label == label:
                return replace(backup, seconds=seconds)
        raise BackupError(f"backup {label} is not in the repository after pgbackrest backup (expired at once?)")

    def info(self) -> RepositoryInfo:
        """The stanza's backups (oldest first) and archive range; BackupError on a wrong key or a missing stanza."""
        started = time.monotonic()
        result = self._pgbackrest("info", "--output=json")
        try:
            # strict=False: a wrong key puts decrypted garbage (control characters) in the messages.
            stanzas = json.loads(result.stdout, strict=False)
        except json.JSONDecodeError:
            if _CIPHER_FAILURE.search(result.stdout):
                raise self._wrong_key() from None
            raise BackupError(
                f"pgbackrest info (stanza {self.stanza}) printed no JSON: {_printable(result.stdout[-200:])}"
            ) from None
        data = next((s for s in stanzas if s.get("name") == self.stanza), None)
        if data is None:
            raise BackupError(f"stanza {self.stanza} is not in repository {self.repo}: run stanza_create()")
        problems = [r.get("status", {}) for r in data.get("repo", [])] + [data.get("status", {})]
        for status in problems:
            code, message = status.get("code", 0), _printable(status.get("message", ""))
            if code in (0, 2):  # ok; no valid backups yet
                continue
            if _CIPHER_FAILURE.search(message):
                raise self._wrong_key()
            if code in (1, 3):
                raise BackupError(f"stanza {self.stanza} is missing from repository {self.repo}: run stanza_create()")
            raise BackupError(f"repository {self.repo} (stanza {self.stanza}): {message[:STATUS_TAIL]}")
        backups = tuple(_backup_from_json(entry) for entry in data.get("backup", []))
        archives = data.get("archive", [])
        current = archives[-1] if archives else {}
        return RepositoryInfo(
            backups=backups, archive_id=current.get("id"), archive_min=current.get("min"),
            archive_max=current.get("max"), seconds=time.monotonic() - started,
        )  # fmt: skip

    def verify(self) -> VerifyResult:
        """`pgbackrest verify` (checksums of every backup file and archived segment) plus the archive's continuity.

        pgBackRest 2.45 exits 0 even when it finds damage, so its report is read: BackupError names
        each invalid backup and file, or the first missing WAL segment.
        """
        started = time.monotonic()
        self.info()  # a wrong key shows here with a clear message ("No usable backup.info file" below)
        result = self._pgbackrest("verify", "--output=text", "--verbose", "--log-level-console=info")
        lines = result.stdout.splitlines()
        # Per-file findings are logged ("INFO: invalid checksum '<backup>/pg_data/...'"); the
        # report (the lines from "stanza:" on) counts them per archive id and backup.
        problems = [
            re.sub(r"^.*?(INFO|WARN|ERROR): ", "", line).strip()
            for line in lines
            if re.search(r"(INFO|WARN|ERROR): (invalid|missing|checksum|size|unable|file)", line)
        ]
        report_start = next((i for i, line in enumerate(lines) if line.startswith("stanza:")), len(lines))
        report = []
        for line in lines[report_start:]:
            if _LOG_LINE.match(line):  # the log goes on after the report
                break
            report.append(line.strip())
        status = next((line.split(":", 1)[1].strip() for line in report if line.startswith("status:")), "")
        wal_checked = backups_checked = 0
        for line in report[2:]:
            wal = re.match(r"archiveId: \S+, total WAL checked: (\d+), total valid WAL: (\d+)", line)
            wal_checked += int(wal.group(1)) if wal else 0
            backups_checked += line.startswith("backup:")
            if (
                not line
                or "status: valid" in line
                or (wal and wal.group(1) == wal.group(2))
                or re.fullmatch(r"[a-z ]+: 0(, [a-z ]+: 0)*", line)
            ):
                continue
            problems.append(line)
        continuity = self.archive_continuity()
        if not continuity.continuous and continuity.problem:
            problems.append(continuity.problem)
        if status != "ok" or problems:
            detail = "; ".join(dict.fromkeys(problems)) or "\n".join(report)[-STATUS_TAIL:]
            raise BackupError(
                f"pgbackrest verify found damage in repository {self.repo} (stanza {self.stanza}): {detail}"
            )
        return VerifyResult(
            backups_checked=backups_checked, wal_checked=wal_checked, seconds=time.monotonic() - started
        )

    def expire(self, retention_full: int, dry_run: bool) -> ExpireResult:
        """Expire full backups beyond the newest `retention_full` (with their diff/incr and the WAL only they need).

        With `dry_run` pgBackRest only reports what it would remove (`expire --dry-run`).
        """
        if retention_full < 1:
            raise BackupError(f"retention_full={retention_full}: keep at least one full backup")
        started = time.monotonic()
        before = self.info()
        args = [f"--repo1-retention-full={retention_full}", "--log-level-console=info"]
        result = self._pgbackrest("expire", *args, *(["--dry-run"] if dry_run else []))
        reported = tuple(dict.fromkeys(re.findall(r"remove expired backup (\S+)", result.stdout)))
        ranges = tuple(re.findall(r"remove archive, start = ([0-9A-F]{24}), stop = ([0-9A-F]{24})", result.stdout))
        if dry_run:
            expired = reported
            kept = tuple(b.label for b in before.backups if b.label not in expired)
        else:
            kept = tuple(b.label for b in self.info().backups)
            expired = tuple(b.label for b in before.backups if b.label not in kept)
        return ExpireResult(
            dry_run=dry_run, retention_full=retention_full, expired=expired, archive_removed=ranges, kept=kept,
            seconds=time.monotonic() - started,
        )  # fmt: skip

    # -- the WAL archive ---------------------------------------------------------------------

    def _archived_segments(self, archive_id: str) -> dict[int, tuple[str, datetime]]:
        """Every WAL segment in the repository's archive: position -> (name, when it was stored)."""
        result = self._pgbackrest(
            "repo-ls", "--recurse", "--output=json", f"archive/{self.stanza}/{archive_id}"
        )  # fmt: skip
        listing = json.loads(result.stdout or "{}")
        found: dict[int, tuple[str, datetime]] = {}
        for path, entry in listing.items():
            match = _REPO_SEGMENT.match(path.rsplit("/", 1)[-1])
            if entry.get("type") != "file" or match is None:
                continue
            name = "".join(match.group(1, 2, 3))
            position = segment_position(name)
            when = _epoch(entry.get("time", 0))
            # Two timelines at one position (after a promotion): keep the newer timeline.
            if position not in found or found[position][0] < name:
                found[position] = (name, when)
        return found

    def archive_continuity(self) -> ArchiveContinuity:
        """Whether the archive holds every segment from the oldest kept backup's start to the newest archived one."""
        started = time.monotonic()
        repo = self.info()
        if not repo.backups or repo.archive_id is None:
            return ArchiveContinuity(
                continuous=False, from_segment=None, to_segment=None, first_missing=None, missing=0,
                newest_archived_at=None, problem=f"no backup in repository {self.repo} yet: take a full backup",
                seconds=time.monotonic() - started,
            )  # fmt: skip
        segments = self._archived_segments(repo.archive_id)
        first = repo.backups[0].wal_start
        start = segment_position(first)
        end = max(segments) if segments else start
        newest_name, newest_at = segments[end] if segments else (None, None)
        gaps = [p for p in range(start, end + 1) if p not in segments]
        timeline = int(first[:8], 16)
        first_missing = segment_name(timeline, gaps[0]) if gaps else None
        problem = None
        if gaps:
            problem = (
                f"WAL segment {first_missing} is missing from the archive ({len(gaps)} missing between the oldest "
                f"backup's start {first} and the newest archived {newest_name}): recovery past it is impossible; "
                "take a new full backup"
            )
        return ArchiveContinuity(
            continuous=not gaps, from_segment=first, to_segment=newest_name, first_missing=first_missing,
            missing=len(gaps), newest_archived_at=newest_at, problem=problem, seconds=time.monotonic() - started,
        )  # fmt: skip

    # -- restore -----------------------------------------------------------------------------

    def restore(
        self,
        target_datadir: Path,
        port: int | None = None,
        *,
        target_time: datetime | None = None,
        target_action: TargetAction = "promote",
        timeout: float = 120,
    ) -> PhysicalRestore:
        """Restore into the new folder `target_datadir` and start it on `port` (a free one if None).

        With `target_time` (timezone-aware) recovery stops at the last commit at or before it;
        pgBackRest picks the newest backup that had finished by then. Without it, recovery
        replays the whole archive. Then PostgreSQL promotes (accepts writes, new timeline) or,
        with target_action "pause", waits read-only at the target. The scratch cluster listens on
        its own port and socket folder and never archives (archive_mode off), so it cannot write
        into this repository. BackupError names the cause of a failure (a missing WAL segment, a
        wrong key, no backup before the target); the server is stopped then, its folder (with
        server.log) is left to the caller.
        """
        started = time.monotonic()
        if target_action not in ("promote", "pause"):
            raise BackupError(f"target_action {target_action!r}: use promote or pause")
        if target_time is not None and target_time.tzinfo is None:
            raise BackupError(f"target_time {target_time} has no time zone: give an aware datetime")
        if target_time is None and target_action == "pause":
            raise BackupError(
                "target_action pause needs a target_time (without one, recovery replays the archive and promotes)"
            )
        repo = self.info()
        if repo.newest is None or repo.archive_id is None:
            raise BackupError(f"no backup in repository {self.repo} (stanza {self.stanza}): take a full backup first")
        archive = self._archived_segments(repo.archive_id)
        expected = repo.newest_before(target_time) if target_time is not None else repo.newest
        if expected is None:
            assert target_time is not None
            newest_at = max((when for _, when in archive.values()), default=None)
            covers = f"{_pg_time(repo.backups[0].stopped_at)}..{_pg_time(newest_at) if newest_at else '?'}"
            raise BackupError(f"no backup before {_pg_time(target_time)}: the archive covers {covers}")
        target = Path(target_datadir).absolute()
        self._new_datadir(target)
        args = [f"--pg1-path={target}", "--archive-mode=off", "--log-level-console=info"]
        if target_time is not None:
            args += ["--type=time", f"--target={_pg_time(target_time)}", f"--target-action={target_action}"]
        result = self._pgbackrest("restore", *args)
        chosen = re.search(r"restore backup set (\S+?),", result.stdout)
        label = chosen.group(1) if chosen else expected.label
        backup = next((b for b in repo.backups if b.label == label), expected)
        self._prepare_restored(target)
        cluster = PostgresCluster(
            datadir=target, port=port or free_port(), user=self.pg_user, tcp_auth=_tcp_auth(target)
        )
        want = "paused" if target_action == "pause" else "promoted"
        try:
            self._recover(cluster, want, backup, target_time, archive, started + timeout, log_from=0)
        except BaseException:
            cluster.stop()
            raise
        return PhysicalRestore(
            cluster=cluster, backup_label=label, target_time=target_time, target_action=target_action,
            paused=want == "paused", recovered_to=_replay_timestamp(cluster), seconds=time.monotonic() - started,
        )  # fmt: skip

    def continue_to_end_of_archive(self, restored: PhysicalRestore, timeout: float = 120) -> PhysicalRestore:
        """Let a cluster paused at its target replay the rest of the archive and promote.

        PostgreSQL 15 reads recovery targets only at start (they are postmaster settings) and
        `pg_wal_replay_resume()` at a reached target promotes instead of replaying on: so the
        cluster is stopped, its recovery_target_* settings removed (recovery.signal stays) and
        started again; recovery resumes from its last restartpoint, replays until the archive
        ends and promotes. Measures the RPO (newest recoverable commit) without a second restore.
        """
        started = time.monotonic()
        cluster = restored.cluster
        state = cluster.psql(_RECOVERY_STATE)
        if state != "paused":
            raise BackupError(
                f"the cluster on port {cluster.port} is {state}, not paused at a recovery target: a promoted "
                "cluster is on a new timeline and cannot replay more of the archive; restore again without a target"
            )
        repo = self.info()
        archive = self._archived_segments(repo.archive_id or "")
        cluster.stop()
        if cluster.running():
            raise BackupError(f"the restored cluster on port {cluster.port} did not stop")
        auto = cluster.datadir / "postgresql.auto.conf"
        kept = [line for line in auto.read_text().splitlines() if not re.match(r"\s*recovery_target", line)]
        _write_pg_file(auto, "\n".join(kept) + "\n")
        if not (cluster.datadir / "recovery.signal").exists():
            raise BackupError(f"{cluster.datadir} has no recovery.signal: it is not in recovery")
        log = cluster.datadir / "server.log"
        log_from = log.stat().st_size if log.exists() else 0
        backup = next((b for b in repo.backups if b.label == restored.backup_label), None)
        self._recover(cluster, "promoted", backup, None, archive, started + timeout, log_from=log_from)
        return replace(
            restored, target_time=None, target_action="promote", paused=False, recovered_to=_replay_timestamp(cluster),
            seconds=time.monotonic() - started,
        )  # fmt: skip

    def _new_datadir(self, target: Path) -> None:
        if target.exists() and any(target.iterdir()):
            raise BackupError(f"restore target {target} is not empty: give a new folder")
        target.mkdir(parents=True, exist_ok=True)
        if not pg_user_can_enter(target.parent):
            raise BackupError(
                f"PostgreSQL runs as the OS user {pg_os_user()}, which cannot enter {target.parent} (a folder above "
                "it is closed to other users, e.g. pytest's tmp_path or a home folder of mode 700): restore "
                "somewhere it can reach"
            )
        target.chmod(0o700)
        hand_to_pg_user(target)

    def _prepare_restored(self, target: Path) -> None:
        """Make the restored folder a cluster of its own: own socket, no archiving, WAL read with the key file."""
        # The source's server.log and socket folder came along in the backup.
        (target / "server.log").unlink(missing_ok=True)
        socket_dir = target / "socket"
        if socket_dir.is_dir():
            for entry in socket_dir.iterdir():
                entry.unlink()
        auto = target / "postgresql.auto.conf"
        lines = [line for line in auto.read_text().splitlines() if not re.match(r"\s*restore_command\s*=", line)]
        restore_command = self._shell_command(pg_shell_word(f"--pg1-path={target}"), "archive-get", "%f", '"%p"')
        overrides = {
            # pgBackRest's own restore_command would lack the cipher pass (it is never on a command line).
            "restore_command": restore_command,
            # Never archive into the source's repository, even if someone turns archive_mode on again.
            "archive_mode": "off",
            "archive_command": "",
            "unix_socket_directories": f'"{socket_dir}"',
            "hot_standby": "on",
        }
        lines += ["# shop-ops scratch restore: own socket, no archiving"]
        lines += [f"{name} = {conf_string(value)}" for name, value in overrides.items()]
        _write_pg_file(auto, "\n".join(lines) + "\n")

    def _recover(
        self,
        cluster: PostgresCluster,
        want: str,
        backup: PhysicalBackup | None,
        target_time: datetime | None,
        archive: dict[int, tuple[str, datetime]],
        deadline: float,
        log_from: int,
    ) -> None:
        """Start `cluster` and wait until recovery is `want` ("paused"/"promoted"); BackupError naming the cause."""
        try:
            cluster.start(timeout=max(5.0, deadline - time.monotonic()))
        except ServiceError as exc:
            if "already in use" in str(exc) or "longer than" in str(exc):
                raise BackupError(f"the restored cluster cannot start: {exc}") from None
            raise BackupError(self._recovery_failure(cluster, backup, target_time, archive, log_from)) from None
        while True:
            if not cluster.running():
                raise BackupError(self._recovery_failure(cluster, backup, target_time, archive, log_from))
            try:
                state = cluster.psql(_RECOVERY_STATE)
            except ServiceError:
                state = "starting"
            if state == want:
                break
            if time.monotonic() > deadline:
                tail = _log_text(cluster, log_from)[-STATUS_TAIL:]
                raise BackupError(f"recovery on port {cluster.port} did not get {want} in time (state {state}): {tail}")
            time.sleep(0.1)
        if want == "promoted" and target_time is None:
            # Without a target PostgreSQL promotes at the first segment it cannot fetch: a gap in
            # the archive would silently lose everything after it.
            replayed = _restored_segments(_log_text(cluster, 0))
            if replayed and archive:
                last = max(segment_position(name) for name in replayed)
                newer = [p for p in archive if p > last + 1]
                if newer:
                    missing = segment_name(int(replayed[-1][:8], 16), last + 1)
                    raise BackupError(
                        f"WAL segment {missing} is missing from the archive: recovery stopped at {replayed[-1]} and "
                        f"promoted, but the archive continues to {archive[max(archive)][0]}"
                    )

    def _recovery_failure(
        self,
        cluster: PostgresCluster,
        backup: PhysicalBackup | None,
        target_time: datetime | None,
        archive: dict[int, tuple[str, datetime]],
        log_from: int,
    ) -> str:
        """Why recovery stopped, from the scratch cluster's server.log and the archive listing."""
        log = _log_text(cluster, log_from)
        logfile = cluster.datadir / "server.log"
        replayed = _restored_segments(_log_text(cluster, 0))
        if replayed:
            last = max(replayed, key=segment_position)
            next_name = segment_name(int(last[:8], 16), segment_position(last) + 1)
        else:
            last, next_name = None, backup.wal_start if backup else None
        label = backup.label if backup else "?"
        target = _pg_time(target_time) if target_time else "the end of the archive"
        newest = archive[max(archive)][0] if archive else None
        missing = next_name is not None and segment_position(next_name) not in archive
        gap = (
            missing
            and newest is not None
            and next_name is not None
            and segment_position(newest) > segment_position(next_name)
        )
        if _CIPHER_FAILURE.search(log):
            return str(self._wrong_key())
        if "recovery ended before configured recovery target was reached" in log:
            if gap:
                return (
                    f"WAL segment {next_name} is missing from the archive: recovery from backup {label} replayed up to "
                    f"{last} and ended before the target {target} (PostgreSQL: recovery ended before configured "
                    f"recovery target was reached); the archive goes on to {newest}, so the segment was lost — "
                    f"recover to a time before it, and take a new full backup; see {logfile}"
                )
            return (
                f"the archive ends at {newest} before the target {target}: no commit after the target has been archived "
                "yet (archiving is behind, or the target is in the future; `pgbackrest check` forces a segment out) — "
                f"choose an earlier target or wait; see {logfile}"
            )
        if re.search(
            r"WAL ends before (consistent recovery point|end of online backup)|could not locate required checkpoint",
            log,
        ):
            return (
                f"WAL segment {next_name} that backup {label} needs to become consistent is missing from the archive "
                f"(recovery replayed up to {last or 'nothing'}); restore an older backup; see {logfile}"
            )
        if "requested recovery stop point is before consistent recovery point" in log:
            return (
                f"the target {target} falls inside backup {label}, before it became consistent: choose a later "
                f"target; see {logfile}"
            )
        fatal = [line for line in log.splitlines() if re.search(r"\b(FATAL|PANIC|ERROR):", line)]
        detail = "; ".join(fatal[-3:]) or log[-STATUS_TAIL:]
        return f"recovery of the restored cluster on port {cluster.port} failed: {detail}; see {logfile}"


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _backup_from_json(entry: dict[str, Any]) -> PhysicalBackup:
    stamps, archive, info = entry["timestamp"], entry.get("archive") or {}, entry.get("info") or {}
    return PhysicalBackup(
        label=entry["label"], kind=entry["type"], started_at=_epoch(stamps["start"]), stopped_at=_epoch(stamps["stop"]),
        wal_start=archive.get("start") or "", wal_stop=archive.get("stop") or "",
        database_bytes=int(info.get("size", 0)), repo_bytes=int((info.get("repository") or {}).get("delta", 0)),
        seconds=float(stamps["stop"] - stamps["start"]), prior=entry.get("prior"),
    )  # fmt: skip


def _write_pg_file(path: Path, text: str) -> None:
    """Replace a file in a data folder, keeping it private to PostgreSQL's OS user."""
    partial = path.with_name(path.name + ".shop-ops")
    partial.write_text(text)
    partial.chmod(0o600)
    hand_to_pg_user(partial)
    os.replace(partial, path)


def _tcp_auth(datadir: Path) -> str:
    """The TCP auth method of a restored pg_hba.conf ("trust" or e.g. "scram-sha-256"), for `PostgresCluster.psql`."""
    try:
        lines = (datadir / "pg_hba.conf").read_text().splitlines()
    except OSError:
        return "trust"
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) >= 5 and words[0] == "host":
            # host DATABASE USER ADDRESS[/bits] [MASK] METHOD
            method = words[4] if "/" in words[3] or len(words) == 5 else words[5]
            return method
    return "trust"


def _log_text(cluster: PostgresCluster, offset: int) -> str:
    try:
        with open(cluster.datadir / "server.log", "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _restored_segments(log: str) -> list[str]:
    """The WAL segments recovery fetched from the archive, in order (timeline history files left out)."""
    return _RESTORED.findall(log)


def _replay_timestamp(cluster: PostgresCluster) -> datetime | None:
    """Commit time of the last transaction recovery replayed (kept after promotion)."""
    return _parse_pg_time(cluster.psql("SELECT pg_last_xact_replay_timestamp()"))
