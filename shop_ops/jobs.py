"""The jobs people launch from the UI and sensors request: builds, releases, rollback, health checks."""

import dagster as dg

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

JOBS = [build_images, release_staging, promote_production, rollback, check_environment_health]
