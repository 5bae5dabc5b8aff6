"""checkov (its own virtualenv, `make install`) over the real infra/terraform/: clean, and a planted weakness is found.

checkov is an outside program: these tests carry the `services` marker (not in `make test-fast`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.security import CHECKOV_CHECK, terraform_scan
from shop_ops.security.checkov import CheckovScanner, ScanError
from shop_ops.settings import load_settings

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"


@pytest.fixture(scope="module")
def checkov() -> str:
    program = load_settings().checkov_path
    assert program.exists(), f"{program} is missing: `make install` makes .venv-checkov"
    return str(program)


def test_the_terraform_has_no_failed_check_and_every_skip_says_why(checkov: str) -> None:
    scan = CheckovScanner(checkov=checkov, directory=str(TERRAFORM)).scan()
    assert scan.parsing_errors == 0 and scan.resources > 100
    assert scan.failed == 0, scan.findings[scan.findings["result"] == "FAILED"].to_string()
    skipped = scan.findings[scan.findings["result"] == "SKIPPED"]
    assert len(skipped) == scan.skipped > 0
    # A reason is a sentence, not a placeholder.
    short = skipped[skipped["skip_reason"].str.len() < 30]
    assert short.empty, short[["check_id", "resource", "skip_reason"]].to_string()


def test_a_planted_weakness_fails_the_asset_check(checkov: str, tmp_path: Path) -> None:
    planted = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, planted, ignore=shutil.ignore_patterns(".terraform"))
    database = planted / "modules" / "database" / "main.tf"
    text = database.read_text()
    assert text.count("  storage_encrypted     = true\n") == 1  # the primary's (the replica's is aligned otherwise)
    database.write_text(text.replace("  storage_encrypted     = true\n", ""))

    result = dg.materialize(
        [terraform_scan], resources={"terraform_scanner": CheckovScanner(checkov=checkov, directory=str(planted))}
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == CHECKOV_CHECK and not check.passed
    findings = result.output_for_node("terraform_scan")
    failed = findings[findings["result"] == "FAILED"]
    assert set(failed["check_id"]) == {"CKV_AWS_16"}  # RDS storage not encrypted
    assert set(failed["resource"]) == {"module.database.aws_db_instance.this"}
    assert set(failed["file"]) == {"modules/database/main.tf"}


def test_a_missing_checkov_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="make install"):
        CheckovScanner(checkov=str(tmp_path / "checkov"), directory=str(TERRAFORM)).scan()
