"""Fixtures of the observability tests: Debian's promtool."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `make install` (Debian's `prometheus` package ships it)")
    return path
