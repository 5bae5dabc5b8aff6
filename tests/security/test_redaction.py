"""Redaction everywhere: a job leaks a password every way a step can; nothing under DAGSTER_HOME holds it afterwards.

Runs the job twice against an instance wired as deploy/local/dagster.yaml will be (redacting event log
storage and compute-log manager): once in this process (the password known only because the
`secrets` resource read it), once as a real `dagster job execute` process (compute logs captured,
the code location's hook installed at load).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.storage.compute_log_manager import ComputeIOType

from shop_ops.security.redaction import RedactingComputeLogManager, redact_event
from shop_ops.security.secrets import SecretsResource
from shop_ops.services.redaction import (
    KNOWN_SECRETS,
    MASK,
    redact,
    redacted_fd,
    remember_environment,
    remember_files,
)
from tests.security.redaction_job import leaky_job
from tests.support import dagster_pg_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.services  # starts dagster as a program


def _instance_home(home: Path) -> Path:
    config = {
        "telemetry": {"enabled": False},
        "event_log_storage": {"module": "shop_ops.security.redaction", "class": "RedactingSqliteEventLogStorage"},
        # as deploy/local/dagster.yaml: both default to Dagster's own folders under DAGSTER_HOME
        "compute_logs": {"module": "shop_ops.security.redaction", "class": "RedactingComputeLogManager"},
    }
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def _files_holding(home: Path, needle: str) -> list[str]:
    """Every file under `home` (SQLite databases included, as bytes) that holds `needle`."""
    return [
        str(path.relative_to(home))
        for path in home.rglob("*")
        if path.is_file() and needle.encode() in path.read_bytes()
    ]


@pytest.fixture
def password_file(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "secrets"
    folder.mkdir()
    password = "pw-" + secrets.token_urlsafe(18)
    (folder / "staging-db-password").write_text(password + "\n")
    (folder / "staging-db-password").chmod(0o600)
    yield folder, password
    KNOWN_SECRETS.discard(password)


def test_nothing_of_the_password_is_stored_by_a_failed_run(tmp_path, password_file, monkeypatch):
    folder, password = password_file
    home = _instance_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    # 1. In this process: only the secrets resource's read tells the redactor about the password.
    with dg.DagsterInstance.get() as instance:
        result = leaky_job.execute_in_process(
            instance=instance, resources={"secrets": SecretsResource(folder=str(folder))}, raise_on_error=False
        )
        assert not result.success
        stored = [r.event_log_entry for r in instance.get_records_for_run(result.run_id).records]
        failures = [e.dagster_event for e in stored if e.dagster_event and e.dagster_event.is_step_failure]
        assert len(failures) == 1  # the step failure is stored, its cause masked
        error = failures[0].event_specific_data.error
        assert (
            error.cause.message
            == f"RuntimeError: command failed with 3: FATAL: password authentication failed ({MASK})\n"
        )
        messages = [e.user_message for e in stored]
        assert f"the command said: FATAL: password authentication failed ({MASK})" in messages

    # 2. A real run process, with compute logs captured at the file-descriptor level.
    env = {**os.environ, "DAGSTER_HOME": str(home), "SHOP_OPS_TEST_SECRETS_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-f",
         str(ROOT / "tests" / "security" / "redaction_job.py"), "-j", "leaky_job"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0, run.stdout[-2000:]
    assert password not in run.stdout + run.stderr  # its console output too
    compute_logs = [p for p in (home / "storage").rglob("*.err")]
    assert compute_logs, "no compute log was captured"
    captured = "".join(p.read_text() for p in compute_logs)
    # The child that wrote straight to the descriptor, the print and the step's own output: all there, masked.
    assert f"FATAL: password authentication failed ({MASK})" in captured.splitlines()  # the child's own line
    assert f"stderr copy: FATAL: password authentication failed ({MASK})" in captured

    assert _files_holding(home, password) == []
    assert _files_holding(home, password[3:15]) == []  # no part of it either (e.g. cut by a truncation)


def test_event_redaction_keeps_the_event_readable():
    """An event's strings are masked in place: its kind, step and other metadata stay as they were."""
    secret = "s3cr3t-" + secrets.token_hex(6)
    event = dg.EventLogEntry(
        error_info=None, level=20, user_message=f"said {secret}", run_id="r1", timestamp=1.0, step_key="leaky",
        job_name="leaky_job", dagster_event=None,
    )  # fmt: skip
    KNOWN_SECRETS.add(secret)
    try:
        clean = redact_event(event)
    finally:
        KNOWN_SECRETS.discard(secret)
    assert clean.user_message == f"said {MASK}" and clean.step_key == "leaky" and clean.job_name == "leaky_job"
    assert redact_event(clean) is clean  # nothing left to change: the same object


def test_fd_capture_redacts_a_child_process_and_mirrors(tmp_path):
    secret = "fd-" + secrets.token_hex(8)
    KNOWN_SECRETS.add(secret)
    log = tmp_path / "captured.err"
    try:
        with open(tmp_path / "original", "w") as original, redacted_fd(original, log):
            subprocess.run(["sh", "-c", f"echo 'child: {secret}' >&1"], stdout=original, check=True)
            original.write(f"python: {secret}\n")
    finally:
        KNOWN_SECRETS.discard(secret)
    assert log.read_text() == f"child: {MASK}\npython: {MASK}\n"
    assert (tmp_path / "original").read_text() == log.read_text()  # mirrored, redacted


def test_redact_masks_escaped_forms_and_credentials():
    secret = 'pa"ss\\word-42'
    assert (
        redact(f'json: {{"v": "{secret.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"}}', [secret])
        == f'json: {{"v": "{MASK}"}}'
    )
    assert redact("postgresql://shop:hunter2@db/shop") == f"postgresql://shop:{MASK}@db/shop"


def test_tick_logs_are_redacted_line_by_line(tmp_path):
    """Sensor and schedule ticks log JSON lines through open_log_stream: each stays JSON, its strings masked."""
    secret = "tick-" + secrets.token_hex(8)
    manager = RedactingComputeLogManager(str(tmp_path))
    KNOWN_SECRETS.add(secret)
    try:
        with manager.open_log_stream(["sensor", "tick"], ComputeIOType.STDERR) as stream:
            stream.write(json.dumps({"msg": f"alert not delivered: {secret}", "levelno": 40}) + "\n")
    finally:
        KNOWN_SECRETS.discard(secret)
    path = Path(manager.get_captured_local_path(["sensor", "tick"], "err"))
    assert json.loads(path.read_text()) == {"msg": f"alert not delivered: {MASK}", "levelno": 40}


def test_secret_files_and_variables_are_remembered(tmp_path):
    """What the code location remembers at load: plain secret files, a pgpass's password, a JSON file's credentials."""
    plain, pgpass_pw, json_pw, env_pw = (secrets.token_urlsafe(12) for _ in range(4))
    (tmp_path / "staging-db-password").write_text(plain + "\n")
    (tmp_path / "logs-reader.pgpass").write_text(f"127.0.0.1:55434:logs:shop_logs_reader:{pgpass_pw}\n")
    registry = tmp_path / "credentials.json"
    registry.write_text(json.dumps({"username": "shop-ops", "password": json_pw}))
    (tmp_path / "staging-db-login").write_text("shop_a\n")  # which role serves: a name, not a secret
    try:
        assert remember_files(tmp_path) == ["credentials.json", "logs-reader.pgpass", "staging-db-password"]
        assert redact("pool user shop_a") == "pool user shop_a"
        KNOWN_SECRETS.discard(json_pw)
        environ = {"SHOP_OPS_SMTP_PASSWORD": env_pw, "SHOP_OPS_SMTP_HOST": "mail.example",
                   "SHOP_OPS_REGISTRY_CREDENTIALS_FILE": str(registry), "SHOP_OPS_SMTP_TO": "ops@example.test"}  # fmt: skip
        assert remember_environment(environ) == ["SHOP_OPS_REGISTRY_CREDENTIALS_FILE", "SHOP_OPS_SMTP_PASSWORD"]
        text = f"{plain} {pgpass_pw} {json_pw} {env_pw} user shop-ops at mail.example"
        assert redact(text) == f"{MASK} {MASK} {MASK} {MASK} user shop-ops at mail.example"
    finally:
        for value in (plain, pgpass_pw, json_pw, env_pw, f"127.0.0.1:55434:logs:shop_logs_reader:{pgpass_pw}"):
            KNOWN_SECRETS.discard(value)


def test_postgres_event_log_stores_no_password(postgres, password_file, monkeypatch, tmp_path):
    """The aws profile's storage (deploy/*.yaml with the redacting event log): Dagster's PostgreSQL tables hold no
    trace of the password after the same failed run."""
    folder, password = password_file
    pg = dict(
        zip(("hostname", "port", "username", "password", "db_name"), dagster_pg_env(postgres).values(), strict=True)
    )
    postgres_db = {**pg, "port": int(pg["port"]), "scheme": "postgresql+psycopg2"}
    home = tmp_path / "pg_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({
        "telemetry": {"enabled": False},
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage",
                        "config": {"postgres_db": postgres_db}},
        "event_log_storage": {"module": "shop_ops.security.redaction_aws", "class": "RedactingPostgresEventLogStorage",
                              "config": {"postgres_db": postgres_db}},
        "schedule_storage": {"module": "dagster_postgres.schedule_storage", "class": "PostgresScheduleStorage",
                             "config": {"postgres_db": postgres_db}},
        "compute_logs": {"module": "shop_ops.security.redaction", "class": "RedactingComputeLogManager"},
    }))  # fmt: skip
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        result = leaky_job.execute_in_process(
            instance=instance, resources={"secrets": SecretsResource(folder=str(folder))}, raise_on_error=False
        )
        assert not result.success
        assert instance.get_records_for_run(result.run_id).records  # the events are in PostgreSQL
    tables = postgres.psql(
        "SELECT string_agg(table_name, ' ') FROM information_schema.tables WHERE table_schema = 'public'", pg["db_name"]
    ).split()
    assert "event_logs" in tables
    sql = "SELECT coalesce(string_agg(t::text, ' '), '') FROM \"{}\" t"
    dump = "\n".join(postgres.psql(sql.format(table), pg["db_name"]) for table in tables)
    assert f"({MASK})" in dump and password not in dump
    assert _files_holding(home, password) == []
