"""The single Dagster `Definitions` of shop-ops: every asset, check, job and resource, from the settings."""

from __future__ import annotations

import dagster as dg

from shop_ops.assets.database import database_schema
from shop_ops.assets.deployments import release_definitions
from shop_ops.assets.environment_health import environment_health, environment_health_job
from shop_ops.assets.images import image_assets
from shop_ops.release.images import shop_image_specs
from shop_ops.resources import resources_from_settings
from shop_ops.sensors.registry_push import registry_push_sensor
from shop_ops.sensors.run_failure_alerts import run_failure_alert_sensor
from shop_ops.settings import ENVIRONMENTS, get_settings

settings = get_settings()

images = [
    definition
    for spec in shop_image_specs(
        backend_budget_mb=settings.images.backend_budget_mb,
        frontend_budget_mb=settings.images.frontend_budget_mb,
        backend_repository=settings.images.backend_repository,
        frontend_repository=settings.images.frontend_repository,
    )
    for definition in image_assets(spec)
]
database = [database_schema(environment) for environment in ENVIRONMENTS]

# The same deployment assets and release jobs on both profiles: blue/green slots locally, ECS on aws.
releases = release_definitions(settings.profile)

build_images = dg.define_asset_job(
    "build_images",
    selection=dg.AssetSelection.groups("images"),
    description="Build and push both images; release them (<version> tag) when their blocking checks pass.",
)

defs = dg.Definitions(
    assets=[*images, *database, *releases.assets, environment_health],
    jobs=[build_images, environment_health_job, *releases.jobs],
    sensors=[registry_push_sensor, run_failure_alert_sensor],
    resources=resources_from_settings(settings),
)
