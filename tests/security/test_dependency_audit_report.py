"""pip-audit's report read as this project must: a package pip-audit skipped is "not checked", never part of a clean audit.

pip-audit prints "No known vulnerabilities found" and exits 0 when PyPI's per-version JSON answers 404
for every package (as a registry mirror here does): the reports below are the JSON it writes then.
"""

from __future__ import annotations

from shop_ops.security.dependency_audit import DependencyAudit, parse_pip_audit

SKIPPED = "Dependency not found on PyPI and could not be audited: fastapi (0.163.2)"


def test_every_package_skipped_is_not_checked_with_pip_audits_reason() -> None:
    report = {
        "dependencies": [{"name": "fastapi", "skip_reason": SKIPPED}, {"name": "granian", "skip_reason": SKIPPED}]
    }
    result = parse_pip_audit(report, "app")
    assert result.status == "not checked" and result.checked == 0 and result.packages == 2
    assert result.reason == f"2 of 2 packages could not be audited: {SKIPPED}"
    assert result.findings[["source", "status", "detail"]].values.tolist() == [["app", "not checked", result.reason]]
    assert DependencyAudit((result,)).status == "not checked"


def test_one_skipped_package_keeps_the_set_from_being_clean() -> None:
    report = {
        "dependencies": [
            {"name": "idna", "version": "3.10", "vulns": []},
            {"name": "fastapi", "skip_reason": SKIPPED},
        ]
    }
    result = parse_pip_audit(report, "app")
    assert result.status == "not checked" and (result.checked, result.packages) == (1, 2)
    assert result.findings[["package", "status"]].values.tolist() == [["fastapi", "not checked"]]


def test_clean_only_when_every_package_was_looked_up() -> None:
    report = {"dependencies": [{"name": "idna", "version": "3.10", "vulns": []}]}
    clean = parse_pip_audit(report, "app")
    assert clean.status == "clean" and clean.findings.empty and clean.reason == ""
    assert DependencyAudit((clean,)).status == "clean"
    assert DependencyAudit(()).status == "not checked"  # nothing audited is not clean either
