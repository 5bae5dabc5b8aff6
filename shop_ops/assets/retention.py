"""The `registry_retention` op and job: keep what serves, the ledger's recent releases and the last builds, delete the rest.

The rules are in shop_ops/release/retention.py; this op only wires the resources to them and
turns the report into metadata. `build_registry_retention_job` takes the settings' numbers as the
run config's defaults (definitions.py reads them); a launch may change them or ask for a dry run.
"""

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from shop_ops.release.retention import RetentionDeps, RetentionError, RetentionReport, housekeep
from shop_ops.release.targets import ReleaseTarget
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.settings import ENVIRONMENTS

JOB = "registry_retention"
OP = "apply_retention"  # not the job's name: Dagster names the job's graph after the job


class RetentionConfig(dg.Config):
    keep_releases: int = Field(default=5, ge=1, description="releases of the ledger's history kept (newest first)")
    keep_builds: int = Field(default=10, ge=0, description="builds (<version>-<sha> tags) kept per repository")
    dry_run: bool = Field(default=False, description="decide and report only: nothing deleted or removed")
    collect_garbage: bool = Field(default=True, description="run the local registry's garbage collection read-only")
    prune_local_images: bool = Field(default=True, description="remove the engine's names of images not kept")


def _table(rows: list[dict[str, Any]], empty: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False) if rows else empty)


def report_metadata(report: RetentionReport) -> dict[str, Any]:
    raw = report.metadata()
    metadata = {k: v for k, v in raw.items() if k not in ("decisions", "local_images", "errors") and v is not None}
    metadata["decisions"] = _table(raw["decisions"], "no tagged manifest in the shop's repositories")
    metadata["local_images"] = _table(raw["local_images"], "no local image of the shop's repositories")
    if raw["errors"]:
        metadata["errors"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in raw["errors"]))
    return metadata


@dg.op(
    name=OP,
    out=dg.Out(dg.Nothing),
    description="Keep what serves, the ledger's recent releases and the last builds; delete the rest by digest, "
    "collect the registry's garbage read-only, prune the local image store.",
)
def apply_retention(
    context: dg.OpExecutionContext,
    config: RetentionConfig,
    registry: RegistryResource,
    ledger: LedgerResource,
    release_target: ReleaseTarget,
    containers: ContainersResource,
) -> dg.Output[None]:
    deps = RetentionDeps(
        client=registry.images_api(), repositories=(registry.backend_repository, registry.frontend_repository),
        environments=ENVIRONMENTS, ledger=ledger.open, running_images=release_target.running_images,
        server=registry.server, engine=containers.engine, log=context.log.info,
    )  # fmt: skip
    try:
        report = housekeep(
            deps, keep_releases=config.keep_releases, keep_builds=config.keep_builds, dry_run=config.dry_run,
            collect_garbage=config.collect_garbage, prune_local=config.prune_local_images,
        )  # fmt: skip
    except RetentionError as exc:
        raise dg.Failure(description=str(exc)) from None
    metadata = report_metadata(report)
    if report.errors:
        raise dg.Failure(
            description=f"registry_retention did not finish cleanly: {'; '.join(report.errors)}", metadata=metadata
        )
    return dg.Output(None, metadata=metadata)


def build_registry_retention_job(
    keep_releases: int, keep_builds: int, prune_local_images: bool = True
) -> dg.JobDefinition:
    """The job, its run config defaulting to the settings' `images.keep_releases` / `images.keep_builds`."""

    @dg.job(
        name=JOB,
        config=dg.RunConfig(
            ops={
                OP: RetentionConfig(
                    keep_releases=keep_releases, keep_builds=keep_builds, prune_local_images=prune_local_images
                )
            }
        ),
        description=(
            f"Registry housekeeping: keep what serves, the ledger's last {keep_releases} releases and the last "
            f"{keep_builds} builds per repository; delete the rest by manifest digest, garbage-collect with the "
            "registry read-only, prune the local image store. dry_run: report only."
        ),
    )
    def registry_retention() -> None:
        apply_retention()

    return registry_retention
