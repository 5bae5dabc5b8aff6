"""`shop-ops local up | status | down` end to end, on free ports under a temp state folder, with real releases.

The build is pushed as a new version and the stack's own push sensor releases it on staging;
promote_production (refused without approved_by, then approved) and rollback are launched as the
UI launches them (GraphQL) and run by the stack's dagster dev; after down/up the releases serve again.

The Docker API and image storage are the repository's (`SHOP_OPS_DOCKER_STATE`, the `docker_api`
fixture): images built once are reused, instead of re-importing the base images and rebuilding
both images in every temp folder. Everything else (clusters, Redis, registry, routers, dagster
dev, app containers labelled with this stack) belongs to the temp state and must be gone after `down`.

The config and state live where a newcomer may clone (`root_only_checkout`: inside a mode-700
folder, as root's home is, with a space in the path): PostgreSQL and nginx's workers run as their
own users there, and after `down` nothing is mounted or running in that folder, so it can be deleted.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import httpx
import psycopg2
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from shop_ops.localenv.docker_api import DockerApi
from shop_ops.localenv.stack import PG_HOME, LocalStack, Progress
from shop_ops.localenv.version_push import build_version_layers, push_release, wait_for_finished_attempt
from shop_ops.observability import prometheus as prom
from shop_ops.release import apps
from shop_ops.release.apps import stack_id
from shop_ops.resources.containers import DockerEngine
from shop_ops.resources.ledger import ReleaseLedger
from shop_ops.resources.registry import RegistryClient
from shop_ops.services.processes import free_port, pg_bin, pids_using, port_is_open
from shop_ops.settings import ImageSettings, load_settings

pytestmark = pytest.mark.services  # `shop-ops local up` starts every service and dagster dev

SHOP_OPS = str(Path(sys.executable).parent / "shop-ops")
SERVICES = (
    "postgres", "pgbouncer", "replica", "redis", "registry", "docker_api", "staging", "production", "dagster",
    "prometheus", "alertmanager", "pushgateway", "exporters", "logs", "pebble",
)  # fmt: skip


# The jobs Prometheus scrapes in the local environment.
SCRAPED = {"shop", "postgres", "redis", "router", "node", "prometheus", "alertmanager", "pushgateway"}


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _free_run(count: int) -> int:
    """The first of `count` consecutive free ports."""
    for _ in range(50):
        first = free_port()
        if first + count < 65536 and not any(port_is_open(first + i) for i in range(1, count)):
            return first
    raise AssertionError(f"no {count} consecutive free ports found")


@pytest.fixture
def local_env(docker_api: DockerApi, root_only_checkout: Path) -> Iterator[dict[str, str]]:
    """Environment variables for a private stack: its own YAML config (free ports) and state folder."""
    base = root_only_checkout
    p = iter(_free_ports(42))
    config = {
        "profile": "local",
        "dagster": {"port": next(p)},
        "registry": {"port": next(p)},
        # Sentinel declares the cart store's primary down after 1 s without an answer.
        "data": {"sentinel_down_after_ms": 1000},
        # Short intervals so the drill finds archived WAL after the backup within seconds.
        "backups": {"archive_timeout_seconds": 1, "heartbeat_seconds": 0.5},
        # Release baselines and nightly runs: 400 iterations of the mix, >= 30 requests per endpoint.
        "performance": {"rate": 50, "duration_seconds": 8, "synthetic_order_max_age_hours": 0},
        # Scrapes and rule evaluations every second; 17 consecutive ports for the exporters.
        "observability": {
            "prometheus_port": next(p),
            "alertmanager_port": next(p),
            "pushgateway_port": next(p),
            "logs_postgres_port": next(p),
            "exporters_first_port": _free_run(17),
            "scrape_interval_seconds": 1,
            "evaluation_interval_seconds": 1,
        },
        "tls": {
            "acme_port": next(p),
            "acme_management_port": next(p),
            "dns_port": next(p),
            "challenge_port": next(p),
        },
        "environments": {
            name: {
                "postgres_port": next(p),
                "pgbouncer_port": next(p),
                "replica_port": next(p) if name == "production" else None,
                "redis": {
                    "cache_port": next(p),
                    "carts_port": next(p),
                    "carts_replica_port": next(p),
                    "sentinel_port": next(p),
                },
                "router_port": next(p),
                "https_port": next(p),
                "http_port": next(p),
                "slots": {
                    "blue": {"backend_port": next(p), "frontend_port": next(p)},
                    "green": {"backend_port": next(p), "frontend_port": next(p)},
                },
            }
            for name in ("staging", "production")
        },
    }
    (base / "local.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(
        SHOP_OPS_CONFIG=str(base / "local.yaml"),
        SHOP_OPS_STATE=str(base / ".state"),
        SHOP_OPS_DOCKER_STATE=str(docker_api.state_dir),
    )
    yield env
    if base.exists():  # a test that got to its end deleted it
        shop_ops(env, "down", timeout=120)  # whatever a failed assertion left running
    # As root, `up` places PostgreSQL's folders outside a checkout the postgres user cannot enter.
    for placed in PG_HOME.glob(f"{stack_id(Path(env['SHOP_OPS_STATE']))}-*"):
        shutil.rmtree(placed, ignore_errors=True)


def shop_scraped(prometheus: str, environment: str) -> list[tuple[str, str]]:
    """(slot, health) of each shop target of `environment` that Prometheus scrapes."""
    return sorted(
        (t["labels"]["slot"], t["health"])
        for t in prom.targets(prometheus)
        if t["labels"]["job"] == "shop" and t["labels"]["environment"] == environment
    )


def log_rows(dsn: str, sql: str, *params: object) -> list[tuple]:
    """Rows of the central log store, read as the pipeline reads it (the reader role, its pgpass file)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.close()
    return rows


def shop_ops(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOP_OPS, "local", *args], env=env, capture_output=True, text=True, timeout=timeout)


def status(env: dict[str, str]) -> dict:
    result = shop_ops(env, "status", "--json", timeout=60)
    return json.loads(result.stdout)


def postgres_home(env: dict[str, str]) -> Path:
    """Where the stack's PostgreSQL folders really are (`<state>/postgres` may link outside the checkout)."""
    return (Path(env["SHOP_OPS_STATE"]) / "postgres").resolve()


def _latest_metadata(instance: dg.DagsterInstance, key: list[str]) -> dict:
    """The newest materialization's metadata of `key`, as plain values."""
    records = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
    assert records, f"{'/'.join(key)} was never materialized"
    return {name: value.value for name, value in records[0].asset_materialization.metadata.items()}


def stack_leftovers(env: dict[str, str], engine: DockerEngine) -> tuple[list[int], list[str]]:
    """Processes holding files (or their working folder) in the temp state or the stack's PostgreSQL
    folders, and containers (running or not) of this stack."""
    state = Path(env["SHOP_OPS_STATE"])
    pids = sorted({pid for folder in (state, postgres_home(env)) for pid in processes_in(folder)})
    containers = engine.list_services(labels={"io.shop-ops.stack": stack_id(state)}, include_stopped=True)
    return pids, [c.name for c in containers]


def processes_in(folder: Path) -> list[int]:
    """Processes with an open file or their working folder under `folder` (what would keep it busy)."""
    if not folder.exists():
        return []
    prefix = str(folder.resolve()) + os.sep
    found = set(pids_using(folder, ""))
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if (os.readlink(cwd) + os.sep).startswith(prefix):
                found.add(int(cwd.parent.name))
        except OSError:
            continue
    found.discard(os.getpid())
    return sorted(found)


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or under `folder` (/proc/self/mountinfo, octal escapes such as \\040 decoded)."""
    real = str(folder.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == real or point.startswith(real + os.sep):
            points.append(point)
    return points


def served_version(url: str) -> str:
    return httpx.get(f"{url}/version", timeout=10).json()["version"]


def release_through_the_sensor(
    version: str, engine: DockerEngine, registry: RegistryClient, ledger: ReleaseLedger
) -> tuple[dict, dict[str, str]]:
    """Push the build as `version`; the stack's push sensor must release it on staging, verified, exactly once."""
    refs = build_version_layers(version, engine, registry, ImageSettings())
    digests = push_release(engine, registry, refs)
    finished = wait_for_finished_attempt(ledger, "staging", version, timeout=240)
    assert finished is not None, f"no finished release of {version} after 240 s: {ledger.history()}"
    time.sleep(6)  # one more sensor interval: a second request for the same push would show here
    [release] = [r for r in ledger.history("staging") if r["version"] == version]
    assert release["status"] == "verified", release
    assert (release["backend_digest"], release["frontend_digest"]) == (digests["backend"], digests["frontend"])
    for ref in refs.values():
        engine.remove_image(ref)
    return release, digests


@dataclass
class UiRun:
    run_id: str
    status: str
    error: str


class StackUi:
    """Launch jobs in the stack's `dagster dev` as the UI does (GraphQL); read the outcome from its instance."""

    def __init__(self, url: str, home: Path) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.client = DagsterGraphQLClient(host, port_number=int(port))
        self.home = home

    def run(self, job: str, run_config: dict, tags: dict[str, str] | None = None, timeout: float = 240) -> UiRun:
        run_id = self.client.submit_job_execution(
            job, repository_location_name="shop_ops", repository_name="__repository__", run_config=run_config,
            tags=tags,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while (status := self.client.get_run_status(run_id)) not in FINAL_STATUSES:
            assert time.monotonic() < deadline, f"{job} run {run_id} still {status} after {timeout} s"
            time.sleep(1)
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            failures = [e.dagster_event.step_failure_data for e in instance.all_logs(run_id, of_type=STEP_FAILURE)]
        errors = [f"{data.error.message if data.error else ''} {data.user_failure_data}" for data in failures]
        return UiRun(run_id, status.value, "\n".join(errors))

    def wait_for_materialization(self, key: list[str], after: float, timeout: float = 120) -> dict:
        """The metadata of `key`'s newest materialization if later than `after` (epoch s); waits for the run to get there."""
        deadline = time.monotonic() + timeout
        while True:
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                records = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
            if records and records[0].timestamp > after:
                return {name: value.value for name, value in records[0].asset_materialization.metadata.items()}
            assert time.monotonic() < deadline, f"{'/'.join(key)} not materialized after {after} within {timeout} s"
            time.sleep(1)


STEP_FAILURE = dg.DagsterEventType.STEP_FAILURE
FINAL_STATUSES = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _bytes_if_present(path: Path) -> bytes:
    """A file's bytes; nothing if it went away since it was listed (dagster dev still runs: SQLite folds its
    -wal and -journal files into the database, which is read too)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


# up, a release through the sensor, promote, a second release, rollback, down, up: about 4 min here.
@pytest.mark.timeout(720)
@pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning")  # dagster_graphql
def test_up_status_down_up(local_env: dict[str, str], docker_api: DockerApi) -> None:
    env = local_env
    up = shop_ops(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "no release record exists yet" in up.stdout
    assert "starting postgres (staging) on 127.0.0.1:" in up.stdout

    doc = status(env)
    assert set(SERVICES) <= set(doc), doc
    for service in SERVICES:
        assert doc[service]["up"] is True, (service, doc[service])
    assert doc["postgres"]["staging"]["dsn"].startswith("postgresql://shop@127.0.0.1:")
    assert Path(doc["registry"]["credentials_file"]).exists()
    secrets = [json.loads(Path(doc["registry"]["credentials_file"]).read_text())["password"]]
    secrets += [Path(doc["postgres"][name]["password_file"]).read_text().strip() for name in ("staging", "production")]
    secrets += [
        path.read_text().strip()
        for path in (Path(env["SHOP_OPS_STATE"]) / "secrets").glob("*")
        if path.name.endswith(("redis-password", "redis-admin-password", "replication-password"))
    ]
    assert len(secrets) == 8, secrets  # 3 above, two Redis passwords per environment, production's replication one
    # The data tier per environment: its own Redis (carts through Sentinel), PgBouncer, production's replica.
    assert doc["redis"]["staging"]["sentinel_primary"] != doc["redis"]["production"]["sentinel_primary"]
    assert doc["replica"]["production"]["streaming"] is True, doc["replica"]
    assert not any(secret in json.dumps(doc) for secret in secrets)

    for name in ("staging", "production"):
        url = doc[name]["url"]
        home = httpx.get(f"{url}/", timeout=10)
        assert home.status_code == 200 and "<div id=" in home.text, home.text[:200]
        products = httpx.get(f"{url}/api/products", timeout=10)
        assert products.status_code == 200 and products.json()["items"], products.text[:200]
        assert home.headers["x-shop-slot"] == "blue"
        # Public: HTTPS with the certificate `up` had Pebble issue (chain to the local roots, the name by SNI), HSTS;
        # plain HTTP redirects there.
        https = urlsplit(doc[name]["https_url"])
        assert https.hostname == f"{name}.shop.test" and doc[name]["certificate"]["days_to_expiry"] > 89
        roots = ssl.create_default_context(cafile=doc["pebble"]["trust_bundle"])
        with httpx.Client(verify=roots, timeout=10) as client:
            secure = client.get(
                f"https://127.0.0.1:{https.port}/api/products",
                headers={"Host": https.netloc},
                extensions={"sni_hostname": https.hostname},
            )
        assert secure.status_code == 200 and secure.json()["items"], secure.text[:200]
        assert secure.headers["strict-transport-security"].startswith("max-age=")
        http_port = load_settings(Path(env["SHOP_OPS_CONFIG"])).local_environments()[name].http_port
        redirect = httpx.get(f"http://127.0.0.1:{http_port}/cart?x=1", timeout=10)
        assert redirect.status_code == 301 and redirect.headers["location"] == f"{doc[name]['https_url']}/cart?x=1"

        # The password file: readable by the containers' group 10001, nobody else; TCP needs it.
        pw = Path(doc["postgres"][name]["password_file"])
        mode = pw.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o640 and mode.st_gid == 10001
        port = doc["postgres"][name]["dsn"].split(":")[2].split("/")[0]
        no_password = subprocess.run(
            [pg_bin("psql"), "-h", "127.0.0.1", "-p", port, "-U", "shop", "-d", "shop", "-w", "-c", "SELECT 1"],
            capture_output=True,
            text=True,
        )
        assert no_password.returncode != 0 and "password" in no_password.stderr
        assert (Path(doc["postgres"][name]["pgbackrest"]) / "repo" / "backup" / name / "backup.info").is_file()
        assert doc["postgres"][name]["heartbeat"] is True
    # The routers' edge cache keeps catalog reads ~1 s: a product change through the admin API shows
    # within a few seconds (edge cache + the backend's own in-process second), a cart never comes from it.
    admin_token = Path(doc["staging"]["admin_token_file"]).read_text().strip()
    secrets.append(admin_token)
    staging_url = doc["staging"]["url"]
    first = httpx.get(f"{staging_url}/api/products/1", timeout=10)
    assert httpx.get(f"{staging_url}/api/products/1", timeout=10).headers["x-cache"] in ("HIT", "UPDATING"), first
    changed = httpx.patch(
        f"{staging_url}/api/admin/products/1", json={"name": "Edge cache test lamp"},
        headers={"Authorization": f"Bearer {admin_token}"}, timeout=10,
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    changed_at = time.monotonic()
    while httpx.get(f"{staging_url}/api/products/1", timeout=10).json()["name"] != "Edge cache test lamp":
        assert time.monotonic() - changed_at < 5, "the product change did not show through the router within 5 s"
        time.sleep(0.1)
    cart = httpx.post(f"{staging_url}/api/carts", json={}, timeout=10).json()["id"]
    assert "x-cache" not in httpx.get(f"{staging_url}/api/carts/{cart}", timeout=10).headers
    key_file = Path(doc["backups"]["key_file"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and not key_file.is_relative_to(Path(env["SHOP_OPS_STATE"]))
    secrets.append(key_file.read_text().strip())

    # Monitoring: every target Prometheus scrapes answers (exporters, both shops' blue slots, itself).
    prometheus = doc["prometheus"]["url"]

    def targets_down() -> list[str] | None:
        found = prom.targets(prometheus)
        jobs = {t["labels"]["job"] for t in found}
        down = [
            f"{t['labels']['job']} {t['labels']['instance']}: {t['lastError']}" for t in found if t["health"] != "up"
        ]
        return down if jobs >= SCRAPED and not down else None

    deadline = time.monotonic() + 30
    while (down := targets_down()) is None:
        assert time.monotonic() < deadline, prom.targets(prometheus)
        time.sleep(0.5)
    shop_slots = {
        (t["labels"]["environment"], t["labels"]["slot"])
        for t in prom.targets(prometheus)
        if t["labels"]["job"] == "shop"
    }
    assert shop_slots == {("staging", "blue"), ("production", "blue")}, shop_slots

    # Central logs: the request id of a request through the staging router is in the router's line and
    # in the backend container's line in the store (rsyslog reads both files; the router flushes every 2 s).
    store = doc["logs"]["store"]
    routed = httpx.get(f"{staging_url}/api/carts/{cart}", timeout=10)
    assert routed.status_code == 200
    deadline = time.monotonic() + 30
    while True:
        rows = log_rows(
            store, "SELECT service, request_id, slot FROM logs.records WHERE fields->>'uri' = %s", f"/api/carts/{cart}"
        )
        request_ids = {r[1] for r in rows if r[0] == "router"}
        backend = log_rows(
            store,
            "SELECT slot, environment FROM logs.records WHERE service = 'backend' AND request_id = ANY(%s)",
            list(request_ids),
        )
        if request_ids and backend:
            break
        assert time.monotonic() < deadline, (rows, backend)
        time.sleep(0.5)
    assert backend[0] == ("blue", "staging"), backend

    again = shop_ops(env, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "starting" not in again.stdout and "already running" in again.stdout, again.stdout

    # A real release: the build pushed as 9.9.9 -> registry_push_sensor (in this stack's dagster dev)
    # -> one release_staging run -> staging serves 9.9.9, verified, recorded in the ledger.
    engine = DockerEngine(docker_api.docker_host)
    state = Path(env["SHOP_OPS_STATE"])
    registry = RegistryClient(doc["registry"]["url"], Path(doc["registry"]["credentials_file"]))
    ledger = ReleaseLedger(state)
    urls = {name: doc[name]["url"] for name in ("staging", "production")}
    release, digests = release_through_the_sensor("9.9.9", engine, registry, ledger)
    assert served_version(urls["staging"]) == "9.9.9"
    # The release moved staging to green: Prometheus scrapes green and no longer blue (stopped).
    deadline = time.monotonic() + 15
    while (slots := shop_scraped(prometheus, "staging")) != [("green", "up")]:
        assert time.monotonic() < deadline, slots
        time.sleep(0.5)
    ui = StackUi(doc["dagster"]["url"], Path(doc["dagster"]["dagster_home"]))
    # release_staging took the release's k6 baseline after verifying it (the sensor's run).
    baseline = ui.wait_for_materialization(["staging", "load_test_baseline"], after=release["started_at"])
    assert baseline["release"].startswith("9.9.9") and baseline["passed"] is True, baseline
    assert baseline["requests"] > 400 and baseline["error_rate"] == 0 and baseline["checks_pass_rate"] == 1.0
    assert baseline["cpu_mean_percent"] > 0 and baseline["memory_max_mb"] > 0  # the slot's containers, sampled
    assert "| search " in baseline["endpoints"] and baseline["synthetic_orders_purged"] > 0

    # promote_production and rollback launched as the UI launches them (GraphQL), run by dagster dev.
    promote = {"version": "9.9.9", "backend_digest": digests["backend"], "frontend_digest": digests["frontend"]}
    refused = ui.run("promote_production", {"ops": {"production__deployment": {"config": promote}}})
    assert refused.status == "FAILURE" and "approved_by is required" in refused.error, refused
    assert served_version(urls["production"]) != "9.9.9" and ledger.serving("production") is None
    promote["approved_by"] = "ada"
    promoted = ui.run("promote_production", {"ops": {"production__deployment": {"config": promote}}})
    assert promoted.status == "SUCCESS", promoted
    assert served_version(urls["production"]) == "9.9.9"
    production = ledger.serving("production")
    assert (production.version, production.approved_by) == ("9.9.9", "ada")
    baseline = ui.wait_for_materialization(["production", "load_test_baseline"], after=production.started_at)
    assert baseline["release"].startswith("9.9.9") and baseline["passed"] is True, baseline

    release_through_the_sensor("9.9.10", engine, registry, ledger)
    assert served_version(urls["staging"]) == "9.9.10"
    # The nightly regression run, launched as the schedule does (today's partition): each environment
    # compared with its own release's baseline, every endpoint with the samples the check needs. Whether
    # an 8 s run on this busy stack (WAL archived every second, two heartbeats) passes is not asserted:
    # its tail moves with the machine (a CI run once flagged production). Pass and fail on a real
    # slowdown are tests/ops/test_perf_assets.py's, back to back against the same containers.
    today = datetime.now(UTC).date().isoformat()
    perf = ui.run("perf_regression", {}, tags={"dagster/partition": today}, timeout=300)
    with dg.DagsterInstance.from_config(str(ui.home)) as instance:
        for name in ("staging", "production"):
            key = dg.AssetKey([name, "nightly_load_test"])
            [check] = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(key, "no_latency_regression"), limit=1
            )
            evaluation = check.event.dagster_event.event_specific_data
            endpoints = evaluation.metadata["endpoints"].value
            assert set(endpoints) >= {"homepage", "search", "product", "add_to_cart", "checkout", "order"}, endpoints
            assert all(e["n_baseline"] >= 30 and e["n_current"] >= 30 for e in endpoints.values()), endpoints
            verdicts = {e["verdict"] for e in endpoints.values()}
            assert verdicts <= {"ok", "regressed"}, evaluation.metadata["table"].value
            assert (check.status.value == "SUCCEEDED") == (verdicts == {"ok"}), check.status
            nightly = _latest_metadata(instance, [name, "nightly_load_test"])
            assert nightly["baseline_release"].startswith("9.9.10" if name == "staging" else "9.9.9"), nightly
            assert nightly["requests"] > 800 and nightly["error_rate"] == 0, nightly
    assert perf.status == "SUCCESS" or "blocking asset check failed" in perf.error, perf
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    refused_perf = ui.run("perf_regression", {}, tags={"dagster/partition": yesterday})
    assert refused_perf.status == "FAILURE" and "only today's partition" in refused_perf.error, refused_perf

    # The month's cost report, launched as daily_budget_schedule does: no bill in the local profile, so
    # the estimate stands; both shops' orders through their admin API; usage from the baselines above.
    month = datetime.now(UTC).date().replace(day=1).isoformat()
    costs = ui.run("cost_report", {}, tags={"dagster/partition": month}, timeout=180)
    assert costs.status == "SUCCESS", costs
    with dg.DagsterInstance.from_config(str(ui.home)) as instance:
        report = _latest_metadata(instance, ["cost_report"])
    assert report["cost_basis"].startswith("estimate (the local profile runs nothing on AWS"), report
    assert report["estimate_month_usd"] > 1000 and "no container usage measured" not in report["rightsizing"], report

    reason = {"ops": {"rollback_environment": {"config": {"reason": "e2e test"}}}}
    rolled = ui.run("rollback", reason, tags={"dagster/partition": "staging", "environment": "staging"})
    assert rolled.status == "SUCCESS", rolled
    assert served_version(urls["staging"]) == "9.9.9"
    staging = ledger.serving("staging")
    assert (staging.version, staging.kind, staging.backend_digest) == ("9.9.9", "rollback", digests["backend"])

    # Backups through the UI: the newest day's nightly_backup (both databases, restore tests that start
    # the backend each environment serves, the pipeline's state); an older day refused; a DR drill.
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    nightly = ui.run("nightly_backup", {}, tags={"dagster/partition": day.isoformat()}, timeout=300)
    assert nightly.status == "SUCCESS", nightly
    old = (day - timedelta(days=3)).isoformat()
    stale = ui.run("nightly_backup", {}, tags={"dagster/partition": old})
    assert stale.status == "FAILURE" and f"partition {old} refused" in stale.error, stale
    drill = ui.run("dr_drill", {}, timeout=300)
    assert drill.status == "SUCCESS", drill
    with dg.DagsterInstance.from_config(str(ui.home)) as instance:
        restore = _latest_metadata(instance, ["staging", "restore_test"])
        assert restore["rto_seconds"] > 0 and restore["catalog_products"] > 0
        assert restore["backend_image"] == registry.pinned_ref("shop/backend", digests["backend"])
        backup = _latest_metadata(instance, ["production", "database_backup"])
        assert backup["release"].startswith("9.9.9") and backup["physical_kind"] == "full"
        assert Path(backup["location"]).is_relative_to(Path(env["SHOP_OPS_STATE"]) / "backups")
        drilled = _latest_metadata(instance, ["staging", "dr_drill"])
        assert 0 < drilled["rpo_seconds"] < 30 and drilled["rto_seconds"] > 0 and drilled["heartbeat_rows"] > 0
        assert _latest_metadata(instance, ["pipeline_state_backup"])["databases"] >= 2
        # backup_freshness_sensor (on from the start) requested a run of the backup checks, which ran.
        checks = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "backup_freshness_sensor"}))
        assert checks and all(run.status == dg.DagsterRunStatus.SUCCESS for run in checks), checks

    # What dagster dev stored of these runs, the refused one included (event logs, run storage,
    # captured stdout/stderr): none of the stack's secrets (database passwords, the registry's).
    stored = [f for f in ui.home.rglob("*") if f.is_file()]
    assert any(f.suffix in (".out", ".err", ".complete") for f in stored), stored  # compute logs are there
    assert [f for f in stored if release["release_id"].encode() in _bytes_if_present(f)]  # and the runs' records
    for secret in secrets:
        leaks = [str(f) for f in stored if secret.encode() in _bytes_if_present(f)]
        assert leaks == [], f"a secret is stored in {leaks}"

    # ... and none in the central logs, after the releases and a refused admin login.
    refused_login = httpx.post(
        f"{urls['staging']}/api/admin/restock",
        json={"min_stock": 1},
        headers={"Authorization": "Bearer wrong-token"},
        timeout=10,
    )
    assert refused_login.status_code in (401, 403), refused_login.text
    time.sleep(3)  # the router's access log flushes every 2 s
    everything = "\n".join(r[0] for r in log_rows(store, "SELECT message || ' ' || fields::text FROM logs.records"))
    assert "wrong-token" not in everything
    services = {r[0] for r in log_rows(store, "SELECT DISTINCT service FROM logs.records")}
    assert services >= {"router", "backend", "postgresql", "redis-carts", "sentinel", "pgbouncer", "dagster"}, services
    for secret in secrets:
        assert secret not in everything, "a secret reached the central logs"

    down = shop_ops(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    doc = status(env)
    for service in SERVICES:
        if service != "docker_api":  # shared with the test session: not ours to stop
            assert doc[service]["up"] is False, (service, doc[service])
    engine = DockerEngine(docker_api.docker_host)
    assert stack_leftovers(env, engine) == ([], [])

    up2 = shop_ops(env, "up")
    assert up2.returncode == 0, up2.stdout + up2.stderr
    assert "seeding" not in up2.stdout  # the databases were kept
    assert f"staging: pulling release 9.9.9 ({staging.release_id})" in up2.stdout
    assert f"production: pulling release 9.9.9 ({production.release_id})" in up2.stdout
    assert "migrating" not in up2.stdout  # both serve releases: their schemas are left alone
    note = next(line for line in up2.stdout.splitlines() if line.startswith("note: "))
    assert f"staging serves release 9.9.9 ({staging.release_id})" in note, note
    assert f"production serves release 9.9.9 ({production.release_id})" in note, note
    running = {c.name: c.image for c in apps.stack_containers(engine, stack_id(state)) if c.status == "running"}
    assert registry.pinned_ref("shop/backend", digests["backend"]) in running.values(), running
    assert served_version(urls["staging"]) == served_version(urls["production"]) == "9.9.9"
    doc = status(env)
    assert all(doc[service]["up"] for service in SERVICES), doc

    # The checkout can be deleted right after `down`: nothing mounted or running in it.
    checkout, pg_home = Path(env["SHOP_OPS_CONFIG"]).parent, postgres_home(env)
    down = shop_ops(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert (mounts_under(checkout), processes_in(checkout), processes_in(pg_home)) == ([], [], [])
    removed = subprocess.run(["rm", "-rf", str(checkout)], capture_output=True, text=True)
    assert removed.returncode == 0 and not checkout.exists(), removed.stderr


def test_docker_api_leaves_its_storage_unmounted(root_only_checkout: Path) -> None:
    """podman's API started on a state folder in the checkout (as `up` does without a Docker engine):
    once stopped, nothing of its storage stays mounted, and the checkout can be deleted."""
    api = DockerApi(root_only_checkout / ".state")
    if api.existing_docker():
        pytest.skip("a Docker engine answers here: `up` would use it, not podman")
    api.start()
    try:
        assert api.answers()
        assert mounts_under(api.podman_state)  # podman's overlay storage mounts itself
    finally:
        api.stop()
    assert (mounts_under(root_only_checkout), processes_in(root_only_checkout)) == ([], [])
    removed = subprocess.run(["rm", "-rf", str(root_only_checkout)], capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr


def test_port_held_by_another_process(local_env: dict[str, str], docker_api: DockerApi) -> None:
    config = yaml.safe_load(Path(local_env["SHOP_OPS_CONFIG"]).read_text())
    port = config["environments"]["production"]["router_port"]
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = shop_ops(local_env, "up")
    assert result.returncode != 0
    assert f"port {port} (router (production))" in result.stderr, result.stderr
    assert stack_leftovers(local_env, DockerEngine(docker_api.docker_host)) == ([], [])


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does PostgreSQL run as another OS user")
def test_postgres_folders_left_in_a_closed_checkout_move_out(local_env: dict[str, str], monkeypatch) -> None:
    """What an `up` from before the placement left in a checkout the postgres user cannot enter (initdb
    failed there) moves to a folder under PG_HOME, linked from `.state/postgres`; once, then it stays."""
    for name in ("SHOP_OPS_CONFIG", "SHOP_OPS_STATE"):
        monkeypatch.setenv(name, local_env[name])
    link = Path(local_env["SHOP_OPS_STATE"]) / "postgres"
    (link / "staging" / "wal-archive").mkdir(parents=True)
    (link / "staging" / "wal-archive" / "kept").write_text("kept")
    stack = LocalStack(load_settings(), Progress(io.StringIO()))
    stack.place_postgres()
    home = link.resolve()
    assert link.is_symlink() and home.parent.parent == PG_HOME, home
    assert (home / "staging" / "wal-archive" / "kept").read_text() == "kept"
    assert stack.postgres["staging"].datadir == home / "staging" / "data"
    LocalStack(load_settings(), Progress(io.StringIO())).place_postgres()
    assert link.resolve() == home
