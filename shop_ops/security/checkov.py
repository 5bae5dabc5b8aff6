"""checkov over infra/terraform/ (`terraform_scanner`): its findings as a DataFrame, its counts as numbers.

checkov runs from a virtualenv of its own (it pins an old boto3 and replaces python-hcl2):
`make install` makes `.venv-checkov`, the run image carries `/opt/checkov`. It runs offline
(`--skip-download`: no guidelines or policies fetched). A finding that is accepted is skipped in
the HCL itself, with its reason (`#checkov:skip=CKV_...:why`); the reason comes back here.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

FINDING_COLUMNS = ["result", "check_id", "check_name", "resource", "file", "first_line", "skip_reason"]
# What checkov says of itself on stderr when it fails, quoted in the error.
_STDERR_SHOWN = 1500


class ScanError(RuntimeError):
    """checkov could not scan; the message says why and what to do."""


@dataclass(frozen=True)
class TerraformScan:
    """One checkov run: counts, and the failed and skipped checks (FINDING_COLUMNS)."""

    version: str
    passed: int
    failed: int
    skipped: int
    resources: int
    parsing_errors: int
    findings: pd.DataFrame

    def metadata(self) -> dict[str, Any]:
        return {
            "checkov_version": self.version,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "resources": self.resources,
            "parsing_errors": self.parsing_errors,
        }


def parse_report(report: Any) -> TerraformScan:
    """checkov's `-o json` answer for the terraform framework (a dict, or a list with one entry per framework)."""
    if isinstance(report, list):
        report = next((r for r in report if r.get("check_type") == "terraform"), None)
    if not isinstance(report, dict) or "summary" not in report:
        raise ScanError(f"checkov's report has no terraform summary: {str(report)[:300]}")
    summary = report["summary"]
    results = report.get("results", {})
    rows = [_finding(check, "FAILED") for check in results.get("failed_checks", [])] + [
        _finding(check, "SKIPPED") for check in results.get("skipped_checks", [])
    ]
    findings = pd.DataFrame(rows, columns=FINDING_COLUMNS).sort_values(
        ["result", "file", "first_line", "check_id", "resource"]
    )
    return TerraformScan(
        version=str(summary.get("checkov_version", "?")),
        passed=int(summary["passed"]),
        failed=int(summary["failed"]),
        skipped=int(summary["skipped"]),
        resources=int(summary.get("resource_count", 0)),
        parsing_errors=int(summary.get("parsing_errors", 0)),
        findings=findings.reset_index(drop=True),
    )


def _finding(check: dict[str, Any], result: str) -> dict[str, Any]:
    lines = check.get("file_line_range") or [0, 0]
    return {
        "result": result,
        "check_id": check["check_id"],
        "check_name": check.get("check_name", ""),
        "resource": check.get("resource", ""),
        "file": check.get("file_path", "").lstrip("/"),
        "first_line": int(lines[0]),
        "skip_reason": (check.get("check_result") or {}).get("suppress_comment", "") if result == "SKIPPED" else "",
    }


class CheckovScanner(dg.ConfigurableResource):
    """checkov from its own virtualenv over one folder of Terraform."""

    checkov: str  # the checkov program: .venv-checkov/bin/checkov, or /opt/checkov/bin/checkov in the run image
    directory: str  # infra/terraform
    timeout_seconds: float = 300

    def scan(self) -> TerraformScan:
        program, folder = Path(self.checkov), Path(self.directory)
        if not program.exists():
            raise ScanError(
                f"checkov is not installed at {program}: run `make install` (it makes .venv-checkov), or point "
                "SHOP_OPS_CHECKOV at a checkov program"
            )
        if not folder.is_dir():
            raise ScanError(f"no Terraform to scan: {folder} is not a folder (SHOP_OPS_INFRA points elsewhere?)")
        # checkov's program is a plain Python script, not a console entry point: pip writes the venv's
        # interpreter into its #! line as is, which the kernel cuts at a space (a checkout in "shop ops").
        # So it runs through the interpreter beside it.
        interpreter = program.parent / "python"
        command = [
            *([str(interpreter)] if interpreter.exists() else []), str(program), "--directory", str(folder), "--framework", "terraform", "--output", "json",
            "--compact", "--skip-download", "--download-external-modules", "false",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_seconds, check=False)
        except subprocess.TimeoutExpired:
            raise ScanError(f"checkov did not finish within {self.timeout_seconds:g}s over {folder}") from None
        # 0: every check passed; 1: some failed. Anything else is checkov's own failure.
        if done.returncode not in (0, 1):
            raise ScanError(f"checkov exited {done.returncode}: {done.stderr[-_STDERR_SHOWN:].strip()}")
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise ScanError(
                f"checkov's output is not JSON: {done.stdout[:300]!r} {done.stderr[-_STDERR_SHOWN:].strip()}"
            ) from None
        return parse_report(report)
