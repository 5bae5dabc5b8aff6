"""The `deployments` group: what serves in each environment (blue/green), the release jobs, the history.

Assets only wire Dagster to `shop_ops.release.bluegreen`: the guards (production needs
`approved_by` and digests verified on staging; one deploy per environment) live inside
`deploy`, so "Materialize all", a backfill or a direct launch cannot get around them.
`approved_by` is an audit note recorded with the run, not authentication: open-source
Dagster has no login.
"""

import dagster as dg
import pandas as pd

from shop_ops.localstack.router import SLOTS
from shop_ops.localstack.stack import LocalStack
from shop_ops.release.bluegreen import DeployDeps, DeployFailed, DeployRefused, Release, deploy, rollback
from shop_ops.release.ledger import ReleaseLedger
from shop_ops.release.verify import verify_environment
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.postgres import PostgresResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.resources.router import RouterResource
from shop_ops.settings import ENVIRONMENTS, get_settings

GROUP = "deployments"


class ReleaseConfig(dg.Config):
    """The release to deploy: its version and the manifest digests of its two images."""

    version: str
    backend_digest: str
    frontend_digest: str
    approved_by: str = ""


class RollbackConfig(dg.Config):
    environment: str
    reason: str = "rollback requested from the UI"


def deploy_deps(
    environment: str,
    containers: ContainersResource,
    registry: RegistryResource,
    router: RouterResource,
    postgres: PostgresResource,
    log: dg.DagsterLogManager,
) -> DeployDeps:
    """Everything one environment's deploy touches, from the resources and the settings."""
    settings = get_settings()
    return DeployDeps(
        engine=containers.engine(),
        registry=registry.client(),
        router=router.router(environment),
        app_env=LocalStack(settings).app_env(environment),
        slots={slot: router.slot_ports(environment, slot) for slot in SLOTS},
        database=postgres.target(environment),
        ledger=ReleaseLedger(settings.state_path),
        backend_repository=settings.images.backend_repository,
        frontend_repository=settings.images.frontend_repository,
        log=log.info,
    )


def deployment_asset(environment: str) -> dg.AssetsDefinition:
    """`<environment>/deployment`: materializing it deploys the configured release there."""

    @dg.asset(
        key=[environment, "deployment"],
        group_name=GROUP,
        description=f"The release serving {environment}: migrate, blue/green switch, verify, switch back on failure.",
        tags={"environment": environment},
    )
    def deployment(
        context: dg.AssetExecutionContext,
        config: ReleaseConfig,
        containers: ContainersResource,
        registry: RegistryResource,
        router: RouterResource,
        postgres: PostgresResource,
        k6: K6Resource,
    ) -> dg.MaterializeResult:
        release = Release(config.version, config.backend_digest, config.frontend_digest)
        deps = deploy_deps(environment, containers, registry, router, postgres, context.log)
        try:
            result = deploy(
                environment,
                release,
                deps,
                verify=lambda url: verify_environment(url, k6),
                approved_by=config.approved_by or None,
            )
        except DeployRefused as exc:
            raise dg.Failure(description=f"deploy to {environment} refused: {exc}") from None
        except DeployFailed as exc:
            raise dg.Failure(
                description=f"deploy to {environment} failed: {exc}", metadata=exc.result.metadata()
            ) from None
        return dg.MaterializeResult(metadata={**result.metadata(), "approved_by": config.approved_by or "-"})

    return deployment


deployments = [deployment_asset(environment) for environment in ENVIRONMENTS]


@dg.asset(group_name=GROUP, description="Every release attempt in every environment, from the release ledger.")
def deployment_history(context: dg.AssetExecutionContext) -> dg.MaterializeResult[pd.DataFrame]:
    history = pd.DataFrame(ReleaseLedger(get_settings().state_path).history())
    preview = history.tail(20).to_markdown(index=False) if not history.empty else "no release yet"
    context.log.info(f"{len(history)} release attempts")
    return dg.MaterializeResult(
        value=history, metadata={"attempts": len(history), "latest": dg.MetadataValue.md(preview)}
    )


release_staging = dg.define_asset_job(
    "release_staging",
    selection=dg.AssetSelection.assets(["staging", "deployment"]),
    tags={"environment": "staging"},
    description="Deploy a release (version + image digests) to staging: migrate, blue/green, verify.",
)
promote_production = dg.define_asset_job(
    "promote_production",
    selection=dg.AssetSelection.assets(["production", "deployment"]),
    tags={"environment": "production"},
    description="The same release to production; needs approved_by and digests verified on staging.",
)


@dg.op(description="Put an environment back on its previous verified release.")
def rollback_environment(
    context: dg.OpExecutionContext,
    config: RollbackConfig,
    containers: ContainersResource,
    registry: RegistryResource,
    router: RouterResource,
    postgres: PostgresResource,
) -> None:
    deps = deploy_deps(config.environment, containers, registry, router, postgres, context.log)
    try:
        result = rollback(config.environment, deps, reason=config.reason)
    except DeployRefused as exc:
        raise dg.Failure(description=f"rollback of {config.environment} refused: {exc}") from None
    except DeployFailed as exc:
        raise dg.Failure(description=f"rollback of {config.environment} failed: {exc}") from None
    context.log_event(dg.AssetMaterialization(asset_key=[config.environment, "deployment"], metadata=result.metadata()))


@dg.job(
    name="rollback",
    description="Put an environment back on its previous verified release (one switch when it still runs).",
)
def rollback_job() -> None:
    rollback_environment()
