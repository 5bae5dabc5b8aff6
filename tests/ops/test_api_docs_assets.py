"""api_docs for real on pushed builds (check_pushed_build's way): thin layers over the built backend image, pushed
as candidate tags to the test registry, judged against a previous release; a compatible build is released with its
changelog entry and Postman collection, one that removes a response field without a major bump is not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.docs import ASSET, api_docs_assets
from shop_ops.assets.images import image_assets
from shop_ops.release.api_docs import ApiDocsReport
from shop_ops.release.images import (
    DOCKERFILE_IN_IMAGE,
    REVISION_LABEL,
    ImageSpec,
    ReleaseBlocked,
    lint_dockerfile,
    registry_auth,
    release_image,
    shop_image_specs,
)
from shop_ops.settings import ROOT

# The first test here may pay for the session's image build (the `built` fixture) on top of its own pushes.
pytestmark = pytest.mark.timeout(600)
REPOSITORY = "shop/apidocs-backend"
SCHEMAS = "/opt/venv/lib/python3.11/site-packages/shop/schemas.py"
# Patches of the shop's response models, as one RUN line each (the image's own sed).
ADD_FIELD = rf"sed -i 's/^    category: str$/    category: str\n    badge: str | None = None/' {SCHEMAS}"
REMOVE_STOCK = rf"sed -i '/^    stock: int$/d' {SCHEMAS}"


@pytest.fixture(scope="module")
def push_backend(built, engine, registry_client, tmp_path_factory) -> Callable[[str, str], str]:
    """Builds `FROM <built backend>` + an optional patch + version label, pushes it as <version>-<revision>."""
    base = next(image["ref"] for image in built["images"] if image["name"] == "backend")
    revision = engine.inspect(base).labels[REVISION_LABEL]
    pushed: list[str] = []

    def push(version: str, patch: str = "") -> str:
        folder = tmp_path_factory.mktemp("thin-backend")
        steps = [f"FROM {base}"]
        if patch:
            steps += ["USER root", f"RUN {patch}", "USER 10001:10001"]
        steps += [f'LABEL org.opencontainers.image.version="{version}"', f"ENV SHOP_VERSION={version}"]
        (folder / "Dockerfile").write_text("\n".join(steps) + "\n")
        tag = f"{version}-{revision}"
        ref = registry_client.image_ref(REPOSITORY, tag)
        engine.build(folder, tag=ref)
        engine.push(ref, auth=registry_auth(registry_client), insecure=registry_client.insecure)
        pushed.append(ref)
        return tag

    release = push("1.0.0")
    registry_client.add_tag(REPOSITORY, release, "1.0.0")  # the previous release
    push.folder = tmp_path_factory.mktemp("api-docs")  # the asset's folder: the 1.0.0 document is read once
    yield push
    for ref in pushed:
        engine.remove_image(ref)


def check_pushed(tag: str, folder: Path, resources: dict) -> dg.ExecuteInProcessResult:
    """The backend's part of check_pushed_build: image (pulled), its checks, api_docs and its checks, release tag."""
    spec = next(s for s in shop_image_specs() if s.name == "backend")
    spec = ImageSpec(**{**spec.__dict__, "repository": REPOSITORY})
    definitions = [*image_assets(spec, gate=dg.AssetKey(ASSET)), *api_docs_assets(dg.AssetKey("backend_image"), folder)]
    with dg.instance_for_test() as instance:
        return dg.materialize(
            definitions,
            resources=resources,
            instance=instance,
            run_config={"ops": {"backend_image": {"config": {"pushed_tag": tag}}}},
            raise_on_error=False,
        )


def test_compatible_build_is_released_with_changelog_entry_and_postman_collection(
    push_backend, ops_resources, registry_client, engine
):
    tag = push_backend("1.1.0", ADD_FIELD)
    result = check_pushed(tag, push_backend.folder, ops_resources)
    assert result.success
    verdicts = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert verdicts[("api_docs", "no_breaking_changes")] and verdicts[("api_docs", "valid_openapi")]
    assert all(verdicts.values()), verdicts
    assert registry_client.manifest_digest(REPOSITORY, "1.1.0") == registry_client.manifest_digest(REPOSITORY, tag)

    metadata = result.asset_materializations_for_node(ASSET)[0].metadata
    assert metadata["version"].value == "1.1.0" and metadata["previous_version"].value == "1.0.0"
    assert metadata["breaking_changes"].value == 0 and metadata["changes"].value >= 1
    assert metadata["operations"].value >= 15 and metadata["paths"].value >= 10
    entry = Path(metadata["changelog_file"].value).read_text()
    assert entry == metadata["changelog"].value
    assert entry.startswith("## 1.1.0 (") and "Compared with 1.0.0." in entry
    assert "### Added" in entry and "badge`: new response field" in entry and "### Breaking" not in entry
    document = json.loads(Path(metadata["document"].value).read_text())
    assert document["info"]["version"] == "1.1.0" and "badge" in document["components"]["schemas"]["Product"]["properties"]  # fmt: skip
    collection = json.loads(Path(metadata["postman_collection"].value).read_text())
    names = {item["name"] for folder in collection["item"] for item in folder["item"]}
    assert {"List Products", "Add Item", "Checkout", "Get Order"} <= names
    assert Path(metadata["document"].value).parent == push_backend.folder / tag
    # hadolint judged the Dockerfile the image carries: the one it was built from, no checkout needed.
    image = result.output_for_node("backend_image")
    assert image.hadolint == lint_dockerfile(ROOT / "app" / "Dockerfile")
    assert engine.read_file(image.ref, DOCKERFILE_IN_IMAGE) == (ROOT / "app" / "Dockerfile").read_bytes()


def test_build_that_removes_a_response_field_fails_the_check_and_gets_no_release_tag(
    push_backend, ops_resources, registry_client
):
    tag = push_backend("1.0.1", REMOVE_STOCK)
    result = check_pushed(tag, push_backend.folder, ops_resources)
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey(ASSET)}
    check = evaluations["no_breaking_changes"]
    assert not check.passed and evaluations["valid_openapi"].passed
    assert "without a major version bump" in check.description
    assert check.metadata["breaking_changes"].value >= 2
    diff = check.metadata["diff"].value
    assert "| yes | removed_response_field | `GET /api/products -> 200.items[].stock` |" in diff
    assert "| yes | removed_response_field | `GET /api/products/{product_id} -> 200.stock` |" in diff
    assert not result.asset_materializations_for_node("backend_release_tag")
    assert "1.0.1" not in registry_client.tags(REPOSITORY)  # pushed, judged, never released
    assert registry_client.manifest_digest(REPOSITORY, tag) is not None
    previous = registry_client.manifest_digest(REPOSITORY, "1.0.0")
    assert (push_backend.folder / "documents" / f"{previous.replace(':', '-')}.json").is_file()  # read once, kept

    # backend_release_tag run on its own gets the same verdict from api_docs' value: still no release.
    report: ApiDocsReport = result.output_for_node(ASSET)
    image = result.output_for_node("backend_image")
    with pytest.raises(ReleaseBlocked, match=r"api_docs: .*breaking change"):
        release_image(registry_client, image, 500, gates=[report.release_gate()])
    assert registry_client.manifest_digest(REPOSITORY, "1.0.1") is None


def test_pushed_tag_that_is_not_in_the_registry_fails_clearly(ops_resources, registry_client, tmp_path):
    result = check_pushed("9.9.9-0000000", tmp_path, ops_resources)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else ""
    message += failure.step_failure_data.error.message
    assert f"{registry_client.address}/{REPOSITORY}:9.9.9-0000000 is not in the registry" in message
