"""A real `dagster-daemon` that dies mid-tick and restarts does not start a release twice (run_key deduplication).

The daemon runs the code location as `dagster dev` would (workspace, local profile), watching its own
repositories (`daemon-test/*`) of the session registry. Its instance queues runs with a run-queue limit
of 0, so a requested `release_staging` run stays QUEUED and never deploys anything.

"Died mid-tick after submitting the run, before the cursor was stored" is produced as: let the daemon
submit the run, SIGKILL its process group, put the sensor's cursor back to its pre-push value with
`dagster sensor cursor --set`, restart. The sensor then requests the release again; Dagster must find
the run by its `dagster/run_key` tag and skip the request instead of creating a second run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
import yaml
from dagster._core.scheduler.instigation import InstigatorState, InstigatorTick, InstigatorType, TickStatus

from shop_ops.release.registry_watch import WatchCursor
from shop_ops.resources.containers import DockerEngine, RegistryAuth
from shop_ops.resources.registry import RegistryClient
from shop_ops.services.registry import RegistryServer

pytestmark = pytest.mark.services  # a real dagster-daemon, besides the registry

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SENSOR = "registry_push_sensor"
JOB = "release_staging"
VERSION = "0.7.0"
REPOS = {"backend": "daemon-test/backend", "frontend": "daemon-test/frontend"}
RUN_KEY_TAG = "dagster/run_key"  # Dagster's tag for RunRequest.run_key
WAIT_S = 60
FINISHED = (TickStatus.SKIPPED, TickStatus.SUCCESS, TickStatus.FAILURE)

INSTANCE_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 30
# 0 = no run is ever launched: requested runs stay QUEUED (nothing is deployed)
concurrency:
  runs:
    max_concurrent_runs: 0
"""

T = TypeVar("T")


@dataclass
class DaemonSetup:
    """A DAGSTER_HOME, a workspace and the environment the daemon and the CLI run with."""

    base: Path
    home: Path
    workspace: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def setup(registry: RegistryServer) -> Iterator[DaemonSetup]:
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-daemon-"))
    home, state = base / "dagster_home", base / "state"
    home.mkdir()
    state.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    settings = yaml.safe_load((ROOT / "config" / "local.yaml").read_text())
    settings["images"].update(backend_repository=REPOS["backend"], frontend_repository=REPOS["frontend"])
    config = base / "shop-ops.yaml"
    config.write_text(yaml.safe_dump(settings))
    workspace = base / "workspace.yaml"
    location = {"module_name": "shop_ops.definitions", "location_name": "shop_ops", "working_directory": str(ROOT)}
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": location}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_OPS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        SHOP_OPS_CONFIG=str(config),
        SHOP_OPS_STATE=str(state),
        SHOP_OPS_REGISTRY_URL=registry.url,
        SHOP_OPS_REGISTRY_CREDENTIALS_FILE=str(registry.credentials_file),
    )
    yield DaemonSetup(base=base, home=home, workspace=workspace, env=env)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def instance(setup: DaemonSetup) -> Iterator[dg.DagsterInstance]:
    """The daemon's instance, opened before the daemon starts (creates the SQLite storage once)."""
    inst = dg.DagsterInstance.from_config(str(setup.home))
    yield inst
    inst.dispose()


@dataclass
class Release:
    """Release VERSION of both images, built locally; `push()` puts it in the daemon-test repositories."""

    refs: dict[str, str]
    push: Callable[[], dict[str, str]]


@pytest.fixture(scope="module")
def release(engine: DockerEngine, registry_client: RegistryClient, built: dict) -> Iterator[Release]:
    user, password = registry_client.credentials()  # type: ignore[misc]
    auth = RegistryAuth(user, password, server=registry_client.address)
    context = Path(tempfile.mkdtemp(prefix="shop-ops-test-daemon-build-"))
    refs: dict[str, str] = {}
    try:
        for role, repository in REPOS.items():
            (context / "Dockerfile").write_text(
                f"FROM localhost/shop-{role}:local\nLABEL io.shop-ops.daemon-test={VERSION}\n"
            )
            ref = registry_client.image_ref(repository, VERSION)
            engine.build(context, ref, use_cache=True)
            refs[role] = ref
    finally:
        shutil.rmtree(context, ignore_errors=True)
    yield Release(refs, lambda: {role: engine.push(ref, auth=auth, insecure=True) for role, ref in refs.items()})
    for ref in refs.values():
        engine.remove_image(ref)


class Daemon:
    """`dagster-daemon run` in its own process group; only that group is ever signalled."""

    def __init__(self, setup: DaemonSetup) -> None:
        self.setup = setup
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = setup.base / "daemon.log"
        self.offset = 0  # where the current process's lines begin in the log

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(self.setup.workspace)],
                env=self.setup.env, cwd=self.setup.base, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the daemon's group (the daemon and its code server); SIGKILL what is left after 30 s."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        if _group_members(pgid):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + 30
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)
            time.sleep(1)
        self.proc.wait(timeout=10)
        assert not _group_members(pgid), f"processes of daemon group {pgid} survived: {_group_members(pgid)}"

    def output(self) -> str:
        """What the current daemon process (and its code server) wrote so far."""
        with self.log.open("rb") as fh:
            fh.seek(self.offset)
            return fh.read().decode(errors="replace")

    def tail(self) -> str:
        """The end of the current process's log, without the run queue's idle lines."""
        lines = self.output().splitlines() if self.log.exists() else ["(no daemon log)"]
        return "\n".join(line for line in lines if "won't launch more" not in line)[-6000:]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids in process group `pgid`, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@pytest.fixture
def daemon(setup: DaemonSetup) -> Iterator[Daemon]:
    d = Daemon(setup)
    yield d
    d.kill(signal.SIGTERM)


def wait_for(what: str, probe: Callable[[], T | None], daemon: Daemon, timeout: float = WAIT_S) -> T:
    """Poll `probe` until it returns something truthy; fail with the daemon's log after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if not daemon.alive():
            pytest.fail(f"dagster-daemon exited while waiting for {what}:\n{daemon.tail()}")
        if "Error while importing code" in daemon.output():  # the daemon would skip the sensor silently
            pytest.fail(f"the code location does not load in the daemon, waiting for {what}:\n{daemon.tail()}")
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout} s:\n{daemon.tail()}")


def sensor_state(instance: dg.DagsterInstance) -> InstigatorState | None:
    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == SENSOR]
    assert len(states) <= 1, states
    return states[0] if states else None


def ticks(instance: dg.DagsterInstance) -> list[InstigatorTick]:
    """The sensor's ticks, newest first."""
    state = sensor_state(instance)
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id)) if state else []


def stored_cursor(instance: dg.DagsterInstance) -> str | None:
    """The sensor's cursor as the daemon stored it. Dagster writes a finished tick first and the
    sensor state (cursor) right after, so a reader that has just seen the tick may not see the cursor yet."""
    state = sensor_state(instance)
    return state.instigator_data.cursor if state and state.instigator_data else None


def stored_requests(instance: dg.DagsterInstance) -> frozenset[str]:
    return WatchCursor.from_json(stored_cursor(instance)).requested


def finished_tick_after(instance: dg.DagsterInstance, after_id: int) -> InstigatorTick | None:
    """The first finished tick with an id above `after_id`."""
    newer = [t for t in ticks(instance) if t.tick_id > after_id and t.status in FINISHED]
    return min(newer, key=lambda t: t.tick_id) if newer else None


def runs_for(instance: dg.DagsterInstance, run_key: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key})))


def test_daemon_restart_mid_tick_does_not_duplicate_a_release(setup, instance, release, daemon):
    # 1. The daemon ticks over empty repositories: the cursor "before the push".
    daemon.start()
    quiet = wait_for("first sensor tick", lambda: finished_tick_after(instance, 0), daemon)
    assert quiet.status == TickStatus.SKIPPED and quiet.run_ids == [], quiet
    assert "no new release (nothing pushed)" in (quiet.skip_reason or ""), quiet.skip_reason
    before_push = wait_for("the first tick's cursor in the sensor state", lambda: stored_cursor(instance), daemon)
    assert WatchCursor.from_json(before_push) == WatchCursor() and WatchCursor.from_json(before_push).note is None

    # 2. The push: one release_staging run, QUEUED (limit 0), requested by a tick that stored the new cursor.
    digests = release.push()
    run_key = f"release:{VERSION}:{digests['backend']}:{digests['frontend']}"
    [run] = wait_for("run for the pushed release", lambda: runs_for(instance, run_key), daemon)
    assert run.job_name == JOB and run.tags["dagster/sensor_name"] == SENSOR
    assert run.tags["release/version"] == VERSION and run.tags["environment"] == "staging"
    assert run.run_config["ops"]["staging__deployment"]["config"]["backend_digest"] == digests["backend"]

    def requesting_tick() -> InstigatorTick | None:
        done = [t for t in ticks(instance) if run.run_id in t.run_ids and t.status in FINISHED]
        return done[0] if done and run_key in stored_requests(instance) else None

    first = wait_for("the requesting tick to finish and store its cursor", requesting_tick, daemon)
    assert first.status == TickStatus.SUCCESS and first.run_ids == [run.run_id] and first.run_keys == [run_key]

    # 3. The daemon dies; the cursor is put back as if the tick had never stored it.
    daemon.kill(signal.SIGKILL)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.QUEUED  # never launched
    reset = subprocess.run(
        [str(BIN / "dagster"), "sensor", "cursor", SENSOR, "--set", before_push, "-w", str(setup.workspace)],
        env=setup.env, cwd=setup.base, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert reset.returncode == 0, reset.stdout[-2000:] + reset.stderr[-3000:]
    assert f"Set cursor state for sensor {SENSOR}" in reset.stdout
    assert stored_cursor(instance) == before_push  # the same state the daemon uses
    last_before_restart = max(t.tick_id for t in ticks(instance))

    # 4. Restarted, the sensor requests the release again; Dagster finds the run by run_key and skips it.
    daemon.start()
    again = wait_for("a tick after the restart", lambda: finished_tick_after(instance, last_before_restart), daemon)
    assert [r.run_id for r in runs_for(instance, run_key)] == [run.run_id]  # still exactly the one run
    assert [r.run_id for r in instance.get_runs(filters=dg.RunsFilter(job_name=JOB))] == [run.run_id]
    # What Dagster 1.13 records for a request skipped as a duplicate run key: a SKIPPED tick that names
    # the run_key but no run id, and no skip reason (the sensor returned a request, not a SkipReason).
    assert again.status == TickStatus.SKIPPED, again
    assert again.run_keys == [run_key] and again.run_ids == [], again
    assert again.skip_reason is None, again.skip_reason
    # The re-requested release is in the tick's cursor and in the sensor's stored cursor again.
    assert WatchCursor.from_json(again.cursor).requested == {run_key}
    wait_for("the restarted tick's cursor", lambda: run_key in stored_requests(instance), daemon, 10)
    assert stored_requests(instance) == {run_key}
    # The daemon says why (its own log; the tick's captured log holds only what the sensor logged).
    skipped_line = f"Skipping 1 run for sensor {SENSOR} already completed with run keys: {json.dumps([run_key])}"
    wait_for("the daemon's skip message", lambda: skipped_line in daemon.output(), daemon, 10)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.QUEUED
