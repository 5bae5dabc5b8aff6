"""`dagster dev` (webserver + daemon) on 127.0.0.1 with DAGSTER_HOME under the state folder.

It runs in its own process group with SIGINT/SIGQUIT at their defaults (a job started with
`&` from a script inherits them ignored and then ignores SIGTERM), so stopping it is one
SIGTERM to the group; the group's pid is kept in a pid file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from shop_ops.services.processes import ServiceError, pid_alive, port_is_open, read_pid

ROOT = Path(__file__).resolve().parents[2]
LOCAL_INSTANCE_CONFIG = ROOT / "deploy" / "local" / "dagster.yaml"

# Used only while deploy/local/dagster.yaml does not exist: the local instance keeps the
# production run-queue limits (one deploy-type run per environment at a time).
FALLBACK_INSTANCE: dict = {
    "telemetry": {"enabled": False},
    "run_coordinator": {
        "module": "dagster._core.run_coordinator",
        "class": "QueuedRunCoordinator",
    },
    "concurrency": {
        "runs": {
            "max_concurrent_runs": 4,
            "tag_concurrency_limits": [
                {"key": "shop-ops/deploy-environment", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
            ],
        }
    },
}


def _own_group_default_signals() -> None:  # runs in the child between fork and exec
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def _ours(pgid: int) -> list[int]:
    """The group's members, if it is a dagster group (a reused pid names someone else's)."""
    members = group_members(pgid)
    return members if any(pid_alive(pid, "dagster") for pid in members) else []


@dataclass
class DagsterDev:
    """One `dagster dev` for this state folder."""

    home: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    workspace: Path = ROOT / "workspace.yaml"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.home / "dagster-dev.pid"

    @property
    def log(self) -> Path:
        return self.home / "dagster-dev.log"

    def write_instance_config(self) -> str:
        """DAGSTER_HOME/dagster.yaml from deploy/local/dagster.yaml (or the fallback); telemetry off."""
        self.home.mkdir(parents=True, exist_ok=True)
        if LOCAL_INSTANCE_CONFIG.exists():
            text = LOCAL_INSTANCE_CONFIG.read_text()
            config = yaml.safe_load(text) or {}
            source = str(LOCAL_INSTANCE_CONFIG.relative_to(ROOT))
        else:
            text, config = "", dict(FALLBACK_INSTANCE)
            source = "built-in fallback (deploy/local/dagster.yaml is missing)"
        changed = config.get("telemetry") != {"enabled": False} or not text
        config["telemetry"] = {"enabled": False}
        # The redacting storage's folders written out (Dagster's own places under this DAGSTER_HOME), so that
        # whoever opens the instance from its folder, without DAGSTER_HOME set, finds the same storage.
        for section, folder in (("event_log_storage", ("history", "runs")), ("compute_logs", ("storage",))):
            entry = config.get(section)
            if isinstance(entry, dict) and str(entry.get("module", "")).startswith("shop_ops."):
                settings = entry.setdefault("config", {}) or {}
                if "base_dir" not in settings:
                    entry["config"] = {**settings, "base_dir": str(self.home.resolve().joinpath(*folder))}
                    changed = True
        if changed:
            text = yaml.safe_dump(config, sort_keys=False)  # comments are lost only when we had to change it
        (self.home / "dagster.yaml").write_text(f"# Copied by shop-ops local up from {source}.\n" + text)
        return source

    def _target_args(self) -> list[str]:
        # Always the workspace: it names the code location `shop_ops`. Sensor cursors and run_key
        # deduplication are kept per location name, so a second name would re-request releases.
        if not self.workspace.exists():
            raise ServiceError(f"{self.workspace} is missing: it defines the code location (restore it from git)")
        return ["-w", str(self.workspace)]

    def running(self) -> bool:
        pid = read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, "dagster")

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/server_info", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def start(self, timeout: float = 120) -> None:
        """Launch and wait until the webserver answers (no-op when it runs already)."""
        if self.running():
            return
        self.launch()
        self.wait(timeout)

    def launch(self) -> str:
        """Start `dagster dev` without waiting for it; returns where the instance config came from."""
        self.stop()  # what a crashed `dagster dev` left of its group, and its stale pid file
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for the Dagster UI is already in use")
        binary = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which("dagster")
        if binary is None:
            raise ServiceError("dagster is not installed in this environment: run scripts/install.sh")
        source = self.write_instance_config()
        env = {**os.environ, **self.env, "DAGSTER_HOME": str(self.home)}
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                [binary, "dev", "-h", "127.0.0.1", "-p", str(self.port), *self._target_args()],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=_own_group_default_signals,  # the CLI is single-threaded here
            )  # fmt: skip
        self.pidfile.write_text(str(process.pid))
        self._process = process
        return source

    def wait(self, timeout: float = 120) -> None:
        """Until /server_info answers; stops it and raises if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while not self.answers():
            if not self.running() or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-1500:]
                raise ServiceError(f"dagster dev did not answer on {self.url}/server_info; log {self.log}:\n{tail}")
            time.sleep(0.25)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to its process group, then SIGKILL what is left after `timeout` seconds."""
        pgid = read_pid(self.pidfile)
        if pgid is None or not _ours(pgid):
            self.pidfile.unlink(missing_ok=True)
            return
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while group_members(pgid):
            if time.monotonic() > deadline:
                os.killpg(pgid, signal.SIGKILL)
                time.sleep(0.5)
                break
            time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)
