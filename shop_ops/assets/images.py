"""The `images` group: each image built and pushed (<version>-<sha>), judged by blocking checks, then released (<version>).

Per image (backend, frontend): `<name>_image` -> four blocking checks -> `<name>_release_tag`.
A failing blocking check stops the run before `<name>_release_tag`; that asset also applies the
same policy itself (release_image), so running it alone cannot release a failing image. A release
gate (the backend's `api_docs`) is an input of `<name>_release_tag`: its blocking checks stop the
run too, and its verdict for the same digest is part of the policy.

`<name>_image` builds from the working tree, or, with the config `pushed_tag` (the `check_pushed_build`
job), judges a build CI already pushed as `<repository>:<pushed_tag>` instead (pulled, not rebuilt).
"""

from typing import Protocol, runtime_checkable

import dagster as dg

from shop_ops.release.images import (
    BuiltImage,
    ImageSpec,
    ReleaseGate,
    build_and_push,
    evaluate_image,
    inspect_pushed,
    lint_table,
    release_image,
)
from shop_ops.release.source import current_source
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.registry import RegistryResource

GROUP = "images"
CHECKS = {
    "size_budget": "Image size (MB) within its budget",
    "non_root": "The image's USER is not root",
    "healthcheck": "The image declares a HEALTHCHECK",
    "no_hadolint_errors": "hadolint reports no error-level finding on the Dockerfile",
}


def image_metadata(image: BuiltImage) -> dict[str, object]:
    return {
        "digest": image.digest,
        "image": dg.MetadataValue.text(image.ref),
        "version": image.version,
        "git_commit": image.git_commit,
        "size_mb": dg.MetadataValue.float(image.size_mb),
        "layers": dg.MetadataValue.int(image.layers),
        "build_seconds": dg.MetadataValue.float(image.build_seconds),
        "user": image.user,
        "healthcheck": image.healthcheck,
        "hadolint_findings": dg.MetadataValue.int(len(image.hadolint)),
        "hadolint_errors": dg.MetadataValue.int(image.hadolint_errors),
        "hadolint": dg.MetadataValue.md(lint_table(image.hadolint)),
    }


def _check(image_asset: dg.AssetsDefinition, spec: ImageSpec, name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=image_asset, name=name, description=CHECKS[name], blocking=True)
    def _image_check(image: BuiltImage) -> dg.AssetCheckResult:
        outcome = evaluate_image(image, spec.budget_mb)[name]
        return dg.AssetCheckResult(passed=outcome.passed, description=outcome.description, metadata=outcome.metadata)

    return _image_check


class ImageSource(dg.Config):
    """Where the image comes from: empty `pushed_tag` builds it from the working tree; `<version>-<sha>` judges
    the build CI pushed under that tag (the `check_pushed_build` job sets it)."""

    pushed_tag: str = ""


PUSHED_TAG = "images/pushed_tag"  # the run tag of a check_pushed_build run: the build it judges
IMAGE_NAMES = ("backend", "frontend")


def _pushed_run_config(config: dict[str, str]) -> dict[str, object]:
    tag = config["pushed_tag"].strip()
    return {"ops": {f"{name}_image": {"config": {"pushed_tag": tag}} for name in IMAGE_NAMES}}


# check_pushed_build's run config is just {"pushed_tag": "<version>-<sha>"}; it configures both image assets.
pushed_build_config = dg.ConfigMapping(
    config_schema={
        "pushed_tag": dg.Field(
            str, description="The tag CI pushed both images under: <version>-<sha>, e.g. 0.3.0-1a2b3c4"
        )
    },
    config_fn=_pushed_run_config,
)


def pushed_build_launch(pushed_tag: str) -> tuple[dict[str, object], dict[str, str]]:
    """(run config, run tags) of a check_pushed_build run for the build CI pushed as `pushed_tag`."""
    return {"pushed_tag": pushed_tag}, {PUSHED_TAG: pushed_tag}


@runtime_checkable
class Gate(Protocol):
    """An upstream value that rules on the release of a build (ApiDocsReport)."""

    def release_gate(self) -> ReleaseGate: ...


def _release(
    context: dg.AssetExecutionContext, image: BuiltImage, registry: RegistryResource, spec: ImageSpec,
    gates: tuple[ReleaseGate, ...],
) -> dg.MaterializeResult[BuiltImage]:  # fmt: skip
    release = release_image(registry.client(), image, spec.budget_mb, log=context.log.info, gates=gates)
    metadata = {"release": release.ref, "digest": release.digest, "previous_digest": release.previous_digest or ""}
    return dg.MaterializeResult(metadata=metadata, value=image)


def image_assets(spec: ImageSpec, gate: dg.AssetKey | None = None) -> list[dg.AssetsDefinition]:
    """`<name>_image`, its blocking checks and `<name>_release_tag` for one image; `gate`: an asset whose value
    (a `Gate`) must pass for this digest before the release tag (and whose blocking checks stop the run)."""

    @dg.asset(
        name=f"{spec.name}_image",
        group_name=GROUP,
        kinds={"docker"},
        description=(
            f"The {spec.name} image built from the working tree, pushed as {spec.repository}:<version>-<sha>; "
            "or, with config pushed_tag, the build CI pushed under that tag"
        ),
    )
    def image(
        context: dg.AssetExecutionContext, config: ImageSource, containers: ContainersResource,
        registry: RegistryResource,
    ) -> dg.MaterializeResult[BuiltImage]:  # fmt: skip
        if config.pushed_tag:
            built = inspect_pushed(
                containers.engine(), registry.client(), spec, config.pushed_tag, log=context.log.info
            )
        else:
            built = build_and_push(containers.engine(), registry.client(), spec, current_source(), log=context.log.info)
        return dg.MaterializeResult(metadata=image_metadata(built), value=built)

    common = {
        "name": f"{spec.name}_release_tag",
        "group_name": GROUP,
        "kinds": {"docker"},
        "description": f"{spec.repository}:<version> on the checked digest, added only when every blocking check passed",
    }
    if gate is None:

        @dg.asset(**common, ins={"image": dg.AssetIn(key=image.key)})
        def release_tag(
            context: dg.AssetExecutionContext, image: BuiltImage, registry: RegistryResource
        ) -> dg.MaterializeResult[BuiltImage]:
            return _release(context, image, registry, spec, ())

    else:

        @dg.asset(**common, ins={"image": dg.AssetIn(key=image.key), "gate": dg.AssetIn(key=gate)})
        def release_tag(
            context: dg.AssetExecutionContext, image: BuiltImage, gate: Gate, registry: RegistryResource
        ) -> dg.MaterializeResult[BuiltImage]:
            return _release(context, image, registry, spec, (gate.release_gate(),))

    return [image, *(_check(image, spec, name) for name in CHECKS), release_tag]
