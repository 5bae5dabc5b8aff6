"""The release jobs and the push sensor as Dagster sees them: names, guards through a launch, sensor runs.

The deploy itself (blue/green, probes, verification, switch back) is tested against real
containers and routers in test_bluegreen.py; here the Dagster wiring around it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.deployments import deployments
from shop_ops.definitions import defs, registry_resource, release_target
from shop_ops.release.images import BuiltImage, ReleaseBlocked, release_image
from shop_ops.resources.containers import DockerEngine, RegistryAuth
from shop_ops.resources.ledger import LedgerResource, ReleaseLedger
from shop_ops.resources.notifier import NotifierResource
from shop_ops.resources.registry import RegistryClient, RegistryResource
from shop_ops.security.secrets import SecretsResource
from shop_ops.sensors.registry_push import build_registry_push_sensor
from shop_ops.settings import load_settings

DIGEST = "sha256:" + "ab" * 32


def test_release_jobs_and_sensors_are_defined_with_their_names():
    for job in ("release_staging", "promote_production", "rollback"):
        assert defs.resolve_job_def(job).name == job
    assert defs.resolve_job_def("release_staging").tags["environment"] == "staging"
    assert defs.resolve_job_def("promote_production").tags["environment"] == "production"
    rollback = defs.resolve_job_def("rollback")  # partitioned by environment: the partition sets the run's tag
    assert rollback.partitions_def.get_partition_keys() == ["staging", "production"]
    for environment in ("staging", "production"):
        assert rollback.get_tags_for_partition_key(environment, None)["environment"] == environment
    sensor = defs.resolve_sensor_def("registry_push_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 5
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"staging/deployment", "production/deployment", "deployment_history"} <= keys


@pytest.mark.parametrize(
    ("approved_by", "refusal"),
    [("", "approved_by is required"), ("ada", "has not been verified on staging")],
)
def test_production_cannot_be_deployed_around_the_guards(tmp_path, approved_by, refusal):
    """As "Materialize all" or a backfill would: the asset itself refuses, before touching anything."""
    production = next(a for a in deployments if a.key == dg.AssetKey(["production", "deployment"]))
    settings = load_settings()
    target = release_target(settings, registry_resource(settings), LedgerResource(state_dir=str(tmp_path)))
    config = {"version": "9.9.9", "backend_digest": DIGEST, "frontend_digest": DIGEST, "approved_by": approved_by}
    result = dg.materialize(
        [production],
        resources={
            "release_target": target,
            "notifier": NotifierResource(),
            "secrets": SecretsResource(folder=str(tmp_path), ledger=LedgerResource(state_dir=str(tmp_path))),
        },
        run_config={"ops": {"production__deployment": {"config": config}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert refusal in failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert ReleaseLedger(tmp_path).history() == []  # refused before the ledger, the lock or a container
    assert ReleaseLedger(tmp_path).secret_accesses() == []  # and before any secret is read


@pytest.fixture(scope="module")
def pushed_release(engine: DockerEngine, registry_client: RegistryClient, built: dict) -> Iterator[dict[str, str]]:
    """A release 0.4.0 of both images in this test's own repositories of the session registry."""
    user, password = registry_client.credentials()  # type: ignore[misc]
    auth = RegistryAuth(user, password, server=registry_client.address)
    context = Path(tempfile.mkdtemp(prefix="shop-ops-test-sensor-"))
    digests, refs = {}, []
    for role in ("backend", "frontend"):
        (context / "Dockerfile").write_text(f"FROM localhost/shop-{role}:local\nLABEL io.shop-ops.sensor-test=0.4.0\n")
        ref = registry_client.image_ref(f"sensor-test/{role}", "0.4.0")
        engine.build(context, ref, use_cache=True)
        digests[role] = engine.push(ref, auth=auth, insecure=True)
        refs.append(ref)
    registry_client.add_tag("sensor-test/backend", "0.4.0", "0.4.0-abc1234")
    # a later build of the same version, pushed under its candidate tag only
    (context / "Dockerfile").write_text(
        "FROM localhost/shop-backend:local\nLABEL io.shop-ops.sensor-test=0.4.0-rebuilt\n"
    )
    rebuilt = registry_client.image_ref("sensor-test/backend", "0.4.0-def5678")
    engine.build(context, rebuilt, use_cache=True)
    digests["rebuilt_backend"] = engine.push(rebuilt, auth=auth, insecure=True)
    refs.append(rebuilt)
    yield digests
    shutil.rmtree(context, ignore_errors=True)
    for ref in refs:
        engine.remove_image(ref)


def test_push_sensor_requests_one_release_staging_run_per_release(registry, pushed_release):
    registry_push_sensor = build_registry_push_sensor(dg.DefaultSensorStatus.RUNNING)
    resource = RegistryResource(
        url=registry.url, credentials_file=str(registry.credentials_file),
        backend_repository="sensor-test/backend", frontend_repository="sensor-test/frontend",
    )  # fmt: skip
    with dg.instance_for_test() as instance:
        # Contexts as context managers: the registry resource nests the (optional) aws resource, so Dagster opens it.
        with dg.build_sensor_context(instance=instance, resources={"registry": resource}) as context:
            first = registry_push_sensor(context)
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        config = request.run_config["ops"]["staging__deployment"]["config"]
        assert config == {"version": "0.4.0", "backend_digest": pushed_release["backend"],
                          "frontend_digest": pushed_release["frontend"], "approved_by": ""}  # fmt: skip
        assert request.run_key == f"release:0.4.0:{pushed_release['backend']}:{pushed_release['frontend']}"
        assert request.tags["environment"] == "staging"
        # the same push seen again (next tick, or a restarted daemon with the saved cursor): nothing new
        with dg.build_sensor_context(
            instance=instance, cursor=first.cursor, resources={"registry": resource}
        ) as context:
            again = registry_push_sensor(context)
        assert again.run_requests == []
        assert again.skip_reason.skip_message.startswith("no new release (already requested: 0.4.0; ")
        # registry down: skipped, cursor kept
        down = RegistryResource(url="http://127.0.0.1:9", credentials_file=str(registry.credentials_file))
        with dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"registry": down}) as context:
            broken = registry_push_sensor(context)
        assert broken.run_requests == [] and broken.cursor is None
        assert "registry not readable" in broken.skip_reason.skip_message


def released_image(digest: str, tag: str) -> BuiltImage:
    return BuiltImage(
        name="backend", registry="", repository="sensor-test/backend", tag=tag, digest=digest, image_id="",
        version="0.4.0", git_commit="def5678", size_mb=10.0, layers=2, user="10001:10001", healthcheck=True,
        labels={}, build_seconds=1.0,
    )  # fmt: skip


def test_a_release_tag_never_moves(registry_client, pushed_release):
    """Re-releasing 0.4.0 as another build is refused: the sensor could otherwise mix builds under one name."""
    with pytest.raises(ReleaseBlocked, match="already released as"):
        release_image(registry_client, released_image(pushed_release["rebuilt_backend"], "0.4.0-def5678"), 500)
    assert registry_client.manifest_digest("sensor-test/backend", "0.4.0") == pushed_release["backend"]
    same = release_image(registry_client, released_image(pushed_release["backend"], "0.4.0-abc1234"), 500)
    assert same.digest == pushed_release["backend"]  # the same build again: idempotent
