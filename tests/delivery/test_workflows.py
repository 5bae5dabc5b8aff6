"""The GitHub Actions workflows: every step runs what a person runs, actions are pinned, least privilege, linters clean.

GitHub itself cannot be reached from here, so nothing runs the workflows; these checks read them as data and
run the two linters `make lint` runs (actionlint, zizmor offline) over them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\b")
# Jobs that may hold an OIDC token: the ones that assume the AWS delivery role.
OIDC_ACTION = "aws-actions/configure-aws-credentials"


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps() -> list[tuple[str, str, dict[str, Any]]]:
    """(workflow file, job id, step) of every step."""
    found = []
    for path in workflow_files():
        for job_id, job in load(path)["jobs"].items():
            found.extend((path.name, job_id, step) for step in job.get("steps", []))
    return found


def test_the_three_workflows_exist() -> None:
    assert {p.name for p in workflow_files()} == {"pr.yml", "main.yml", "production.yml"}


def test_every_run_step_is_a_make_target_or_a_repo_script() -> None:
    problems = []
    for name, job, step in steps():
        if "run" not in step:
            continue
        where = f"{name} job {job}: run: {step['run']!r}"
        words = shlex.split(step["run"].strip())
        if "\n" in step["run"].strip() or any(w in {"&&", "||", ";", "|"} for w in words):
            problems.append(f"{where} is more than one command: put it in a make target or a script")
        elif words[0] == "make" and len(words) == 2:
            done = subprocess.run(["make", "-n", words[1]], cwd=ROOT, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                problems.append(f"{where}: `make -n {words[1]}` failed: {done.stderr.strip()}")
        else:
            script = ROOT / words[0]
            if not (
                words[0].startswith(("scripts/", "./scripts/")) and script.is_file() and os.access(script, os.X_OK)
            ):
                problems.append(f"{where} is neither `make <target>` nor an executable script of the repository")
    assert not problems, "\n".join(problems)


def test_no_expression_in_a_run_line() -> None:
    """Untrusted input (inputs, event fields, even outputs) reaches a step through env:, never the script's text."""
    inline = [f"{n} job {j}: {s['run']!r}" for n, j, s in steps() if "run" in s and "${{" in s["run"]]
    assert not inline, "\n".join(inline)


def test_every_action_is_pinned_by_commit_with_its_version_in_a_comment() -> None:
    problems = []
    for path in workflow_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if not match:
                continue
            ref, rest = match.groups()
            if ref.startswith("./"):  # a reusable workflow of this repository, at this commit
                if not (ROOT / ref.split("@")[0]).is_file():
                    problems.append(f"{path.name}:{number}: {ref} does not exist")
            elif not PINNED.match(ref) or not VERSION_COMMENT.search(rest):
                problems.append(f"{path.name}:{number}: {ref}{rest} is not owner/repo@<40-hex sha> # vX.Y.Z")
    assert not problems, "\n".join(problems)


def test_least_privilege_and_no_persisted_credentials() -> None:
    problems = []
    for path in workflow_files():
        doc = load(path)
        if doc.get("permissions") != {}:
            problems.append(f"{path.name}: top-level permissions are {doc.get('permissions')!r}, not {{}}")
        if "concurrency" not in doc:
            problems.append(f"{path.name}: no concurrency group")
        for job_id, job in doc["jobs"].items():
            where = f"{path.name} job {job_id}"
            permissions = job.get("permissions")
            if not isinstance(permissions, dict):
                problems.append(f"{where}: no permissions of its own")
                continue
            if any(v == "write" for k, v in permissions.items() if k != "id-token"):
                problems.append(f"{where}: writes with GITHUB_TOKEN: {permissions}")
            uses = [s.get("uses", "") for s in job.get("steps", [])]
            if (permissions.get("id-token") == "write") != any(u.startswith(OIDC_ACTION) for u in uses):
                problems.append(f"{where}: id-token: write only where the OIDC role is assumed")
            if "secrets." in yaml.safe_dump(job) and "environment" not in job:
                problems.append(f"{where}: uses secrets without an environment (secrets live in environments)")
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/checkout@"):
                    if (step.get("with") or {}).get("persist-credentials") is not False:
                        problems.append(f"{where}: checkout without persist-credentials: false")
    assert not problems, "\n".join(problems)


def test_the_ops_steps_run_on_the_self_hosted_runner_and_production_waits_for_its_environment() -> None:
    main, production = load(WORKFLOWS / "main.yml"), load(WORKFLOWS / "production.yml")
    check = main["jobs"]["check-pushed-build"]
    assert "shop-ops-ops" in check["runs-on"] and check["needs"] == "push-build"
    assert [s["run"] for s in check["steps"] if "run" in s] == ["make check-pushed-build"]
    promote = production["jobs"]["promote"]
    assert production["on"]["workflow_dispatch"]["inputs"]["version"]["required"] is True
    assert promote["environment"] == "production" and "shop-ops-ops" in promote["runs-on"]
    assert promote["steps"][-1]["env"]["RELEASE_VERSION"] == "${{ inputs.version }}"
    assert promote["permissions"] == {"contents": "read", "actions": "read"}  # actions: who approved
    push = main["jobs"]["push-build"]
    assert "environment" not in push  # the OIDC role trusts refs/heads/main; an environment changes the subject
    assert not any("self-hosted" in str(job.get("runs-on")) for job in (push,))


@pytest.mark.services  # runs two outside programs (fast: about a second together)
@pytest.mark.parametrize(
    "command",
    [["actionlint"], ["zizmor", "--offline", "--no-progress", ".github/workflows"]],
    ids=["actionlint", "zizmor"],
)
def test_the_linters_find_nothing(command: list[str]) -> None:
    program = BIN / command[0]
    assert program.exists(), f"{program} is missing: `make install-venv` installs the dev tools"
    done = subprocess.run([str(program), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command[0]} found problems:\n{done.stdout}{done.stderr}"
