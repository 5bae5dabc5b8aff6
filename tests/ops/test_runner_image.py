"""The run image carries what the jobs run: PostgreSQL 15's programs, pgBackRest, k6 and its scripts, checkov and
the Terraform it scans, working.

One container of the image (its default user 10010, host network, over the Docker API) dumps a database of the
session's test cluster with `dump_with_fingerprint` and restores it with `restore_and_verify` into a scratch cluster
it starts itself, in a temp folder of the container. Another loads the code location and runs its Terraform scan
(the image's checkov) and cost estimate over the image's copy of infra/: the same findings and totals as the host's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg2
import pytest

from shop_ops.backup.fingerprint import Fingerprint, compute_fingerprint
from shop_ops.cost.estimate import TerraformCosts
from shop_ops.localenv.docker_api import DockerApi
from shop_ops.security.checkov import CheckovScanner
from shop_ops.services.processes import PostgresCluster
from shop_ops.settings import load_settings
from tests.certificates import NAME, tls_endpoints

RUN_TIMEOUT_S = 120
PG_PROGRAMS = ("pg_dump", "pg_restore", "psql", "initdb", "pg_ctl", "postgres")
ROOT = Path(__file__).resolve().parents[2]

# Runs in the container: python -c PROBE PORT DATABASE PROGRAM...; prints one line "REPORT {json}".
PROBE = r"""
import json, os, subprocess, sys, tempfile
from pathlib import Path

from shop_ops.backup.logical import dump_with_fingerprint, restore_and_verify
from shop_ops.resources.postgres import DatabaseTarget
from shop_ops.services.processes import PostgresCluster, free_port, pg_bin

port, database, programs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]


def output(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


report = {"uid": os.geteuid(), "pgbackrest": output("pgbackrest", "version")}
report["programs"] = {name: [pg_bin(name), output(pg_bin(name), "--version")] for name in programs}
with tempfile.TemporaryDirectory(prefix="backup-") as tmp:
    source = DatabaseTarget(port=port, database=database, user="postgres")
    backup = dump_with_fingerprint(source, Path(tmp) / "shop.dump")
    scratch = PostgresCluster(datadir=Path(tmp) / "scratch", port=free_port())
    scratch.init()
    scratch.start()
    try:
        restored = restore_and_verify(backup.path, backup.fingerprint, scratch, sha256=backup.sha256)
    finally:
        scratch.stop()
report.update(bytes=backup.bytes, dumped=backup.fingerprint.to_json(), restored=restored.fingerprint.to_json())
print("REPORT " + json.dumps(report))
"""


@pytest.fixture
def source_database(postgres: PostgresCluster) -> Iterator[str]:
    """A small database of the test cluster: a keyed table and one without a key (duplicate rows, a NULL)."""
    name = f"runner_backup_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    postgres.psql(
        "CREATE TABLE orders (id bigint PRIMARY KEY, sku text NOT NULL, total numeric(10, 2), placed_at timestamptz);"
        "INSERT INTO orders SELECT g, 'sku-' || g % 17, g * 1.25, timestamptz '2026-01-01 00:00+00' + g * interval '1 minute'"
        " FROM generate_series(1, 500) AS g;"
        "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('no key'), ('no key'), (NULL);",
        database=name,
    )
    yield name
    postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fingerprint(postgres: PostgresCluster, database: str) -> Fingerprint:
    conn = psycopg2.connect(host="127.0.0.1", port=postgres.port, user=postgres.user, dbname=database)
    try:
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        return compute_fingerprint(conn)
    finally:
        conn.close()


def _run_in_image(runner_image: str, docker_api: DockerApi, command: list[str]) -> str:
    """`command` in a container of the image (its own user, host network); its output, asserting exit 0."""
    client = docker.DockerClient(base_url=docker_api.docker_host, timeout=RUN_TIMEOUT_S + 30)
    container = None
    try:
        container = client.containers.run(
            runner_image, command, network_mode="host", labels={"io.shop-ops.test": "runner-image"}, detach=True
        )
        status = container.wait(timeout=RUN_TIMEOUT_S)
        logs = container.logs().decode(errors="replace")
        assert status["StatusCode"] == 0, logs[-3000:]
        assert container.attrs["Config"]["User"].startswith("10010")
        return logs
    finally:
        if container is not None:
            container.remove(force=True)
        client.close()


# Runs in the container: the load tests' k6 and mix.js as the image's settings find them, against the shop.
K6_PROBE = r"""
import json, sys
from shop_ops.perf.profiles import LoadProfile
from shop_ops.resources.k6 import default_binary, run_k6
from shop_ops.settings import get_settings

script = get_settings().loadtests_path / "mix.js"
profile = LoadProfile(name="load", rate=10, duration_s=2, storefront=False, p95_ms=1000)
summary = run_k6(script, profile.k6_env(sys.argv[1]), timeout_s=profile.timeout_s, samples=True)
print("REPORT " + json.dumps({"k6": default_binary(), "script": str(script), "requests": summary.requests,
      "counted": int(summary.samples.endpoints["requests"].sum()), "passed": summary.passed}))
"""


def test_runner_image_runs_the_load_tests_k6_and_scripts(runner_image: str, docker_api: DockerApi, server) -> None:
    logs = _run_in_image(runner_image, docker_api, ["python", "-c", K6_PROBE, server.url])
    report = json.loads(next(line for line in logs.splitlines() if line.startswith("REPORT "))[len("REPORT ") :])
    assert report["k6"] == "/opt/venv/bin/k6" and report["script"] == "/opt/shop-ops/loadtests/mix.js"
    assert report["passed"] is True and report["requests"] == report["counted"] > 20


def test_runner_image_dumps_and_restores_with_its_own_postgres_programs(
    runner_image: str, docker_api: DockerApi, postgres: PostgresCluster, source_database: str
):
    logs = _run_in_image(
        runner_image, docker_api, ["python", "-c", PROBE, str(postgres.port), source_database, *PG_PROGRAMS]
    )

    report = json.loads(next(line for line in logs.splitlines() if line.startswith("REPORT "))[len("REPORT ") :])
    assert report["uid"] == 10010
    assert report["pgbackrest"] == "pgBackRest 2.45"
    for name, (path, version) in report["programs"].items():
        assert path == f"/usr/lib/postgresql/15/bin/{name}", name
        assert "(PostgreSQL) 15." in version, (name, version)

    # The dump's fingerprint (taken in the container) is the database's, and the restore inside the container matches it.
    dumped, restored = Fingerprint.from_json(report["dumped"]), Fingerprint.from_json(report["restored"])
    assert dumped == _fingerprint(postgres, source_database)
    assert restored == dumped
    assert dumped.tables["orders"][0] == 500
    assert dumped.tables["notes"][0] == 3
    assert report["bytes"] > 0


# Runs in the container: python -c CHECKOV_PROBE; the code location's own resources, as the image's settings
# build them (aws profile, SHOP_OPS_INFRA, SHOP_OPS_CHECKOV): the Terraform scan and the cost estimate.
CHECKOV_PROBE = r"""
import json, os, shutil
from pathlib import Path

from shop_ops.definitions import defs

scan = defs.resources["terraform_scanner"].scan()
estimate = defs.resources["terraform_costs"].estimate()
checkov = os.environ["SHOP_OPS_CHECKOV"]
print("REPORT " + json.dumps({
    "uid": os.geteuid(), "checkov": checkov, "on_path": shutil.which("checkov"), "python": shutil.which("python"),
    "checkov_writable": os.access(Path(checkov).parents[1], os.W_OK), "infra": os.environ["SHOP_OPS_INFRA"],
    "scan": scan.metadata(), "findings": scan.findings[["result", "check_id", "resource"]].values.tolist(),
    "estimate": estimate.lines.groupby("environment")["monthly_usd"].sum().round(6).to_dict(),
}))
"""


def test_runner_image_scans_and_prices_its_terraform_like_the_host(runner_image: str, docker_api: DockerApi) -> None:
    logs = _run_in_image(runner_image, docker_api, ["python", "-c", CHECKOV_PROBE])
    report = json.loads(next(line for line in logs.splitlines() if line.startswith("REPORT "))[len("REPORT ") :])

    # checkov from its own read-only virtualenv, as the image's user; off PATH, so `python` stays the runtime venv's.
    assert report["uid"] == 10010
    assert report["checkov"] == "/opt/checkov/bin/checkov" and report["checkov_writable"] is False
    assert report["on_path"] is None and report["python"] == "/opt/venv/bin/python"
    assert report["infra"] == "/opt/shop-ops/infra"

    # The host's checkov (`make install`: .venv-checkov) and estimate over the checkout, in this same run.
    host_checkov = load_settings().checkov_path
    assert host_checkov.exists(), f"{host_checkov} is missing: run scripts/install.sh checkov"
    host = CheckovScanner(checkov=str(host_checkov), directory=str(ROOT / "infra" / "terraform")).scan()
    assert report["scan"]["parsing_errors"] == 0 and report["scan"]["resources"] > 100
    assert report["scan"] == host.metadata()
    assert report["findings"] == host.findings[["result", "check_id", "resource"]].values.tolist()
    costs = TerraformCosts(
        terraform_dir=str(ROOT / "infra" / "terraform"), price_table=str(ROOT / "infra" / "pricing" / "aws-eu-central-1.csv")
    )  # fmt: skip
    assert report["estimate"] == costs.estimate().lines.groupby("environment")["monthly_usd"].sum().round(6).to_dict()


# Runs in the container: python -c SSLYZE_PROBE PORT NAME ROOTS_PEM; the image's sslyze (settings.sslyze_path:
# SHOP_OPS_SSLYZE, its own virtualenv) against an endpoint on the host.
SSLYZE_PROBE = r"""
import json, sys, tempfile
from pathlib import Path

from shop_ops.security.tls_scan import TlsTarget, run_sslyze
from shop_ops.settings import get_settings

roots = Path(tempfile.mkdtemp()) / "roots.pem"
roots.write_text(sys.argv[3])
venv = get_settings().sslyze_path
scan = run_sslyze(venv, TlsTarget("127.0.0.1", int(sys.argv[1]), sys.argv[2]), roots)
print("REPORT " + json.dumps({"venv": str(venv), "compliant": scan.compliant, "chain_valid": scan.chain_valid,
      "protocols": list(scan.accepted_protocols)}))
"""


def test_runner_image_scans_tls_with_its_own_sslyze(runner_image: str, docker_api: DockerApi, tmp_path: Path) -> None:
    with tls_endpoints(tmp_path) as endpoints:
        reports = {}
        for kind, port in (("intermediate", endpoints.intermediate), ("legacy", endpoints.legacy)):
            command = ["python", "-c", SSLYZE_PROBE, str(port), NAME, endpoints.roots.read_text()]
            logs = _run_in_image(runner_image, docker_api, command)
            reports[kind] = json.loads(next(line for line in logs.splitlines() if line.startswith("REPORT "))[7:])
    assert reports["intermediate"] == {
        "venv": "/opt/sslyze", "compliant": True, "chain_valid": True, "protocols": ["TLSv1.2", "TLSv1.3"]
    }  # fmt: skip
    assert reports["legacy"]["compliant"] is False and "TLSv1.0" in reports["legacy"]["protocols"]
