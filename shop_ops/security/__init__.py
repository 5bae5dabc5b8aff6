"""Security checks without Dagster: scanners run over the repository's own code and configuration.

Modules: `checkov` (the Terraform of infra/terraform/ scanned by checkov, from its own virtualenv),
`tls_scan` (sslyze against an HTTPS endpoint, from its own virtualenv), `dependency_audit` (pip-audit
and npm audit, "not checked" where their advisory data cannot be reached), `scanners` (the resource
that runs those and finds the Dockerfiles for hadolint).
"""
