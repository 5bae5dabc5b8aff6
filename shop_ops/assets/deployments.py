"""The `deployments` group: what serves in each environment, the rollback op, the release history.

Assets only wire Dagster to the `release_target` resource (blue/green slots locally, ECS on aws;
`definitions.py` picks it). The guards (production needs `approved_by` and digests verified on
staging; one deploy per environment) live inside the release flow, so "Materialize all", a
backfill or a direct launch cannot get around them. `approved_by` is an audit note recorded with
the run, not authentication: open-source Dagster has no login. In the lineage a deployment follows
the images' release tags and its environment's `database_schema` (dependencies, not loaded values).
A deploy reads the secrets its release is given through the `secrets` resource after the guards
(`ReleaseTarget.check_secrets`): recorded by name for the audit trail, a missing or placeholder one refuses it.

Deployment notifications: the deployment asset and the rollback op hand the release flow a
`ReleaseNotices` over the `notifier` resource with a link to the run (`run_release_action`), so
each release event is sent once (shop_ops/release/notifications.py). When the step then fails
with an event it announced (refused, rolled back, failed), the run gets the tag
`shop-ops/release-notice/<step>` and run_failure_alert_sensor does not announce that failure again.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd

from shop_ops.release.flow import DeployFailed, DeployRefused, Release, ReleaseResult
from shop_ops.release.notifications import Notify, ReleaseNotices, release_notice_tag
from shop_ops.release.targets import ReleaseTarget
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.notifier import NotifierResource
from shop_ops.security.secrets import SecretsResource
from shop_ops.settings import ENVIRONMENTS

GROUP = "deployments"
RELEASED_IMAGES = ("backend_release_tag", "frontend_release_tag")


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


def run_release_action(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    notifier: NotifierResource,
    action: str,
    call: Callable[[Notify], ReleaseResult],
) -> ReleaseResult:
    """`call(notify)`'s result, its release events sent through `notifier` with a link to this run.

    A refusal or failure becomes a dg.Failure naming `action` (with the attempt's numbers); when a
    release notice announced it, the run is tagged so that run_failure_alert_sensor does not repeat it.
    """
    notices = ReleaseNotices(
        notifier.send, f"{notifier.ui_url.rstrip('/')}/runs/{context.run.run_id}", context.log.warning
    )
    try:
        return call(notices)
    except DeployRefused as exc:
        _tag_announced(context, notices)
        raise dg.Failure(description=f"{action} refused: {exc}") from None
    except DeployFailed as exc:
        _tag_announced(context, notices)
        raise dg.Failure(description=f"{action} failed: {exc}", metadata=exc.result.metadata()) from None


def _tag_announced(context: dg.AssetExecutionContext | dg.OpExecutionContext, notices: ReleaseNotices) -> None:
    """Tag the run when a sent release notice already told people why this step fails."""
    announced = notices.announced_failure()
    if announced is not None:
        step = context.get_step_execution_context().step.key
        context.instance.add_run_tags(context.run.run_id, {release_notice_tag(step): announced.kind})


def deployment_asset(environment: str) -> dg.AssetsDefinition:
    """`<environment>/deployment`: materializing it deploys the configured release through `release_target`."""

    @dg.asset(
        key=[environment, "deployment"],
        group_name=GROUP,
        deps=[*RELEASED_IMAGES, dg.AssetKey([environment, "database_schema"])],
        description=(
            f"The release serving {environment}: migrate, roll out (blue/green locally, ECS on aws), verify, "
            "back to the previous release on failure."
        ),
        tags={"environment": environment},
    )
    def deployment(
        context: dg.AssetExecutionContext,
        config: ReleaseConfig,
        release_target: ReleaseTarget,
        notifier: NotifierResource,
        secrets: SecretsResource,
    ) -> dg.MaterializeResult:
        release = Release(config.version, config.backend_digest, config.frontend_digest)
        approved_by = config.approved_by or None
        result = run_release_action(
            context, notifier, f"deploy to {environment}",
            lambda notify: release_target.deploy(environment, release, approved_by, context.log.info, notify, secrets),
        )  # fmt: skip
        return dg.MaterializeResult(metadata={**result.metadata(), "approved_by": config.approved_by or "-"})

    return deployment


deployments = [deployment_asset(environment) for environment in ENVIRONMENTS]


@dg.op(description="Put an environment (the run's partition) back on its previous verified release.")
def rollback_environment(
    context: dg.OpExecutionContext, config: RollbackConfig, release_target: ReleaseTarget, notifier: NotifierResource
) -> None:
    if not context.has_partition_key or context.partition_key not in ENVIRONMENTS:
        raise dg.Failure(
            description=f"launch rollback for one partition, the environment to roll back: {', '.join(ENVIRONMENTS)}"
        )
    environment = context.partition_key
    result = run_release_action(
        context, notifier, f"rollback of {environment}",
        lambda notify: release_target.rollback(environment, config.reason, context.log.info, notify),
    )  # fmt: skip
    context.log_event(dg.AssetMaterialization(asset_key=[environment, "deployment"], metadata=result.metadata()))


@dg.asset(
    group_name=GROUP,
    deps=[deployment.key for deployment in deployments],
    description="Every release attempt in every environment, from the release ledger.",
)
def deployment_history(context: dg.AssetExecutionContext, ledger: LedgerResource) -> dg.MaterializeResult[pd.DataFrame]:
    history = pd.DataFrame(ledger.open().history())
    preview = history.tail(20).to_markdown(index=False) if not history.empty else "no release yet"
    context.log.info(f"{len(history)} release attempts")
    return dg.MaterializeResult(
        value=history, metadata={"attempts": len(history), "latest": dg.MetadataValue.md(preview)}
    )
