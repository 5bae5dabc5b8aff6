"""Migrations: up from empty to head, `alembic check` clean, down and up again, phases declared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from alembic import command

from shop.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    known_revisions,
    migration_phase,
    pending_revisions,
    schema_state,
    split_expand_only,
    upgrade,
)
from shop_ops.services.processes import PostgresCluster
from tests.support import new_database

APP = Path(__file__).resolve().parents[2] / "app"


def test_upgrade_from_empty_then_check_is_clean(postgres: PostgresCluster):
    url = new_database(postgres)
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head_revision()
    command.check(alembic_config(url))  # raises when the models and the migrations disagree
    db = url.rsplit("/", 1)[1]
    indexes = postgres.psql("SELECT indexname FROM pg_indexes WHERE tablename = 'products' ORDER BY 1", db)
    assert "ix_products_search_trgm" in indexes and "ix_products_brand" in indexes


def test_downgrade_to_base_and_up_again(postgres: PostgresCluster):
    url = new_database(postgres)
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head_revision()


def test_every_migration_declares_its_phase():
    revisions = known_revisions()
    assert revisions[0] == "0001" and len(revisions) >= 2
    assert all(migration_phase(rev) in ("expand", "contract") for rev in revisions)
    assert migration_phase("0002") == "expand" and migration_phase("0003") == "expand"


def test_schema_state():
    known = ["0001", "0002"]
    assert schema_state(None, known) == "behind"
    assert schema_state("0001", known) == "behind"
    assert schema_state("0002", known) == "current"
    assert schema_state("0003", known) == "ahead"
    # Only contracting migrations missing: this code runs without them (ready).
    known = ["0001", "0002", "0003", "0004"]
    assert schema_state("0002", known, frozenset({"0003", "0004"})) == "contract_pending"
    assert schema_state("0002", known, frozenset({"0003"})) == "behind"  # 0004 expands: needed
    assert schema_state("0001", known, frozenset({"0003"})) == "behind"


def test_expand_only_stops_at_the_first_contracting_migration():
    pending = [("0003", "expand"), ("0004", "contract"), ("0005", "expand")]
    assert split_expand_only(pending) == ([("0003", "expand")], [("0004", "contract"), ("0005", "expand")])
    assert split_expand_only([("0003", "expand")]) == ([("0003", "expand")], [])
    assert split_expand_only([]) == ([], [])
    assert pending_revisions(None) == [(rev, "expand") for rev in known_revisions()]
    assert pending_revisions(head_revision()) == []


def test_alembic_command_line_from_app_folder(postgres: PostgresCluster):
    url = new_database(postgres)
    env = {**os.environ, "SHOP_DATABASE_URL": url, "SHOP_REDIS_URL": "redis://127.0.0.1:1/0"}
    alembic = Path(sys.executable).parent / "alembic"
    result = subprocess.run([str(alembic), "upgrade", "head"], cwd=APP, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert current_revision(url) == head_revision()


def test_shop_migrate_command_reports_before_and_after(postgres: PostgresCluster):
    url = new_database(postgres)
    env = {**os.environ, "SHOP_DATABASE_URL": url, "SHOP_REDIS_URL": "redis://127.0.0.1:1/0"}
    migrate = Path(sys.executable).parent / "shop-migrate"
    result = subprocess.run([str(migrate)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "revision_before": None,
        "revision_after": head_revision(),
        "applied": [{"revision": rev, "phase": "expand"} for rev in known_revisions()],
        "held_back": [],
    }


# On top of the real head, whatever it is: {revision} is the next number, {down} the head.
CONTRACT_MIGRATION = '''"""Contract: drop products.brand (test only)."""

from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None
phase = "contract"


def upgrade() -> None:
    op.drop_column("products", "brand")


def downgrade() -> None:
    raise NotImplementedError
'''


def test_shop_migrate_expand_only_holds_back_a_contracting_migration(postgres: PostgresCluster, tmp_path: Path):
    # A copy of the shop package with one more migration, marked contracting.
    shutil.copytree(APP / "shop", tmp_path / "shop", ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    contract = f"{int(head) + 1:04d}"
    (tmp_path / "shop" / "alembic" / "versions" / f"{contract}_contract_test.py").write_text(
        CONTRACT_MIGRATION.format(revision=contract, down=head)
    )
    expands = [{"revision": rev, "phase": "expand"} for rev in known_revisions()[1:]]
    url = new_database(postgres)
    upgrade(url, "0001")
    env = {
        **os.environ,
        "SHOP_DATABASE_URL": url,
        "SHOP_REDIS_URL": "redis://127.0.0.1:1/0",
        "PYTHONPATH": str(tmp_path),
    }

    def shop_migrate(*args: str) -> tuple[dict, str]:
        command = [sys.executable, "-m", "shop.migrate", *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr

    out, err = shop_migrate("--expand-only")
    assert out["revision_before"] == "0001" and out["revision_after"] == head
    assert out["applied"] == expands
    assert out["held_back"] == [{"revision": contract, "phase": "contract"}]
    assert f"held back {contract} (contract)" in err and "older release still serves" in err
    assert current_revision(url) == head
    db = url.rsplit("/", 1)[1]
    assert "brand" in postgres.psql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'products'", db
    )

    out, _ = shop_migrate()  # no older release serves any more: the contracting migration runs
    assert out["applied"] == [{"revision": contract, "phase": "contract"}] and out["held_back"] == []
    assert current_revision(url) == contract
    assert "brand" not in postgres.psql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'products'", db
    )
