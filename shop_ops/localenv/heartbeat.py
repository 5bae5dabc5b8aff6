"""The heartbeat writer of one local environment: `python -m shop_ops.backup.heartbeat` as a child process with a pid file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shop_ops.services.processes import pid_alive, read_pid, wait_gone

MODULE = "shop_ops.backup.heartbeat"


@dataclass
class Heartbeat:
    """Writes `ops.heartbeat` in one environment's database every `interval` seconds (see shop_ops/backup/heartbeat.py)."""

    name: str
    pidfile: Path
    log: Path
    port: int
    password_file: Path
    interval: float

    def running(self) -> bool:
        pid = read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, MODULE)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", MODULE, "--port", str(self.port), "--password-file", str(self.password_file),
               "--interval", str(self.interval)]  # fmt: skip
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pidfile.write_text(f"{proc.pid}\n")

    def stop(self, timeout: float = 10) -> None:
        pid = read_pid(self.pidfile)
        if pid is not None and pid_alive(pid, MODULE):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            else:
                wait_gone(pid, timeout)
        self.pidfile.unlink(missing_ok=True)
