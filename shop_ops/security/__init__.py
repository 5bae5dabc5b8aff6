"""Security checks without Dagster: scanners run over the repository's own code and configuration.

Modules: `checkov` (the Terraform of infra/terraform/ scanned by checkov, from its own virtualenv).
"""
