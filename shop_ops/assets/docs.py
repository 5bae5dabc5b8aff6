"""The `docs` group: `api_docs`, the backend build's OpenAPI document, validated and compared with the previous release.

`api_docs` hangs from `backend_image` (it takes the BuiltImage) and feeds `backend_release_tag`, so its
blocking checks `valid_openapi` and `no_breaking_changes` keep the release tag off a build that fails
them; `release_image` applies the same verdict again (ApiDocsReport.release_gate). The document, the
changelog entry and the Postman collection are files under `<folder>/<candidate tag>/`, named in the
metadata (release/api_docs.py does the work).
"""

from pathlib import Path

import dagster as dg

from shop_ops.release.api_docs import ApiDocsReport, diff_table, document_build
from shop_ops.release.images import BuiltImage
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.registry import RegistryResource

GROUP = "docs"
ASSET = "api_docs"


def api_docs_metadata(report: ApiDocsReport) -> dict[str, object]:
    return {
        "version": report.version,
        "previous_version": report.previous_version or "(none: first document)",
        "digest": report.digest,
        "paths": dg.MetadataValue.int(report.paths),
        "operations": dg.MetadataValue.int(report.operations),
        "breaking_changes": dg.MetadataValue.int(len(report.diff.breaking)),
        "changes": dg.MetadataValue.int(len(report.diff.changes)),
        "validation_errors": dg.MetadataValue.int(len(report.validation_errors)),
        "changelog": dg.MetadataValue.md(report.changelog),
        "document": dg.MetadataValue.path(report.document_file),
        "changelog_file": dg.MetadataValue.path(report.changelog_file),
        "postman_collection": dg.MetadataValue.path(report.postman_file),
    }


def api_docs_assets(image: dg.AssetKey, folder: Path) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """`api_docs` (from the backend image asset `image`), its files under `folder`, and its two blocking checks."""

    @dg.asset(
        name=ASSET,
        group_name=GROUP,
        kinds={"openapi"},
        ins={"image": dg.AssetIn(key=image)},
        description=(
            "The backend build's OpenAPI document (read from the image), validated, compared with the previous "
            "release's; its changelog entry and Postman collection"
        ),
    )
    def api_docs(
        context: dg.AssetExecutionContext, image: BuiltImage, containers: ContainersResource, registry: RegistryResource
    ) -> dg.MaterializeResult[ApiDocsReport]:
        report = document_build(containers.engine(), registry.client(), image, folder, log=context.log.info)
        return dg.MaterializeResult(metadata=api_docs_metadata(report), value=report)

    @dg.asset_check(
        asset=api_docs, name="valid_openapi", blocking=True, description="openapi-spec-validator accepts the document"
    )
    def valid_openapi(api_docs: ApiDocsReport) -> dg.AssetCheckResult:
        errors = api_docs.validation_errors
        return dg.AssetCheckResult(
            passed=not errors,
            description="; ".join(errors) or "valid OpenAPI document",
            metadata={"errors": dg.MetadataValue.int(len(errors))},
        )

    @dg.asset_check(
        asset=api_docs,
        name="no_breaking_changes",
        blocking=True,
        description="No breaking change since the previous release unless the major version went up",
    )
    def no_breaking_changes(api_docs: ApiDocsReport) -> dg.AssetCheckResult:
        diff = api_docs.diff
        return dg.AssetCheckResult(
            passed=api_docs.verdict.passed,
            description=api_docs.verdict.description,
            metadata={
                "version": api_docs.version,
                "previous_version": api_docs.previous_version or "(none)",
                "breaking_changes": dg.MetadataValue.int(len(diff.breaking)),
                "changes": dg.MetadataValue.int(len(diff.changes)),
                "diff": dg.MetadataValue.md(diff_table(diff)),
            },
        )

    return [api_docs, valid_openapi, no_breaking_changes]
