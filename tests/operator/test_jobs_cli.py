"""`shop-ops jobs` against a real `dagster-webserver` serving the real code location: launch, follow, exit code.

The webserver runs the workspace of the repository (location `shop_ops`, local profile) with its own
DAGSTER_HOME and the default run coordinator, so a launched run starts at once as a local process
(no daemon). `check_environment_health` succeeds whether or not any environment is up (being down is
its observation); `rollback` launched without its partition fails in its op with a message naming
the fix. That is all a CI step needs: the status, the log lines and a non-zero exit on failure.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml

from shop_ops.cli import main
from shop_ops.services.processes import free_port

pytestmark = [
    pytest.mark.services,  # a real dagster-webserver and the runs it launches
    pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning"),  # dagster_graphql
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 90
PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "cwd": ROOT}


@dataclass
class Webserver:
    url: str
    home: Path


@pytest.fixture(scope="module")
def webserver() -> Iterator[Webserver]:
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-operator-"))
    home, state = base / "dagster_home", base / "state"
    home.mkdir()
    state.mkdir()
    # Runs start at once as local processes (no daemon to dequeue them).
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
    )
    settings = yaml.safe_load((ROOT / "config" / "local.yaml").read_text())
    (base / "shop-ops.yaml").write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_OPS_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), SHOP_OPS_CONFIG=str(base / "shop-ops.yaml"), SHOP_OPS_STATE=str(state))
    port = free_port()
    log = open(base / "webserver.log", "wb")  # open while the server runs
    process = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (base / "webserver.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"dagster-webserver did not answer in {START_TIMEOUT_S} s"
            time.sleep(0.3)
        yield Webserver(url, home)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the webserver and the runs it started
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def run_tags(home: Path, run_id: str) -> dict[str, str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        return dict(run.tags)


def launched_run_id(out: str) -> str:
    first = out.splitlines()[0]
    assert first.startswith("launched "), out
    return first.split(" run ")[1].split(":")[0]


def test_a_run_that_succeeds_exits_0_and_one_that_fails_exits_1_with_one_line(webserver: Webserver, tmp_path) -> None:
    """Both launched at once by the real command (a run loads the code location in a process of its own; in-process
    execution spares each step a process that would load it again)."""
    config = tmp_path / "run-config.json"
    config.write_text(json.dumps({"execution": {"config": {"in_process": {}}}}))
    command = [str(BIN / "shop-ops"), "jobs", "launch", "--dagster-url", webserver.url, "--timeout", "150"]
    command += ["--config-json", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_OPS_", "DAGSTER_"))}
    tags = ["--tag", "shop-ops/launched-by=github-actions:ada", "--tag", "github/run=https://example.invalid/runs/1"]
    good = subprocess.Popen([*command, "check_environment_health", *tags], env=env, **PIPES)
    bad = subprocess.Popen([*command, "rollback"], env=env, **PIPES)  # no partition: its op fails, naming the fix
    out, err = good.communicate(timeout=180)
    assert good.returncode == 0, out + err
    run_id = launched_run_id(out)
    assert out.rstrip().endswith(f"check_environment_health run {run_id} ended SUCCESS"), out
    assert "environment_health" in out and "Finished execution of run" in out, out  # the events, one a line
    tags_stored = run_tags(webserver.home, run_id)
    assert tags_stored["shop-ops/launched-by"] == "github-actions:ada", tags_stored
    assert tags_stored["github/run"] == "https://example.invalid/runs/1", tags_stored

    out, err = bad.communicate(timeout=180)
    assert bad.returncode == 1, out + err
    run_id = launched_run_id(out)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"shop-ops jobs: rollback run {run_id} ended FAILURE: "), lines[0]
    assert "launch rollback for one partition" in lines[0] and f"/runs/{run_id}" in lines[0], lines[0]


def test_a_job_that_does_not_exist_or_bad_config_is_refused_before_any_run(
    webserver: Webserver, capsys, monkeypatch
) -> None:
    assert main(["jobs", "launch", "no_such_job", "--dagster-url", webserver.url]) == 2
    assert "launching no_such_job" in capsys.readouterr().err
    config = json.dumps({"ops": {"rollback_environment": {"config": {"no_such_field": 1}}}})
    monkeypatch.setattr("sys.stdin", io.StringIO(config))
    assert main(["jobs", "launch", "rollback", "--dagster-url", webserver.url, "--config-json", "-"]) == 2
    err = capsys.readouterr().err
    assert "launching rollback" in err and "no_such_field" in err, err


def test_promote_config_takes_the_digests_verified_on_staging(webserver: Webserver, capsys) -> None:
    assert main(["jobs", "promote-config", "4.5.6", "--approved-by", "ada", "--dagster-url", webserver.url]) == 2
    assert "no verified deployment of 4.5.6 on staging" in capsys.readouterr().err
    digests = {"backend_digest": "sha256:" + "b" * 64, "frontend_digest": "sha256:" + "f" * 64}
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        for version, status in (("4.5.6", "verified"), ("4.5.6", "failed")):  # the newest attempt failed
            metadata = {"version": version, "status": status, **digests}
            if status == "failed":
                metadata["backend_digest"] = "sha256:" + "0" * 64
            instance.report_runless_asset_event(dg.AssetMaterialization(["staging", "deployment"], metadata=metadata))
    assert main(["jobs", "promote-config", "4.5.6", "--approved-by", "ada", "--dagster-url", webserver.url]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config == {
        "ops": {"production__deployment": {"config": {"version": "4.5.6", "approved_by": "ada", **digests}}}
    }
