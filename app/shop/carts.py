"""Carts kept in Redis, one hash per cart id: product id -> quantity, with stock checks."""

from __future__ import annotations

import re
import secrets
from typing import Any

import redis.asyncio as aioredis

from shop.catalog import Catalog
from shop.errors import ApiError, not_found

MAX_LINES = 100
MAX_QUANTITY = 1000
_CART_ID = re.compile(r"^[0-9a-f]{32}$")
_MARKER = b"_"


def cart_key(cart_id: str) -> str:
    return f"cart:{cart_id}"


def check_cart_id(cart_id: str) -> None:
    if not _CART_ID.match(cart_id):
        raise not_found("Cart", cart_id)


def parse_lines(raw: dict[bytes, bytes]) -> dict[int, int]:
    """Redis hash contents -> {product_id: quantity}, without the existence marker."""
    return {int(k): int(v) for k, v in raw.items() if k != _MARKER and int(v) > 0}


class Carts:
    """Create, change and read carts; every change re-validates against current stock."""

    def __init__(self, redis: aioredis.Redis, catalog: Catalog, ttl_seconds: int) -> None:
        self.redis = redis
        self.catalog = catalog
        self.ttl = ttl_seconds

    async def create(self) -> dict[str, Any]:
        cart_id = secrets.token_hex(16)
        await self.redis.hset(cart_key(cart_id), mapping={_MARKER: b"1"})
        await self.redis.expire(cart_key(cart_id), self.ttl)
        return {"id": cart_id, "items": [], "total_cents": 0, "item_count": 0}

    async def lines(self, cart_id: str) -> dict[int, int]:
        """The cart's {product_id: quantity}; ApiError 404 when the cart does not exist."""
        check_cart_id(cart_id)
        raw = await self.redis.hgetall(cart_key(cart_id))
        if not raw:
            raise not_found("Cart", cart_id)
        return parse_lines(raw)

    async def get(self, cart_id: str) -> dict[str, Any]:
        return await self.render(cart_id, await self.lines(cart_id))

    async def add(self, cart_id: str, product_id: int, quantity: int) -> dict[str, Any]:
        lines = await self.lines(cart_id)
        product = await self.catalog.product(product_id)
        wanted = lines.get(product_id, 0) + quantity
        if product_id not in lines and len(lines) >= MAX_LINES:
            raise ApiError(422, "cart_full", f"a cart holds at most {MAX_LINES} different products")
        self._check_stock(product, wanted)
        lines[product_id] = wanted
        await self._write(cart_id, product_id, wanted)
        return await self.render(cart_id, lines)

    async def set_quantity(self, cart_id: str, product_id: int, quantity: int) -> dict[str, Any]:
        lines = await self.lines(cart_id)
        if product_id not in lines:
            raise ApiError(404, "not_found", f"Product {product_id} is not in cart {cart_id}")
        self._check_stock(await self.catalog.product(product_id), quantity)
        lines[product_id] = quantity
        await self._write(cart_id, product_id, quantity)
        return await self.render(cart_id, lines)

    async def remove(self, cart_id: str, product_id: int) -> dict[str, Any]:
        lines = await self.lines(cart_id)
        if product_id not in lines:
            raise ApiError(404, "not_found", f"Product {product_id} is not in cart {cart_id}")
        del lines[product_id]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(cart_key(cart_id), str(product_id))
            pipe.expire(cart_key(cart_id), self.ttl)
            await pipe.execute()
        return await self.render(cart_id, lines)

    async def drop(self, cart_id: str) -> None:
        """Delete the cart: it became an order (in the cart store, which may be another Redis than the cache)."""
        await self.redis.delete(cart_key(cart_id))

    @staticmethod
    def _check_stock(product: dict[str, Any], quantity: int) -> None:
        if quantity > MAX_QUANTITY:
            raise ApiError(422, "invalid_quantity", f"at most {MAX_QUANTITY} of one product per cart")
        if quantity > product["stock"]:
            raise ApiError(
                409,
                "insufficient_stock",
                f"only {product['stock']} of product {product['id']} in stock, {quantity} requested",
            )

    async def _write(self, cart_id: str, product_id: int, quantity: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(cart_key(cart_id), str(product_id), quantity)
            pipe.expire(cart_key(cart_id), self.ttl)
            await pipe.execute()

    async def render(self, cart_id: str, lines: dict[int, int]) -> dict[str, Any]:
        """The cart with names and prices from the catalog; products gone from it drop out."""
        items = []
        for product_id, quantity in sorted(lines.items()):
            try:
                product = await self.catalog.product(product_id)
            except ApiError:
                continue
            items.append(
                {
                    "product_id": product_id,
                    "name": product["name"],
                    "price_cents": product["price_cents"],
                    "quantity": quantity,
                    "line_total_cents": product["price_cents"] * quantity,
                }
            )
        return {
            "id": cart_id,
            "items": items,
            "total_cents": sum(i["line_total_cents"] for i in items),
            "item_count": sum(i["quantity"] for i in items),
        }
