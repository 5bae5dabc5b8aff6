"""Catalog reads (search, product pages) behind the response cache, and product changes."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.cache import CacheUnavailable, ResponseCache
from shop.db import fetchrow
from shop.errors import ApiError, not_found

MAX_LIMIT = 100
MAX_PAGE = 10_000
VERSION_KEY = "catalog:version"
PRODUCT_COLUMNS = "id, sku, name, description, price_cents, stock, category"

_SEARCH_SQL = text(
    f"""
    SELECT {PRODUCT_COLUMNS}, count(*) OVER () AS total
    FROM products
    WHERE (CAST(:q AS text) = '' OR (name || ' ' || description) ILIKE '%' || CAST(:q AS text) || '%' ESCAPE '\\')
      AND (CAST(:category AS text) = '' OR category = CAST(:category AS text))
    ORDER BY id
    LIMIT :limit OFFSET :offset
    """
)
_PRODUCT_SQL = f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"  # asyncpg (db.fetchrow)
_CATEGORIES_SQL = text("SELECT DISTINCT category FROM products ORDER BY category")
# The low rows are locked in id order, the order checkout hands its cart's products to its own
# statement, so that a restock running beside checkouts (it should not: it runs between load tests)
# makes them wait rather than deadlock.
_RESTOCK_SQL = text(
    """
    UPDATE products p SET stock = :min_stock, updated_at = now()
    FROM (SELECT id FROM products WHERE stock < :min_stock ORDER BY id FOR UPDATE) low
    WHERE p.id = low.id
    RETURNING p.id
    """
)
# Cached product pages dropped per Redis DEL: one command per batch keeps a restock of the whole
# catalog from blocking Redis with a single huge delete.
INVALIDATE_BATCH = 1_000


def escape_like(term: str) -> str:
    """Make `term` match literally inside ILIKE '%...%'."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def validate_page(page: int, limit: int) -> None:
    """Reject pages the API does not serve, with the documented error."""
    if limit < 1 or limit > MAX_LIMIT:
        raise ApiError(422, "invalid_limit", f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if page < 1 or page > MAX_PAGE:
        raise ApiError(422, "invalid_page", f"page must be between 1 and {MAX_PAGE}, got {page}")


def _row(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "sku": row.sku,
        "name": row.name,
        "description": row.description,
        "price_cents": row.price_cents,
        "stock": row.stock,
        "category": row.category,
    }


class Catalog:
    """Product reads and writes; reads are cached, writes invalidate."""

    def __init__(self, engine: AsyncEngine, cache: ResponseCache) -> None:
        self.engine = engine
        self.cache = cache
        self._last_version = "0"  # the catalog version last read from Redis, used while Redis is unavailable

    async def _version(self) -> str:
        cached = self.cache.local.get(VERSION_KEY)
        if cached is not None:
            return cached.decode()
        try:
            value = await self.cache.shared(lambda: self.cache.redis.get(VERSION_KEY))
        except CacheUnavailable:
            return self._last_version  # pages come from PostgreSQL meanwhile (ResponseCache)
        version = value.decode() if value is not None else "0"
        self.cache.local.put(VERSION_KEY, version.encode())
        self._last_version = version
        return version

    async def search(self, q: str, category: str, page: int, limit: int) -> bytes:
        """A page of products matching `q` (name or description) and `category`, as JSON."""
        validate_page(page, limit)
        q = q.strip()[:100]
        category = category.strip()[:100]
        version = await self._version()
        key = f"catalog:{version}:search:{limit}:{page}:{category}:{q}"

        async def load() -> bytes:
            async with self.engine.connect() as conn:
                result = await conn.execute(
                    _SEARCH_SQL,
                    {"q": escape_like(q), "category": category, "limit": limit, "offset": (page - 1) * limit},
                )
                rows = result.all()
            total = rows[0].total if rows else await self._count(q, category)
            return orjson.dumps({"items": [_row(r) for r in rows], "page": page, "limit": limit, "total": total})

        value = await self.cache.get_or_load(key, load)
        assert value is not None
        return value

    async def _count(self, q: str, category: str) -> int:
        """Total matches when the requested page is past the end (the window count has no row then)."""
        sql = text(
            "SELECT count(*) FROM products WHERE (CAST(:q AS text) = '' OR (name || ' ' || description) "
            "ILIKE '%' || CAST(:q AS text) || '%' ESCAPE '\\') AND (CAST(:category AS text) = '' "
            "OR category = CAST(:category AS text))"
        )
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sql, {"q": escape_like(q), "category": category}) or 0)

    async def product_json(self, product_id: int) -> bytes:
        """One product as JSON; ApiError 404 when there is none."""

        async def load() -> bytes | None:
            # Loaded after every checkout that changed the product's stock: one round trip, no BEGIN/ROLLBACK.
            row = await fetchrow(self.engine, _PRODUCT_SQL, product_id)
            return orjson.dumps(dict(row.items())) if row is not None else None

        if product_id < 1 or product_id > 2**62:
            raise not_found("Product", product_id)
        value = await self.cache.get_or_load(f"product:{product_id}", load)
        if value is None:
            raise not_found("Product", product_id)
        return value

    async def product(self, product_id: int) -> dict[str, Any]:
        return orjson.loads(await self.product_json(product_id))

    async def categories_json(self) -> bytes:
        version = await self._version()

        async def load() -> bytes:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(_CATEGORIES_SQL)).scalars().all()
            return orjson.dumps(list(rows))

        value = await self.cache.get_or_load(f"catalog:{version}:categories", load)
        assert value is not None
        return value

    async def stock_changed(self, product_ids: list[int]) -> None:
        """Drop the cached pages of products whose stock changed (search pages expire by TTL)."""
        await self.cache.invalidate(*(f"product:{pid}" for pid in product_ids))

    async def update_product(self, product_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply `changes` to a product and invalidate every cached page that may show it."""
        if not changes:
            raise ApiError(422, "empty_update", "the body names no field to change")
        assignments = ", ".join(f"{name} = :{name}" for name in changes)
        sql = text(f"UPDATE products SET {assignments}, updated_at = now() WHERE id = :id RETURNING {PRODUCT_COLUMNS}")
        async with self.engine.begin() as conn:
            row = (await conn.execute(sql, {**changes, "id": product_id})).first()
        if row is None:
            raise not_found("Product", product_id)
        await self._bump_version()
        await self.cache.invalidate(f"product:{product_id}")
        return _row(row)

    async def restock(self, min_stock: int) -> int:
        """Raise every product's stock below `min_stock` to it, in one statement; how many changed.

        Only when some did: the catalog version is bumped once (cached search pages show stock)
        and the changed products' cached pages are dropped. A repeat changes nothing and empties
        no cache.
        """
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(_RESTOCK_SQL, {"min_stock": min_stock})).scalars())
        if ids:
            await self._bump_version()
            for start in range(0, len(ids), INVALIDATE_BATCH):
                await self.stock_changed(ids[start : start + INVALIDATE_BATCH])
        return len(ids)

    async def _bump_version(self) -> None:
        """A new catalog version: every cached search and category page is left behind (expires by TTL).

        Here after the change committed, so a page loaded under the new version shows it; other
        workers see the new version once their local copy expires (local_cache_ttl_seconds).
        """
        await self.cache.redis.incr(VERSION_KEY)
        self.cache.local.drop(VERSION_KEY)
