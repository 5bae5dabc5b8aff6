"""The deploy/ instance configs: same run-queue limits everywhere, Postgres storage, one real DockerRunLauncher run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg2
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import DagsterRun
from dagster_aws.ecs import EcsRunLauncher
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_docker import DockerRunLauncher
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from shop_ops.localenv.docker_api import DockerApi
from shop_ops.services.processes import PostgresCluster, free_port

ROOT = Path(__file__).resolve().parents[2]
INSTANCE_FILES = {
    "docker": ROOT / "deploy" / "dagster.yaml",
    "ecs": ROOT / "deploy" / "ecs" / "dagster.yaml",
    "local": ROOT / "deploy" / "local" / "dagster.yaml",
}
DAGSTER_BIN = Path(sys.executable).parent
# The code location itself; its job check_environment_health needs no outside service (a run-launcher test).
LOCATION_MODULE = "shop_ops.definitions"
HEALTH_JOB = "check_environment_health"
RUN_TIMEOUT_S = 180


def _home(tmp_path: Path, kind: str) -> Path:
    home = tmp_path / f"dagster_home_{kind}"
    home.mkdir()
    shutil.copy(INSTANCE_FILES[kind], home / "dagster.yaml")
    return home


def _queue_section(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    return {"run_coordinator": raw["run_coordinator"], "concurrency": raw["concurrency"]}


# ---------------------------------------------------------------- the same limits everywhere


def test_three_instances_carry_the_same_run_queue_limits(tmp_path):
    sections = {kind: _queue_section(path) for kind, path in INSTANCE_FILES.items()}
    assert sections["docker"] == sections["ecs"] == sections["local"], sections

    limits = sections["local"]["concurrency"]["runs"]
    assert sections["local"]["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert {"key": "environment", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits[
        "tag_concurrency_limits"
    ]
    assert 1 <= limits["max_concurrent_runs"] <= 10

    # Each file is a valid instance config with telemetry off (schema checked by Dagster itself).
    for kind in INSTANCE_FILES:
        config, _ = dagster_instance_config(str(_home(tmp_path, kind)))
        assert config["telemetry"] == {"enabled": False}, kind


def test_local_instance_queues_runs_with_the_limits(tmp_path, monkeypatch):
    home = _home(tmp_path, "local")
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # as `dagster dev` has it: the redacting storage lives there
    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        assert queue.max_concurrent_runs == 4
        assert [(t["key"], t["value"], t["limit"]) for t in queue.tag_concurrency_limits] == [
            ("environment", {"applyLimitPerUniqueValue": True}, 1)
        ]
        assert instance.run_monitoring_enabled
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"  # default storage under DAGSTER_HOME
    finally:
        instance.dispose()


def test_ecs_instance_components_load_without_aws(tmp_path, monkeypatch):
    """Schema and classes of the ECS variant: run launcher, coordinator and S3 logs are built (no AWS call)."""
    env = {
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DAGSTER_ECS_CLUSTER": "shop",
        "DAGSTER_RUN_LOG_GROUP": "/ecs/shop-ops-runs",
        "DAGSTER_RUN_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/shop-ops-run-execution",
        "DAGSTER_RUN_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/shop-ops-run",
        "DAGSTER_PG_PASSWORD_SECRET_ARN": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:dagster/pg",
        "DAGSTER_COMPUTE_LOGS_BUCKET": "shop-ops-dagster-logs",
        "DAGSTER_PG_HOST": "dagster.cluster-x.eu-central-1.rds.amazonaws.com",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": "from-secrets-manager",
        "DAGSTER_PG_DB": "dagster",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home = _home(tmp_path, "ecs")
    dagster_instance_config(str(home))  # the whole file against Dagster's instance schema
    ref = InstanceRef.from_dir(str(home))
    assert ref.run_storage_data.class_name == "PostgresRunStorage"

    launcher = ref.run_launcher_data.rehydrate(EcsRunLauncher)
    assert launcher.task_definition_dict["requires_compatibilities"] == ["FARGATE"]
    assert launcher.run_task_kwargs["cluster"] == "shop"
    assert launcher.secrets == [{"name": "DAGSTER_PG_PASSWORD", "valueFrom": env["DAGSTER_PG_PASSWORD_SECRET_ARN"]}]
    # The password itself is never handed to a run task as a plain environment variable.
    assert "DAGSTER_PG_PASSWORD" not in {v.split("=", 1)[0] for v in launcher.env_vars}
    assert isinstance(ref.run_coordinator_data.rehydrate(QueuedRunCoordinator), QueuedRunCoordinator)
    assert isinstance(ref.compute_logs_data.rehydrate(S3ComputeLogManager), S3ComputeLogManager)


def _env_refs(node: object) -> set[str]:
    """Names of the environment variables a config reads ({env: NAME})."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(_env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node)) if node else set()
    return set()


@pytest.mark.parametrize("kind", ["docker", "ecs"])
def test_run_workers_get_every_variable_the_instance_reads(kind):
    """A run worker loads the same instance config (storage, logs, the launcher for monitoring)."""
    raw = yaml.safe_load(INSTANCE_FILES[kind].read_text())
    launcher = raw["run_launcher"]["config"]
    passed = {name.split("=", 1)[0] for name in launcher["env_vars"]}
    passed |= {secret["name"] for secret in launcher.get("secrets", [])}
    assert _env_refs(raw) - passed == set()
    assert "DAGSTER_PG_PASSWORD" in passed


# ---------------------------------------------------------------- Postgres storage + DockerRunLauncher


@pytest.fixture
def postgres_instance_env(
    postgres: PostgresCluster, docker_api: DockerApi, runner_image: str, tmp_path: Path, monkeypatch
) -> Iterator[dict[str, str]]:
    """DAGSTER_HOME with deploy/dagster.yaml and the environment it reads, pointing at the test cluster."""
    db = f"dagster_{uuid.uuid4().hex[:8]}"
    postgres.create_database(db, owner="dagster")
    home = _home(tmp_path, "docker")
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": "dagster",
        # trust auth ignores it; it still travels the secret's path (env -> launcher -> run container)
        "DAGSTER_PG_PASSWORD": "not-checked-by-trust-auth",
        "DAGSTER_PG_DB": db,
        "DAGSTER_RUNNER_IMAGE": runner_image,
        "DOCKER_HOST": docker_api.docker_host,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    postgres.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _tables(env: dict[str, str]) -> set[str]:
    with (
        psycopg2.connect(
            host=env["DAGSTER_PG_HOST"],
            port=env["DAGSTER_PG_PORT"],
            user=env["DAGSTER_PG_USER"],
            dbname=env["DAGSTER_PG_DB"],
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in cur.fetchall()}


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process group this test started (TERM, then KILL)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_for_run(
    instance: DagsterInstance, run_id: str, daemon: subprocess.Popen, log: Path, client: docker.DockerClient
) -> DagsterRun:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    exited_at = None
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        if daemon.poll() is not None:
            pytest.fail(f"dagster-daemon exited ({daemon.returncode}):\n{log.read_text()[-3000:]}")
        container_id = run.tags.get("docker/container_id") if run else None
        if container_id and exited_at is None:
            try:
                if client.containers.get(container_id).status == "exited":
                    exited_at = time.monotonic()
            except docker.errors.NotFound:
                pass
        if exited_at is not None and time.monotonic() - exited_at > 15:
            logs = client.containers.get(container_id).logs().decode(errors="replace")
            pytest.fail(f"run container exited, run still {run.status}:\n{logs[-3000:]}")
        time.sleep(1)
    run = instance.get_run_by_id(run_id)
    pytest.fail(
        f"run {run_id} still {run.status if run else 'missing'} after {RUN_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


def test_postgres_instance_runs_one_job_in_a_docker_container(postgres_instance_env, tmp_path):
    env = postgres_instance_env
    home = env["DAGSTER_HOME"]
    instance = DagsterInstance.from_config(home)
    try:
        # Storage: Dagster's tables are in the PostgreSQL database, and a run round-trips through them.
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_launcher, DockerRunLauncher)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert {"runs", "run_tags", "event_logs", "jobs", "job_ticks"} <= _tables(env)
        probe = instance.add_run(
            DagsterRun(job_name="storage_probe", run_id=str(uuid.uuid4()), tags={"environment": "staging"})
        )
        assert instance.get_run_by_id(probe.run_id).tags["environment"] == "staging"
        instance.delete_run(probe.run_id)

        # Submit through the run queue (as the UI does), then let the daemon dequeue and launch it.
        run_id = str(uuid.uuid4())
        # The daemon also ticks the location's sensors: the push sensor finds no registry on this closed port.
        proc_env = {**os.environ, **env, "SHOP_OPS_REGISTRY_URL": f"http://127.0.0.1:{free_port()}"}
        launch = subprocess.run(
            [str(DAGSTER_BIN / "dagster"), "job", "launch", "-m", LOCATION_MODULE, "-j", HEALTH_JOB,
             "--run-id", run_id, "--tags", json.dumps({"environment": "staging"})],
            env=proc_env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert launch.returncode == 0, launch.stderr[-3000:]
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.QUEUED

        log = tmp_path / "daemon.log"
        client = docker.DockerClient(base_url=env["DOCKER_HOST"])
        container_id = None
        try:
            with log.open("w") as out:
                daemon = subprocess.Popen(
                    [str(DAGSTER_BIN / "dagster-daemon"), "run", "-m", LOCATION_MODULE],
                    env=proc_env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            try:
                run = _wait_for_run(instance, run_id, daemon, log, client)
            finally:
                _stop(daemon)
                latest = instance.get_run_by_id(run_id)
                container_id = latest.tags.get("docker/container_id") if latest else None

            container = client.containers.get(container_id) if container_id else None
            container_log = container.logs().decode(errors="replace")[-3000:] if container else "(no container)"
            assert run.status == DagsterRunStatus.SUCCESS, f"{run.status}\n{container_log}\n{log.read_text()[-2000:]}"
            assert latest.tags["dagster/image"] == env["DAGSTER_RUNNER_IMAGE"]
            assert run.tags["environment"] == "staging"
            attrs = container.attrs
            assert attrs["HostConfig"]["NetworkMode"] == "host"
            assert attrs["Config"]["User"].startswith("10010")
            assert attrs["Config"]["Labels"]["io.shop-ops.role"] == "dagster-run"
            assert attrs["State"]["ExitCode"] == 0
            # The secret reached the run by name from the launcher's environment, not from the image.
            assert f"DAGSTER_PG_PASSWORD={env['DAGSTER_PG_PASSWORD']}" in attrs["Config"]["Env"]
        finally:
            # Every container of this run (run monitoring may have resumed it in a second one).
            for leftover in client.containers.list(all=True, filters={"label": f"dagster/run_id={run_id}"}):
                leftover.remove(force=True)
            client.close()

        # The run container wrote its events to the same PostgreSQL: the materialization and its metadata.
        records = instance.fetch_materializations(AssetKey("environment_health"), limit=10).records
        materializations = [r.asset_materialization for r in records if r.run_id == run_id]
        assert len(materializations) == 1
        metadata = materializations[0].metadata
        assert {"staging_up", "production_up", "staging_ms", "environments_up", "probes"} <= set(metadata)
        # The image's aws profile probes https://staging.shop.example, which is not reachable from here.
        assert metadata["staging_up"].value is False
    finally:
        instance.dispose()
