"""Who approved a deployment: the answer of GitHub's "review history for a workflow run" API, read for one environment.

GitHub cannot be reached from here: the function is checked on answers in the API's documented shape.
"""

from __future__ import annotations

import pytest

from shop_ops.cli import main
from shop_ops.operator.dagster_api import OperatorError
from shop_ops.operator.github import approver_of


def review(login: str, state: str, *environments: str) -> dict:
    return {
        "state": state,
        "comment": "",
        "environments": [{"id": i, "name": name} for i, name in enumerate(environments)],
        "user": {"login": login, "id": 1, "type": "User"},
    }


def test_the_latest_approving_review_of_the_environment_names_the_approver() -> None:
    approvals = [
        review("mallory", "rejected", "production"),
        review("eve", "approved", "staging"),
        review("ada", "approved", "production"),
    ]
    assert approver_of(approvals, "production") == "ada"
    assert approver_of(approvals, "staging") == "eve"


@pytest.mark.parametrize(
    "approvals",
    [[], [review("mallory", "rejected", "production")], [review("eve", "approved", "staging")]],
    ids=["none", "rejected", "other-environment"],
)
def test_no_approval_of_the_environment_is_an_error_naming_the_fix(approvals: list[dict]) -> None:
    with pytest.raises(OperatorError, match=r"no approving review of environment 'production'.*required reviewers"):
        approver_of(approvals, "production")


def test_the_command_outside_github_actions_says_what_is_missing(monkeypatch, capsys) -> None:
    for name in ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["github", "approver"]) == 2
    assert "GITHUB_REPOSITORY, GITHUB_RUN_ID, GITHUB_TOKEN not set" in capsys.readouterr().err
