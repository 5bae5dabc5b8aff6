"""rsyslog (Debian's rsyslogd) as a child process: the log collector, its configuration file, work directory and pid file in one folder.

`RsyslogServer` only runs the program: shop_ops/observability/logs.py renders the configuration
(inputs, parsing, the PostgreSQL output) into `config`, naming `work_dir` as rsyslog's work
directory and `internal_log` as the file of rsyslog's own messages. It listens on nothing and opens
no system socket (no imuxsock, no imklog): it reads files and writes to the log store. Ready means
rsyslog wrote its "start" message (all inputs are set up) after this start.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shop_ops.services.processes import ServiceError, pid_alive, read_pid, stop_pid

START_MARKER = "] start"  # rsyslogd's own "[origin software="rsyslogd" ...] start" message


def rsyslogd_binary() -> str:
    found = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
    if found is None:
        raise ServiceError("rsyslogd not found: install Debian's rsyslog and rsyslog-pgsql packages (make install)")
    return found


@dataclass
class RsyslogServer:
    """One rsyslogd in the foreground (`-n`) with its own configuration, work directory and pid file under `folder`."""

    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.folder / "rsyslog.conf"

    @property
    def work_dir(self) -> Path:
        """rsyslog's work directory: imfile's read positions and the disk part of the output queue."""
        return self.folder / "work"

    @property
    def pidfile(self) -> Path:
        return self.folder / "rsyslogd.pid"

    @property
    def internal_log(self) -> Path:
        """rsyslog's own messages (start, errors of inputs and of the PostgreSQL output), as the rendered config routes them."""
        return self.folder / "rsyslogd.log"

    @property
    def stdout_log(self) -> Path:
        """What rsyslogd prints before its configuration is loaded (syntax errors)."""
        return self.folder / "rsyslogd.out"

    @property
    def logrotate_config(self) -> Path:
        """logrotate's configuration for the plain files (rendered beside rsyslog's)."""
        return self.folder / "logrotate.conf"

    def rotate(self, force: bool = False) -> None:
        """Run logrotate over `logrotate_config` now (its state file in this folder); `force` rotates whatever the size."""
        binary = shutil.which("logrotate") or ("/usr/sbin/logrotate" if Path("/usr/sbin/logrotate").exists() else None)
        if binary is None:
            raise ServiceError("logrotate not found: install Debian's logrotate package (make install)")
        if not self.logrotate_config.is_file():
            raise ServiceError(f"logrotate configuration {self.logrotate_config} does not exist: render it first")
        args = [
            binary,
            "-s",
            str(self.folder / "logrotate.state"),
            *(["-f"] if force else []),
            str(self.logrotate_config),
        ]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise ServiceError(f"logrotate over {self.logrotate_config} failed: {result.stderr.strip()[-1000:]}")

    def check_config(self) -> None:
        """`rsyslogd -N1`: the configuration parses and every module loads; ServiceError with rsyslog's words if not."""
        if not self.config.is_file():
            raise ServiceError(f"rsyslog configuration {self.config} does not exist: render it first")
        result = subprocess.run(
            [rsyslogd_binary(), "-N1", "-f", str(self.config)], capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise ServiceError(
                f"rsyslog configuration {self.config} is invalid: {(result.stdout + result.stderr).strip()[-1500:]}"
            )

    def start(self, timeout: float = 15) -> None:
        """Check the configuration, start rsyslogd and wait until it reports its start (inputs set up)."""
        if self.running():
            raise ServiceError(f"rsyslogd of {self.folder} already runs (pid {read_pid(self.pidfile)}): stop it first")
        self.check_config()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.pidfile.unlink(missing_ok=True)
        offset = self.internal_log.stat().st_size if self.internal_log.exists() else 0
        args = [rsyslogd_binary(), "-n", "-f", str(self.config), "-i", str(self.pidfile)]
        with open(self.stdout_log, "ab") as out:
            # Its own session and no inherited stdout: a caller capturing our output must not wait on it.
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self._started_since(offset):
            if self.process.poll() is not None:
                raise ServiceError(
                    f"rsyslogd exited ({self.process.returncode}) at start: {self._tails()}; config: {self.config}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"rsyslogd did not report its start within {timeout:.0f}s: {self._tails()}")
            time.sleep(0.05)

    def _started_since(self, offset: int) -> bool:
        try:
            with open(self.internal_log, "rb") as fh:
                fh.seek(offset)
                return START_MARKER.encode() in fh.read()
        except FileNotFoundError:
            return False

    def _tails(self) -> str:
        parts = []
        for path in (self.stdout_log, self.internal_log):
            if path.exists():
                parts.append(f"{path.name}: {path.read_text(errors='replace')[-1200:].strip()}")
        return "; ".join(parts) or "no output"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else read_pid(self.pidfile)

    def running(self) -> bool:
        """The rsyslogd of this folder is alive (its pid names a live rsyslogd reading this configuration)."""
        pid = self.pid
        return pid is not None and pid_alive(pid, str(self.config))

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to its own pid (rsyslog flushes its queue to the work directory), SIGKILL after `timeout`."""
        pid = self.pid
        if pid is None or not pid_alive(pid, str(self.config)):
            self.pidfile.unlink(missing_ok=True)
            return
        stop_pid(pid, self.process, timeout, f"rsyslogd ({self.folder})")
        self.pidfile.unlink(missing_ok=True)
