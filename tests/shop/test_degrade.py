"""Degrade, don't fall over: the shop with Redis or PostgreSQL frozen (SIGSTOP) or killed, under a little load.

Own PostgreSQL cluster, Redis and backend (the session's are never frozen). The catalog is served
from PostgreSQL while Redis is away, carts and checkout answer 503 naming the dependency quickly,
/readyz answers within a second and says what is down, and everything answers again once the
dependency is back, without restarting the backend.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port, pg_bin
from shop_ops.settings import DataSettings
from tests.support import ShopServer, new_database, running_cluster, shop_env, wait_until

pytestmark = pytest.mark.services

# The role's limits on this module's cluster: short, so that cutting a statement off takes a second.
# (The backend's own client-side cut, half of SHOP_DATABASE_TIMEOUT_SECONDS, comes later: 1 s.)
ROLE_LIMITS = DataSettings(statement_timeout_ms=500, idle_in_transaction_timeout_ms=500)
REDIS_TIMEOUT = 1.0  # SHOP_REDIS_TIMEOUT_SECONDS (the default)
DATABASE_TIMEOUT = 2.0  # SHOP_DATABASE_TIMEOUT_SECONDS (the default)
# "Quickly": the client timeout plus scheduling slack on 2 busy cores.
REDIS_BOUND = REDIS_TIMEOUT + 1.0
DATABASE_BOUND = DATABASE_TIMEOUT + 1.5
PRODUCTS = 3000  # enough product pages that every request of the load can ask for one nobody asked for


@dataclass
class Stack:
    postgres: PostgresCluster
    db_url: str
    redis: RedisServer
    shop: ShopServer
    fresh_ids: Iterator[int] = field(default_factory=lambda: iter(range(1, PRODUCTS + 1)))

    def uncached_product(self) -> int:
        """A product id no request has asked for yet: its page is in no cache."""
        return next(self.fresh_ids)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_cluster("shop-ops-test-degrade-") as postgres:
        db_url = new_database(postgres, "degrade")
        # Before the backend connects: a session takes its role's settings when it starts.
        postgres.set_role_defaults("shop", ROLE_LIMITS.shop_role_defaults())
        upgrade(db_url)
        asyncio.run(seed_catalog(db_url, PRODUCTS))
        postgres.psql("UPDATE products SET stock = 1000", db_url.rsplit("/", 1)[1])
        redis = RedisServer(datadir=tmp_path_factory.mktemp("degrade-redis"), port=free_port())
        redis.start()
        env = shop_env(db_url, redis.url(0))  # the timeouts' defaults
        shop = ShopServer(env, tmp_path_factory.mktemp("degrade-serve") / "shop.log")
        shop.start()
        try:
            yield Stack(postgres, db_url, redis, shop)
        finally:
            shop.stop()
            _signal_all(_redis_pids(redis), signal.SIGCONT)
            _signal_all(_postgres_pids(postgres), signal.SIGCONT)
            redis.stop()


# --- freezing and killing the dependencies (only this module's own processes) ----------------------


def _redis_pids(redis: RedisServer) -> list[int]:
    return [redis.process.pid] if redis.process and redis.process.poll() is None else []


def _postgres_pids(postgres: PostgresCluster) -> list[int]:
    """The postmaster of the module's cluster, then its children (the backends and helper processes)."""
    try:
        postmaster = int((postgres.datadir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return []
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
    try:
        return [postmaster, *(int(pid) for pid in children.read_text().split())]
    except OSError:
        return []


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def freeze_postgres(postgres: PostgresCluster) -> None:
    """SIGSTOP the postmaster first (it starts no process while stopped), then every child: a hung host."""
    _signal_all(_postgres_pids(postgres), signal.SIGSTOP)


def kill_redis(redis: RedisServer) -> None:
    assert redis.process is not None
    redis.process.kill()
    redis.process.wait()
    redis.pidfile.unlink(missing_ok=True)


def kill_postgres(postgres: PostgresCluster) -> None:
    pids = _postgres_pids(postgres)
    _signal_all(pids, signal.SIGKILL)
    deadline = time.monotonic() + 10
    # Until reaped: a new postmaster refuses a data folder whose postmaster.pid names a live pid (a zombie too).
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "PostgreSQL's processes did not go away"
        time.sleep(0.05)


# --- the load and what it saw --------------------------------------------------------------------


@dataclass
class Answer:
    kind: str
    status: int
    seconds: float
    dependency: str | None


async def _timed(client: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs) -> Answer:
    started = time.monotonic()
    res = await client.request(method, url, **kwargs)
    body = res.json() if res.headers.get("content-type") == "application/json" else {}
    error = body.get("error") if isinstance(body, dict) else None
    return Answer(kind, res.status_code, time.monotonic() - started, (error or {}).get("dependency"))


async def _mixed_load(stack: Stack, seconds: float, cart_id: str, workers: int = 4) -> list[Answer]:
    """For `seconds`, `workers` browsing clients (a search and a product page nobody asked for before:
    uncached) beside `workers` buying ones (a new cart, adding to `cart_id`, a checkout of `cart_id`)."""
    answers: list[Answer] = []
    deadline = time.monotonic() + seconds

    async def browse(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            term = f"w{n}i{i}"  # matches nothing: a search page no cache holds
            answers.append(await _timed(client, "search", "GET", "/api/products", params={"q": term}))
            answers.append(await _timed(client, "product", "GET", f"/api/products/{stack.uncached_product()}"))
            await asyncio.sleep(0.05)  # a little load: at most ~80 requests a second from all browsers

    async def buy(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            answers.append(await _timed(client, "cart", "POST", "/api/carts"))
            item = {"product_id": 1, "quantity": 1}
            answers.append(await _timed(client, "cart", "POST", f"/api/carts/{cart_id}/items", json=item))
            answers.append(
                await _timed(
                    client, "checkout", "POST", "/api/checkout",
                    json={"cart_id": cart_id, "email": "load@example.com"},
                    headers={"Idempotency-Key": f"degrade-{n}-{i}-{time.monotonic_ns()}", "X-Synthetic": "1"},
                )
            )  # fmt: skip

    async with httpx.AsyncClient(base_url=stack.shop.url, timeout=15) as client:
        await asyncio.gather(*(browse(n, client) for n in range(workers)), *(buy(n, client) for n in range(workers)))
    return answers


def of(answers: list[Answer], kind: str) -> list[Answer]:
    found = [a for a in answers if a.kind == kind]
    assert found, f"the load made no {kind} request"
    return found


def timed_get(client: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    res = client.get(path)
    return res, time.monotonic() - started


def filled_cart(client: httpx.Client, product_id: int = 1) -> str:
    cart_id = client.post("/api/carts").json()["id"]
    res = client.post(f"/api/carts/{cart_id}/items", json={"product_id": product_id, "quantity": 1})
    assert res.status_code == 200, res.text
    return cart_id


def everything_answers(client: httpx.Client, stack: Stack) -> bool:
    """Catalog, carts, checkout and /readyz all answer as when nothing was wrong."""
    if client.get("/readyz").status_code != 200:
        return False
    if client.get(f"/api/products/{stack.uncached_product()}").status_code != 200:
        return False
    cart = client.post("/api/carts")
    if cart.status_code != 201:
        return False
    cart_id = cart.json()["id"]
    if client.post(f"/api/carts/{cart_id}/items", json={"product_id": 2, "quantity": 1}).status_code != 200:
        return False
    order = client.post(
        "/api/checkout", json={"cart_id": cart_id, "email": "back@example.com"},
        headers={"Idempotency-Key": f"back-{time.monotonic_ns()}", "X-Synthetic": "1"},
    )  # fmt: skip
    return order.status_code == 201


def metric(client: httpx.Client, series: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


# --- the tests -------------------------------------------------------------------------------------


def test_redis_frozen_catalog_from_postgres_carts_503_then_recovers(stack: Stack):
    with httpx.Client(base_url=stack.shop.url, timeout=15) as client:
        cart_id = filled_cart(client)
        assert stack.redis.process is not None
        os.kill(stack.redis.process.pid, signal.SIGSTOP)
        try:
            answers = asyncio.run(_mixed_load(stack, seconds=3, cart_id=cart_id))
            ready, ready_s = timed_get(client, "/readyz")
        finally:
            os.kill(stack.redis.process.pid, signal.SIGCONT)

        for answer in of(answers, "search") + of(answers, "product"):
            assert answer.status == 200, answer
        # Only the first lookups wait for Redis (one per browser); then the breaker skips it, letting
        # one probe through every ~2 s (1 s cooldown, 1 s timeout): the rest come from PostgreSQL at once.
        catalog = of(answers, "search") + of(answers, "product")
        slow = [a for a in catalog if a.seconds > 0.5]
        assert len(slow) <= 4 + 3, [(a.kind, round(a.seconds, 2)) for a in slow]
        assert len(catalog) > 50
        for answer in of(answers, "cart") + of(answers, "checkout"):
            assert (answer.status, answer.dependency) == (503, "redis"), answer
            assert answer.seconds < REDIS_BOUND, answer

        assert ready_s < 1.0
        assert ready.status_code == 503
        assert ready.json()["redis"] == "error: TimeoutError" and ready.json()["database"] == "ok"

        assert metric(client, 'shop_cache_requests_total{level="redis",result="bypass"}') > 0
        assert metric(client, 'shop_redis_errors_total{use="cache"}') > 0
        assert metric(client, 'shop_dependency_unavailable_total{dependency="redis"}') > 0

        # Back without restarting the backend; the cart written before the freeze is still there.
        wait_until("the shop answering after SIGCONT to Redis", lambda: everything_answers(client, stack), 10)
        assert client.get(f"/api/carts/{cart_id}").json()["items"][0]["product_id"] == 1


def test_redis_killed_and_restarted(stack: Stack):
    with httpx.Client(base_url=stack.shop.url, timeout=15) as client:
        kill_redis(stack.redis)
        try:
            product, product_s = timed_get(client, f"/api/products/{stack.uncached_product()}")
            assert product.status_code == 200 and product_s < REDIS_BOUND
            started = time.monotonic()
            cart = client.post("/api/carts")
            assert cart.status_code == 503 and time.monotonic() - started < REDIS_BOUND
            assert cart.json()["error"]["code"] == "dependency_unavailable"
            assert cart.json()["error"]["dependency"] == "redis"
            ready, ready_s = timed_get(client, "/readyz")
            assert ready.status_code == 503 and ready_s < 1.0
            assert ready.json()["redis"].startswith("error") and ready.json()["database"] == "ok"
        finally:
            stack.redis.start()
        wait_until("the shop answering after Redis restarted", lambda: everything_answers(client, stack), 10)


def test_postgres_frozen_uncached_reads_and_checkout_503_then_recovers(stack: Stack):
    with httpx.Client(base_url=stack.shop.url, timeout=15) as client:
        cached = stack.uncached_product()
        # In Redis once the cache uses it again (the breaker may still skip it after the last test).
        with redis.Redis(port=stack.redis.port) as cache:
            wait_until(
                "the product page cached in Redis",
                lambda: client.get(f"/api/products/{cached}").status_code == 200 and cache.exists(f"product:{cached}"),
                5,
            )
        cart_id = filled_cart(client)
        freeze_postgres(stack.postgres)
        try:
            answers = asyncio.run(_mixed_load(stack, seconds=2, cart_id=cart_id, workers=4))
            ready, ready_s = timed_get(client, "/readyz")
            cached_page, cached_s = timed_get(client, f"/api/products/{cached}")
        finally:
            _signal_all(_postgres_pids(stack.postgres), signal.SIGCONT)

        for answer in of(answers, "search") + of(answers, "product") + of(answers, "checkout"):
            assert (answer.status, answer.dependency) == (503, "database"), answer
            assert answer.seconds < DATABASE_BOUND, answer
        assert ready_s < 1.0
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("error") and ready.json()["redis"] == "ok"
        # What the cache holds is still served.
        assert cached_page.status_code == 200 and cached_s < 0.5, cached_page.text

        wait_until("the shop answering after SIGCONT to PostgreSQL", lambda: everything_answers(client, stack), 10)


def test_postgres_killed_and_restarted(stack: Stack):
    with httpx.Client(base_url=stack.shop.url, timeout=15) as client:
        kill_postgres(stack.postgres)
        try:
            product, product_s = timed_get(client, f"/api/products/{stack.uncached_product()}")
            assert product.status_code == 503 and product_s < DATABASE_BOUND
            assert product.json()["error"]["dependency"] == "database"
            ready, ready_s = timed_get(client, "/readyz")
            assert ready.status_code == 503 and ready_s < 1.0
            assert ready.json()["database"].startswith("error") and ready.json()["redis"] == "ok"
        finally:
            stack.postgres.start()
        # The first requests may fail while the pool drops its dead connections; then all answer.
        wait_until("the shop answering after PostgreSQL restarted", lambda: everything_answers(client, stack), 10)


def test_role_limits_cut_off_long_statements_and_idle_transactions(stack: Stack):
    async def role_limits() -> None:
        shop = await asyncpg.connect(stack.db_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            started = time.monotonic()
            with pytest.raises(asyncpg.exceptions.QueryCanceledError, match="statement timeout"):
                await shop.execute("SELECT pg_sleep(10)")
            assert time.monotonic() - started < 3
            await shop.execute("BEGIN")
            await asyncio.sleep(1.0)  # idle in transaction past the role's 0.5 s
            # The server ends the session (asyncpg may have read its FATAL already: connection is closed).
            ended = (
                asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
                asyncpg.exceptions.ConnectionDoesNotExistError,
                asyncpg.exceptions.InterfaceError,
            )
            with pytest.raises(ended):
                await shop.execute("SELECT 1")
        finally:
            await shop.close()

    asyncio.run(role_limits())
    server_log = (stack.postgres.datadir / "server.log").read_text()
    assert "terminating connection due to idle-in-transaction timeout" in server_log


def test_a_statement_the_role_cuts_off_answers_503(stack: Stack):
    """The backend's sessions carry the role's statement_timeout: a checkout stuck behind a row lock
    is cut off by PostgreSQL (not by the backend's own, longer client timeout) and answered 503."""
    with httpx.Client(base_url=stack.shop.url, timeout=15) as client:
        cart_id = filled_cart(client, product_id=3)
        lock = subprocess.Popen(
            [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(stack.postgres.port), "-U", "postgres", "-d",
             stack.db_url.rsplit("/", 1)[1], "-c", "BEGIN; SELECT 1 FROM products WHERE id = 3 FOR UPDATE; SELECT pg_sleep(3); COMMIT"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.5)  # the lock is taken
            started = time.monotonic()
            res = client.post(
                "/api/checkout", json={"cart_id": cart_id, "email": "locked@example.com"},
                headers={"Idempotency-Key": f"locked-{time.monotonic_ns()}"},
            )  # fmt: skip
            elapsed = time.monotonic() - started
        finally:
            lock.terminate()
            lock.wait()
        assert res.status_code == 503, res.text
        assert res.json()["error"]["dependency"] == "database"
        assert "QueryCanceled" in res.json()["error"]["message"]
        assert ROLE_LIMITS.statement_timeout_ms / 1000 - 0.1 < elapsed < DATABASE_TIMEOUT / 2
