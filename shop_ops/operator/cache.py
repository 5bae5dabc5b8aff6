"""`shop-ops cache clear ENV --catalog|--all`: empty an environment's Redis cache, never its carts.

The shop's cache keys (app/shop/catalog.py; the `shop` user's ACL in services/redis.py allows exactly
these): `catalog:version`, the versioned search and category pages `catalog:<version>:...`, and the
product pages `product:<id>`. Carts are `cart:<id>`, in the cart store: a Redis server of its own
(through Sentinel) in the local profile, else the cache's own database.

- `--catalog`: `catalog:version` goes up by one first (as a product change does: workers stop reading
  the old pages at once, even one written while this runs), then every other `catalog:*` key and
  every `product:*` key is deleted (UNLINK, in batches). Nothing else is touched.
- `--all`: the cache's whole database (FLUSHDB), when the carts live elsewhere; when they share it,
  every key except `cart:*`.

As Redis's `admin` user (the `shop` user may not SCAN or FLUSHDB). Idempotent: a second run finds
nothing to delete. The routers' edge cache (`performance.edge_cache_seconds`) and each backend's
in-process copy (`local_cache_ttl_seconds`) expire by themselves within seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis

from shop_ops.operator.dagster_api import CommandFailed

VERSION_KEY = "catalog:version"
CATALOG_PATTERNS = ("catalog:*", "product:*")
CART_PREFIX = "cart:"
BATCH = 500

Scope = Literal["catalog", "all"]


@dataclass
class CacheCleared:
    environment: str
    cache: str  # host:port/db
    scope: Scope
    deleted: int
    keys_left: int
    carts: str  # where the carts live, and so why they were not touched
    catalog_version: int | None = None  # --catalog: the version after the bump

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        what = "catalog and product pages" if self.scope == "catalog" else "keys"
        version = f", catalog version now {self.catalog_version}" if self.catalog_version is not None else ""
        return (
            f"{self.environment} cache {self.cache}: {self.deleted} {what} deleted{version}; "
            f"{self.keys_left} keys left; carts untouched ({self.carts})"
        )


def _batches(keys: Iterable[str], size: int = BATCH) -> Iterator[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _unlink(client: redis.Redis, pattern: str, keep: frozenset[str] = frozenset()) -> int:
    deleted = 0
    for batch in _batches(k for k in client.scan_iter(match=pattern, count=1000) if k not in keep):
        deleted += int(client.unlink(*batch))
    return deleted


def clear(
    client: redis.Redis, environment: str, cache: str, scope: Scope, carts_elsewhere: bool, carts_where: str
) -> CacheCleared:
    """Empty the catalog's keys (`catalog`) or the whole cache database (`all`, carts kept) through `client`."""
    try:
        if scope == "catalog":
            version = int(client.incr(VERSION_KEY))
            deleted = sum(_unlink(client, pattern, frozenset({VERSION_KEY})) for pattern in CATALOG_PATTERNS)
        elif carts_elsewhere:
            version, deleted = None, int(client.dbsize())
            client.flushdb()
        else:
            version = None
            deleted = _unlink_all_but_carts(client)
        left = int(client.dbsize())
    except redis.exceptions.AuthenticationError as exc:  # a ConnectionError to redis-py: before it
        raise CommandFailed(
            f"the {environment} Redis cache {cache} refused the admin user ({exc}): `shop-ops local up` writes its "
            "ACL from the password files again"
        ) from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise CommandFailed(
            f"the {environment} Redis cache {cache} does not answer ({exc}): start it with `shop-ops local up`"
        ) from None
    except redis.exceptions.ResponseError as exc:  # e.g. NOPERM, WRONGPASS
        raise CommandFailed(
            f"the {environment} Redis cache {cache} refused the admin user ({exc}): `shop-ops local up` writes its "
            "ACL from the password files again"
        ) from None
    return CacheCleared(environment, cache, scope, deleted, left, carts_where, version)


def _unlink_all_but_carts(client: redis.Redis) -> int:
    deleted = 0
    for batch in _batches(k for k in client.scan_iter(count=1000) if not k.startswith(CART_PREFIX)):
        deleted += int(client.unlink(*batch))
    return deleted
