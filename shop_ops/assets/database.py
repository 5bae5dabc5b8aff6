"""The `database` group: `<env>/database_schema`, migrated to head by the released backend image (one-off container),
and `<env>/slow_queries`, the database's top statements by total execution time (pg_stat_statements).

The release rules apply (shop_ops/release/schema.py): contracting migrations run only when
that image serves the environment alone, under the environment's deploy lock; otherwise they
are held back and the materialization says why.
"""

from pathlib import Path

import dagster as dg

from shop_ops.observability.queries import QueryInsightError, top_statements
from shop_ops.release.flow import DeployRefused, deploy_lock
from shop_ops.release.images import BuiltImage, registry_auth
from shop_ops.release.schema import migrate_environment
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.postgres import DatabaseError, PostgresResource
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
        description=(
            f"{environment}'s database migrated to head with shop-migrate from the released backend image; "
            "contracting migrations only when that image serves alone"
        ),
        tags={"environment": environment},
    )
    def _schema(
        context: dg.AssetExecutionContext,
        image: BuiltImage,
        containers: ContainersResource,
        registry: RegistryResource,
        postgres: PostgresResource,
        ledger: LedgerResource,
    ) -> dg.MaterializeResult:
        target = postgres.target(environment)
        context.log.info(f"migrating {target.describe()} with {image.pinned_ref}")
        password_file = Path(target.password_file) if target.password_file else None
        client = registry.client()
        try:
            with deploy_lock(target, environment):
                change = migrate_environment(
                    containers.engine(), environment, image.pinned_ref, image.digest, target.url(), password_file,
                    ledger.open(), registry_auth=registry_auth(client),
                    insecure_registry=client.insecure, log=context.log.info,
                )  # fmt: skip
        except DeployRefused as exc:
            raise dg.Failure(description=f"{environment} schema not migrated: {exc}") from None
        stored = target.current_revision()
        if stored != change.result.revision_after:
            raise dg.Failure(
                f"shop-migrate reported {change.result.revision_after} but {target.describe()} is at {stored}"
            )
        return dg.MaterializeResult(
            metadata={
                **change.metadata(),
                "migrate_seconds": change.result.seconds,
                "waiting": change.waiting or "nothing",
                "image": image.pinned_ref,
                "database": target.describe(),
            }
        )

    return _schema


def slow_queries(environment: str, top: int = 20) -> dg.AssetsDefinition:
    """The `top` statements of one environment's database by total execution time, as a DataFrame (observability/queries.py)."""

    @dg.asset(
        name="slow_queries",
        key_prefix=[environment],
        group_name=GROUP,
        kinds={"postgres", "pandas"},
        deps=[dg.AssetKey([environment, "database_schema"])],
        description=(
            f"{environment}'s top {top} statements by total execution time since the statistics' last reset "
            "(pg_stat_statements): calls, total and mean ms, rows, share of the database's time"
        ),
        tags={"environment": environment},
    )
    def _slow_queries(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
        target = postgres.target(environment)
        try:
            conn = target.connect()
            try:
                found = top_statements(conn, environment, top)
            finally:
                conn.close()
        except (DatabaseError, QueryInsightError) as exc:
            raise dg.Failure(description=f"{environment} slow_queries: {exc}") from None
        context.log.info(
            f"{target.describe()}: {found.statements} statements, {found.total_ms:.0f} ms in total since {found.since}"
        )
        return dg.MaterializeResult(value=found.frame, metadata={**found.metadata(), "database": target.describe()})

    return _slow_queries
