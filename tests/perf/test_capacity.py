"""The breaking point of a stress run, from synthetic request samples with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shop_ops.perf.capacity import breaking_points, plateau_table

START = pd.Timestamp("2026-11-30T03:00:00Z")
SHARES = {"browse": 0.7, "checkout": 0.1}
# Three stages of 10 s at 100, 200, 400 it/s in total.
PLATEAUS = [(0.0, 10.0, 100.0), (10.0, 20.0, 200.0), (20.0, 30.0, 400.0)]


def _requests(
    latency_ms: dict[tuple[str, int], float], failed: dict[tuple[str, int], float] | None = None
) -> pd.DataFrame:
    """Requests per scenario and stage at the stage's rate share, each with the given latency (and failure share)."""
    rng = np.random.default_rng(7)
    rows = []
    for scenario, share in SHARES.items():
        for stage, (start, end, rate) in enumerate(PLATEAUS, 1):
            count = int((end - start) * rate * share)
            offsets = np.sort(rng.uniform(start, end, count))
            bad = int(count * (failed or {}).get((scenario, stage), 0.0))
            for n, offset in enumerate(offsets):
                duration = latency_ms[(scenario, stage)] * rng.uniform(0.5, 1.0)
                rows.append((START + pd.Timedelta(seconds=float(offset)), scenario, "x", duration, n >= bad))
    frame = pd.DataFrame(rows, columns=["time", "scenario", "endpoint", "duration_ms", "expected_response"])
    setup = pd.DataFrame([(START - pd.Timedelta(seconds=2), "setup", "products", 5.0, True)], columns=frame.columns)
    return pd.concat([setup, frame]).sort_values("time").reset_index(drop=True)


def test_breaking_point_is_the_last_stage_that_held_per_scenario() -> None:
    latency = {("browse", 1): 20, ("browse", 2): 40, ("browse", 3): 900, ("checkout", 1): 30, ("checkout", 2): 600,
               ("checkout", 3): 900}  # fmt: skip
    stages = plateau_table(_requests(latency), PLATEAUS, SHARES, p95_ms=200)
    assert len(stages) == 6 and set(stages["scenario"]) == {"browse", "checkout"}  # setup left out
    points = breaking_points(stages).set_index("scenario")
    assert points.loc["browse", "breaking_rate"] == pytest.approx(200 * 0.7)
    assert points.loc["browse", "broke_at_rate"] == pytest.approx(400 * 0.7)
    assert points.loc["checkout", "breaking_rate"] == pytest.approx(100 * 0.1)
    assert points.loc["checkout", "max_req_per_s"] == pytest.approx(100 * 0.1, rel=0.05)
    assert points.loc["browse", "p95_ms_at_breaking"] < 40


def test_errors_break_a_stage_and_a_later_good_stage_does_not_count() -> None:
    latency = {(s, n): 10 for s in SHARES for n in (1, 2, 3)}
    # browse: 5% errors at stage 2 (breaks), fine again at stage 3 (the shop recovered: still broke at 2).
    stages = plateau_table(_requests(latency, failed={("browse", 2): 0.05}), PLATEAUS, SHARES, p95_ms=200)
    points = breaking_points(stages).set_index("scenario")
    assert points.loc["browse", "breaking_rate"] == pytest.approx(100 * 0.7)
    assert points.loc["browse", "broke_at_rate"] == pytest.approx(200 * 0.7)
    # checkout never broke: its capacity is at least the top stage, and nothing broke.
    assert points.loc["checkout", "breaking_rate"] == pytest.approx(400 * 0.1)
    assert np.isnan(points.loc["checkout", "broke_at_rate"])


def test_a_run_that_broke_at_once_and_stopped_early() -> None:
    latency = {(s, n): 500 for s in SHARES for n in (1, 2, 3)}
    frame = _requests(latency)
    frame = frame[frame["time"] < START + pd.Timedelta(seconds=12)]  # k6 aborted on the broken threshold
    stages = plateau_table(frame, PLATEAUS, SHARES, p95_ms=200)
    assert sorted(stages["stage"].unique()) == [1, 2]  # the stage never reached is not judged
    points = breaking_points(stages).set_index("scenario")
    assert (points["breaking_rate"] == 0).all() and (points["stages"] == 2).all()
    assert plateau_table(frame.iloc[:0], PLATEAUS, SHARES, p95_ms=200).empty
