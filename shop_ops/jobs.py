"""The jobs people launch from the UI and sensors request: builds, releases, rollback, health checks."""

import dagster as dg

from shop_ops.assets.backups import BACKUP_PARTITIONS
from shop_ops.assets.backups import GROUP as BACKUPS
from shop_ops.assets.deployments import rollback_environment, rollback_run_config

build_images = dg.define_asset_job(
    "build_images",
    selection=dg.AssetSelection.groups("images"),
    description="Build and push both images; release them (<version> tag) when their blocking checks pass.",
)

release_staging = dg.define_asset_job(
    "release_staging",
    selection=dg.AssetSelection.assets(["staging", "deployment"]),
    tags={"environment": "staging"},
    description="Deploy a release (version + image digests) to staging: migrate, roll out, verify.",
)

promote_production = dg.define_asset_job(
    "promote_production",
    selection=dg.AssetSelection.assets(["production", "deployment"]),
    tags={"environment": "production"},
    description="The same release to production; needs approved_by and digests verified on staging.",
)


@dg.job(
    name="rollback",
    config=rollback_run_config,
    description="Put an environment (the partition) back on its previous verified release.",
)
def rollback() -> None:
    rollback_environment()


check_environment_health = dg.define_asset_job(
    "check_environment_health",
    selection=dg.AssetSelection.assets("environment_health"),
    description="Probe every environment's readiness endpoint and record up/down.",
)

DR_DRILLS = dg.AssetSelection.groups(BACKUPS) & dg.AssetSelection.key_substring("dr_drill")

nightly_backup = dg.define_asset_job(
    "nightly_backup",
    selection=dg.AssetSelection.groups(BACKUPS) - DR_DRILLS,
    partitions_def=BACKUP_PARTITIONS,
    description=(
        "Back up every environment's database (pgBackRest + encrypted pg_dump with fingerprints) and the "
        "pipeline's own state for the day (the partition: yesterday), then restore-test each backup."
    ),
)

dr_drill = dg.define_asset_job(
    "dr_drill",
    selection=DR_DRILLS,
    description="Point-in-time recovery of each environment into a scratch cluster, proven and timed (RTO, RPO).",
)

JOBS = [build_images, release_staging, promote_production, rollback, check_environment_health, nightly_backup, dr_drill]
