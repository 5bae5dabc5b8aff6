"""`registry_push_sensor`: a new release in the registry (a version tag in both repositories) -> `release_staging`.

The scan is `shop_ops.release.registry_watch.scan` (plain, tested against a real registry and ECR's
API on moto); the registry (ECR's API on aws) and the shop's two repositories come from the `registry` resource. The cursor keeps the
releases already requested and `run_key` (version + both digests) makes Dagster drop a duplicate
request, e.g. after a daemon restart mid-tick.
"""

import dagster as dg

from shop_ops.assets.deployments import ReleaseConfig
from shop_ops.release.registry_watch import WatchCursor, scan
from shop_ops.resources.registry import RegistryResource

SENSOR_NAME = "registry_push_sensor"
JOB = "release_staging"


def registry_push_sensor(context: dg.SensorEvaluationContext, registry: RegistryResource) -> dg.SensorResult:
    """One tick: a run request per release not requested before; the registry down keeps the cursor."""
    cursor = WatchCursor.from_json(context.cursor)
    result = scan(registry.images_api(), registry.backend_repository, registry.frontend_repository, cursor)
    for line in [*result.notes, *result.skipped]:
        context.log.info(line)
    if result.error:
        return dg.SensorResult(skip_reason=f"registry not readable, cursor kept: {result.error}")
    requests = [
        dg.RunRequest(
            run_key=candidate.run_key,
            run_config=dg.RunConfig(
                ops={
                    "staging__deployment": ReleaseConfig(
                        version=candidate.version,
                        backend_digest=candidate.backend_digest,
                        frontend_digest=candidate.frontend_digest,
                    )
                }
            ),
            tags={"environment": "staging", "release/version": candidate.version},
        )
        for candidate in result.new_releases
    ]
    reasons = [f"already requested: {', '.join(result.known)}"] * bool(result.known) + result.skipped
    skip = None if requests else "no new release (" + ("; ".join(reasons) or "nothing pushed") + ")"
    return dg.SensorResult(run_requests=requests, cursor=result.cursor.to_json(), skip_reason=skip)


def build_registry_push_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """The sensor, every 5 s, requesting `release_staging` runs."""
    return dg.sensor(
        name=SENSOR_NAME,
        job_name=JOB,
        minimum_interval_seconds=5,
        default_status=default_status,
        description="New release version pushed for both images -> one release_staging run.",
    )(registry_push_sensor)
