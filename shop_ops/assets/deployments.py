"""The `deployments` group: what serves in each environment, the release jobs, the history (local or aws).

Assets only wire Dagster to the release functions: `shop_ops.release.bluegreen` on the local
profile, `shop_ops.release.ecs_release` on aws; `release_definitions(profile)` is the one place
that picks. The guards (production needs `approved_by` and digests verified on staging; one
deploy per environment) live inside those functions, so "Materialize all", a backfill or a
direct launch cannot get around them. `approved_by` is an audit note recorded with the run,
not authentication: open-source Dagster has no login. Both profiles have the same asset keys,
job names, op names and run config.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd

from shop_ops.localstack.router import SLOTS
from shop_ops.localstack.stack import LocalStack
from shop_ops.release.bluegreen import DeployDeps, DeployFailed, DeployRefused, Release, deploy, rollback
from shop_ops.release.ecs_release import EcsReleaseDeps, EcsReleaseFailed, deploy_release_ecs, rollback_release_ecs
from shop_ops.release.ledger import ledger_for
from shop_ops.release.verify import verify_environment
from shop_ops.resources.aws import AwsResource
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
    """The environment is the run's partition (see `rollback_run_config`); the reason goes to the ledger."""

    reason: str = "rollback requested from the UI"


@dg.static_partitioned_config(
    partition_keys=list(ENVIRONMENTS), tags_for_partition_key_fn=lambda environment: {"environment": environment}
)
def rollback_run_config(environment: str) -> dict[str, Any]:
    """`rollback` is partitioned by environment: the UI asks which, and the run gets its `environment` tag."""
    return {"ops": {"rollback_environment": {"config": {"reason": f"rollback of {environment} requested from the UI"}}}}


def rollback_environment_of(context: dg.OpExecutionContext) -> str:
    """The environment a rollback run is for: its partition key."""
    if not context.has_partition_key or context.partition_key not in ENVIRONMENTS:
        raise dg.Failure(
            description=f"launch rollback for one partition, the environment to roll back: {', '.join(ENVIRONMENTS)}"
        )
    return context.partition_key


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
        ledger=ledger_for(settings),
        backend_repository=settings.images.backend_repository,
        frontend_repository=settings.images.frontend_repository,
        log=log.info,
    )


def run_release_action(action: str, call: Callable[[], Any]) -> Any:
    """`call()`'s result (DeployResult / EcsReleaseResult); a refusal or failure becomes a dg.Failure naming `action`."""
    try:
        return call()
    except DeployRefused as exc:
        raise dg.Failure(description=f"{action} refused: {exc}") from None
    except (DeployFailed, EcsReleaseFailed) as exc:
        raise dg.Failure(description=f"{action} failed: {exc}", metadata=exc.result.metadata()) from None


def ecs_release_deps(
    environment: str, aws: AwsResource, registry: RegistryResource, log: dg.DagsterLogManager
) -> EcsReleaseDeps:
    """Everything one environment's ECS release touches, from the resources and the aws settings."""
    settings = get_settings()
    environments = settings.aws_environments()
    if environment not in environments or settings.aws is None:
        raise dg.Failure(description=f"unknown environment {environment!r}: use one of {', '.join(environments)}")
    target = environments[environment]
    return EcsReleaseDeps(
        ecs=aws.ecs(),
        cluster=settings.aws.ecs_cluster,
        service=target.ecs_service,
        url=target.url,
        registry=registry.client(),
        ledger=ledger_for(settings),
        backend_repository=settings.images.backend_repository,
        frontend_repository=settings.images.frontend_repository,
        deploy_timeout_s=settings.aws.deploy_timeout_seconds,
        migrate_timeout_s=settings.aws.migrate_timeout_seconds,
        poll_s=settings.aws.poll_seconds,
        log=log.info,
    )


def _deployment_spec(environment: str, how: str) -> dict[str, Any]:
    return {
        "key": [environment, "deployment"],
        "group_name": GROUP,
        "description": f"The release serving {environment}: {how}",
        "tags": {"environment": environment},
    }


def bluegreen_deployment_asset(environment: str) -> dg.AssetsDefinition:
    """`<environment>/deployment` (local): materializing it deploys the configured release to the blue/green slots."""

    @dg.asset(**_deployment_spec(environment, "migrate, blue/green switch, verify, switch back on failure."))
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
        verify = partial(verify_environment, k6=k6)
        result = run_release_action(
            f"deploy to {environment}",
            lambda: deploy(environment, release, deps, verify=verify, approved_by=config.approved_by or None),
        )
        return dg.MaterializeResult(metadata={**result.metadata(), "approved_by": config.approved_by or "-"})

    return deployment


def ecs_deployment_asset(environment: str) -> dg.AssetsDefinition:
    """`<environment>/deployment` (aws): materializing it deploys the configured release to the ECS service."""

    how = "migrate task, ECS rolling update with circuit breaker, verify, previous task definition on failure."

    @dg.asset(**_deployment_spec(environment, how))
    def deployment(
        context: dg.AssetExecutionContext,
        config: ReleaseConfig,
        aws: AwsResource,
        registry: RegistryResource,
        k6: K6Resource,
    ) -> dg.MaterializeResult:
        release = Release(config.version, config.backend_digest, config.frontend_digest)
        deps = ecs_release_deps(environment, aws, registry, context.log)
        verify = partial(verify_environment, k6=k6)
        result = run_release_action(
            f"deploy to {environment}",
            lambda: deploy_release_ecs(environment, release, deps, verify, approved_by=config.approved_by or None),
        )
        return dg.MaterializeResult(metadata={**result.metadata(), "approved_by": config.approved_by or "-"})

    return deployment


@dg.asset(group_name=GROUP, description="Every release attempt in every environment, from the release ledger.")
def deployment_history(context: dg.AssetExecutionContext) -> dg.MaterializeResult[pd.DataFrame]:
    history = pd.DataFrame(ledger_for(get_settings()).history())
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
    environment = rollback_environment_of(context)
    deps = deploy_deps(environment, containers, registry, router, postgres, context.log)
    result = run_release_action(f"rollback of {environment}", lambda: rollback(environment, deps, reason=config.reason))
    context.log_event(dg.AssetMaterialization(asset_key=[environment, "deployment"], metadata=result.metadata()))


@dg.op(
    name="rollback_environment",
    description="Put an environment's ECS service back on the task definition of its previous verified release.",
)
def rollback_ecs_environment(
    context: dg.OpExecutionContext, config: RollbackConfig, aws: AwsResource, registry: RegistryResource
) -> None:
    environment = rollback_environment_of(context)
    deps = ecs_release_deps(environment, aws, registry, context.log)
    result = run_release_action(
        f"rollback of {environment}",
        lambda: rollback_release_ecs(environment, deps, reason=config.reason),
    )
    context.log_event(dg.AssetMaterialization(asset_key=[environment, "deployment"], metadata=result.metadata()))


@dataclass(frozen=True)
class ReleaseDefinitions:
    assets: list[dg.AssetsDefinition]
    jobs: list[Any]  # define_asset_job results (not exported by dagster as a type) and the rollback job


def release_definitions(profile: str) -> ReleaseDefinitions:
    """The deployments group of a profile: blue/green slots (local) or ECS services (aws), the same names."""
    deployment_asset: Callable[[str], dg.AssetsDefinition]
    if profile == "aws":
        deployment_asset, rollback_op = ecs_deployment_asset, rollback_ecs_environment
    else:
        deployment_asset, rollback_op = bluegreen_deployment_asset, rollback_environment

    @dg.job(
        name="rollback",
        config=rollback_run_config,
        description="Put an environment (the partition) back on its previous verified release.",
    )
    def rollback_job() -> None:
        rollback_op()

    return ReleaseDefinitions(
        assets=[*(deployment_asset(environment) for environment in ENVIRONMENTS), deployment_history],
        jobs=[release_staging, promote_production, rollback_job],
    )
