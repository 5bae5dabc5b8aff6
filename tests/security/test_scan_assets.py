"""The `dockerfile_scan` and `dependency_audit` assets: hadolint over real Dockerfiles, pip-audit and npm audit for real.

The dependency audits need vulnerability data from outside. On these machines PyPI's per-version
JSON answers 404 (pip-audit then skips every package), OSV does not resolve, and npm's bulk
advisory endpoint answers 405: the audits must say "not checked", with that reason. To prove
that a real finding is reported, pip-audit and npm are pointed (their own `--osv-url` and
`--registry` options) at a small local stand-in that answers with two published advisories:
PYSEC-2018-28 (requests < 2.20.0) and GHSA-35jh-r3h4-6jhm (lodash < 4.17.21).
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
from packaging.version import Version

from shop_ops.assets.security import AUDIT_CHECK, DOCKERFILE_CHECK, dependency_audit, dockerfile_scan
from shop_ops.release.images import hadolint_binary, lint_dockerfile
from shop_ops.security.scanners import ScannerResource
from shop_ops.services.processes import free_port

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
PIP_AUDIT = ROOT / ".venv" / "bin" / "pip-audit"

# OSV's record of PYSEC-2018-28 (api.osv.dev/v1/vulns/PYSEC-2018-28), the fields pip-audit reads.
REQUESTS_ADVISORY = {
    "id": "PYSEC-2018-28",
    "aliases": ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"],
    "details": "The Requests package before 2.20.0 for Python sends an HTTP Authorization header to an http URI "
    "upon receiving a same-hostname https-to-http redirect, which makes it easier for remote attackers to discover "
    "credentials by sniffing the network.",
    "affected": [
        {
            "package": {"name": "requests", "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
        }
    ],
}
# npm's bulk advisory answer for GHSA-35jh-r3h4-6jhm; npm matches `vulnerable_versions` against the lockfile itself.
LODASH_ADVISORY = {
    "id": 1,
    "url": "https://github.com/advisories/GHSA-35jh-r3h4-6jhm",
    "title": "Command Injection in lodash",
    "severity": "high",
    "vulnerable_versions": "<4.17.21",
    "cwe": ["CWE-77", "CWE-94"],
    "cvss": {"score": 7.2, "vectorString": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"},
}


def _affects(advisory: dict, name: str, version: str) -> bool:
    for affected in advisory["affected"]:
        if affected["package"]["name"] != name:
            continue
        for events in (r["events"] for r in affected["ranges"]):
            introduced = Version(next(e["introduced"] for e in events if "introduced" in e))
            fixed = next((Version(e["fixed"]) for e in events if "fixed" in e), None)
            if introduced <= Version(version) and (fixed is None or Version(version) < fixed):
                return True
    return False


class _Advisories(BaseHTTPRequestHandler):
    """OSV's POST /v1/query and the npm registry's POST /-/npm/v1/security/advisories/bulk."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        query = json.loads(body)
        if self.path == "/v1/query":
            name, version = query["package"]["name"], query["version"]
            answer = {"vulns": [REQUESTS_ADVISORY]} if _affects(REQUESTS_ADVISORY, name, version) else {}
        elif self.path == "/-/npm/v1/security/advisories/bulk":
            answer = {"lodash": [LODASH_ADVISORY]} if "lodash" in query else {}
        else:
            self.send_error(404)
            return
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def advisories() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Advisories)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _scanners(repository: Path, **fields: object) -> ScannerResource:
    return ScannerResource(
        repository=str(repository), sslyze_venv=str(ROOT / ".venv-sslyze"), hadolint=hadolint_binary(),
        pip_audit=str(PIP_AUDIT), **fields,
    )  # fmt: skip


def _project(folder: Path) -> Path:
    """A repository with one Python package (a vulnerable and a clean pin) and one npm project (a vulnerable lodash)."""
    (folder / "svc").mkdir(parents=True)
    (folder / "svc" / "pyproject.toml").write_text(
        '[project]\nname = "svc"\nversion = "1"\ndependencies = ["requests==2.19.0", "idna==3.10", "certifi>=2024"]\n'
    )
    (folder / "web").mkdir()
    (folder / "web" / "package.json").write_text(
        '{"name": "web", "version": "1.0.0", "dependencies": {"lodash": "4.17.20"}}'
    )
    lock = {
        "name": "web", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
        "packages": {"": {"name": "web", "version": "1.0.0", "dependencies": {"lodash": "4.17.20"}},
                     "node_modules/lodash": {"version": "4.17.20", "license": "MIT"}},
    }  # fmt: skip
    (folder / "web" / "package-lock.json").write_text(json.dumps(lock))
    return folder


def test_the_repositorys_dockerfiles_are_all_found_and_clean() -> None:
    scanners = _scanners(ROOT)
    found = {str(p.relative_to(ROOT)) for p in scanners.dockerfiles()}
    assert {"app/Dockerfile", "frontend/Dockerfile", "deploy/Dockerfile"} <= found
    assert not any(part.startswith(".") or part == "node_modules" for f in found for part in Path(f).parts)
    errors = [(f, x.code) for f in sorted(found) for x in lint_dockerfile(ROOT / f) if x.level == "error"]
    assert errors == []


def test_a_planted_dockerfile_error_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "Dockerfile").write_text("FROM debian:bookworm\nMAINTAINER someone\nUSER nobody\n")
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "node_modules" / "x" / "Dockerfile").write_text("FROM scratch\nMAINTAINER ignored\n")
    result = dg.materialize([dockerfile_scan], resources={"scanners": _scanners(tmp_path)}, raise_on_error=False)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == DOCKERFILE_CHECK and not check.passed
    findings = result.output_for_node("dockerfile_scan")
    errors = findings[findings["level"] == "error"]
    assert errors[["file", "line", "code"]].values.tolist() == [["svc/Dockerfile", 2, "DL4000"]]  # MAINTAINER


def test_unreachable_advisory_data_is_not_checked_with_the_reason_never_clean(tmp_path: Path) -> None:
    closed = free_port()
    scanners = _scanners(
        _project(tmp_path), python_projects={"svc": "svc/pyproject.toml"}, npm_projects={"web": "web"},
        osv_url=f"http://127.0.0.1:{closed}/v1/query", npm_registry=f"http://127.0.0.1:{closed}/",
    )  # fmt: skip
    result = dg.materialize([dependency_audit], resources={"scanners": scanners}, raise_on_error=False)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == AUDIT_CHECK and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    metadata = result.asset_materializations_for_node("dependency_audit")[0].metadata
    assert metadata["status"].value == "not checked"
    assert metadata["svc_status"].value == "not checked" and metadata["web_status"].value == "not checked"
    assert f"port={closed}" in metadata["svc_reason"].value and "refused" in metadata["svc_reason"].value
    assert "ECONNREFUSED" in metadata["web_reason"].value
    findings = result.output_for_node("dependency_audit")
    assert set(findings["status"]) == {"not checked"} and set(findings["source"]) == {"svc", "web"}


def test_published_advisories_are_reported_as_findings(tmp_path: Path, advisories: str) -> None:
    scanners = _scanners(
        _project(tmp_path), python_projects={"svc": "svc/pyproject.toml"}, npm_projects={"web": "web"},
        osv_url=f"{advisories}/v1/query", npm_registry=f"{advisories}/",
    )  # fmt: skip
    result = dg.materialize([dependency_audit], resources={"scanners": scanners}, raise_on_error=False)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    findings = result.output_for_node("dependency_audit")
    vulnerable = findings[findings["status"] == "vulnerable"]
    rows = vulnerable[["source", "package", "version", "fix_versions"]].values.tolist()
    assert rows == [["svc", "requests", "2.19.0", "2.20.0"], ["web", "lodash", "<4.17.21", "no"]]
    assert vulnerable["vulnerability"].tolist() == [
        "PYSEC-2018-28 CVE-2018-18074 GHSA-x84v-xcm2-53pg",  # the id, then its aliases
        "GHSA-35jh-r3h4-6jhm",
    ]
    assert vulnerable["severity"].tolist() == ["", "high"]
    # idna 3.10 was looked up and is clean; the unpinned certifi could not be looked up, and says why.
    (unpinned,) = findings[findings["status"] == "not checked"][["package", "detail"]].values.tolist()
    assert unpinned[0] == "certifi>=2024" and "not pinned" in unpinned[1]
    metadata = result.asset_materializations_for_node("dependency_audit")[0].metadata
    assert metadata["status"].value == "vulnerable" and metadata["vulnerabilities"].value == 2
    assert metadata["svc_checked"].value == 2 and metadata["svc_packages"].value == 3


def test_the_repositorys_audits_are_clean_only_when_every_package_was_looked_up() -> None:
    """With this machine's services: whatever each set's status, "clean" requires every package checked."""
    audit = _scanners(ROOT).audit_dependencies()
    assert {(r.ecosystem, r.source) for r in audit.results} == {
        ("pypi", "app"),
        ("pypi", "shop_ops"),
        ("npm", "frontend"),
    }
    for result in audit.results:
        assert result.packages > 0
        if result.status == "clean":
            assert result.checked == result.packages and result.reason == ""
        else:
            assert result.reason, result
    if audit.status == "not checked":
        assert not audit.findings.empty and set(audit.findings["status"]) <= {"not checked", "vulnerable"}
