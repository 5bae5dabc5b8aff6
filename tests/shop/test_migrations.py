"""Migrations: up from empty to head, `alembic check` clean, down and up again, phases declared."""

from __future__ import annotations

import os
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
    schema_state,
    upgrade,
)
from shop_ops.localstack.processes import PostgresCluster
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
    assert migration_phase("0002") == "expand"


def test_schema_state():
    known = ["0001", "0002"]
    assert schema_state(None, known) == "behind"
    assert schema_state("0001", known) == "behind"
    assert schema_state("0002", known) == "current"
    assert schema_state("0003", known) == "ahead"


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
    assert (
        result.stdout.strip().splitlines()[-1] == f'{{"revision_before": null, "revision_after": "{head_revision()}"}}'
    )
