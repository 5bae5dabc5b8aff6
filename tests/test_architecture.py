"""The import-linter contracts (pyproject.toml, `make lint`) pass today and catch a forbidden import.

Each case copies shop_ops/, app/shop/ and pyproject.toml into a temp folder, adds one module with a
forbidden import there, and runs `lint-imports` on the copy: it must fail and name the contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
CONTRACTS = {
    c["id"]: c["name"]
    for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the two root packages and the configuration, laid out as in the repository."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "shop_ops", tmp_path / "shop_ops", ignore=skip)
    shutil.copytree(ROOT / "app" / "shop", tmp_path / "app" / "shop", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # cwd puts the copy's shop_ops first on sys.path, PYTHONPATH the copy's shop (app/shop), ahead of
    # the editable installs of the real ones; wide COLUMNS keeps each contract's result on one line.
    env = {**os.environ, "PYTHONPATH": str(tree / "app"), "COLUMNS": "500", "NO_COLOR": "1"}
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(tree / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def broken(output: str) -> set[str]:
    return {line.removesuffix(" BROKEN") for line in output.splitlines() if line.endswith(" BROKEN")}


def test_the_code_as_it_is_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "chain", "contracts"),
    [
        pytest.param(
            "shop_ops/release/bootstrap.py", "import shop_ops.localenv\n",
            "shop_ops.release.bootstrap -> shop_ops.localenv", {"layers", "localenv-only-from-cli"},
            id="domain-imports-localenv",
        ),
        pytest.param(
            "shop_ops/resources/upward.py", "from shop_ops.assets import images\n",
            "shop_ops.resources.upward -> shop_ops.assets.images", {"layers"},
            id="resource-imports-an-asset",
        ),
        pytest.param(
            "shop_ops/sensors/sibling.py", "from shop_ops.jobs import JOBS\n",
            "shop_ops.sensors.sibling -> shop_ops.jobs", {"layers"},
            id="sensor-imports-a-job",
        ),
        pytest.param(
            "shop_ops/backup/__init__.py", "from shop_ops.assets import database\n",
            "shop_ops.backup -> shop_ops.assets.database", {"layers"},
            id="new-optional-domain-layer-is-checked",
        ),
        pytest.param(
            "app/shop/leak.py", "from shop_ops import settings\n",
            "shop.leak -> shop_ops.settings", {"shop-and-shop-ops-independent"},
            id="shop-imports-shop-ops",
        ),
    ],
)  # fmt: skip
def test_a_forbidden_import_breaks_its_contract(
    tree: Path, module: str, source: str, chain: str, contracts: set[str]
) -> None:
    (tree / module).parent.mkdir(parents=True, exist_ok=True)
    (tree / module).write_text(f'"""A module with a forbidden import (tests/test_architecture.py)."""\n\n{source}')
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken(result.stdout) == {CONTRACTS[c] for c in contracts}, result.stdout
    assert chain in result.stdout
