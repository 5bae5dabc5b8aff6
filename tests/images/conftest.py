"""The images, built once per session by the project's own build script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shop_ops.localstack.docker_api import DockerApi

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built(docker_api: DockerApi) -> dict:
    """scripts/build-images.sh, run for real; its summary (.build/images.json)."""
    result = subprocess.run([str(ROOT / "scripts" / "build-images.sh")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "size" in (result.stdout + result.stderr).lower()  # the table of measured sizes is printed
    return json.loads((ROOT / ".build" / "images.json").read_text())
