"""`shop-ops local up | status | down` end to end, on free ports under a temp state folder, with real releases.

The build is pushed as a new version and the stack's own push sensor releases it on staging;
promote_production is launched as the UI launches it (GraphQL: refused without approved_by), then
through the operator commands (`shop-ops deploy`, `shop-ops rollback`), which launch the same jobs in
the stack's dagster dev; the direct commands (db check, cache clear, restart under k6, logs collect) act
on the same stack; the notifier's messages reach a webhook receiver of the test; the audit trail and
the backups run as the UI launches them; after down/up the releases serve again.

The Docker API and image storage are the repository's (`SHOP_OPS_DOCKER_STATE`, the `docker_api`
fixture): images built once are reused, instead of re-importing the base images and rebuilding
both images in every temp folder. Everything else (clusters, Redis, registry, routers, dagster
dev, app containers labelled with this stack) belongs to the temp state and must be gone after `down`.

The config and state live where a newcomer may clone (`root_only_checkout`: inside a mode-700
folder, as root's home is, with a space in the path): PostgreSQL and nginx's workers run as their
own users there, and after `down` nothing is mounted or running in that folder, so it can be deleted.
"""

from __future__ import annotations

import gzip
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
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import httpx
import pandas as pd
import psycopg2
import pytest
import redis
import yaml
from dagster_graphql import DagsterGraphQLClient

from shop.migrate import head_revision
from shop_ops.assets.deployments import rollback_run_config
from shop_ops.localenv.docker_api import DockerApi
from shop_ops.localenv.stack import PG_HOME, LocalStack, Progress
from shop_ops.localenv.version_push import build_version_layers, push_release, wait_for_finished_attempt
from shop_ops.observability import prometheus as prom
from shop_ops.operator.launches import COMMAND, LAUNCHED_BY
from shop_ops.release import apps
from shop_ops.release.apps import stack_id
from shop_ops.resources.containers import DockerEngine
from shop_ops.resources.k6 import K6Summary, run_k6
from shop_ops.resources.ledger import ReleaseLedger
from shop_ops.resources.registry import RegistryClient
from shop_ops.services.processes import free_port, pg_bin, pids_using, port_is_open
from shop_ops.services.redis import RedisPasswords, admin_client
from shop_ops.settings import ImageSettings, Settings, load_settings
from tests.ops.conftest import WEBHOOK_TOKEN

pytestmark = pytest.mark.services  # `shop-ops local up` starts every service and dagster dev

SHOP_OPS = str(Path(sys.executable).parent / "shop-ops")
LOADTESTS = Path(__file__).resolve().parents[2] / "loadtests"
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
    """`shop-ops local ARGS...`."""
    return operator(env, "local", *args, timeout=timeout)


def operator(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`shop-ops ARGS...` as an operator runs it in a shell of the stack."""
    return subprocess.run([SHOP_OPS, *args], env=env, capture_output=True, text=True, timeout=timeout)


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


def posted(received: list[dict], *prefixes: str) -> list[tuple[str, dict[str, str]]]:
    """(subject, its `Name: value` lines) of each notifier message the webhook got whose subject starts so."""
    found = []
    for post in received:
        subject, _, body = str(post.get("text") or "").partition("\n")  # the notifier posts "*subject*\ntext"
        if subject.strip("*").startswith(prefixes):
            head = body.split("\n\n", 1)[0]  # the reason, if any, follows a blank line
            found.append((subject.strip("*"), dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)))
    return found


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
        return self.wait(self.submit(job, run_config, tags), job, timeout)

    def submit(self, job: str, run_config: dict, tags: dict[str, str] | None = None) -> str:
        return self.client.submit_job_execution(
            job, repository_location_name="shop_ops", repository_name="__repository__", run_config=run_config,
            tags=tags,
        )  # fmt: skip

    def wait(self, run_id: str, job: str, timeout: float = 240) -> UiRun:
        """The run's outcome once it ended, with its step failures' messages."""
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


def launched_run_id(out: str) -> str:
    """The run id of a launching command's first line (`launched JOB run ID: URL`)."""
    first = next(line for line in out.splitlines() if line.startswith("launched "))
    return first.split(" run ")[1].split(":")[0]


def run_tags(home: Path, run_id: str) -> tuple[str, dict[str, str]]:
    """(job name, tags) of a run in the stack's Dagster instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None, run_id
        return run.job_name, dict(run.tags)


def cache_client(settings: Settings, environment: str) -> redis.Redis:
    passwords = RedisPasswords.from_files(
        settings.redis_password_file(environment), settings.redis_admin_password_file(environment)
    )
    return admin_client(settings.local_environments()[environment].redis.cache_port, passwords)


def check_db_check(env: dict[str, str], settings: Settings) -> None:
    """`shop-ops db check`: the server, its schema revision, round trips, connections, PgBouncer's pools."""
    checked = operator(env, "db", "check", "staging", "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    port = settings.local_environments()["staging"].postgres_port
    assert report["database"] == f"shop@127.0.0.1:{port}/shop"
    assert report["server_version"].startswith("PostgreSQL 15"), report
    assert report["schema_revision"] == head_revision()
    assert 0 < report["round_trip_ms"]["median"] <= report["round_trip_ms"]["max"] < 1000
    assert 0 < report["connections"]["client"] < report["connections"]["max"]
    pools = report["pgbouncer"]["pools"]  # the serving backends log in as shop_a or shop_b through PgBouncer
    assert {pool["user"] for pool in pools} & {"shop_a", "shop_b"}, pools
    assert all(pool["database"] == "shop" and pool["pool_mode"] == "transaction" for pool in pools), pools


def check_cache_clear(env: dict[str, str], settings: Settings, staging: str) -> None:
    """`shop-ops cache clear`: --catalog deletes the catalog's keys only, --all the environment's cache; the
    other environment's cache and the carts (their own store) stay."""
    with httpx.Client(timeout=10) as http:
        for path in ("/api/products?q=lamp", "/api/products/1", "/api/categories"):
            assert http.get(staging + path).status_code == 200
        cart = http.post(f"{staging}/api/carts", json={}).json()["id"]
        assert http.post(f"{staging}/api/carts/{cart}/items", json={"product_id": 1, "quantity": 2}).status_code == 200
    with cache_client(settings, "staging") as cache, cache_client(settings, "production") as other:
        pages = [k for pattern in ("catalog:*:*", "product:*") for k in cache.scan_iter(match=pattern)]
        assert pages, cache.keys()
        version = int(cache.get("catalog:version") or 0)
        cache.set("ops-test:not-the-catalog", "1")
        theirs = {"product:999999": "{}", "ops-test:production": "1"}  # without a TTL: gone only if deleted
        other.mset(theirs)
        catalog = operator(env, "cache", "clear", "staging", "--catalog", "--json")
        assert catalog.returncode == 0, catalog.stderr
        cleared = json.loads(catalog.stdout)
        assert cleared["deleted"] >= 1 and cleared["catalog_version"] == version + 1, cleared
        assert [k for pattern in ("catalog:*:*", "product:*") for k in cache.scan_iter(match=pattern)] == []
        assert sorted(cache.keys()) == ["catalog:version", "ops-test:not-the-catalog"]
        everything = operator(env, "cache", "clear", "staging", "--all")
        assert everything.returncode == 0 and "keys deleted" in everything.stdout, everything
        assert cache.dbsize() == 0
        assert other.mget(list(theirs)) == list(theirs.values())  # the other environment's cache: untouched
        other.delete(*theirs)
    kept = httpx.get(f"{staging}/api/carts/{cart}", timeout=10)  # the cart store: the cart and its items stay
    assert kept.status_code == 200 and kept.json()["items"][0]["quantity"] == 2, kept.text


def check_restart_under_load(env: dict[str, str], staging: str) -> None:
    """`shop-ops restart staging shop` under k6: the idle slot takes over, no request fails; the router reloads."""
    before = httpx.get(f"{staging}/", timeout=10).headers["x-shop-slot"]
    version = served_version(staging)
    load: dict[str, K6Summary] = {}
    k6_env = {"BASE_URL": staging, "RATE": "20", "DURATION": "12s"}
    k6 = threading.Thread(target=lambda: load.update(summary=run_k6(LOADTESTS / "homepage.js", k6_env)))
    k6.start()
    time.sleep(1.5)
    try:
        restarted = operator(env, "restart", "staging", "shop", "--json")
    finally:
        k6.join(60)
    assert restarted.returncode == 0, restarted.stderr
    done = json.loads(restarted.stdout)
    assert (done["previous_slot"], done["slot"]) == (before, "green" if before == "blue" else "blue"), done
    summary = load["summary"]
    assert summary.error_rate == 0 and summary.requests >= 200, (summary.error_rate, summary.requests)
    assert httpx.get(f"{staging}/", timeout=10).headers["x-shop-slot"] == done["slot"]
    assert served_version(staging) == version  # the same release, restarted
    reloaded = operator(env, "restart", "staging", "router")
    assert reloaded.returncode == 0 and "reloaded gracefully" in reloaded.stdout, reloaded
    assert served_version(staging) == version


def check_logs_collect(env: dict[str, str], secrets: list[str]) -> None:
    """`shop-ops logs collect`: the window's lines of the environment, per service, in one archive; the same
    window twice gives the same archive; no secret in it."""
    # Ended a minute ago: every line of the window is in the store by now (rsyslog polls the files).
    until = (datetime.now(UTC) - timedelta(seconds=60)).replace(microsecond=0)
    since = until - timedelta(minutes=20)
    window = ["--since", since.isoformat(), "--until", until.isoformat()]
    folder = Path(env["SHOP_OPS_STATE"]) / "log-archives-test"
    first, second = folder / "first.tar.gz", folder / "second.tar.gz"
    collected = operator(env, "logs", "collect", "staging", *window, "--output", str(first), "--json")
    assert collected.returncode == 0, collected.stderr
    found = json.loads(collected.stdout)
    assert found["lines"] > 0 and {"router", "backend"} <= set(found["lines_per_service"]), found
    with tarfile.open(first) as archive:
        assert {"manifest.json", "router.jsonl"} <= set(archive.getnames()), archive.getnames()
        rows = [json.loads(line) for line in archive.extractfile("router.jsonl").read().decode().splitlines()]
    assert len(rows) == found["lines_per_service"]["router"]
    assert {row["environment"] for row in rows} == {"staging"}
    assert all(since <= datetime.fromisoformat(row["ts"]) < until for row in rows)
    content = first.read_bytes()
    text = gzip.decompress(content).decode(errors="replace")
    assert not [secret for secret in secrets if secret in text]
    again = operator(env, "logs", "collect", "staging", *window, "--output", str(second))
    assert again.returncode == 0 and second.read_bytes() == content, again  # the same window, the same archive


def _bytes_if_present(path: Path) -> bytes:
    """A file's bytes; nothing if it went away since it was listed (dagster dev still runs: SQLite folds its
    -wal and -journal files into the database, which is read too)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


# up, a release through the sensor, promote, a second release, rollback, backups, down, up: the longest test.
@pytest.mark.timeout(720)
@pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning")  # dagster_graphql
def test_up_status_down_up(local_env: dict[str, str], docker_api: DockerApi, webhook, monkeypatch) -> None:
    env = local_env
    # The stack's notifier (dagster dev's, and Alertmanager's) posts to a receiver in this test.
    env["SHOP_OPS_SLACK_WEBHOOK_URL"] = webhook.url
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
    secrets.append(WEBHOOK_TOKEN)  # the notifier's webhook URL carries its token
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

    # promote_production launched as the UI launches it (GraphQL), run by dagster dev: refused without approver.
    promote = {"version": "9.9.9", "backend_digest": digests["backend"], "frontend_digest": digests["frontend"]}
    refused = ui.run("promote_production", {"ops": {"production__deployment": {"config": promote}}})
    assert refused.status == "FAILURE" and "approved_by is required" in refused.error, refused
    assert served_version(urls["production"]) != "9.9.9" and ledger.serving("production") is None
    # The operator command refuses before any run: no approver, or a version never verified on staging.
    dagster_url = ("--dagster-url", doc["dagster"]["url"], "--timeout", "300")
    unapproved = operator(env, "deploy", "production", "9.9.9", *dagster_url)
    assert unapproved.returncode == 2 and "needs --approved-by" in unapproved.stderr, unapproved
    unverified = operator(env, "deploy", "production", "9.9.7", "--approved-by", "grace", *dagster_url)
    assert unverified.returncode == 2 and unverified.stderr.count("\n") == 1, unverified
    assert "no verified deployment of 9.9.7 on staging" in unverified.stderr, unverified
    # The approved promotion through `shop-ops deploy`, as an operator runs it: the same promote_production job,
    # followed to its end with its log lines, tagged with who launched it (the refused UI launch names nobody).
    deployed = operator(
        env, "deploy", "production", "9.9.9", "--approved-by", "ada", "--operator", "grace", *dagster_url
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr
    promoted_run = launched_run_id(deployed.stdout)
    assert deployed.stdout.rstrip().endswith(f"promote_production run {promoted_run} ended SUCCESS"), deployed.stdout
    assert "production__deployment" in deployed.stdout and "verifying 9.9.9" in deployed.stdout  # the run's lines
    job, tags = run_tags(ui.home, promoted_run)
    assert (job, tags[LAUNCHED_BY], tags[COMMAND]) == ("promote_production", "grace", "deploy"), tags
    again = operator(env, "deploy", "production", "9.9.9", "--approved-by", "ada", *dagster_url)
    assert again.returncode == 0 and "nothing to do: production already serves 9.9.9" in again.stdout, again
    assert served_version(urls["production"]) == "9.9.9"
    production = ledger.serving("production")
    assert (production.version, production.approved_by) == ("9.9.9", "ada")
    baseline = ui.wait_for_materialization(["production", "load_test_baseline"], after=production.started_at)
    assert baseline["release"].startswith("9.9.9") and baseline["passed"] is True, baseline
    audit_run = ui.submit("audit_trail", {})  # read below, after the next release (it runs meanwhile)

    release_through_the_sensor("9.9.10", engine, registry, ledger)
    assert served_version(urls["staging"]) == "9.9.10"
    # The audit trail, launched as the UI launches it: the promotion with who launched it, its approver and the
    # names of the secrets its deploy read; the refused attempt read none. No secret value in the frame (nor,
    # below, anywhere under DAGSTER_HOME): every secret file of the state folder is looked for.
    audited = ui.wait(audit_run, "audit_trail")
    assert audited.status == "SUCCESS", audited
    files = [path for path in (state / "secrets").iterdir() if path.name.endswith(("-password", "-token", "-secret"))]
    secrets += [value for value in (path.read_text().strip() for path in files if path.is_file()) if len(value) >= 8]
    pickled = (ui.home / "storage" / "audit_log").read_bytes()  # the asset's value, as Dagster stored it
    assert not any(secret.encode() in pickled for secret in secrets), "a secret value is in the audit log"
    trail = pd.read_pickle(io.BytesIO(pickled)).set_index("run_id")
    row = trail.loc[promoted_run]
    assert (row["launched_by"], row["approved_by"], row["version"]) == ("grace", "ada", "9.9.9"), row
    read = {f"production-{name}" for name in ("db-password", "admin-token", "payment-webhook-secret")}
    assert read <= set(row["secrets_read"]), row
    assert pd.isna(trail.loc[refused.run_id, "launched_by"]) and trail.loc[refused.run_id, "secrets_read"] == []
    # perf_regression launched as the UI launches it, for a day other than today: refused (a nightly run
    # measures now). The nightly comparison itself (pass, and fail on a real slowdown) is
    # tests/ops/test_perf_assets.py's, and the month's cost report tests/ops/test_cost_assets.py's.
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    refused_perf = ui.run("perf_regression", {}, tags={"dagster/partition": yesterday})
    assert refused_perf.status == "FAILURE" and "only today's partition" in refused_perf.error, refused_perf

    # The rollback through `shop-ops rollback`: the partitioned rollback job a UI launch runs, with its tags.
    # With --json: one object per line, the launch, the run's events, the result.
    rolled_back = operator(env, "rollback", "staging", "--operator", "ada", "--json", *dagster_url)
    assert rolled_back.returncode == 0, rolled_back.stdout[-3000:] + rolled_back.stderr
    lines = [json.loads(line) for line in rolled_back.stdout.splitlines()]
    assert [lines[0]["type"], lines[-1]["type"], lines[-1]["status"]] == ["launched", "result", "SUCCESS"], lines[-1]
    assert {line["type"] for line in lines[1:-1]} == {"event"}
    rolled_run = lines[0]["run_id"]
    job, tags = run_tags(ui.home, rolled_run)
    assert job == "rollback" and tags.items() >= rollback_run_config.get_tags_for_partition_key("staging").items()
    assert tags[LAUNCHED_BY] == "ada"
    assert served_version(urls["staging"]) == "9.9.9"
    staging = ledger.serving("staging")
    assert (staging.version, staging.kind, staging.backend_digest) == ("9.9.9", "rollback", digests["backend"])
    assert "requested by ada" in staging.reason, staging
    # migrate materializes database_schema, whose input is build_images' release tag: none in this instance.
    migrate = operator(env, "migrate", "staging", *dagster_url)
    assert migrate.returncode == 2 and "has no backend_release_tag yet: launch build_images first" in migrate.stderr

    # The operator commands that act directly, through the resources the pipeline uses.
    monkeypatch.setenv("SHOP_OPS_STATE", env["SHOP_OPS_STATE"])  # this process reads the stack's secret files too
    settings = load_settings(Path(env["SHOP_OPS_CONFIG"]))
    check_db_check(env, settings)
    check_cache_clear(env, settings, urls["staging"])
    check_restart_under_load(env, urls["staging"])
    check_logs_collect(env, secrets)

    # Deployment notifications as the webhook got them: each release event once, in order, agreeing with the
    # ledger (rows, digests, k6 numbers, approver), each linking to the run that did it.
    history = ledger.history()
    rows = {(r["environment"], r["kind"], r["version"]): r for r in history}
    assert len(rows) == len(history) == 4, history
    first, second = rows["staging", "deploy", "9.9.9"], rows["staging", "deploy", "9.9.10"]
    promoted_row, back = rows["production", "deploy", "9.9.9"], rows["staging", "rollback", "9.9.9"]
    notices = [fields for _, fields in posted(webhook.received, "[shop-ops] release ", "[shop-ops] rollback ")]
    assert [(n["Event"], n["Environment"], n["Version"], n["Release id"]) for n in notices] == [
        ("started", "staging", "9.9.9", first["release_id"]),
        ("verified", "staging", "9.9.9", first["release_id"]),
        ("refused", "production", "9.9.9", "- (refused before anything changed: no ledger row)"),
        ("started", "production", "9.9.9", promoted_row["release_id"]),
        ("promoted", "production", "9.9.9", promoted_row["release_id"]),
        ("started", "staging", "9.9.10", second["release_id"]),
        ("verified", "staging", "9.9.10", second["release_id"]),
        ("rolled_back", "staging", "9.9.9", back["release_id"]),
    ], notices
    pushed = {"backend_digest": digests["backend"], "frontend_digest": digests["frontend"]}  # the refusal's release
    for notice in notices:
        row = next((r for r in history if r["release_id"] == notice["Release id"]), pushed)
        assert (notice["Backend digest"], notice["Frontend digest"]) == (row["backend_digest"], row["frontend_digest"])
        if notice["Event"] in ("verified", "promoted"):
            numbers = {k: float(v) for k, v in (pair.split("=") for pair in notice["Verification"].split(", "))}
            assert set(numbers) >= {"k6_p95_ms", "k6_error_rate", "k6_requests"}, notice
            assert numbers == pytest.approx({name: row[name] for name in numbers}, rel=1e-5), (notice, row)
    assert [n.get("Approved by") for n in notices[2:5]] == ["- (none given)", "ada", "ada"]
    assert notices[7]["Rolled back from"] == f"9.9.10 ({second['release_id']})" and second["status"] == "rolled_back"
    ui_runs = f"{doc['dagster']['url']}/runs/"
    links = [n["Run"] for n in notices]
    assert links[2:5] + links[7:] == [ui_runs + run for run in (refused.run_id, promoted_run, promoted_run, rolled_run)]
    assert links[0] == links[1] != links[5] == links[6]
    with dg.DagsterInstance.from_config(str(ui.home)) as instance:
        for link in (links[0], links[5]):
            run = instance.get_run_by_id(link.removeprefix(ui_runs))
            assert run is not None and run.job_name == "release_staging", link  # the push sensor's runs

    # Backups through the UI: the newest day's nightly_backup (both databases, restore tests that start
    # the backend each environment serves, the pipeline's state); an older day refused. The DR drill's
    # recovery to a point in time is tests/backup/test_backup_target.py's.
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    nightly = ui.run("nightly_backup", {}, tags={"dagster/partition": day.isoformat()}, timeout=300)
    assert nightly.status == "SUCCESS", nightly
    old = (day - timedelta(days=3)).isoformat()
    stale = ui.run("nightly_backup", {}, tags={"dagster/partition": old})
    assert stale.status == "FAILURE" and f"partition {old} refused" in stale.error, stale
    with dg.DagsterInstance.from_config(str(ui.home)) as instance:
        restore = _latest_metadata(instance, ["staging", "restore_test"])
        assert restore["rto_seconds"] > 0 and restore["catalog_products"] > 0
        assert restore["backend_image"] == registry.pinned_ref("shop/backend", digests["backend"])
        backup = _latest_metadata(instance, ["production", "database_backup"])
        assert backup["release"].startswith("9.9.9") and backup["physical_kind"] == "full"
        assert Path(backup["location"]).is_relative_to(Path(env["SHOP_OPS_STATE"]) / "backups")
        assert _latest_metadata(instance, ["pipeline_state_backup"])["databases"] >= 2
        # backup_freshness_sensor (on from the start) requested a run of the backup checks, which ran.
        checks = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "backup_freshness_sensor"}))
        assert checks and all(run.status == dg.DagsterRunStatus.SUCCESS for run in checks), checks

    # run_failure_alert_sensor (every 30 s, in the order runs failed) told of the failed runs no release notice
    # had announced, each once; the refused promotion, announced above, is not among them. The alert of the
    # later refused perf_regression run shows the sensor is past the refused promotion.
    def failure_alerts() -> list[str]:
        return [fields["Run"] for _, fields in posted(webhook.received, "[shop-ops] run failed: ")]

    deadline = time.monotonic() + 60
    while ui_runs + refused_perf.run_id not in failure_alerts():
        assert time.monotonic() < deadline, failure_alerts()
        time.sleep(1)
    alerted = failure_alerts()
    assert ui_runs + refused.run_id not in alerted and len(set(alerted)) == len(alerted), alerted

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
    # `shop-ops db check` of the stopped database: exit 1, one line naming it and the fix.
    port = load_settings(Path(env["SHOP_OPS_CONFIG"])).local_environments()["staging"].postgres_port
    stopped = operator(env, "db", "check", "staging")
    assert stopped.returncode == 1 and stopped.stdout == "", stopped
    [line] = stopped.stderr.strip().splitlines()
    assert line.startswith(f"shop-ops db: the staging database shop@127.0.0.1:{port}/shop does not answer"), line
    assert "shop-ops local up" in line, line

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
