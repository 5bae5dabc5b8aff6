"""Blue/green deploys (shop_ops/release/flow.py with the steps of shop_ops/release/bluegreen.py) with the real local pieces, on free ports.

The session fixtures (tests/conftest.py) give the Docker API over the repository's podman storage,
a registry with htpasswd auth, PostgreSQL and Redis; this module adds one environment: its own
database, an nginx router and a release ledger in a temp state folder. Release images are real
images pushed to the test registry: small derived builds of the locally built shop images
(`localhost/shop-*:local`), one per version, so each release has its own manifest digests.
The tests run in file order against that one environment (each starts from what the last left).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from shop.migrate import head_revision
from shop.seed import seed_catalog
from shop_ops.release import apps
from shop_ops.release.bluegreen import BlueGreen
from shop_ops.release.flow import (
    DEPLOY_LOCK_KEY,
    DeployFailed,
    DeployRefused,
    Release,
    check_guards,
    deploy,
    rollback,
)
from shop_ops.release.images import registry_auth
from shop_ops.release.schema import migrate_environment
from shop_ops.resources.containers import DockerEngine, RegistryAuth
from shop_ops.resources.k6 import K6Summary, run_k6
from shop_ops.resources.ledger import ReleaseLedger
from shop_ops.resources.postgres import DatabaseTarget
from shop_ops.resources.registry import RegistryClient
from shop_ops.resources.router import Router, Upstreams
from shop_ops.services.discovery import shop_targets_file
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port
from shop_ops.services.registry import RegistryServer
from tests.support import SEED_PRODUCTS, new_database

LOADTESTS = Path(__file__).resolve().parents[2] / "loadtests"
# Own repositories in the session registry: the images assets' tests own shop/backend and shop/frontend.
REPOSITORY_PREFIX = "bluegreen-test"
BACKEND_BASE = "localhost/shop-backend:local"
FRONTEND_BASE = "localhost/shop-frontend:local"
MIGRATIONS_DIR = "/opt/venv/lib/python3.11/site-packages/shop/alembic/versions/"
# Two more migrations for release 5.0.0, on top of the shop's head: an expand one, then a contracting one
# that undoes it.
HEAD = head_revision()
MIGRATIONS = {
    "0901_legacy_code.py": ("0901", HEAD, "expand", 'op.add_column("products", sa.Column("legacy_code", sa.Text))'),
    "0902_drop_legacy_code.py": ("0902", "0901", "contract", 'op.drop_column("products", "legacy_code")'),
}
# version -> extra Dockerfile lines of its backend image
RELEASES = {
    "1.0.0": "ENV SHOP_VERSION=1.0.0",
    "2.0.0": "ENV SHOP_VERSION=2.0.0",
    "3.0.0": "ENV SHOP_VERSION=2.9.9",  # mislabelled: serves another version, so verification fails
    "4.0.0": 'ENV SHOP_VERSION=4.0.0\nCMD ["python3", "-c", "import time; time.sleep(3600)"]',  # never ready
    "5.0.0": f"ENV SHOP_VERSION=5.0.0\nCOPY {' '.join(MIGRATIONS)} {MIGRATIONS_DIR}",
}


def migration_source(revision: str, down: str, phase: str, upgrade: str) -> str:
    return (
        f'"""Test migration {revision} ({phase})."""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f'revision = "{revision}"\ndown_revision = "{down}"\nbranch_labels = None\ndepends_on = None\n'
        f'phase = "{phase}"\n\n\ndef upgrade() -> None:\n    {upgrade}\n'
    )


@dataclass
class Check:
    passed: bool
    reason: str

    def numbers(self) -> dict[str, float]:
        return {"checks": 3.0}  # what this verifier measured: three answers


def version_verifier(expected: str):
    """Through the router: the storefront, the catalog API and /version == `expected`."""

    def verify(base_url: str) -> Check:
        with httpx.Client(base_url=base_url, timeout=5) as http:
            home, products, version = http.get("/"), http.get("/api/products"), http.get("/version")
        if home.status_code != 200 or products.status_code != 200:
            return Check(False, f"/ answered {home.status_code}, /api/products {products.status_code}")
        served = version.json().get("version") if version.status_code == 200 else None
        if served != expected:
            return Check(False, f"/version answered {served!r}, expected {expected!r}")
        return Check(True, f"storefront, catalog and /version {served} answer")

    return verify


@pytest.fixture(scope="module")
def releases(
    built: dict, engine: DockerEngine, registry: RegistryServer, registry_client: RegistryClient
) -> Iterator[dict]:
    # `built` (tests/conftest.py) runs scripts/build-images.sh once per session: the :local images exist.
    user, password = registry_client.credentials()  # type: ignore[misc]
    auth = RegistryAuth(user, password, server=registry_client.address)
    context = Path(tempfile.mkdtemp(prefix="shop-ops-test-bg-"))
    for name, parts in MIGRATIONS.items():
        (context / name).write_text(migration_source(*parts))
    found, refs = {}, []
    for version, lines in RELEASES.items():
        digests = {}
        for role, base, extra in (
            ("backend", BACKEND_BASE, lines),
            ("frontend", FRONTEND_BASE, f"LABEL io.shop-ops.test-version={version}"),
        ):
            (context / "Dockerfile").write_text(f"FROM {base}\n{extra}\n")
            ref = registry_client.image_ref(f"{REPOSITORY_PREFIX}/{role}", version)
            engine.build(context, ref, use_cache=True)
            digests[role] = engine.push(ref, auth=auth, insecure=True)
            refs += [ref, registry_client.pinned_ref(f"{REPOSITORY_PREFIX}/{role}", digests[role])]
        found[version] = Release(version, digests["backend"], digests["frontend"])
    yield found
    shutil.rmtree(context, ignore_errors=True)
    for ref in refs:
        engine.remove_image(ref)


@dataclass
class Env:
    deps: BlueGreen
    router: Router
    ledger: ReleaseLedger


@pytest.fixture(scope="module")
def staging(
    engine: DockerEngine, registry_client: RegistryClient, postgres: PostgresCluster, redis_server: RedisServer
) -> Iterator[Env]:
    state = Path(tempfile.mkdtemp(prefix="shop-ops-test-bg-state-"))
    state.chmod(0o755)
    url = new_database(postgres, "bluegreen")
    password_file = state / "db-password"  # the test cluster trusts loopback: any password does
    password_file.write_text("unused\n")
    password_file.chmod(0o644)
    admin_token_file = state / "admin-token"
    admin_token_file.write_text("bluegreen-test-admin-token\n")
    admin_token_file.chmod(0o644)
    webhook_secret_file = state / "payment-webhook-secret"  # as local up makes it: callbacks are configured
    webhook_secret_file.write_text("bluegreen-test-webhook-secret\n")
    webhook_secret_file.chmod(0o644)
    app_env = apps.AppEnvironment(
        stack=f"bgtest{free_port()}", name="staging", database_url=url, password_file=password_file,
        redis_url=redis_server.url(5), admin_token_file=admin_token_file,
        payment_webhook_secret_file=webhook_secret_file,
    )  # fmt: skip
    slots = {slot: Upstreams(slot, free_port(), free_port()) for slot in ("blue", "green")}
    router = Router("staging", state / "router", free_port(), metrics_targets=state / "prometheus-targets")
    router.start(slots["blue"])  # nothing serves yet: the first deploy goes to green
    ledger = ReleaseLedger(state)
    deps = BlueGreen(
        engine=engine, registry=registry_client, router=router, app_env=app_env, slots=slots,
        database=DatabaseTarget(port=postgres.port, database=url.rsplit("/", 1)[1]), ledger=ledger,
        ready_timeout=60, backend_repository=f"{REPOSITORY_PREFIX}/backend",
        frontend_repository=f"{REPOSITORY_PREFIX}/frontend",
    )  # fmt: skip
    yield Env(deps, router, ledger)
    router.stop()
    apps.remove_stack_containers(engine, app_env.stack)
    shutil.rmtree(state, ignore_errors=True)


def scraped(router: Router) -> list[tuple[str, int]]:
    """(slot, backend port) of each target in the environment's Prometheus discovery file (what gets scraped)."""
    assert router.metrics_targets is not None
    entries = json.loads(shop_targets_file(router.metrics_targets, router.name).read_text())
    return [(e["labels"]["slot"], int(e["targets"][0].rsplit(":", 1)[1])) for e in entries]


def served(router: Router) -> tuple[str | None, str | None]:
    """(version, X-Shop-Slot) the router answers /version with."""
    response = httpx.get(f"{router.url}/version", timeout=5)
    version = response.json().get("version") if response.status_code == 200 else None
    return version, response.headers.get("x-shop-slot")


def slot_containers(env: Env, slot: str) -> list[str]:
    labels = env.deps.app_env.labels(**{apps.LABEL_SLOT: slot})
    return [c.name for c in env.deps.engine.list_services(labels=labels, include_stopped=True)]


class Watcher:
    """Asks the router for /version in a loop; an answer that is not 200 from one of `versions` is bad."""

    def __init__(self, router: Router, *versions: str) -> None:
        self.router, self.versions = router, versions
        self.ok, self.bad = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.router.url, timeout=5) as http:
            while not self._stop.is_set():
                try:
                    response = http.get("/version")
                    if response.status_code == 200 and response.json()["version"] in self.versions:
                        self.ok += 1
                    else:
                        self.bad.append(f"{response.status_code} {response.text[:60]}")
                except httpx.TransportError as exc:
                    self.bad.append(repr(exc))
                time.sleep(0.05)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def assert_confined(engine: DockerEngine, name: str, memory_mb: int, cpus: float) -> None:
    """The engine applied the hardening (its inspect) and the container's first process really runs with it."""
    host = engine.client.api.inspect_container(name)["HostConfig"]
    assert host["ReadonlyRootfs"] is True and "no-new-privileges" in host["SecurityOpt"], host
    assert (host["Memory"], host["MemorySwap"]) == (memory_mb * 2**20, memory_mb * 2**20)
    assert host["NanoCpus"] == round(cpus * 1e9) and "/tmp" in host["Tmpfs"], host
    script = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/1/status; touch /probe 2>&1; touch /tmp/probe && echo tmp-ok"
    api = engine.client.api
    out = api.exec_start(api.exec_create(name, ["sh", "-c", script])).decode()
    assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out, out
    assert "NoNewPrivs:\t1" in out and "Read-only file system" in out and "tmp-ok" in out, out


def test_deploy_to_idle_slot_and_replace(staging: Env, releases: dict[str, Release]) -> None:
    first = deploy("staging", releases["1.0.0"], staging.deps, verify=version_verifier("1.0.0"))
    assert (first.status, first.slot, first.placement.previous) == ("verified", "green", "blue")
    assert served(staging.router) == ("1.0.0", "green")
    # The release passed its verification with confined containers (apps.AppEnvironment.hardening).
    app_env = staging.deps.app_env
    assert app_env.memory_mb and app_env.cpus
    for role in ("backend", "frontend"):
        assert_confined(staging.deps.engine, apps.service_name(app_env, "green", role), app_env.memory_mb, app_env.cpus)
    assert scraped(staging.router) == [("green", staging.deps.slots["green"].backend_port)]
    assert {"migrate", "start", "ready", "switch", "verify"} <= set(first.steps), first.steps
    meta = first.metadata()
    assert meta["backend_digest"] == releases["1.0.0"].backend_digest and meta["previous_version"] == ""
    assert meta["checks"] == 3.0 and isinstance(meta["verify_seconds"], float)

    # k6 at 200 req/s (homepage.js: index.html + the first product page per iteration) through
    # the router for the whole release, beside the /version watcher.
    load: dict[str, K6Summary] = {}
    env = {"BASE_URL": staging.router.url, "RATE": "100", "DURATION": "14s"}
    k6 = threading.Thread(target=lambda: load.update(summary=run_k6(LOADTESTS / "homepage.js", env)))
    with Watcher(staging.router, "1.0.0", "2.0.0") as watch:
        k6.start()
        time.sleep(2)
        second = deploy("staging", releases["2.0.0"], staging.deps, verify=version_verifier("2.0.0"))
        k6.join(60)
    assert watch.ok > 10 and watch.bad == [], watch.bad[:5]
    summary = load["summary"]
    assert summary.error_rate == 0 and summary.requests >= 2600, (summary.error_rate, summary.requests)
    print(f"\nk6 during the release: {summary.req_per_s:.0f} req/s, p95 {summary.p95_ms:.1f} ms, 0 failed")
    assert (second.status, second.slot, second.previous_release_id) == ("verified", "blue", first.release_id)
    assert second.metadata()["previous_version"] == "1.0.0"
    assert served(staging.router) == ("2.0.0", "blue")
    assert scraped(staging.router) == [("blue", staging.deps.slots["blue"].backend_port)]
    assert slot_containers(staging, "green") == []  # the old slot was stopped after verification
    assert staging.ledger.get(first.release_id).status == "replaced"
    assert staging.ledger.serving("staging").release_id == second.release_id
    assert staging.ledger.previous_verified("staging").release_id == first.release_id
    assert staging.ledger.is_verified("staging", releases["2.0.0"].backend_digest, releases["2.0.0"].frontend_digest)
    rows = staging.ledger.history("staging")
    assert [r["status"] for r in rows] == ["replaced", "verified"]
    assert isinstance(rows[1]["ready_seconds"], float) and rows[1]["backend_digest"] == releases["2.0.0"].backend_digest
    assert rows[1]["checks"] == 3.0  # the verifier's numbers are kept with the release
    print(f"\ndeploy 2.0.0 steps {second.steps} total {second.total_seconds}s")


def test_never_ready_gets_no_traffic(staging: Env, releases: dict[str, Release]) -> None:
    deps = dataclasses.replace(staging.deps, ready_timeout=8)
    with Watcher(staging.router, "2.0.0") as watch, pytest.raises(DeployFailed) as failed:
        deploy("staging", releases["4.0.0"], deps, verify=version_verifier("4.0.0"))
    result = failed.value.result
    assert result.status == "failed" and "did not become ready" in str(failed.value), failed.value
    assert "did not answer 200 within 8s" in str(failed.value), failed.value
    assert "switch" not in result.steps
    assert watch.ok > 10 and watch.bad == [], watch.bad[:5]
    assert served(staging.router) == ("2.0.0", "blue")
    assert slot_containers(staging, "green") == []
    assert staging.ledger.get(result.release_id).status == "failed"


def test_verification_failure_rolls_back(staging: Env, releases: dict[str, Release]) -> None:
    with pytest.raises(DeployFailed) as failed:
        deploy("staging", releases["3.0.0"], staging.deps, verify=version_verifier("3.0.0"))
    result = failed.value.result
    assert result.status == "rolled_back"
    assert "/version answered '2.9.9', expected '3.0.0'" in str(failed.value)
    assert result.rollback_seconds is not None and result.rollback_seconds < 10
    assert served(staging.router) == ("2.0.0", "blue")
    assert slot_containers(staging, "green") == []
    entry = staging.ledger.get(result.release_id)
    assert entry.status == "rolled_back" and "2.9.9" in (entry.reason or "")
    assert staging.ledger.serving("staging").version == "2.0.0"
    print(f"\nrolled back in {result.rollback_seconds}s (failed check to old slot serving); steps {result.steps}")


def test_production_guards(staging: Env, releases: dict[str, Release]) -> None:
    production = dataclasses.replace(staging.deps, app_env=dataclasses.replace(staging.deps.app_env, name="production"))
    with pytest.raises(DeployRefused, match="approved_by is required"):
        deploy("production", releases["2.0.0"], production, verify=version_verifier("2.0.0"))
    with pytest.raises(DeployRefused, match="approved_by is required"):
        deploy("production", releases["2.0.0"], production, verify=version_verifier("2.0.0"), approved_by="  ")
    bad = releases["3.0.0"]  # rolled back on staging: never verified
    with pytest.raises(DeployRefused) as refused:
        deploy("production", bad, production, verify=version_verifier("3.0.0"), approved_by="alice")
    assert bad.backend_digest in str(refused.value) and "not been verified on staging" in str(refused.value)
    check_guards("production", releases["2.0.0"], staging.ledger, "alice")  # verified on staging: allowed
    assert [r["environment"] for r in staging.ledger.history()].count("production") == 0


def test_advisory_lock_refuses_concurrent_deploy(staging: Env, releases: dict[str, Release]) -> None:
    db = staging.deps.database
    holder = psycopg2.connect(host=db.host, port=db.port, dbname=db.database, user=db.user)
    try:
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (DEPLOY_LOCK_KEY,))
            assert cur.fetchone()[0] is True
        rows = len(staging.ledger.history())
        with pytest.raises(DeployRefused, match="another deploy, promote or rollback of staging is running"):
            deploy("staging", releases["1.0.0"], staging.deps, verify=version_verifier("1.0.0"))
        with pytest.raises(DeployRefused, match="another deploy"):
            rollback("staging", staging.deps)
        assert len(staging.ledger.history()) == rows
    finally:
        holder.close()
    assert served(staging.router) == ("2.0.0", "blue")


def test_rollback_to_previous_verified(staging: Env, releases: dict[str, Release]) -> None:
    serving = staging.ledger.serving("staging")
    with Watcher(staging.router, "2.0.0", "1.0.0") as watch:
        result = rollback("staging", staging.deps)
    assert watch.bad == []
    assert (result.status, result.version, result.slot) == ("verified", "1.0.0", "green")
    assert "start" in result.steps  # its containers were stopped when 2.0.0 verified: started again first
    assert result.rollback_seconds is not None and result.rollback_seconds < 10
    assert served(staging.router) == ("1.0.0", "green")
    assert scraped(staging.router) == [("green", staging.deps.slots["green"].backend_port)]
    assert slot_containers(staging, "blue") == []
    assert staging.ledger.get(serving.release_id).status == "rolled_back"
    assert staging.ledger.serving("staging").release_id == result.release_id
    with pytest.raises(DeployRefused, match="no previous verified release"):
        rollback("staging", staging.deps)

    # A newer release verifies again; then the previous one's containers are still there: one switch.
    again = deploy("staging", releases["2.0.0"], staging.deps, verify=version_verifier("2.0.0"))
    assert (again.slot, served(staging.router)) == ("blue", ("2.0.0", "blue"))
    target = staging.ledger.previous_verified("staging")
    assert target is not None and target.version == "1.0.0"
    images = {
        role: staging.deps.registry.pinned_ref(f"{REPOSITORY_PREFIX}/{role}", getattr(target, f"{role}_digest"))
        for role in ("backend", "frontend")
    }
    green = staging.deps.slots["green"]
    apps.start_slot(staging.deps.engine, staging.deps.app_env, "green", images, green.backend_port, green.frontend_port)
    apps.wait_ready(staging.deps.engine, [], [f"http://127.0.0.1:{green.backend_port}/readyz"], timeout=60)
    quick = rollback("staging", staging.deps)
    assert "start" not in quick.steps and quick.version == "1.0.0", quick.steps
    assert served(staging.router) == ("1.0.0", "green")
    print(f"\nrollback by one switch: {quick.rollback_seconds}s; with a restart: {result.steps}")


def test_contracting_migration_waits_for_the_old_release_then_blocks_rollback(
    staging: Env, releases: dict[str, Release]
) -> None:
    # 5.0.0 brings 0901 (expand) and 0902 (contract). 1.0.0 serves: 0902 must wait, and say why.
    lines: list[str] = []
    deps = dataclasses.replace(staging.deps, log=lines.append)
    database = deps.database
    assert database.current_revision() == HEAD and served(staging.router)[0] == "1.0.0"
    result = deploy("staging", releases["5.0.0"], deps, verify=version_verifier("5.0.0"))
    assert result.status == "verified"
    assert (result.schema["applied"], result.schema["held_back"]) == ("0901 (expand)", "0902 (contract)")
    assert result.metadata()["schema_expand_only"] is True
    assert database.current_revision() == "0901"
    waiting = [line for line in lines if "held back" in line]
    assert waiting and "1.0.0" in waiting[0] and "still serves staging" in waiting[0], lines
    # 5.0.0 is ready without 0902: only a contracting migration is missing.
    readyz = httpx.get(f"{staging.router.url}/readyz", timeout=5).json()
    assert (readyz["status"], readyz["schema_state"]) == ("ready", "contract_pending"), readyz

    # 5.0.0 now serves alone: its contracting migration may run (as staging/database_schema runs it).
    backend = deps.registry.pinned_ref(f"{REPOSITORY_PREFIX}/backend", releases["5.0.0"].backend_digest)
    change = migrate_environment(
        deps.engine, "staging", backend, releases["5.0.0"].backend_digest, deps.app_env.database_url,
        deps.app_env.password_file, deps.ledger, registry_auth=registry_auth(deps.registry), insecure_registry=True,
    )  # fmt: skip
    assert change.expand_only is False and change.result.applied == [("0902", "contract")], change
    assert database.current_revision() == "0902" and change.waiting == ""

    # Back to 1.0.0 would run it on a schema contracted after it: refused, nothing changes.
    rows = len(deps.ledger.history("staging"))
    with pytest.raises(DeployRefused) as refused:
        rollback("staging", deps)
    message = str(refused.value)
    assert "rollback of staging to 1.0.0 refused: contracting migration 0902 ran on staging after 1.0.0" in message
    assert "Roll forward" in message
    assert served(staging.router) == ("5.0.0", result.slot)
    assert len(deps.ledger.history("staging")) == rows


# The API's documentation through the environment's router (the release serving now: 5.0.0, built from this
# checkout's backend): the document, both pages and their assets, in Chromium under their CSP, and schemathesis
# against the document with the real shop (PostgreSQL, Redis) behind the router.
FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
PAGE_ASSET = re.compile(r'(?:src|href)="([^"]+)"')
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def test_api_docs_through_the_router(staging: Env, tmp_path: Path) -> None:
    base = staging.router.url
    document = httpx.get(f"{base}/api/openapi.json", timeout=10)
    assert document.status_code == 200 and document.headers["content-type"] == "application/json", document.text[:200]
    spec = document.json()  # the backend's, not the storefront's HTML
    assert spec["servers"] == [{"url": base, "description": spec["servers"][0]["description"]}]
    assert spec["info"]["version"] == "5.0.0" and document.headers["x-shop-slot"] == served(staging.router)[1]
    # The pages show every operation and every webhook (OpenAPI 3.1: the payment callback's event).
    operations = sum(len(ops) for ops in [*spec["paths"].values(), *spec.get("webhooks", {}).values()])

    # A client the router rate-limits (127.0.0.2 is not on its allow-list) loads both pages, every asset and the
    # document: all within the burst, none refused.
    limited = httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    with limited:
        for page in ("/api/docs", "/api/redoc"):
            html = limited.get(page)
            assert html.status_code == 200 and "script-src 'self'" in html.headers["content-security-policy"]
            assets = PAGE_ASSET.findall(html.text)
            answers = {asset: limited.get(f"/api/{asset}").status_code for asset in assets}
            assert len(assets) >= 3 and set(answers.values()) == {200}, answers
            assert limited.get("/api/openapi.json").status_code == 200

    result = subprocess.run(
        ["node", str(FRONTEND / "e2e" / "api-docs.mjs"), base, str(tmp_path)],
        cwd=FRONTEND, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    # ReDoc always tries to show Redocly's logo from their CDN: the policy blocks it (and nothing else), by design.
    blocked = [line for line in shown["csp_violations"] + shown["failed"] if REDOCLY_LOGO in line]
    assert len(blocked) <= 2 and all("img-src" in line or line.endswith(": csp") for line in blocked), blocked
    unexpected = [line for line in shown["csp_violations"] + shown["failed"] if REDOCLY_LOGO not in line]
    assert (unexpected, shown["errors"]) == ([], []), shown
    assert shown["swagger_operations"] == operations and shown["redoc_operations"] == operations, shown
    assert shown["swagger_servers"] and shown["swagger_servers"][0].startswith(base), shown
    assert (tmp_path / "swagger-ui.png").stat().st_size > 10_000 and (tmp_path / "redoc.png").stat().st_size > 10_000


ROUTED_MAX_EXAMPLES = 15  # per operation and phase: the whole run stays under a minute on 2 cores


@pytest.fixture(scope="module")
def routed_schema(staging: Env):
    """The document as the router serves it (`routed` leaves out the admin operations and /metrics, which the
    router does not forward).

    Every request carries the synthetic marker, as smoke and load tests' do: any order placed is kept out of
    business figures. The catalog is seeded first, so half of the generated ids reach real products and a cart.
    """
    asyncio.run(seed_catalog(staging.deps.app_env.database_url, SEED_PRODUCTS))
    base = staging.router.url
    cart = httpx.post(f"{base}/api/carts", timeout=10).json()["id"]
    httpx.post(f"{base}/api/carts/{cart}/items", json={"product_id": 1, "quantity": 1}, timeout=10).raise_for_status()
    config = SchemathesisConfig.from_dict(
        {
            "seed": 20261201,
            "headers": {"X-Synthetic": "1"},
            "generation": {"max-examples": ROUTED_MAX_EXAMPLES, "database": "none", "allow-x00": False},
            "dictionaries": {"carts": {"values": [cart]}, "products": {"values": list(range(1, SEED_PRODUCTS + 1))}},
            "parameters": {
                "path.cart_id": {"dictionary": "carts", "probability": 0.5},
                "path.product_id": {"dictionary": "products", "probability": 0.5},
                "body.product_id": {"dictionary": "products", "probability": 0.5},
            },
        }
    )
    return schemathesis.openapi.from_url(f"{base}/api/openapi.json", config=config)


# The filters on the lazy schema: from_fixture replaces the fixture's own filters with these.
routed = schemathesis.pytest.from_fixture("routed_schema").exclude(tag="admin").exclude(path="/metrics")


@pytest.mark.usefixtures("schemathesis_nodeid")
@routed.parametrize()
def test_no_server_error_through_the_router(case) -> None:
    assert case.operation.path.startswith(("/api/", "/healthz", "/readyz", "/version"))
    assert not case.operation.path.startswith("/api/admin/")
    case.call_and_validate(checks=[not_a_server_error])
