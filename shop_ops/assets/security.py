"""The `security` group: checkov's scan of infra/terraform/ (findings as a DataFrame), and the routers' certificates.

The scan runs in the `terraform_scanner` resource (shop_ops/security/checkov.py). Accepted
findings are skipped in the HCL with their reason, so they show as SKIPPED rows with it;
`no_failed_checks` fails on any FAILED row.

`<env>/certificates` (one per environment, `certificate_assets`): locally the environment's certificate
issued or renewed through ACME when due and installed in its router (shop_ops/security/certificates.py),
on aws the ALB's ACM certificate read (shop_ops/security/acm.py); days to expiry, issuer and names in
metadata, a blocking check below `expiry_check_days`, and the notifier told when it fails. The
`renew_certificates` job runs them daily.

The other scans run in the `scanners` resource (shop_ops/security/scanners.py), each returning a
DataFrame of findings: `<env>/tls_scan` (sslyze against the environment's HTTPS endpoint; blocking
check: Mozilla-intermediate compliant and the chain valid to the trust bundle), `dockerfile_scan`
(hadolint over every Dockerfile, through the images' own runner) and `dependency_audit` (pip-audit,
npm audit; "not checked" with the reason where their advisory data cannot be reached, never clean).

`audit_log`: the audit trail (shop_ops/security/audit.py, read by the `audit_trail` resource): per run who
launched which job with what configuration (redacted), the release ledger's approvals and the names of the
secrets read; its check fails when a production deploy has no recorded approver.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from shop_ops.release.images import lint_dockerfile
from shop_ops.resources.notifier import NotifierResource, NotifyError
from shop_ops.resources.router import RouterError
from shop_ops.security.audit import AuditTrail
from shop_ops.security.certificates import CertificateError, CertificateSource
from shop_ops.security.checkov import CheckovScanner, ScanError
from shop_ops.security.scanners import ScannerResource, dockerfile_findings
from shop_ops.services.processes import ServiceError

GROUP = "security"
CHECKOV_CHECK = "no_failed_checks"
EXPIRY_CHECK = "not_expiring"
TLS_CHECK = "tls_compliant"
DOCKERFILE_CHECK = "no_dockerfile_errors"
AUDIT_CHECK = "no_known_vulnerabilities"
APPROVAL_CHECK = "production_deploys_approved"


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


def certificates(environment: str) -> dg.AssetsDefinition:
    """`<env>/certificates`: the environment's HTTPS certificate, issued or renewed when due, served by its router."""
    key = dg.AssetKey([environment, "certificates"])

    @dg.asset(
        key=key,
        group_name=GROUP,
        check_specs=[
            dg.AssetCheckSpec(
                EXPIRY_CHECK,
                asset=key,
                blocking=True,
                description="the certificate the router serves has at least expiry_check_days left",
            )
        ],
        kinds={"nginx"},
        tags={"environment": environment},
        description=(
            f"{environment}'s HTTPS certificate: locally from the ACME CA (Pebble), issued when missing, renewed "
            "when fewer than renew_before_days are left, installed with a graceful router reload; on aws ACM's"
        ),
    )
    def _certificates(  # noqa: ANN202 (checks: no typed value)
        context: dg.AssetExecutionContext,
        certificate_authority: CertificateSource,
        notifier: NotifierResource,
    ):
        try:
            outcome = certificate_authority.ensure(environment, context.log.info)
        except (CertificateError, ServiceError, RouterError) as exc:
            _alert(context, notifier, environment, str(exc))
            raise dg.Failure(description=f"certificate of {environment}: {exc}") from None
        days_left, threshold = outcome.status.days_left, certificate_authority.expiry_check_days
        return dg.MaterializeResult(
            metadata=outcome.metadata(),
            check_results=[
                dg.AssetCheckResult(
                    check_name=EXPIRY_CHECK,
                    passed=days_left >= threshold,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"days_to_expiry": round(days_left, 3), "threshold_days": threshold},
                )
            ],
        )

    return _certificates


def certificate_assets(environments: list[str]) -> list[dg.AssetsDefinition]:
    """The `<env>/certificates` asset of each environment."""
    return [certificates(environment) for environment in environments]


def _alert(context: dg.AssetExecutionContext, notifier: NotifierResource, environment: str, error: str) -> None:
    subject = f"[shop-ops] certificate of {environment} not renewed"
    text = "\n".join([error, "", f"Run: {notifier.ui_url}/runs/{context.run.run_id}"])
    try:
        notifier.send(subject, text)
    except NotifyError as exc:  # the run still fails, and the run-failure alert retries
        context.log.error(f"the certificate alert was not sent: {exc}")


def tls_scan(environment: str, after_certificates: bool = True) -> dg.AssetsDefinition:
    """`<env>/tls_scan`: sslyze against the environment's HTTPS endpoint (protocols, ciphers, Mozilla, chain).

    `after_certificates`: downstream of `<env>/certificates` (the local profile's ACME flow; on aws the ALB's
    ACM certificate is Terraform's, with no such asset).
    """
    key = dg.AssetKey([environment, "tls_scan"])

    @dg.asset(
        key=key,
        group_name=GROUP,
        deps=[dg.AssetKey([environment, "certificates"])] if after_certificates else [],
        check_specs=[
            dg.AssetCheckSpec(
                TLS_CHECK,
                asset=key,
                blocking=True,
                description="Mozilla-intermediate compliant (no TLS 1.0/1.1, no weak ciphers) and the certificate "
                "chain valid to the trust bundle for the environment's name",
            )
        ],
        kinds={"pandas"},
        tags={"environment": environment},
        description=f"sslyze against {environment}'s HTTPS endpoint: one row per problem found (none expected)",
    )
    def _tls_scan(context: dg.AssetExecutionContext, scanners: ScannerResource):  # noqa: ANN202 (checks: no typed value)
        try:
            scan = scanners.scan_tls(environment)
        except ScanError as exc:
            raise dg.Failure(description=f"sslyze against {environment}: {exc}") from None
        context.log.info(
            f"sslyze {scan.sslyze_version} against {scan.target.address} ({scan.target.server_name}): "
            f"compliant={scan.compliant}, chain_valid={scan.chain_valid}, protocols {', '.join(scan.accepted_protocols)}"
        )
        table = _markdown(scan.findings)
        return dg.MaterializeResult(
            value=scan.findings,
            metadata={**scan.metadata(), "findings_table": dg.MetadataValue.md(table)},
            check_results=[
                dg.AssetCheckResult(
                    check_name=TLS_CHECK,
                    passed=scan.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"compliant": scan.compliant, "chain_valid": scan.chain_valid, "findings": table},
                )
            ],
        )

    return _tls_scan


def tls_scan_assets(environments: list[str], after_certificates: bool = True) -> list[dg.AssetsDefinition]:
    """The `<env>/tls_scan` asset of each environment."""
    return [tls_scan(environment, after_certificates) for environment in environments]


@dg.asset(
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            DOCKERFILE_CHECK,
            asset="dockerfile_scan",
            description="hadolint reports no error-level finding in any of the repository's Dockerfiles",
        )
    ],
    kinds={"docker", "pandas"},
    description="hadolint over every Dockerfile of the repository: one row per finding (file, line, level, code)",
)
def dockerfile_scan(context: dg.AssetExecutionContext, scanners: ScannerResource):  # noqa: ANN201 (checks: no typed value)
    try:
        hadolint, dockerfiles = scanners.hadolint_program(), scanners.dockerfiles()
        root = Path(scanners.repository)
        findings = dockerfile_findings(
            {str(path.relative_to(root)): lint_dockerfile(path, hadolint) for path in dockerfiles}
        )
    except (ScanError, RuntimeError) as exc:
        raise dg.Failure(description=f"hadolint: {exc}") from None
    errors = int((findings["level"] == "error").sum())
    context.log.info(f"hadolint over {len(dockerfiles)} Dockerfiles: {len(findings)} findings, {errors} errors")
    table = _markdown(findings)
    return dg.MaterializeResult(
        value=findings,
        metadata={
            "dockerfiles": ", ".join(str(p.relative_to(root)) for p in dockerfiles),
            "findings": len(findings),
            "errors": errors,
            "warnings": int((findings["level"] == "warning").sum()),
            "findings_table": dg.MetadataValue.md(table),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=DOCKERFILE_CHECK,
                passed=errors == 0 and bool(dockerfiles),
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"errors": errors, "dockerfiles": len(dockerfiles)},
            )
        ],
    )


@dg.asset(
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            AUDIT_CHECK,
            asset="dependency_audit",
            description="every package set was audited and none has a known vulnerability (not checked: a warning)",
        )
    ],
    kinds={"python", "npm", "pandas"},
    description=(
        "pip-audit over the shop's and shop_ops's pinned requirements, npm audit over the storefront's lockfile: "
        'one row per vulnerability, or per package set "not checked" with the reason'
    ),
)
def dependency_audit(context: dg.AssetExecutionContext, scanners: ScannerResource):  # noqa: ANN201 (checks: no typed value)
    try:
        audit = scanners.audit_dependencies()
    except ScanError as exc:
        raise dg.Failure(description=f"dependency audit: {exc}") from None
    for result in audit.results:
        context.log.info(f"{result.ecosystem} {result.source}: {result.status} {result.reason}".rstrip())
    table = _markdown(audit.findings)
    return dg.MaterializeResult(
        value=audit.findings,
        metadata={**audit.metadata(), "findings_table": dg.MetadataValue.md(table)},
        check_results=[
            dg.AssetCheckResult(
                check_name=AUDIT_CHECK,
                passed=audit.status == "clean",
                # Vulnerable: an error. Not checked: a warning that stays visible, not a clean pass.
                severity=dg.AssetCheckSeverity.ERROR if audit.status == "vulnerable" else dg.AssetCheckSeverity.WARN,
                metadata={"status": audit.status, "vulnerabilities": int(audit.metadata()["vulnerabilities"])},
            )
        ],
    )


@dg.asset(
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            APPROVAL_CHECK,
            asset="audit_log",
            description="every production deploy in the release ledger (within the retention) has a recorded approver",
        )
    ],
    kinds={"pandas"},
    description=(
        "The audit trail, one row per run: who launched which job (the shop-ops/launched-by tag; the UI records "
        "no user in open-source Dagster), its run config and tags (redacted), the release ledger's approvals and "
        "the names (never values) of the secrets it read; older than audit_retention_days left out"
    ),
)
def audit_log(context: dg.AssetExecutionContext, audit_trail: AuditTrail):  # noqa: ANN201 (checks: no typed value)
    audit = audit_trail.collect(context.instance)
    metadata = audit.metadata()
    context.log.info(f"{metadata['rows']} audit rows since {metadata['since']}, {metadata['runs']} of them runs")
    return dg.MaterializeResult(
        value=audit.frame,
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=APPROVAL_CHECK,
                passed=not audit.unapproved,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"unapproved": len(audit.unapproved), "release_ids": ", ".join(audit.unapproved) or "none"},
            )
        ],
    )


def _markdown(findings: pd.DataFrame) -> str:
    return findings.to_markdown(index=False) if not findings.empty else "none"
