"""The Prometheus rules of infra/prometheus/rules: promtool's checks and unit tests, and what every alert must carry.

promtool (Debian's `prometheus` package) checks each rules file and runs each unit-test file;
the rest reads the YAML: every alert has a unit test in which it fires and one in which it stays
quiet, every recording rule is exercised, and every alert has a severity and a runbook link
whose anchor exists in docs/runbooks/incidents.md.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.services  # runs promtool, an outside program

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "infra" / "prometheus" / "rules"
RULE_FILES = sorted(RULES.glob("*.yml"))
TEST_FILES = sorted((RULES / "tests").glob("*.yml"))
RUNBOOK = "docs/runbooks/incidents.md"
# One file per area (issue 12); later issues add theirs beside them.
AREAS = ("shop-slo", "database", "redis", "machine", "meta")
SEVERITIES = {"page", "ticket"}
ANNOTATIONS = {"summary", "description", "runbook_url"}


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def rules_of(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def alerts() -> dict[str, tuple[Path, dict[str, Any]]]:
    """alert name -> (rules file, rule)."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in RULE_FILES:
        for rule in rules_of(path):
            if "alert" in rule:
                assert rule["alert"] not in found, f"alert {rule['alert']} is defined twice"
                found[rule["alert"]] = (path, rule)
    return found


def unit_tests() -> list[tuple[Path, set[Path], dict[str, Any]]]:
    """(test file, the rules files it loads, one test group) for every test group."""
    found = []
    for path in TEST_FILES:
        doc = load(path)
        loaded = {(path.parent / name).resolve() for name in doc.get("rule_files", [])}
        found += [(path, loaded, group) for group in doc.get("tests", [])]
    return found


def github_anchors(markdown: str) -> list[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to hyphens, -1 on repeats."""
    anchors: list[str] = []
    seen: dict[str, int] = defaultdict(int)
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        match = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if in_fence or not match:
            continue
        anchor = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        anchors.append(f"{anchor}-{seen[anchor]}" if seen[anchor] else anchor)
        seen[anchor] += 1
    return anchors


def test_one_rules_file_and_one_test_file_per_area() -> None:
    names = {path.stem for path in RULE_FILES}
    assert set(AREAS) <= names, f"missing rules files: {sorted(set(AREAS) - names)}"
    tests = {path.name for path in TEST_FILES}
    missing = sorted(f"{stem}_test.yml" for stem in names if f"{stem}_test.yml" not in tests)
    assert not missing, f"rules files without a unit-test file in {RULES / 'tests'}: {missing}"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_promtool_check_rules(promtool: str, path: Path) -> None:
    result = run_promtool(promtool, "check", "rules", "--lint-fatal", str(path.relative_to(ROOT)))
    assert result.returncode == 0, f"promtool check rules {path.name} failed:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda path: path.name)
def test_promtool_unit_tests(promtool: str, path: Path) -> None:
    result = run_promtool(promtool, "test", "rules", str(path.relative_to(ROOT)))
    assert result.returncode == 0, f"promtool test rules {path.name} failed:\n{result.stdout}{result.stderr}"


def test_every_alert_fires_in_a_test_and_stays_quiet_in_another() -> None:
    defined = alerts()
    fires: set[str] = set()
    quiet: set[str] = set()
    unknown: set[str] = set()
    for test_file, loaded, group in unit_tests():
        for case in group.get("alert_rule_test", []):
            name = case["alertname"]
            if name not in defined or defined[name][0].resolve() not in loaded:
                # An empty exp_alerts passes for an alert that does not exist: a typo would hide.
                unknown.add(f"{name} ({test_file.name})")
                continue
            (fires if case.get("exp_alerts") else quiet).add(name)
    assert not unknown, f"alert_rule_test cases for alerts their rule_files do not define: {sorted(unknown)}"
    assert not sorted(set(defined) - fires), f"alerts no unit test makes fire: {sorted(set(defined) - fires)}"
    assert not sorted(set(defined) - quiet), (
        f"alerts without a unit test where they must not fire (exp_alerts: []): {sorted(set(defined) - quiet)}"
    )


def test_every_recording_rule_is_exercised() -> None:
    """Read by a promql_expr_test, or by an alert that some unit test makes fire."""
    defined = alerts()
    exprs = [case["expr"] for _, _, group in unit_tests() for case in group.get("promql_expr_test", [])]
    fired = {
        case["alertname"] for _, _, group in unit_tests() for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }  # fmt: skip
    exprs += [defined[name][1]["expr"] for name in fired if name in defined]
    unused = [
        rule["record"]
        for path in RULE_FILES
        for rule in rules_of(path)
        if "record" in rule and not any(re.search(rf"\b{re.escape(rule['record'])}\b", expr) for expr in exprs)
    ]
    assert not unused, f"recording rules no promql_expr_test (nor any firing alert) reads: {unused}"


def test_every_alert_has_a_severity_annotations_and_a_runbook_section() -> None:
    runbook = (ROOT / RUNBOOK).read_text()
    anchors = set(github_anchors(runbook))
    problems = []
    for name, (path, rule) in alerts().items():
        severity = rule.get("labels", {}).get("severity")
        if severity not in SEVERITIES:
            problems.append(f"{path.name}: {name}: severity {severity!r}, not one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        if missing := sorted(ANNOTATIONS - set(annotations)):
            problems.append(f"{path.name}: {name}: annotations missing: {missing}")
        url = annotations.get("runbook_url", "")
        page, _, anchor = url.partition("#")
        if page != RUNBOOK or not anchor:
            problems.append(f"{path.name}: {name}: runbook_url {url!r} is not {RUNBOOK}#<anchor>")
        elif anchor not in anchors:
            problems.append(f"{path.name}: {name}: {RUNBOOK} has no heading with the anchor #{anchor}")
    assert not problems, "\n".join(problems)


def test_the_runbook_has_one_section_per_alert_and_no_other() -> None:
    sections = re.findall(r"^## (\S+)\s*$", (ROOT / RUNBOOK).read_text(), flags=re.MULTILINE)
    names = set(alerts())
    assert len(sections) == len(set(sections)), f"{RUNBOOK}: sections repeated: {sorted(sections)}"
    assert set(sections) == names, (
        f"{RUNBOOK}: sections without an alert: {sorted(set(sections) - names)}; "
        f"alerts without a section: {sorted(names - set(sections))}"
    )


def test_github_anchors() -> None:
    text = "# Title\n## ShopTargetDown\n```sh\n# not a heading\n```\n## A, b: c!\n## A, b: c!\n"
    assert github_anchors(text) == ["title", "shoptargetdown", "a-b-c", "a-b-c-1"]
