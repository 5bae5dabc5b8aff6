"""The `database` group: `<env>/database_schema`, migrated to head by the released backend image (one-off container)."""

from pathlib import Path

import dagster as dg

from shop_ops.release.images import BuiltImage, registry_auth
from shop_ops.release.migrations import migrate_database
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.postgres import PostgresResource
from shop_ops.resources.registry import RegistryResource

GROUP = "database"


def database_schema(environment: str, released_backend: str = "backend_release_tag") -> dg.AssetsDefinition:
    """The schema of one environment's database, migrated by the backend image that was released (by digest)."""

    @dg.asset(
        name="database_schema",
        key_prefix=[environment],
        group_name=GROUP,
        kinds={"postgres"},
        ins={"image": dg.AssetIn(key=dg.AssetKey(released_backend))},
        description=f"{environment}'s database migrated to head with shop-migrate from the released backend image",
    )
    def _schema(
        context: dg.AssetExecutionContext,
        image: BuiltImage,
        containers: ContainersResource,
        registry: RegistryResource,
        postgres: PostgresResource,
    ) -> dg.MaterializeResult:
        target = postgres.target(environment)
        context.log.info(f"migrating {target.describe()} with {image.pinned_ref}")
        password_file = Path(target.password_file) if target.password_file else None
        client = registry.client()
        result = migrate_database(
            containers.engine(), image.pinned_ref, target.url(), password_file=password_file,
            registry_auth=registry_auth(client), insecure_registry=client.insecure,
        )  # fmt: skip
        stored = target.current_revision()
        if stored != result.revision_after:
            raise dg.Failure(f"shop-migrate reported {result.revision_after} but {target.describe()} is at {stored}")
        return dg.MaterializeResult(
            metadata={
                "revision_before": result.revision_before or "none",
                "revision_after": result.revision_after or "none",
                "seconds": dg.MetadataValue.float(result.seconds),
                "image": image.pinned_ref,
                "database": target.describe(),
            }
        )

    return _schema
