"""An environment's Redis (shop_ops/services/redis.py) with the real backend: the cache evicts and carts never do,
the `shop` user is held to its grant, and the cart store fails over through Sentinel under load."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.services.processes import PostgresCluster, free_port
from shop_ops.services.redis import RedisPasswords, RedisTier, admin_client, cart_server, role
from tests.support import SEED_PRODUCTS, ShopServer, new_database, shop_env, wait_until

pytestmark = pytest.mark.services

CACHE_MB = 2
FAILOVER_BOUND_SECONDS = 10.0


ADMIN_TOKEN = "redis-tier-admin-token-not-a-secret"


@pytest.fixture(scope="module")
def passwords(tmp_path_factory: pytest.TempPathFactory) -> tuple[RedisPasswords, Path]:
    """Both users' passwords, and the `shop` one in a 0600 file (SHOP_REDIS_PASSWORD_FILE)."""
    folder = tmp_path_factory.mktemp("redis-secrets")
    values = RedisPasswords(shop=secrets.token_urlsafe(18), admin=secrets.token_urlsafe(18))
    shop_file, admin_file = folder / "shop", folder / "admin"
    for path, value in ((shop_file, values.shop), (admin_file, values.admin)):
        path.write_text(value + "\n")
        path.chmod(0o600)
    assert RedisPasswords.from_files(shop_file, admin_file) == values
    return values, shop_file


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory, passwords: tuple[RedisPasswords, Path]) -> Iterator[RedisTier]:
    tier = RedisTier(
        environment="test", folder=tmp_path_factory.mktemp("redis-tier"), passwords=passwords[0],
        cache_port=free_port(), carts_port=free_port(), carts_replica_port=free_port(), sentinel_port=free_port(),
        cache_maxmemory_mb=CACHE_MB, carts_maxmemory_mb=64, down_after_ms=1000, failover_timeout_ms=3000,
    )  # fmt: skip
    try:
        tier.start()
        yield tier
    finally:
        tier.stop()


@pytest.fixture(scope="module")
def backend(
    tier: RedisTier, passwords: tuple[RedisPasswords, Path], postgres: PostgresCluster, tmp_path_factory
) -> Iterator[ShopServer]:
    """The real backend: cache on the tier's cache, carts through its Sentinel; a database of its own."""
    db = new_database(postgres, "redis_tier")
    upgrade(db)
    asyncio.run(seed_catalog(db, SEED_PRODUCTS))
    env = shop_env(
        db, tier.cache_url(), SHOP_REDIS_PASSWORD_FILE=str(passwords[1]), SHOP_CARTS_SENTINELS=tier.sentinel.address,
        SHOP_CARTS_SENTINEL_SERVICE=tier.service, SHOP_LOCAL_CACHE_TTL_SECONDS="0", SHOP_ADMIN_TOKEN=ADMIN_TOKEN,
    )  # fmt: skip
    server = ShopServer(env, tmp_path_factory.mktemp("redis-tier-shop") / "shop.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def shop_client(port: int, password: str | None = None) -> redis.Redis:
    """As user `shop` (no password: the default user), failing at once (no retries)."""
    user = "shop" if password else None
    return redis.Redis(port=port, username=user, password=password, socket_timeout=2, retry=Retry(NoBackoff(), 0))


def in_stock(client: httpx.Client, count: int) -> list[int]:
    items = client.get("/api/products", params={"limit": 100}).json()["items"]
    return [p["id"] for p in items if p["stock"] >= 100][:count]


def new_cart(client: httpx.Client, product: int) -> str:
    cart = client.post("/api/carts")
    assert cart.status_code == 201, cart.text
    cart_id = cart.json()["id"]
    added = client.post(f"/api/carts/{cart_id}/items", json={"product_id": product, "quantity": 1})
    assert added.status_code == 200, added.text
    return cart_id


def test_the_cache_evicts_under_pressure_and_every_cart_survives(
    tier: RedisTier, backend: ShopServer, passwords: tuple[RedisPasswords, Path]
):
    shop, _ = passwords
    cache = shop_client(tier.cache_port, shop.shop)
    value = os.urandom(8 * 1024)
    carts: dict[str, int] = {}
    with httpx.Client(base_url=backend.url, timeout=20) as client:
        products = in_stock(client, 10)
        # Carts written while the cache is filled to three times its maxmemory with the cache's own keys.
        for batch in range(10):
            for i in range(10):
                product = products[i % len(products)]
                carts[new_cart(client, product)] = product
            with cache.pipeline(transaction=False) as pipe:
                for i in range(CACHE_MB * 1024 * 3 // 8 // 10):
                    pipe.set(f"catalog:fill:{batch}:{i}", value, px=600_000)
                pipe.execute()
        with admin_client(tier.cache_port, shop) as admin:
            stats, memory = admin.info("stats"), admin.info("memory")
        assert stats["evicted_keys"] > 0, "the cache never evicted: it was not filled past maxmemory"
        assert memory["maxmemory_policy"] == "allkeys-lru" and memory["maxmemory"] == CACHE_MB * 1024 * 1024
        assert memory["used_memory"] <= memory["maxmemory"] * 1.1
        # The cache keeps answering: a page it caches, through the backend, and a fresh key of its own.
        page = client.get("/api/products", params={"q": "a", "limit": 5})
        assert page.status_code == 200, page.text
        cache.set("catalog:probe", b"x", px=60_000)
        assert cache.get("catalog:probe") == b"x"
        for cart_id, product in carts.items():
            cart = client.get(f"/api/carts/{cart_id}")
            assert cart.status_code == 200, f"cart {cart_id} lost: {cart.text}"
            assert [i["product_id"] for i in cart.json()["items"]] == [product]
    with admin_client(tier.primary_port(), shop) as admin:
        assert admin.info("stats")["evicted_keys"] == 0
        assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert admin.config_get("appendonly") == {"appendonly": "yes"}
        assert admin.config_get("appendfsync") == {"appendfsync": "everysec"}


def test_a_full_cart_store_refuses_writes_instead_of_evicting(tmp_path: Path, passwords: tuple[RedisPasswords, Path]):
    shop, _ = passwords
    store = cart_server(tmp_path / "carts", free_port(), shop, maxmemory_mb=2)
    store.start()
    try:
        client = shop_client(store.port, shop.shop)
        written: list[str] = []
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory") as refused:
            for _ in range(2000):
                key = f"cart:{secrets.token_hex(16)}"
                client.hset(key, mapping={"_": "1", "17": "4" * 4096})
                written.append(key)
        assert written, f"not even one cart fitted: {refused.value}"
        with admin_client(store.port, shop) as admin:
            assert admin.info("stats")["evicted_keys"] == 0
            assert admin.dbsize() == len(written)
        # Reads and deletes still work at the limit (a checkout frees room).
        assert client.hgetall(written[0])[b"17"] == b"4" * 4096
        assert client.delete(written[0]) == 1
    finally:
        store.stop()


def test_every_write_of_the_shop_passes_the_shop_users_grants(backend: ShopServer) -> None:
    """What the ACL grants is what the backend sends (redis-py's INCR is INCRBY): a catalog change through
    the admin API, a restock, carts and a checkout all succeed against the granted servers."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=backend.url, timeout=10) as client:
        product = in_stock(client, 1)[0]
        assert client.get(f"/api/products/{product}").status_code == 200
        changed = client.patch(f"/api/admin/products/{product}", json={"name": "Granted lamp"}, headers=admin)
        assert changed.status_code == 200, changed.text
        assert client.get(f"/api/products/{product}").json()["name"] == "Granted lamp"
        restocked = client.post("/api/admin/restock", json={"min_stock": 5000}, headers=admin)
        assert restocked.status_code == 200, restocked.text
        cart = new_cart(client, product)
        assert client.delete(f"/api/carts/{cart}/items/{product}").status_code == 200
        cart = new_cart(client, product)
        order = client.post(
            "/api/checkout", json={"cart_id": cart, "email": "acl@example.com"}, headers={"Idempotency-Key": cart}
        )
        assert order.status_code in (200, 201), order.text


def test_without_sentinel_carts_go_to_the_cart_store_url(
    tier: RedisTier, passwords: tuple[RedisPasswords, Path], postgres: PostgresCluster, tmp_path: Path
) -> None:
    """SHOP_CARTS_REDIS_URL (aws: the replication group's primary endpoint): carts there, never in the cache."""
    db = new_database(postgres, "carts_url")
    upgrade(db)
    asyncio.run(seed_catalog(db, 20))
    env = shop_env(
        db, tier.cache_url(), SHOP_REDIS_PASSWORD_FILE=str(passwords[1]),
        SHOP_CARTS_REDIS_URL=f"redis://shop@127.0.0.1:{tier.primary_port()}/0",
    )  # fmt: skip
    server = ShopServer(env, tmp_path / "shop.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            cart = new_cart(client, in_stock(client, 1)[0])
    finally:
        server.stop()
    with admin_client(tier.primary_port(), passwords[0]) as carts, admin_client(tier.cache_port, passwords[0]) as cache:
        assert carts.exists(f"cart:{cart}") and not cache.exists(f"cart:{cart}")


def test_the_shop_user_is_held_to_its_commands_and_keys(tier: RedisTier, passwords: tuple[RedisPasswords, Path]):
    shop, _ = passwords
    cache = shop_client(tier.cache_port, shop.shop)
    carts = shop_client(tier.primary_port(), shop.shop)
    denied = redis.exceptions.NoPermissionError
    for attempt in (
        cache.flushall, lambda: cache.config_get("maxmemory"), lambda: cache.get("cart:" + "0" * 32),
        lambda: cache.set("session:1", b"x"), lambda: cache.keys("*"), carts.flushall,
        lambda: carts.config_set("maxmemory-policy", "allkeys-lru"), lambda: carts.get("product:1"),
        lambda: carts.hset("product:1", "a", 1), lambda: carts.execute_command("REPLICAOF", "NO", "ONE"),
    ):  # fmt: skip
        with pytest.raises(denied):
            attempt()
    sentinel = shop_client(tier.sentinel_port, shop.shop)
    assert sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", tier.service)
    with pytest.raises(denied):
        sentinel.execute_command("SENTINEL", "FAILOVER", tier.service)
    with pytest.raises(denied):
        sentinel.execute_command("SENTINEL", "SET", tier.service, "quorum", "2")
    # The default user is off: no command without a user and password.
    for port in (tier.cache_port, tier.carts_port, tier.sentinel_port):
        with pytest.raises(redis.exceptions.AuthenticationError):
            shop_client(port).ping()
    # Passwords live in 0600 files in 0700 folders, never on a command line.
    for config in (tier.cache.config_file, tier.carts.config_file, tier.replica.config_file, tier.sentinel.config_file):
        assert config.stat().st_mode & 0o777 == 0o600, config
        assert config.parent.stat().st_mode & 0o777 == 0o700, config.parent
    for pidfile in (tier.cache.pidfile, tier.carts.pidfile, tier.replica.pidfile, tier.sentinel.pidfile):
        cmdline = Path(f"/proc/{pidfile.read_text().strip()}/cmdline").read_bytes()
        assert shop.shop.encode() not in cmdline and shop.admin.encode() not in cmdline


@dataclass
class Load:
    """Checkouts at a low rate (new cart, add an item, check out): each request's and each checkout's
    (start, end, what, status or error)."""

    url: str
    products: list[int]
    done: list[tuple[float, float, str, str]] = field(default_factory=list)
    checkouts: list[tuple[float, float, str, str]] = field(default_factory=list)
    running: bool = True

    async def worker(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            i = 0
            while self.running:
                i += 1
                first = len(self.done)
                cart_id = await self.call(client, "cart", "POST", "/api/carts", {})
                if cart_id:
                    product = self.products[(n + i) % len(self.products)]
                    body = {"product_id": product, "quantity": 1}
                    if await self.call(client, "add", "POST", f"/api/carts/{cart_id}/items", body):
                        body = {"cart_id": cart_id, "email": "failover@example.com"}
                        headers = {"Idempotency-Key": str(uuid.uuid4()), "X-Synthetic": "1"}
                        await self.call(client, "checkout", "POST", "/api/checkout", body, headers)
                steps = self.done[first:]
                failed = [step[3] for step in steps if not step[3].startswith("2")]
                self.checkouts.append((steps[0][0], steps[-1][1], "checkout", failed[0] if failed else "ok"))
                await asyncio.sleep(0.25)

    async def call(
        self, client: httpx.AsyncClient, what: str, method: str, path: str, body: dict, headers: dict | None = None
    ) -> str | None:
        start = time.monotonic()
        try:
            res = await client.request(method, path, json=body, headers=headers)
            outcome = str(res.status_code)
        except httpx.HTTPError as exc:
            res, outcome = None, type(exc).__name__
        self.done.append((start, time.monotonic(), what, outcome))
        return res.json().get("id", "ok") if res is not None and res.status_code < 300 else None


async def first_write_after(url: str, killed_at: float) -> float:
    """Seconds from the kill to the first cart the backend wrote after it (a request sent every 50 ms)."""

    async def attempt(client: httpx.AsyncClient) -> float | None:
        try:
            res = await client.post("/api/carts")
        except httpx.HTTPError:
            return None
        return time.monotonic() - killed_at if res.status_code == 201 else None

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        pending: set[asyncio.Task[float | None]] = set()
        while True:
            pending.add(asyncio.create_task(attempt(client)))
            finished, pending = await asyncio.wait(pending, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            times = [t.result() for t in finished if t.result() is not None]
            if times:
                for task in pending:
                    task.cancel()
                return min(times)  # type: ignore[type-var]


def test_the_cart_store_fails_over_under_load(
    tier: RedisTier, backend: ShopServer, passwords: tuple[RedisPasswords, Path]
):
    shop, _ = passwords
    with httpx.Client(base_url=backend.url, timeout=20) as client:
        products = in_stock(client, 20)
        kept = {new_cart(client, products[i % len(products)]): products[i % len(products)] for i in range(30)}
    primary = tier.carts if tier.primary_port() == tier.carts_port else tier.replica
    survivor = tier.replica if primary is tier.carts else tier.carts
    wait_until("the replica in sync", lambda: role(survivor.port, shop) == "slave")
    tier.wait_replicated()

    async def run() -> tuple[Load, float, float]:
        load = Load(backend.url, products)
        workers = [asyncio.create_task(load.worker(n)) for n in range(8)]
        await asyncio.sleep(1.5)
        primary.kill()
        killed_at = time.monotonic()
        failover = await first_write_after(backend.url, killed_at)
        recovered_at = killed_at + failover
        await asyncio.sleep(2.0)
        load.running = False
        await asyncio.gather(*workers)
        return load, killed_at, recovered_at

    load, killed_at, recovered_at = asyncio.run(run())
    print(f"\ncart store failover: kill -> first successful write through the backend {recovered_at - killed_at:.2f} s")
    assert recovered_at - killed_at < FAILOVER_BOUND_SECONDS
    assert tier.sentinel.primary() == survivor.port
    # A checkout (its three requests) overlapping the failover, or started after it.
    during = [c for c in load.checkouts if c[1] >= killed_at and c[0] <= recovered_at]
    after = [c for c in load.checkouts if c[0] > recovered_at]
    failed = [c for c in load.checkouts if c[3] != "ok"]
    print(f"{len(load.checkouts)} checkouts ({len(during)} during the failover, {len(after)} after), failed: {failed}")
    assert during and after
    assert len([c for c in during if c[3] != "ok"]) <= 0.01 * len(during)
    assert [c for c in after if c[3] != "ok"] == []
    with httpx.Client(base_url=backend.url, timeout=20) as client:
        for cart_id, product in kept.items():
            cart = client.get(f"/api/carts/{cart_id}")
            assert cart.status_code == 200, f"cart {cart_id} written before the kill is gone: {cart.text}"
            assert [i["product_id"] for i in cart.json()["items"]] == [product]
    # The killed primary, started again, rejoins as a replica of the new primary, and Sentinel counts it.
    tier.start()
    assert role(primary.port, shop) == "slave"
    with admin_client(primary.port, shop) as admin:
        assert admin.info("replication")["master_port"] == survivor.port

    def healthy_replicas() -> list[tuple[int, bool]]:
        with admin_client(tier.sentinel_port, shop) as admin:
            return [(r["port"], r["is_sdown"]) for r in admin.sentinel_slaves(tier.service)]

    # Sentinel counts it as the primary's healthy replica again (it pings every second).
    wait_until(
        "Sentinel seeing the old primary as a healthy replica", lambda: healthy_replicas() == [(primary.port, False)]
    )
