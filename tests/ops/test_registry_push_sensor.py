"""The push sensor's ticks against an in-memory registry: run requests, cursor, skip reasons, its definition.

No registry runs here: `FakeRegistry` answers the two calls `registry_watch.scan` makes (`tags`,
`manifest_digest`). The contract with a real registry is tests/ops/test_release_wiring.py.
"""

from __future__ import annotations

import dagster as dg
import httpx
import pytest

from shop_ops.release.registry_watch import WatchCursor
from shop_ops.resources.registry import RegistryClient, RegistryError, RegistryResource
from shop_ops.sensors.registry_push import build_registry_push_sensor, registry_push_sensor

BACKEND, FRONTEND = "shop/backend", "shop/frontend"


def digest(char: str) -> str:
    return "sha256:" + char * 64


class FakeRegistry(RegistryClient):
    """Repositories as {repository: {tag: digest}}; `failure` is raised by every call when set. Never does HTTP."""

    def __init__(self, repositories: dict[str, dict[str, str]], failure: Exception | None = None) -> None:
        super().__init__("http://registry.invalid")
        self.repositories = repositories
        self.failure = failure

    def tags(self, repository: str) -> list[str]:
        if self.failure:
            raise self.failure
        return sorted(self.repositories.get(repository, {}))

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        if self.failure:
            raise self.failure
        return self.repositories.get(repository, {}).get(reference)

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        raise AssertionError(f"the fake registry got a real request: {method} {path}")


def resource_for(fake: FakeRegistry) -> RegistryResource:
    """A RegistryResource whose client is `fake` (a subclass: Dagster re-creates resources from their fields)."""

    class FakeRegistryResource(RegistryResource):
        def client(self) -> RegistryClient:
            return fake

    return FakeRegistryResource(url=fake.url, backend_repository=BACKEND, frontend_repository=FRONTEND)


def tick(fake: FakeRegistry, cursor: str | None = None) -> dg.SensorResult:
    """One evaluation of the undecorated sensor function."""
    return registry_push_sensor(dg.build_sensor_context(cursor=cursor), resource_for(fake))


RELEASE_1 = {
    BACKEND: {"1.0.0": digest("a"), "1.0.0-abc1234": digest("a"), "latest": digest("a")},
    FRONTEND: {"1.0.0": digest("b"), "1.0.0-abc1234": digest("b")},
}
KEY_1 = f"release:1.0.0:{digest('a')}:{digest('b')}"


def test_a_new_release_in_both_repositories_is_one_release_staging_request() -> None:
    result = tick(FakeRegistry(RELEASE_1))
    assert result.skip_reason is None
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key == KEY_1
    assert request.run_config["ops"] == {
        "staging__deployment": {
            "config": {
                "version": "1.0.0",
                "backend_digest": digest("a"),
                "frontend_digest": digest("b"),
                "approved_by": "",  # staging needs no approval; the sensor never approves production
            }
        }
    }
    assert request.tags == {"environment": "staging", "release/version": "1.0.0"}
    assert WatchCursor.from_json(result.cursor).requested == {KEY_1}


def test_the_same_registry_with_the_returned_cursor_requests_nothing_and_says_why() -> None:
    fake = FakeRegistry(RELEASE_1)
    first = tick(fake)
    again = tick(fake, cursor=first.cursor)
    assert again.run_requests == []
    assert again.cursor == first.cursor
    assert again.skip_reason is not None
    reason = again.skip_reason.skip_message
    assert reason.startswith("no new release (already requested: 1.0.0; ")
    assert f"{BACKEND}:latest: not a release version" in reason


def test_a_version_in_one_repository_only_waits_for_the_other() -> None:
    fake = FakeRegistry({BACKEND: {**RELEASE_1[BACKEND], "1.1.0": digest("c")}, FRONTEND: dict(RELEASE_1[FRONTEND])})
    first = tick(fake, cursor=WatchCursor(frozenset({KEY_1})).to_json())
    assert first.run_requests == []
    assert first.skip_reason is not None
    assert f"{BACKEND}:1.1.0: waiting for the frontend 1.1.0 ({FRONTEND}:1.1.0 missing)" in (
        first.skip_reason.skip_message
    )
    assert WatchCursor.from_json(first.cursor).requested == {KEY_1}
    # the frontend arrives: now it is a release
    fake.repositories[FRONTEND]["1.1.0"] = digest("d")
    second = tick(fake, cursor=first.cursor)
    assert [r.run_key for r in second.run_requests] == [f"release:1.1.0:{digest('c')}:{digest('d')}"]


def test_several_new_releases_come_in_ascending_version_order() -> None:
    fake = FakeRegistry(
        {
            BACKEND: {"1.10.0": digest("1"), "1.2.0": digest("2"), "1.9.0": digest("3")},
            FRONTEND: {"1.10.0": digest("4"), "1.2.0": digest("5"), "1.9.0": digest("6")},
        }
    )
    result = tick(fake)
    versions = [r.run_config["ops"]["staging__deployment"]["config"]["version"] for r in result.run_requests]
    assert versions == ["1.2.0", "1.9.0", "1.10.0"]  # staging ends on the newest
    assert WatchCursor.from_json(result.cursor).requested == {r.run_key for r in result.run_requests}


@pytest.mark.parametrize(
    "failure",
    [
        RegistryError("registry http://registry.invalid does not answer: connection refused"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["registry-error", "http-error"],
)
def test_registry_failure_skips_the_tick_and_keeps_the_cursor(failure: Exception) -> None:
    """Through the SensorDefinition, as the daemon evaluates it: the tick's cursor is the stored one."""
    stored = WatchCursor(frozenset({KEY_1})).to_json()
    sensor = build_registry_push_sensor(dg.DefaultSensorStatus.RUNNING)
    fake = FakeRegistry(RELEASE_1, failure=failure)
    with dg.build_sensor_context(cursor=stored, resources={"registry": resource_for(fake)}) as context:
        data = sensor.evaluate_tick(context)
    assert data.run_requests == []
    assert data.cursor == stored
    assert data.skip_message is not None
    assert data.skip_message.startswith("registry not readable, cursor kept: ")


def test_the_definition_gets_the_registry_resource_and_requests_the_release() -> None:
    sensor = build_registry_push_sensor(dg.DefaultSensorStatus.STOPPED)
    with dg.build_sensor_context(resources={"registry": resource_for(FakeRegistry(RELEASE_1))}) as context:
        data = sensor.evaluate_tick(context)
    assert [r.run_key for r in data.run_requests] == [KEY_1]
    assert data.run_requests[0].tags["dagster/sensor_name"] == "registry_push_sensor"
    assert WatchCursor.from_json(data.cursor).requested == {KEY_1}


@pytest.mark.parametrize("status", [dg.DefaultSensorStatus.RUNNING, dg.DefaultSensorStatus.STOPPED])
def test_build_registry_push_sensor(status: dg.DefaultSensorStatus) -> None:
    sensor = build_registry_push_sensor(status)
    assert sensor.name == "registry_push_sensor"  # a name people click in the UI: stable
    assert sensor.job_name == "release_staging"
    assert sensor.minimum_interval_seconds == 5
    assert sensor.default_status == status
    assert sensor.required_resource_keys == {"registry"}


def test_the_requested_run_config_is_valid_for_the_release_staging_job() -> None:
    from shop_ops.definitions import defs  # the real job, so a renamed op or config field shows here

    request = tick(FakeRegistry(RELEASE_1)).run_requests[0]
    dg.validate_run_config(defs.resolve_job_def("release_staging"), request.run_config)
