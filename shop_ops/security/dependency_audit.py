"""Dependency audits: pip-audit over each Python package's pinned requirements, `npm audit` over the storefront's lockfile.

Both programs look vulnerabilities up in an outside service: pip-audit in PyPI's JSON API
(`/pypi/<name>/<version>/json`) or in OSV (`--osv-url`), npm in the registry's bulk advisory
endpoint (`/-/npm/v1/security/advisories/bulk`). Where that service cannot be reached, an
audit is "not checked" with the reason (the service's error), never "clean". That includes a
case pip-audit itself reports as clean: a registry mirror that answers 404 for PyPI's
per-version JSON makes pip-audit skip every package ("Dependency not found on PyPI") and print
"No known vulnerabilities found"; a skipped package is not checked here.

Python packages are audited by their own pins (`[project].dependencies` of each pyproject.toml,
`==` only) without resolving (`--no-deps --disable-pip`): nothing is installed or downloaded,
and transitive dependencies are not audited. An unpinned requirement is reported as not
checked. npm audits the lockfile, transitive dependencies included.

Findings (`FINDING_COLUMNS`), one row per vulnerability, per package that could not be checked,
or per package set that could not be checked at all (package ""):
`ecosystem` (pypi, npm), `source` (app, shop_ops, frontend), `package`, `version`,
`vulnerability` (advisory id, with aliases after it), `severity` (npm's; pip-audit gives none),
`fix_versions`, `status` (vulnerable, not checked), `detail` (the advisory's summary or the reason).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from shop_ops.security.checkov import ScanError

FINDING_COLUMNS = [
    "ecosystem", "source", "package", "version", "vulnerability", "severity", "fix_versions", "status", "detail",
]  # fmt: skip
Status = Literal["clean", "vulnerable", "not checked"]
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*(;.*)?$")
_REASON_SHOWN = 500


@dataclass(frozen=True)
class AuditResult:
    """One package set audited (a Python package's pins, or an npm lockfile)."""

    ecosystem: str
    source: str
    status: Status
    reason: str  # why it is not checked, or which packages were not; "" when every package was checked
    packages: int
    checked: int
    vulnerabilities: int
    findings: pd.DataFrame = field(compare=False)


@dataclass(frozen=True)
class DependencyAudit:
    """Every package set's audit; `status` is "vulnerable" if any is, else "not checked" if any is, else "clean"."""

    results: tuple[AuditResult, ...]

    @property
    def status(self) -> Status:
        statuses = {r.status for r in self.results}
        if "vulnerable" in statuses:
            return "vulnerable"
        return "not checked" if "not checked" in statuses or not self.results else "clean"

    @property
    def findings(self) -> pd.DataFrame:
        frames = [r.findings for r in self.results if not r.findings.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FINDING_COLUMNS)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"status": self.status}
        meta["vulnerabilities"] = sum(r.vulnerabilities for r in self.results)
        for r in self.results:
            meta[f"{r.source}_status"] = r.status
            meta[f"{r.source}_checked"] = r.checked
            meta[f"{r.source}_packages"] = r.packages
            if r.reason:
                meta[f"{r.source}_reason"] = r.reason
        return meta


def _row(ecosystem: str, source: str, status: Status, detail: str, package: str = "", version: str = "",
         vulnerability: str = "", severity: str = "", fix_versions: str = "") -> dict[str, str]:  # fmt: skip
    return {
        "ecosystem": ecosystem, "source": source, "package": package, "version": version,
        "vulnerability": vulnerability, "severity": severity, "fix_versions": fix_versions, "status": status,
        "detail": detail,
    }  # fmt: skip


def not_checked(ecosystem: str, source: str, reason: str, packages: int = 0) -> AuditResult:
    """A package set whose vulnerability data could not be had: one finding row saying why."""
    rows = [_row(ecosystem, source, "not checked", reason)]
    return AuditResult(
        ecosystem, source, "not checked", reason, packages, 0, 0, pd.DataFrame(rows, columns=FINDING_COLUMNS)
    )


def pinned_requirements(pyproject: Path) -> tuple[list[str], list[str]]:
    """(`name==version` pins, requirements that are not pinned exactly) of a pyproject's [project].dependencies."""
    try:
        dependencies = tomllib.loads(pyproject.read_text())["project"].get("dependencies", [])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ScanError(f"cannot read [project].dependencies of {pyproject}: {exc}") from None
    pinned, loose = [], []
    for requirement in dependencies:
        match = _PIN.match(requirement)
        (pinned if match else loose).append(requirement.strip())
    return pinned, loose


# ----------------------------------------------------------------------------- pip-audit
def parse_pip_audit(report: Mapping[str, Any], source: str, unpinned: Sequence[str] = ()) -> AuditResult:
    """pip-audit's `-f json` report; skipped packages and `unpinned` requirements count as not checked."""
    rows: list[dict[str, str]] = []
    dependencies = list(report.get("dependencies", []))
    skipped = [d for d in dependencies if "skip_reason" in d]
    vulnerabilities = 0
    for dependency in dependencies:
        for vuln in dependency.get("vulns", []):
            vulnerabilities += 1
            rows.append(
                _row("pypi", source, "vulnerable", str(vuln.get("description") or ""), dependency["name"],
                     str(dependency.get("version", "")), " ".join([vuln["id"], *sorted(vuln.get("aliases", []))]), "",
                     ", ".join(vuln.get("fix_versions", [])))
            )  # fmt: skip
    rows += [_row("pypi", source, "not checked", d["skip_reason"], d["name"]) for d in skipped]
    rows += [_row("pypi", source, "not checked", "not pinned with ==: pip-audit cannot tell the version", r)
             for r in unpinned]  # fmt: skip
    total, checked = len(dependencies) + len(unpinned), len(dependencies) - len(skipped)
    reasons = (
        [f"{len(skipped)} of {total} packages could not be audited: {skipped[0]['skip_reason']}"] if skipped else []
    )
    reasons += [f"{len(unpinned)} requirements are not pinned: {', '.join(unpinned)}"] if unpinned else []
    status: Status = "vulnerable" if vulnerabilities else ("not checked" if reasons or not total else "clean")
    findings = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    if checked == 0 and not vulnerabilities:
        # Nothing was looked up at all: one row for the set, not one per package with the same reason.
        result = not_checked("pypi", source, "; ".join(reasons) or "no packages to audit", total)
        return result
    return AuditResult("pypi", source, status, "; ".join(reasons), total, checked, vulnerabilities, findings)


def run_pip_audit(
    pip_audit: Path,
    source: str,
    pyproject: Path,
    osv_url: str | None = None,
    timeout: float = 300,
) -> AuditResult:
    """pip-audit over `pyproject`'s pins: PyPI's JSON API, or the OSV service at `osv_url` when given."""
    if not pip_audit.exists():
        raise ScanError(f"pip-audit is not installed at {pip_audit}: run `make install` (pip-audit is in .venv)")
    pinned, unpinned = pinned_requirements(pyproject)
    with tempfile.TemporaryDirectory(prefix="pip-audit-") as folder:
        requirements = Path(folder) / "requirements.txt"
        requirements.write_text("".join(f"{pin}\n" for pin in pinned))
        command = [
            str(pip_audit), "--requirement", str(requirements), "--no-deps", "--disable-pip", "--format", "json",
            "--progress-spinner", "off", "--timeout", "15",
            # A fresh cache: an answer cached on an earlier day must not stand in for today's lookup.
            "--cache-dir", str(Path(folder) / "cache"),
            *(["--vulnerability-service", "osv", "--osv-url", osv_url] if osv_url else []),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return not_checked("pypi", source, f"pip-audit did not finish within {timeout:g}s", len(pinned))
    # 0: no vulnerability; 1: some found, or pip-audit failed (then no JSON on stdout).
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return not_checked("pypi", source, f"pip-audit could not audit: {_last_line(done.stderr)}", len(pinned))
    return parse_pip_audit(report, source, unpinned)


# ----------------------------------------------------------------------------- npm audit
def parse_npm_audit(report: Mapping[str, Any], source: str, packages: int = 0) -> AuditResult:
    """`npm audit --json`: a report (auditReportVersion 2), or npm's error answer (not checked, with its message).

    `packages`: how many the lockfile lists (counted when npm could not say).
    """
    if "auditReportVersion" not in report:
        error = report.get("error") or {}
        reason = report.get("message") or error.get("summary") or error.get("detail") or str(report)[:_REASON_SHOWN]
        return not_checked("npm", source, f"npm audit could not reach its advisory data: {reason}", packages)
    rows = []
    for name, entry in sorted((report.get("vulnerabilities") or {}).items()):
        for via in entry.get("via", []):
            if not isinstance(via, dict):
                continue  # vulnerable through another package: that package has its own row
            url = str(via.get("url", ""))
            advisory = url.rsplit("/", 1)[-1] if url else str(via.get("source", ""))
            fix = entry.get("fixAvailable")
            fix_text = f"{fix.get('name')}@{fix.get('version')}" if isinstance(fix, dict) else ("yes" if fix else "no")
            rows.append(
                _row("npm", source, "vulnerable", str(via.get("title", "")), name, str(via.get("range", "")),
                     advisory, str(via.get("severity", entry.get("severity", ""))), fix_text)
            )  # fmt: skip
    counts = (report.get("metadata") or {}).get("dependencies") or {}
    total = int(counts.get("total", packages))
    status: Status = "vulnerable" if rows else "clean"
    return AuditResult("npm", source, status, "", total, total, len(rows), pd.DataFrame(rows, columns=FINDING_COLUMNS))


def run_npm_audit(
    npm: str, source: str, folder: Path, registry: str | None = None, timeout: float = 300
) -> AuditResult:
    """`npm audit --json` in `folder` (its package-lock.json), against `registry` when given."""
    lockfile = folder / "package-lock.json"
    try:
        packages = len([p for p in json.loads(lockfile.read_text()).get("packages", {}) if p])
    except (OSError, json.JSONDecodeError) as exc:
        raise ScanError(
            f"no readable package-lock.json in {folder} ({exc}): npm audits the lockfile (`npm install`)"
        ) from None
    command = [npm, "audit", "--json", "--fetch-retries=0", *([f"--registry={registry}"] if registry else [])]
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ScanError(f"npm is not installed ({npm}): install Node.js 20 or newer (see `make install`)") from None
    except subprocess.TimeoutExpired:
        return not_checked("npm", source, f"npm audit did not finish within {timeout:g}s", packages)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return not_checked("npm", source, f"npm audit gave no report: {_last_line(done.stderr)}", packages)
    return parse_npm_audit(report, source, packages)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-_REASON_SHOWN:] if lines else "(no output)"
