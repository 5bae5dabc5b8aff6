"""The breaking point of a stress run: per scenario, the highest arrival rate that still met the thresholds.

A stress run (loadtests/mix.js, PROFILE=stress) climbs in stages; each stage holds a known total
rate for a while (its plateau), split between the scenarios by their share of the mix. Per
scenario and plateau, the requests whose time falls inside the plateau give p95 and error rate;
the breaking point is the rate of the last plateau that held (p95 below the limit, errors below
1%) before the first that did not. A stage the run never reached (k6 stopped on a broken
threshold) has no requests and is not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

MAX_ERROR_RATE = 0.01
PLATEAU_COLUMNS = (
    "scenario", "stage", "target_rate", "requests", "req_per_s", "p95_ms", "error_rate", "held",
)  # fmt: skip
BREAKING_COLUMNS = ("scenario", "breaking_rate", "broke_at_rate", "max_req_per_s", "p95_ms_at_breaking", "stages")


def plateau_table(
    requests: pd.DataFrame,
    plateaus: Sequence[tuple[float, float, float]],
    shares: Mapping[str, float],
    p95_ms: float,
    max_error_rate: float = MAX_ERROR_RATE,
) -> pd.DataFrame:
    """Per scenario and plateau: its target rate (iterations/s), requests, p95, error rate, and whether it held.

    `requests`: K6Samples.requests (time, scenario, duration_ms, expected_response); `plateaus`:
    (start, end, total rate) with start and end in seconds after the first scenario request;
    `shares`: each scenario's share of the total rate. When the frame is a sample of the run's
    requests, the counts are the sample's.
    """
    frame = requests[requests["scenario"].isin(list(shares))]
    if frame.empty:
        return pd.DataFrame(columns=list(PLATEAU_COLUMNS))
    offsets = (frame["time"] - frame["time"].min()).dt.total_seconds()
    rows = []
    for scenario, share in shares.items():
        mine = frame["scenario"] == scenario
        for stage, (start, end, rate) in enumerate(plateaus, 1):
            inside = frame[mine & (offsets >= start) & (offsets < end)]
            if inside.empty:
                continue
            p95 = float(np.quantile(inside["duration_ms"].to_numpy(), 0.95))
            errors = float((~inside["expected_response"]).mean())
            held = p95 < p95_ms and errors < max_error_rate
            span = end - start
            rows.append((scenario, stage, rate * share, len(inside), len(inside) / span, p95, errors, held))
    return pd.DataFrame(rows, columns=list(PLATEAU_COLUMNS))


def breaking_points(plateaus: pd.DataFrame) -> pd.DataFrame:
    """Per scenario: the highest target rate that held before the first stage that broke.

    `broke_at_rate` is NaN when no stage broke (the capacity is at least `breaking_rate`);
    `breaking_rate` is 0 when even the first stage broke.
    """
    rows = []
    for scenario, stages in plateaus.groupby("scenario", sort=True):
        stages = stages.sort_values("stage")
        broken = stages[~stages["held"].astype(bool)]
        first_break = int(broken["stage"].iloc[0]) if not broken.empty else None
        held = stages if first_break is None else stages[stages["stage"] < first_break]
        best = held.iloc[-1] if not held.empty else None
        rows.append(
            (
                scenario,
                float(best["target_rate"]) if best is not None else 0.0,
                float(broken["target_rate"].iloc[0]) if first_break is not None else float("nan"),
                float(held["req_per_s"].max()) if not held.empty else 0.0,
                float(best["p95_ms"]) if best is not None else float("nan"),
                len(stages),
            )
        )
    return pd.DataFrame(rows, columns=list(BREAKING_COLUMNS))
