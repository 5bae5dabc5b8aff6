"""The images group materialized for real: built, pushed, checked (blocking) and released; a failing check blocks the release."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster_shared.serdes import serialize_value
from docker.auth import encode_header

from shop_ops.assets.images import CHECKS, image_assets
from shop_ops.release.images import (
    BuiltImage,
    LintFinding,
    ReleaseBlocked,
    evaluate_image,
    release_image,
    shop_image_specs,
)
from shop_ops.release.source import current_source


def test_both_images_built_pushed_checked_and_released(images_run, registry_client):
    result = images_run.result
    assert result.success
    source = current_source()
    evaluations = result.get_asset_check_evaluations()
    assert {(e.asset_key.to_user_string(), e.check_name) for e in evaluations} == {
        (f"{name}_image", check) for name in ("backend", "frontend") for check in CHECKS
    }
    assert all(e.passed for e in evaluations), [(e.check_name, e.description) for e in evaluations if not e.passed]
    for name, repository, budget in (("backend", "shop/backend", 500), ("frontend", "shop/frontend", 100)):
        image: BuiltImage = images_run.images[name]
        assert registry_client.tags(repository) == sorted([source.version, source.candidate_tag])
        candidate = registry_client.manifest_digest(repository, source.candidate_tag)
        assert candidate == image.digest == registry_client.manifest_digest(repository, source.version)
        metadata = result.asset_materializations_for_node(f"{name}_image")[0].metadata
        assert metadata["digest"].value == image.digest
        assert isinstance(metadata["size_mb"].value, float) and 0 < metadata["size_mb"].value < budget
        assert isinstance(metadata["layers"].value, int) and metadata["layers"].value >= 2
        assert metadata["build_seconds"].value > 0
        assert metadata["hadolint_errors"].value == 0
        assert image.labels["org.opencontainers.image.revision"] == source.git_commit
        assert image.labels["org.opencontainers.image.version"] == source.version
        release = result.asset_materializations_for_node(f"{name}_release_tag")[0].metadata
        assert release["release"].value == f"{registry_client.address}/{repository}:{source.version}"


def test_the_registry_password_never_reaches_the_run_log(images_run, registry_client):
    """The images run pushes with the registry's credentials; neither the password nor the encoded
    X-Registry-Auth header that carries it may appear in any of its events (logs, metadata, failures)."""
    password = registry_client.credentials()[1]
    header = encode_header({"username": registry_client.credentials()[0], "password": password,
                            "serveraddress": registry_client.address}).decode()  # fmt: skip
    run_id = images_run.result.run_id
    records = images_run.instance.all_logs(run_id)
    assert len(records) > 20  # the whole run: steps, materializations, check evaluations
    logged = "\n".join(serialize_value(record) for record in records)
    assert images_run.images["backend"].digest in logged  # the scan reads what the run recorded
    assert password not in logged and header not in logged


def test_image_over_budget_fails_its_check_and_is_not_released(ops_resources, registry_client, engine):
    spec = next(s for s in shop_image_specs() if s.name == "frontend")
    spec = type(spec)(**{**spec.__dict__, "repository": "shop/frontend-overbudget", "budget_mb": 0.5})
    with dg.instance_for_test() as instance:
        result = dg.materialize(image_assets(spec), resources=ops_resources, instance=instance, raise_on_error=False)
    assert not result.success
    verdicts = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert verdicts == {"size_budget": False, "non_root": True, "healthcheck": True, "no_hadolint_errors": True}
    assert not result.asset_materializations_for_node("frontend_release_tag")
    source = current_source()
    assert registry_client.tags("shop/frontend-overbudget") == [source.candidate_tag]  # pushed, never released

    # The release function applies the policy itself: running it without the checks cannot release.
    image = result.output_for_node("frontend_image")
    engine.remove_image(image.ref)
    with pytest.raises(ReleaseBlocked, match="size_budget"):
        release_image(registry_client, image, spec.budget_mb)
    assert registry_client.manifest_digest("shop/frontend-overbudget", source.version) is None


def _image(**changes) -> BuiltImage:
    base = dict(name="x", registry="r", repository="shop/x", tag="1.0.0-abc", digest="sha256:0", image_id="i",
                version="1.0.0", git_commit="abc", size_mb=10.0, layers=2, user="10001:10001", healthcheck=True,
                labels={}, build_seconds=1.0, hadolint=())  # fmt: skip
    return BuiltImage(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({}, set()),
        ({"user": ""}, {"non_root"}),
        ({"user": "root"}, {"non_root"}),
        ({"user": "0:0"}, {"non_root"}),
        ({"healthcheck": False}, {"healthcheck"}),
        ({"size_mb": 100.1}, {"size_budget"}),
        ({"hadolint": (LintFinding("DL3008", "warning", 3, "pin versions"),)}, set()),
        ({"hadolint": (LintFinding("DL3000", "error", 3, "absolute WORKDIR"),)}, {"no_hadolint_errors"}),
    ],
)
def test_release_policy(changes, failing):
    outcomes = evaluate_image(_image(**changes), budget_mb=100)
    assert {name for name, o in outcomes.items() if not o.passed} == failing


def test_root_image_is_not_released_before_the_registry_is_touched():
    class NoRegistry:
        def __getattr__(self, name):
            raise AssertionError(f"registry.{name} called for a blocked image")

    with pytest.raises(ReleaseBlocked, match="non_root: runs as root"):
        release_image(NoRegistry(), _image(user="0"), budget_mb=100)  # type: ignore[arg-type]
