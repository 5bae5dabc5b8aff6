"""Who approved a GitHub Actions deployment: the reviewer of a run's environment, from GitHub's REST API.

The production workflow's job waits for a required reviewer of the `production` environment; once it
runs, `GET /repos/{repo}/actions/runs/{run_id}/approvals` lists that review. Its login becomes the
release's `approved_by`, so the ledger names the person who approved, not the one who clicked "Run".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from shop_ops.operator.dagster_api import OperatorError

API_VERSION = "2022-11-28"


def approver_of(approvals: list[Mapping[str, Any]], environment: str) -> str:
    """The login of the latest approving review of `environment` in the API's answer; an OperatorError if none."""
    logins = [
        str(review["user"]["login"])
        for review in approvals
        if review.get("state") == "approved"
        and environment in {str(env.get("name")) for env in review.get("environments", [])}
        and (review.get("user") or {}).get("login")
    ]
    if not logins:
        raise OperatorError(
            f"no approving review of environment {environment!r} on this run: give the environment required reviewers "
            "(infra/terraform/github) and let one approve the job"
        )
    return logins[-1]  # the API lists reviews oldest first


def deployment_approver(
    api_url: str, repository: str, run_id: str, token: str, environment: str, timeout: float = 30
) -> str:
    """Ask GitHub who approved `environment` for workflow run `run_id` (the token needs `actions: read`)."""
    url = f"{api_url.rstrip('/')}/repos/{repository}/actions/runs/{run_id}/approvals"
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise OperatorError(f"GitHub's API at {api_url} did not answer ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise OperatorError(
            f"GitHub answered HTTP {response.status_code} for the approvals of run {run_id}: give the job "
            "`permissions: actions: read` and pass GITHUB_TOKEN"
        )
    return approver_of(response.json(), environment)
