"""Run and inspect the Alembic migrations from Python (and the `shop-migrate` command)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from shop.settings import SettingsError


def alembic_config(url: URL | str | None = None) -> Config:
    """An Alembic config over the migrations packaged with `shop`, for the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "alembic"))
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def script_directory() -> ScriptDirectory:
    """The packaged migrations."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this code knows."""
    head = script_directory().get_current_head()
    assert head is not None
    return head


def known_revisions() -> list[str]:
    """Every revision this code knows, oldest first."""
    return [s.revision for s in reversed(list(script_directory().walk_revisions()))]


def migration_phase(revision: str) -> str:
    """ "expand" or "contract", as the migration module declares (expand when unset)."""
    return getattr(script_directory().get_revision(revision).module, "phase", "expand")


async def _current_revision(url: URL | str) -> str | None:
    engine = create_async_engine(url, connect_args={"timeout": 10})
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            if not exists:
                return None
            return await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()


def current_revision(url: URL | str) -> str | None:
    """The database's revision, or None when it was never migrated."""
    return asyncio.run(_current_revision(url))


def schema_state(db_revision: str | None, known: list[str]) -> str:
    """'current', 'ahead' (a later release migrated it; still compatible) or 'behind'."""
    if db_revision is None:
        return "behind"
    if db_revision not in known:
        return "ahead"
    return "current" if db_revision == known[-1] else "behind"


def upgrade(url: URL | str, revision: str = "head") -> None:
    """Migrate the database up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def main(argv: list[str] | None = None) -> int:
    """`shop-migrate [REVISION]`: upgrade the configured database, print before/after revisions."""
    parser = argparse.ArgumentParser(prog="shop-migrate", description="Run the shop's Alembic migrations.")
    parser.add_argument("revision", nargs="?", default="head")
    parser.add_argument("--current", action="store_true", help="print the database revision and exit")
    args = parser.parse_args(argv)
    from shop.db import database_url
    from shop.settings import load_settings

    try:
        url = database_url(load_settings())
    except SettingsError as exc:
        print(f"shop-migrate: {exc}", file=sys.stderr)
        return 2
    before = current_revision(url)
    if args.current:
        print(before or "none")
        return 0
    upgrade(url, args.revision)
    after = current_revision(url)
    print(json.dumps({"revision_before": before, "revision_after": after}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
