"""The `images` group: each image built and pushed (<version>-<sha>), judged by blocking checks, then released (<version>).

Per image (backend, frontend): `<name>_image` -> four blocking checks -> `<name>_release_tag`.
A failing blocking check stops the run before `<name>_release_tag`; that asset also applies the
same policy itself (release_image), so running it alone cannot release a failing image.
"""

import dagster as dg

from shop_ops.release.images import (
    BuiltImage,
    ImageSpec,
    build_and_push,
    evaluate_image,
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


def image_assets(spec: ImageSpec) -> list[dg.AssetsDefinition]:
    """`<name>_image`, its blocking checks and `<name>_release_tag` for one image."""

    @dg.asset(
        name=f"{spec.name}_image",
        group_name=GROUP,
        kinds={"docker"},
        description=f"The {spec.name} image built from the working tree, pushed as {spec.repository}:<version>-<sha>",
    )
    def image(
        context: dg.AssetExecutionContext, containers: ContainersResource, registry: RegistryResource
    ) -> dg.MaterializeResult[BuiltImage]:
        built = build_and_push(containers.engine(), registry.client(), spec, current_source(), log=context.log.info)
        return dg.MaterializeResult(metadata=image_metadata(built), value=built)

    @dg.asset(
        name=f"{spec.name}_release_tag",
        group_name=GROUP,
        kinds={"docker"},
        ins={"image": dg.AssetIn(key=image.key)},
        description=f"{spec.repository}:<version> on the checked digest, added only when every blocking check passed",
    )
    def release_tag(
        context: dg.AssetExecutionContext, image: BuiltImage, registry: RegistryResource
    ) -> dg.MaterializeResult[BuiltImage]:
        release = release_image(registry.client(), image, spec.budget_mb, log=context.log.info)
        metadata = {"release": release.ref, "digest": release.digest, "previous_digest": release.previous_digest or ""}
        return dg.MaterializeResult(metadata=metadata, value=image)

    return [image, *(_check(image, spec, name) for name in CHECKS), release_tag]
