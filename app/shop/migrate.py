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


def contract_revisions() -> frozenset[str]:
    """The revisions this code knows that are marked `phase = "contract"`."""
    return frozenset(rev for rev in known_revisions() if migration_phase(rev) == "contract")


def pending_revisions(db_revision: str | None, target: str = "head") -> list[tuple[str, str]]:
    """(revision, phase) of every migration from `db_revision` up to `target`, oldest first."""
    steps = script_directory().iterate_revisions(target, db_revision or "base")
    return [(step.revision, getattr(step.module, "phase", "expand")) for step in reversed(list(steps))]


def split_expand_only(pending: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(to apply, held back): the expand migrations before the first contracting one, and the rest.

    While an older release still serves, only expand migrations may run: a contracting one
    removes what that release may still read, and every migration after it waits with it.
    """
    for index, (_revision, phase) in enumerate(pending):
        if phase == "contract":
            return pending[:index], pending[index:]
    return pending, []


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


def schema_state(db_revision: str | None, known: list[str], contract: frozenset[str] = frozenset()) -> str:
    """'current', 'ahead' (a later release migrated it; still compatible), 'contract_pending' or 'behind'.

    'contract_pending': only contracting migrations (in `contract`) are missing. They remove
    what this code no longer uses, so it runs without them; they wait until no older release
    serves. Any missing expand migration makes it 'behind' (not ready).
    """
    if db_revision is None:
        return "behind"
    if db_revision not in known:
        return "ahead"
    missing = known[known.index(db_revision) + 1 :]
    if not missing:
        return "current"
    return "contract_pending" if all(rev in contract for rev in missing) else "behind"


def upgrade(url: URL | str, revision: str = "head") -> None:
    """Migrate the database up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def main(argv: list[str] | None = None) -> int:
    """`shop-migrate [REVISION] [--expand-only]`: upgrade the configured database, print what ran as one JSON line.

    The last stdout line is {"revision_before", "revision_after", "applied", "held_back"}; the
    last two list {"revision", "phase"}. With --expand-only, contracting migrations (and all
    after them) are held back and named on stderr.
    """
    parser = argparse.ArgumentParser(prog="shop-migrate", description="Run the shop's Alembic migrations.")
    parser.add_argument("revision", nargs="?", default="head")
    parser.add_argument("--current", action="store_true", help="print the database revision and exit")
    parser.add_argument(
        "--expand-only",
        action="store_true",
        help="run expand migrations only; hold back contracting ones (an older release still serves)",
    )
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
    pending = pending_revisions(before, args.revision)
    apply, held = split_expand_only(pending) if args.expand_only else (pending, [])
    if held:
        names = ", ".join(f"{rev} ({phase})" for rev, phase in held)
        print(
            f"shop-migrate: held back {names}: --expand-only (an older release still serves); "
            "run them once this release serves alone",
            file=sys.stderr,
        )
    if apply:
        upgrade(url, apply[-1][0])
    after = current_revision(url)
    steps = {
        "applied": [{"revision": rev, "phase": phase} for rev, phase in apply],
        "held_back": [{"revision": rev, "phase": phase} for rev, phase in held],
    }
    print(json.dumps({"revision_before": before, "revision_after": after, **steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
