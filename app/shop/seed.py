"""`shop-seed`: load a deterministic demo catalog (10,000 products by default) in seconds."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

from sqlalchemy.ext.asyncio import create_async_engine

from shop.settings import SettingsError

CATEGORIES = ["books", "garden", "home", "kitchen", "outdoor", "office", "toys", "tools", "sports", "music"]
ADJECTIVES = ["Sturdy", "Compact", "Classic", "Bright", "Quiet", "Rustic", "Modern", "Tiny", "Deluxe", "Handy",
              "Vintage", "Smart", "Soft", "Swift", "Bold", "Gentle"]  # fmt: skip
MATERIALS = ["Oak", "Steel", "Cotton", "Bamboo", "Ceramic", "Copper", "Wool", "Glass", "Linen", "Walnut", "Cork"]
NOUNS = ["Lamp", "Kettle", "Chair", "Notebook", "Backpack", "Planter", "Speaker", "Blanket", "Mug", "Shelf",
         "Clock", "Jacket", "Puzzle", "Hammer", "Racket", "Guitar", "Teapot", "Basket", "Candle", "Desk"]  # fmt: skip


def catalog_rows(count: int, seed: int = 42) -> list[tuple[str, str, str, int, int, str]]:
    """(sku, name, description, price_cents, stock, category) for `count` products, same every time."""
    rng = random.Random(seed)
    rows = []
    for n in range(1, count + 1):
        adjective, material, noun = rng.choice(ADJECTIVES), rng.choice(MATERIALS), rng.choice(NOUNS)
        category = CATEGORIES[n % len(CATEGORIES)]
        name = f"{adjective} {material} {noun} {n}"
        description = f"A {adjective.lower()} {noun.lower()} made of {material.lower()}, from our {category} range."
        rows.append((f"SKU-{n:06d}", name, description, rng.randint(199, 49_999), rng.randint(0, 500), category))
    return rows


async def seed_catalog(url: object, count: int, seed: int = 42) -> int:
    """Upsert the deterministic catalog by SKU (COPY into a temp table, then one INSERT ... ON CONFLICT)."""
    engine = create_async_engine(url, connect_args={"timeout": 10})
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            async with driver.transaction():
                await driver.execute(
                    "CREATE TEMP TABLE seed_products (sku text, name text, description text, price_cents int, "
                    "stock int, category text) ON COMMIT DROP"
                )
                await driver.copy_records_to_table("seed_products", records=catalog_rows(count, seed))
                await driver.execute(
                    "INSERT INTO products (sku, name, description, price_cents, stock, category) "
                    "SELECT sku, name, description, price_cents, stock, category FROM seed_products "
                    "ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description, "
                    "price_cents = EXCLUDED.price_cents, stock = EXCLUDED.stock, category = EXCLUDED.category, "
                    "updated_at = now()"
                )
            await driver.execute("ANALYZE products")
    finally:
        await engine.dispose()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shop-seed", description="Load the deterministic demo catalog.")
    parser.add_argument("--products", type=int, default=10_000, help="how many products (default 10000)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.products < 1:
        parser.error("--products must be at least 1")
    from shop.db import database_url
    from shop.settings import load_settings

    try:
        url = database_url(load_settings())
    except SettingsError as exc:
        print(f"shop-seed: {exc}", file=sys.stderr)
        return 2
    count = asyncio.run(seed_catalog(url, args.products, args.seed))
    print(f"seeded {count} products")
    return 0


if __name__ == "__main__":
    sys.exit(main())
