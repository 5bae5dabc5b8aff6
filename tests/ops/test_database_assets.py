"""`<env>/database_schema`: shop-migrate in a one-off container of the released backend image, against a real database."""

from __future__ import annotations

import itertools
import os

import dagster as dg
import pytest

from shop.migrate import known_revisions
from shop_ops.assets.database import database_schema
from shop_ops.assets.images import image_assets
from shop_ops.release.images import registry_auth, shop_image_specs
from shop_ops.release.migrations import MigrationError, migrate_database
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.postgres import DatabaseTarget, PostgresResource

_names = itertools.count(1)


@pytest.fixture
def ledger(tmp_path) -> LedgerResource:
    """The assets record migrations in this release ledger: a temp one, not the repo's."""
    return LedgerResource(state_dir=str(tmp_path))


def _database(postgres) -> DatabaseTarget:
    name = f"ops_schema_{next(_names)}_{os.getpid()}"
    postgres.create_database(name, owner="shop")
    return DatabaseTarget(port=postgres.port, database=name)


def test_staging_schema_migrated_from_none_to_head_by_the_released_image(images_run, ops_resources, postgres, ledger):
    assert images_run.result.success
    target = _database(postgres)
    assert target.current_revision() is None
    everything = [d for spec in shop_image_specs() for d in image_assets(spec)] + [database_schema("staging")]
    result = dg.materialize(
        everything,
        selection=["staging/database_schema"],  # backend_release_tag comes from the images run (IO manager)
        resources={**ops_resources, "postgres": PostgresResource(environments={"staging": target}), "ledger": ledger},
        instance=images_run.instance,
    )
    metadata = result.asset_materializations_for_node("staging__database_schema")[0].metadata
    head = target.current_revision()
    assert head is not None
    assert metadata["revision_before"].value == "none"
    assert metadata["revision_after"].value == head
    assert isinstance(metadata["migrate_seconds"].value, float) and metadata["migrate_seconds"].value > 0
    assert metadata["applied"].value == ", ".join(f"{rev} (expand)" for rev in known_revisions())
    assert metadata["held_back"].value == "none" and metadata["waiting"].value == "nothing"
    backend = images_run.images["backend"]
    assert metadata["image"].value == backend.pinned_ref  # the release's image by digest, not the working tree

    # Again: nothing to do, before == after == head.
    again = dg.materialize(
        everything, selection=["staging/database_schema"],
        resources={**ops_resources, "postgres": PostgresResource(environments={"staging": target}), "ledger": ledger},
        instance=images_run.instance,
    )  # fmt: skip
    metadata = again.asset_materializations_for_node("staging__database_schema")[0].metadata
    assert metadata["revision_before"].value == metadata["revision_after"].value == head


def test_migration_against_a_missing_database_fails_with_the_log(images_run, engine, registry_client, postgres):
    backend = images_run.images["backend"]
    url = f"postgresql+asyncpg://shop@127.0.0.1:{postgres.port}/no_such_database"
    with pytest.raises(MigrationError, match="exited 1") as err:
        migrate_database(engine, backend.pinned_ref, url, timeout=120, registry_auth=registry_auth(registry_client),
                         insecure_registry=True)  # fmt: skip
    assert "no_such_database" in str(err.value)
