"""infra/terraform/github: main's protection requires exactly the pull request workflow's jobs, environments as designed.

Read with python-hcl2 like the rest of infra/terraform (no Terraform binary or provider here); checkov scans
this root with the others (tests/security/test_checkov.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from shop_ops.cost.hcl import folder_files, merged, parse, resources, single, text

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "infra" / "terraform" / "github"


def github_resources() -> dict[str, dict[str, Any]]:
    return {f"{rtype}.{name}": body for _, rtype, name, body in resources(folder_files(GITHUB))}


def pr_job_names() -> set[str]:
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "pr.yml").read_text())["jobs"]
    return {job.get("name", job_id) for job_id, job in jobs.items()}


def test_the_required_checks_are_exactly_the_pull_request_jobs() -> None:
    locals_ = merged(GITHUB, "locals")
    protection = github_resources()["github_branch_protection.main"]
    checks = single(protection["required_status_checks"])
    assert text(checks["contexts"]) == "local.required_checks"
    assert set(locals_["required_checks"]) == pr_job_names(), "keep local.required_checks = pr.yml's job names"
    assert len(locals_["required_checks"]) == len(set(locals_["required_checks"]))
    assert checks["strict"] is True


def test_main_needs_a_review_and_refuses_force_pushes_and_deletion() -> None:
    protection = github_resources()["github_branch_protection.main"]
    assert protection["pattern"] == "main"
    assert protection["allows_force_pushes"] is False and protection["allows_deletions"] is False
    assert protection["enforce_admins"] is True
    reviews = single(protection["required_pull_request_reviews"])
    assert text(reviews["required_approving_review_count"]) == "var.required_approvals"
    variables = merged(GITHUB, "variable")
    assert variables["required_approvals"]["default"] >= 1
    assert reviews["dismiss_stale_reviews"] is True


def test_production_has_required_reviewers_and_both_environments_deploy_from_main_only() -> None:
    found = github_resources()
    environments = found["github_repository_environment.this"]
    assert merged(GITHUB, "locals")["environments"] == ["staging", "production"]
    assert environments["can_admins_bypass"] is False
    reviewers = single(environments["dynamic"])["reviewers"]
    assert "production" in text(reviewers["for_each"])
    assert "var.production_reviewers" in text(single(reviewers["content"])["users"])
    policy = single(environments["deployment_branch_policy"])
    assert policy["custom_branch_policies"] is True and policy["protected_branches"] is False
    assert found["github_repository_environment_deployment_policy.main"]["branch_pattern"] == "main"
    tfvars = parse(GITHUB / "terraform.tfvars")
    assert len(tfvars["production_reviewers"]) >= 1


def test_the_workflows_variables_are_set_here() -> None:
    """Every vars.* a workflow reads is a repository or environment variable this root manages."""
    used = set()
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        used |= set(re.findall(r"\$\{\{\s*vars\.(\w+)\s*\}\}", path.read_text()))
    found = github_resources()
    managed = set(found["github_actions_variable.delivery"]["for_each"])
    managed.add(found["github_actions_environment_variable.dagster_url"]["variable_name"])
    assert used == managed, f"workflows read {sorted(used)}, Terraform sets {sorted(managed)}"
