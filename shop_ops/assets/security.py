"""The `security` group: checkov's scan of infra/terraform/, its findings as a DataFrame and a check that none failed.

The scan runs in the `terraform_scanner` resource (shop_ops/security/checkov.py). Accepted
findings are skipped in the HCL with their reason, so they show as SKIPPED rows with it;
`no_failed_checks` fails on any FAILED row.
"""

import dagster as dg

from shop_ops.security.checkov import CheckovScanner, ScanError

GROUP = "security"
CHECKOV_CHECK = "no_failed_checks"


@dg.asset(
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            CHECKOV_CHECK,
            asset="terraform_scan",
            description="checkov finds no failed check in infra/terraform/ (accepted ones are skipped inline, with why)",
        )
    ],
    kinds={"terraform", "pandas"},
    description="checkov over infra/terraform/: one row per failed or skipped check (with the skip's reason)",
)
def terraform_scan(context: dg.AssetExecutionContext, terraform_scanner: CheckovScanner):  # noqa: ANN201 (checks: no typed value)
    try:
        scan = terraform_scanner.scan()
    except ScanError as exc:
        raise dg.Failure(description=f"checkov: {exc}") from None
    failed = scan.findings[scan.findings["result"] == "FAILED"]
    context.log.info(
        f"checkov {scan.version}: {scan.passed} passed, {scan.failed} failed, {scan.skipped} skipped "
        f"over {scan.resources} resources"
    )
    table = (
        failed[["check_id", "resource", "file", "first_line", "check_name"]].to_markdown(index=False)
        if not failed.empty
        else "none"
    )
    return dg.MaterializeResult(
        value=scan.findings,
        metadata={**scan.metadata(), "failed_checks": dg.MetadataValue.md(table)},
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECKOV_CHECK,
                passed=scan.failed == 0 and scan.parsing_errors == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"failed": scan.failed, "parsing_errors": scan.parsing_errors, "failed_checks": table},
            )
        ],
    )
