"""Database password rotation between two login roles (shop_ops/security/rotation.py), with the real pieces.

One environment on free ports: PostgreSQL 15 (SCRAM on TCP) with the shop's schema and catalog,
PgBouncer in front of it, the session's Redis, an nginx router, the shop's locally built images
(`built`) in blue/green slots over the session's Docker API, a SQLite release ledger; all wired
through a real `BlueGreenTarget`, as definitions.py wires the local profile. The tests run in file
order against that environment (each starts from what the last left).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import psycopg2
import pytest

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.assets.rotation import rotate_database_login, rotation_run_config
from shop_ops.release import apps
from shop_ops.release.flow import DEPLOY_LOCK_KEY, DeployRefused
from shop_ops.release.targets import BlueGreenTarget, DatabaseLoginsConfig, ShopWiring
from shop_ops.resources.containers import ContainersResource, DockerEngine
from shop_ops.resources.k6 import K6Resource, K6Summary, run_k6
from shop_ops.resources.ledger import LedgerResource, ReleaseLedger
from shop_ops.resources.postgres import DatabaseTarget, PostgresResource
from shop_ops.resources.registry import RegistryClient, RegistryResource
from shop_ops.resources.router import EnvironmentRouter, RouterResource, SlotPortsConfig
from shop_ops.security.rotation import RotationFailed, rotate
from shop_ops.services.db_logins import LoginFiles
from shop_ops.services.pgbouncer import PgBouncer
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port
from shop_ops.settings import DataSettings

pytestmark = pytest.mark.services

ENV = "staging"
IMAGES = {"backend": "localhost/shop-backend:local", "frontend": "localhost/shop-frontend:local"}
CONTAINER_GID = 10001  # the shop images' user and group
PRODUCTS = 50
LOAD_SECONDS = 30  # k6 starts 2 s before the rotation (2-4 s on a quiet machine, 11 s on a busy one) and outlasts it
# 25 iterations/s of two requests that reach the database through the serving backend's pool:
# readiness (a query each time) and a product page (the edge cache keeps it for a second only).
LOAD_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
export const options = {
  scenarios: { load: { executor: 'constant-arrival-rate', rate: 25, timeUnit: '1s', duration: __ENV.DURATION,
                       preAllocatedVUs: 20, maxVUs: 60 } },
  thresholds: { http_req_failed: ['rate==0'] },
};
export default function () {
  const ready = http.get(`${__ENV.BASE_URL}/readyz`);
  check(ready, { 'ready 200': (r) => r.status === 200 });
  const id = 1 + Math.floor(Math.random() * parseInt(__ENV.PRODUCTS, 10));
  const product = http.get(`${__ENV.BASE_URL}/api/products/${id}`);
  check(product, { 'product 200': (r) => r.status === 200 });
}
"""


@dataclass
class Rotating:
    base: Path
    cluster: PostgresCluster
    bouncer: PgBouncer
    files: LoginFiles
    target: BlueGreenTarget
    ledger: ReleaseLedger
    owner_password: str

    def serving_slot(self) -> str | None:
        serving = self.target.router.router(ENV).serving()
        return serving.slot if serving else None

    def stored_files(self) -> list[Path]:
        """The ledger's files and the logs of PostgreSQL and PgBouncer (where a statement could have leaked)."""
        ledger = [p for p in (self.base / "state").iterdir() if p.is_file()]
        return [*ledger, self.bouncer.log, self.cluster.datadir / "server.log"]

    def password(self, role: str) -> str:
        return self.files.password_file(role).read_text().strip()

    def sessions(self) -> dict[str, int]:
        rows = self.cluster.psql(
            "SELECT usename, count(*) FROM pg_stat_activity WHERE usename LIKE 'shop%' GROUP BY usename"
        )
        return {name: int(count) for name, count in (row.split("|") for row in rows.splitlines() if row)}


@dg.job(name="rotate_database_password", config=rotation_run_config)
def rotate_database_password() -> None:
    """The job as shop_ops/jobs.py defines it (the integrator's lines)."""
    rotate_database_login()


def login(port: int, user: str, password: str) -> str:
    """current_user of a fresh session as `user`, or the server's refusal as text."""
    try:
        conn = psycopg2.connect(
            host="127.0.0.1", port=port, dbname="shop", user=user, password=password, connect_timeout=5
        )
    except psycopg2.OperationalError as exc:
        return f"refused: {str(exc).strip()}"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def rotating(
    built: dict, engine: DockerEngine, registry_client: RegistryClient, redis_server: RedisServer
) -> Iterator[Rotating]:
    # `built` (tests/conftest.py): the :local images exist; they are what serves here.
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-rotation-"))
    base.chmod(0o755)  # PostgreSQL and PgBouncer run as the postgres OS user under root
    secrets_dir = base / "secrets"
    secrets_dir.mkdir()
    secrets_dir.chmod(0o711)
    cluster = PostgresCluster(datadir=base / "pg", port=free_port(), tcp_auth="scram-sha-256")
    bouncer = PgBouncer(base / "pgbouncer", free_port(), cluster.port, "shop", pool_size=5)
    router_folder, router_port = base / "router", free_port()
    slots = {slot: SlotPortsConfig(backend_port=free_port(), frontend_port=free_port()) for slot in ("blue", "green")}
    owner_password = secrets.token_urlsafe(18)
    owner_file = secrets_dir / f"{ENV}-db-password"
    owner_file.write_text(owner_password)
    owner_file.chmod(0o640)
    admin_token = base / "admin-token"
    admin_token.write_text("rotation-test-admin-token\n")
    admin_token.chmod(0o644)
    logins = DatabaseLoginsConfig(
        secrets_dir=str(secrets_dir), cluster_datadir=str(cluster.datadir), cluster_port=cluster.port,
        pgbouncer_folder=str(bouncer.folder), pgbouncer_port=bouncer.port, container_gid=CONTAINER_GID,
        role_defaults=DataSettings().shop_role_defaults(),
    )  # fmt: skip
    stack = f"rottest{free_port()}"
    ledger_dir = base / "state"
    target = BlueGreenTarget(
        registry=RegistryResource(url=registry_client.url, credentials_file=str(registry_client.credentials_file)),
        ledger=LedgerResource(state_dir=str(ledger_dir)), k6=K6Resource(),
        containers=ContainersResource(docker_host=engine.docker_host),
        router=RouterResource(environments={ENV: EnvironmentRouter(
            folder=str(router_folder), port=router_port, blue=slots["blue"], green=slots["green"])}),
        postgres=PostgresResource(environments={ENV: DatabaseTarget(port=cluster.port, password_file=str(owner_file))}),
        stack=stack,
        shops={ENV: ShopWiring(
            redis_url=redis_server.url(7), pooled_database_url=bouncer.dsn("shop", driver="postgresql+asyncpg"),
            database_logins=logins, database_pool_size=4)},
        admin_token_files={ENV: str(admin_token)}, ready_timeout_seconds=60,
    )  # fmt: skip
    try:
        cluster.init()
        cluster.start()
        cluster.set_role_password("shop", owner_password)
        cluster.create_database("shop", owner="shop")
        direct = f"postgresql+asyncpg://shop:{owner_password}@127.0.0.1:{cluster.port}/shop"
        upgrade(direct)  # as a release's migration does: as the owner, directly
        asyncio.run(seed_catalog(direct, PRODUCTS))
        assert logins.logins(ENV).ensure() == "shop_a"  # what `shop-ops local up` does
        logins.logins(ENV).sync_pooler()
        bouncer.start()
        router = target.router.router(ENV)
        router.start(target.router.slot_ports(ENV, "blue"))
        blue_green = target.strategy(ENV, print)
        ports = slots["blue"]
        apps.start_slot(engine, blue_green.app_env, "blue", IMAGES, ports.backend_port, ports.frontend_port)
        apps.wait_ready(engine, [], [f"http://127.0.0.1:{ports.backend_port}/readyz"], timeout=60)
        yield Rotating(base, cluster, bouncer, logins.files(ENV), target, ReleaseLedger(ledger_dir), owner_password)
    finally:
        target.router.router(ENV).stop()
        apps.remove_stack_containers(engine, stack)
        bouncer.stop()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_login_roles_act_as_the_owner(rotating: Rotating) -> None:
    """The serving login role's sessions act as `shop` (objects it creates belong to shop), with the role's
    limits; ensuring again changes nothing (no new salt: PgBouncer's copy stays valid)."""
    verifier = rotating.cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'shop_a'")
    logins = rotating.target.shops[ENV].database_logins
    assert logins is not None and logins.logins(ENV).ensure() == "shop_a"
    assert rotating.cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'shop_a'") == verifier
    conn = psycopg2.connect(
        host="127.0.0.1", port=rotating.cluster.port, dbname="shop", user="shop_a", password=rotating.password("shop_a")
    )
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT session_user, current_user, current_setting('statement_timeout')")
            assert cur.fetchone() == ("shop_a", "shop", "5s")
            cur.execute("CREATE TABLE rotation_probe (id int)")  # the runtime creates none; were it to, shop owns it
            cur.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'rotation_probe'")
            assert cur.fetchone() == ("shop",)
            cur.execute("DROP TABLE rotation_probe")
            cur.execute("SELECT count(*) FROM products")
            assert cur.fetchone()[0] == PRODUCTS
    finally:
        conn.close()
    assert login(rotating.cluster.port, "shop_b", "anything").startswith("refused")  # idle: locked
    mode = rotating.files.password_file("shop_a").stat().st_mode & 0o777
    assert mode == 0o640 and rotating.files.password_file("shop_a").stat().st_gid == CONTAINER_GID
    assert not rotating.files.password_file("shop_b").exists()


def test_rotation_under_load_through_dagster(rotating: Rotating) -> None:
    old_password = rotating.password("shop_a")
    assert rotating.serving_slot() == "blue" and rotating.sessions().get("shop_a", 0) > 0
    load: dict[str, K6Summary] = {}
    script = rotating.base / "rotation-load.js"
    script.write_text(LOAD_SCRIPT)
    url = rotating.target.url(ENV)
    k6 = threading.Thread(
        target=lambda: load.update(
            summary=run_k6(script, {"BASE_URL": url, "DURATION": f"{LOAD_SECONDS}s", "PRODUCTS": str(PRODUCTS)})
        )
    )
    with tempfile.TemporaryDirectory(prefix="shop-ops-test-rotation-dagster-") as home:
        with dg.instance_for_test(temp_dir=home) as instance:
            k6.start()
            time.sleep(2)
            began = time.monotonic()
            result = rotate_database_password.execute_in_process(
                partition_key=ENV, instance=instance, raise_on_error=False,
                resources={"release_target": rotating.target, "ledger": rotating.target.ledger},
            )  # fmt: skip
            rotation_seconds = time.monotonic() - began
            k6.join(90)
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
            metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
            new_password = rotating.password("shop_b")
            stored = [p for p in Path(home).rglob("*") if p.is_file()] + rotating.stored_files()
            leaks = [
                str(p)
                for p in stored
                for secret in (old_password, new_password)
                if secret in p.read_bytes().decode(errors="replace")
            ]
    summary = load["summary"]
    print(
        f"\nrotation {rotation_seconds:.1f}s under k6 {summary.req_per_s:.0f} req/s: {summary.requests} requests, "
        f"error rate {summary.error_rate}, p95 {summary.p95_ms:.1f} ms; steps {metadata}"
    )
    assert rotation_seconds < LOAD_SECONDS - 4, "the rotation outlasted the load: raise LOAD_SECONDS"
    assert summary.error_rate == 0 and summary.requests >= 40 * LOAD_SECONDS, (summary.error_rate, summary.requests)
    assert leaks == []  # nothing of either password in the run's stored data or the ledger
    assert (metadata["from_role"], metadata["to_role"], metadata["slot"]) == ("shop_a", "shop_b", "green")

    # The backends serve as the new role; the old one is locked, its sessions gone, its file removed.
    assert rotating.files.serving() == "shop_b" and rotating.serving_slot() == "green"
    sessions = rotating.sessions()
    assert sessions.get("shop_b", 0) > 0 and "shop_a" not in sessions, sessions
    assert not rotating.files.password_file("shop_a").exists()
    refused_direct = login(rotating.cluster.port, "shop_a", old_password)
    refused_pooled = login(rotating.bouncer.port, "shop_a", old_password)
    assert refused_direct.startswith("refused") and refused_pooled.startswith("refused"), (
        refused_direct,
        refused_pooled,
    )
    assert login(rotating.bouncer.port, "shop_b", new_password) == "shop"
    [row] = rotating.ledger.rotations(ENV)
    assert (row["from_role"], row["to_role"], row["status"], row["run_id"]) == (
        "shop_a",
        "shop_b",
        "rotated",
        result.run_id,
    )
    assert httpx.get(f"{url}/readyz", timeout=5).headers.get("x-shop-slot") == "green"


def test_a_new_slot_that_never_gets_ready_switches_nothing(rotating: Rotating) -> None:
    impatient = rotating.target.model_copy(update={"ready_timeout_seconds": 0.5})
    serving_password = rotating.password("shop_b")
    with pytest.raises(RotationFailed) as failed:
        rotate(impatient.login_rotation(ENV, print), rotating.ledger, run_id="never-ready")
    message = str(failed.value)
    assert "nothing was switched and shop_b still serves" in message and "did not become ready" in message, message
    assert rotating.files.serving() == "shop_b" and rotating.serving_slot() == "green"
    assert login(rotating.cluster.port, "shop_b", serving_password) == "shop"  # the serving role: unlocked
    assert (
        rotating.cluster.psql("SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = 'shop_a'")
        == "f|t"
    )
    assert httpx.get(f"{rotating.target.url(ENV)}/readyz", timeout=5).status_code == 200
    assert rotating.ledger.rotations(ENV)[-1]["status"] == "failed"


def test_a_rotation_waits_for_no_release(rotating: Rotating) -> None:
    """The environment's deploy lock held (a release runs): refused at once, nothing touched."""
    holder = psycopg2.connect(
        host="127.0.0.1", port=rotating.cluster.port, dbname="shop", user="shop", password=rotating.owner_password
    )
    rows = len(rotating.ledger.rotations(ENV))
    try:
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (DEPLOY_LOCK_KEY,))
        with pytest.raises(DeployRefused, match="another deploy, promote or rollback of staging is running"):
            rotate(rotating.target.login_rotation(ENV, print), rotating.ledger)
    finally:
        holder.close()
    assert len(rotating.ledger.rotations(ENV)) == rows and rotating.files.serving() == "shop_b"


def test_a_second_rotation_flips_back(rotating: Rotating) -> None:
    previous = rotating.password("shop_b")
    result = rotate(rotating.target.login_rotation(ENV, print), rotating.ledger, run_id="second")
    assert (result.from_role, result.to_role, result.details["slot"]) == ("shop_b", "shop_a", "blue")
    assert rotating.files.serving() == "shop_a" and rotating.serving_slot() == "blue"
    assert login(rotating.cluster.port, "shop_b", previous).startswith("refused")
    assert login(rotating.cluster.port, "shop_a", rotating.password("shop_a")) == "shop"
    assert "shop_b" not in rotating.sessions()
    # A release after a rotation starts its slots as the role that serves now.
    assert rotating.target.strategy(ENV, print).app_env.serving_login == "shop_a"
