"""The latency regression check on synthetic, seeded k6-like samples, without services or Dagster.

Latencies are log-normal around a median of a few milliseconds, plus a long tail: a small share of
requests takes a slower path several times the median. Each scenario runs over many seeds and
counts verdicts. It must hold for every seed, not just on average: no false alarm when nothing
changed or the machine was only noisier, and always a catch when the slowdown is real and clearly
above the floor.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from shop_ops.perf import EndpointComparison, Verdict, compare_endpoint, compare_runs
from shop_ops.perf.regression import _bootstrap_quantile

SEEDS = range(50)
N = 10_000  # samples per side: a nightly k6 run of ~6 minutes at ~30 requests/s per endpoint


def latencies(
    rng: np.random.Generator,
    n: int,
    median: float,
    sigma: float = 0.5,
    *,
    tail: float = 0.02,
    tail_factor: float = 4.0,
    scale: float = 1.0,
    shift: float = 0.0,
) -> np.ndarray:
    """n request durations (ms): log-normal(median, sigma), `tail` of them around tail_factor * median."""
    values = median * rng.lognormal(0.0, sigma, n)
    slow = rng.random(n) < tail
    values[slow] = median * tail_factor * rng.lognormal(0.0, sigma, int(slow.sum()))
    return values * scale + shift


def fast(rng: np.random.Generator, **shape: float) -> np.ndarray:
    """The ~10 ms endpoint (product page): median 8 ms, mean ~9.6 ms, p95 ~20 ms."""
    return latencies(rng, N, 8.0, **shape)


def over_seeds(make: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]) -> list[EndpointComparison]:
    results = []
    for seed in SEEDS:
        rng = np.random.default_rng(10_000 + seed)
        baseline, current = make(rng)
        results.append(compare_endpoint("endpoint", baseline, current, seed=seed))
    return results


def regressed(results: list[EndpointComparison]) -> int:
    return sum(r.verdict == Verdict.REGRESSED for r in results)


# --- no false alarms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "median, sigma, tail",
    [pytest.param(8.0, 0.5, 0.02, id="10ms-endpoint"), pytest.param(121.0, 0.2, 0.005, id="170ms-p95-endpoint")],
)
def test_identical_distributions_never_raise_an_alarm(median: float, sigma: float, tail: float) -> None:
    results = over_seeds(
        lambda g: (latencies(g, N, median, sigma, tail=tail), latencies(g, N, median, sigma, tail=tail))
    )
    assert regressed(results) == 0
    assert all(r.verdict == Verdict.OK and not r.failed for r in results)
    # The CI of the p95 difference covers 0 in (nearly) every run: the intervals are honest.
    assert sum(r.ci_low_ms <= 0 <= r.ci_high_ms for r in results) >= 47


def test_a_shift_below_the_absolute_floor_passes_although_it_is_significant() -> None:
    # +3 ms on every request: p95 20 -> 23 ms is +15 % (above 10 %) but below the 5 ms floor.
    results = over_seeds(lambda g: (fast(g), fast(g, shift=3.0)))
    assert regressed(results) == 0
    assert all(r.p_value < 0.01 for r in results)  # real, but too small to matter
    assert all(2.0 < r.effect_ms < 4.5 for r in results)
    assert "within the floor of 5.0 ms" in results[0].reason


@pytest.mark.parametrize(
    "noisier",
    [
        pytest.param({"sigma": 0.55}, id="wider-spread"),
        pytest.param({"spikes": 0.01}, id="1pct-hiccups-of-20-200ms"),
    ],
)
def test_noisier_but_not_slower_passes(noisier: dict[str, float]) -> None:
    def make(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        current = fast(rng, sigma=noisier.get("sigma", 0.5))
        hiccup = rng.random(N) < noisier.get("spikes", 0.0)  # a busy shared machine stalls a few requests
        current[hiccup] += rng.uniform(20.0, 200.0, int(hiccup.sum()))
        return fast(rng), current

    results = over_seeds(make)
    assert regressed(results) == 0
    assert all(abs(r.current_p50_ms - r.baseline_p50_ms) < 0.5 for r in results)
    assert all(r.effect_ms < r.floor_ms - 1.5 for r in results)


# --- real slowdowns are caught ----------------------------------------------------------------------


def test_a_30ms_shift_on_a_10ms_endpoint_is_caught_every_time() -> None:
    results = over_seeds(lambda g: (fast(g), fast(g, shift=30.0)))
    assert regressed(results) == len(SEEDS)
    assert all(r.failed and r.p_value < 1e-100 and r.ci_low_ms > 25 for r in results)
    assert re.match(
        r"p95 (19|20)\.\d → (49|50)\.\d ms \(\+3\d\.\d ms, \+1\d\d\.\d%\) is above the floor of 5\.0 ms and significant \(98% CI \+",
        results[0].reason,
    )


@pytest.mark.parametrize("how", ["every-request-12pct-slower", "every-request-20ms-slower"])
def test_a_12pct_20ms_p95_increase_on_a_170ms_endpoint_is_caught_every_time(how: str) -> None:
    # p95 170 -> 190 ms (+11.8 %) against a floor of 17 ms (10 % of 170). Telling 20 from 17 ms needs
    # the p95 to ~1 ms: 20,000 samples per side (the cap) leave a standard error of the difference
    # of ~0.7 ms; the closest of the 50 seeds is still 1.5 ms above the floor.
    n, median = 20_000, 121.0  # a checkout-like endpoint: body sigma 0.2, 0.5 % slow path at 5x

    def make(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        slower = {"scale": 190 / 170} if how == "every-request-12pct-slower" else {"shift": 20.0}
        baseline = latencies(rng, n, median, 0.2, tail=0.005, tail_factor=5)
        return baseline, latencies(rng, n, median, 0.2, tail=0.005, tail_factor=5, **slower)

    results = over_seeds(make)
    assert all(168 < r.baseline_p95_ms < 172 and 16.8 < r.floor_ms < 17.2 for r in results)
    assert regressed(results) == len(SEEDS)
    assert min(r.effect_ms - r.floor_ms for r in results) > 1.0


def test_fewer_samples_catch_a_borderline_slowdown_less_often_and_the_rejected_rule_far_less() -> None:
    # The same +20 ms against 17 ms with 5,000 samples per side (standard error ~1.3 ms). The rule
    # (point estimate above the floor, significant) still catches nearly all runs. "CI lower bound
    # above the floor" would let most of these real slowdowns pass, which is why it was not chosen.
    def make(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return (
            latencies(rng, 5_000, 121.0, 0.2, tail=0.005, tail_factor=5),
            latencies(rng, 5_000, 121.0, 0.2, tail=0.005, tail_factor=5, scale=190 / 170),
        )

    results = over_seeds(make)
    assert regressed(results) >= 45
    assert sum(r.ci_low_ms > r.floor_ms for r in results) <= 25


def test_a_slowdown_of_the_tail_alone_is_caught_by_the_bootstrap_where_mann_whitney_sees_nothing() -> None:
    # The slowest 10 % of requests get 60 % slower (a lock under contention): the median stays put,
    # p95 20 -> 32 ms. The ranks barely move, so Mann-Whitney stays quiet; the tail bootstrap does not.
    def make(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        current = fast(rng)
        current[current > np.quantile(current, 0.9)] *= 1.6
        return fast(rng), current

    results = over_seeds(make)
    assert regressed(results) == len(SEEDS)
    assert sum(r.p_value < 0.01 for r in results) <= 5
    assert all(r.tail_p_value < 0.01 and r.effect_ms > 8 for r in results)


# --- too few, missing, new --------------------------------------------------------------------------


def test_too_few_samples_is_its_own_verdict_and_fails() -> None:
    rng = np.random.default_rng(1)
    result = compare_endpoint("checkout", fast(rng), fast(rng)[:29])
    assert result.verdict == Verdict.TOO_FEW_SAMPLES and result.failed
    assert result.reason == (
        "too few samples: 10000 in the baseline, 29 in the current run (at least 30 on each side are needed to judge)"
    )
    assert result.p_value is None and result.ci_low_ms is None and result.current_p95_ms is not None
    empty = compare_endpoint("checkout", [], fast(rng))
    assert empty.verdict == Verdict.TOO_FEW_SAMPLES and empty.baseline_p95_ms is None and empty.effect_ms is None
    # Non-finite durations are dropped before counting.
    assert compare_endpoint("x", [float("nan")] * 40, fast(rng)).verdict == Verdict.TOO_FEW_SAMPLES
    assert compare_endpoint("x", fast(rng)[:30], fast(rng)[:30]).verdict == Verdict.OK


def test_compare_runs_lists_every_endpoint_and_fails_on_a_missing_one() -> None:
    rng = np.random.default_rng(2)
    baseline = {"home": fast(rng), "search": fast(rng), "checkout": fast(rng)}
    current = {"home": fast(rng), "search": fast(rng, shift=30.0), "add-to-cart": fast(rng)}
    report = compare_runs(baseline, current)
    assert [c.name for c in report.comparisons] == ["add-to-cart", "checkout", "home", "search"]
    assert {c.name: str(c.verdict) for c in report.comparisons} == {
        "add-to-cart": "new in current run",
        "checkout": "missing in current run",
        "home": "ok",
        "search": "regressed",
    }
    assert not report.passed
    assert [c.name for c in report.failures] == ["checkout", "search"]
    assert report.problems[0] == (
        "checkout: missing in the current run (the baseline has 10000 samples): the endpoint was not measured"
    )
    assert report.problems[1].startswith("search: p95 ")
    assert report.summary() == (
        "p95 regression check failed on 2 of 4 endpoint(s): checkout missing in current run, search regressed"
    )
    assert report["add-to-cart"].reason == "new in the current run (10000 samples): no baseline to compare with yet"

    assert compare_runs({"home": baseline["home"]}, {"home": current["home"], "new": fast(rng)}).passed
    empty = compare_runs({}, {})
    assert not empty.passed and empty.problems == ["no endpoints in either run: nothing was measured"]
    assert empty.to_frame().empty


def test_options_pass_through_and_bad_ones_are_refused() -> None:
    rng = np.random.default_rng(3)
    baseline, current = {"home": fast(rng)}, {"home": fast(rng, shift=3.0)}
    assert compare_runs(baseline, current).passed
    strict = compare_runs(baseline, current, min_absolute_ms=1.0, min_relative=0.0)
    assert not strict.passed and strict["home"].floor_ms == 1.0
    p99 = compare_runs(baseline, current, quantile=0.99)["home"]
    assert p99.label == "p99" and p99.reason.startswith("p99 ") and p99.baseline_q_ms > p99.baseline_p95_ms
    for bad in ({"alpha": 0.0}, {"quantile": 1.0}, {"bootstrap": 10}, {"min_samples": 1}, {"min_relative": -0.1}):
        with pytest.raises(ValueError):
            compare_endpoint("home", baseline["home"], current["home"], **bad)


# --- output -----------------------------------------------------------------------------------------


def test_metadata_is_plain_json_and_the_table_and_frame_hold_every_endpoint() -> None:
    rng = np.random.default_rng(4)
    report = compare_runs(
        {"home": fast(rng), "search": fast(rng), "checkout": fast(rng)[:10]},
        {"home": fast(rng), "search": fast(rng, shift=30.0), "checkout": fast(rng)},
    )
    metadata = report.metadata()
    assert json.loads(json.dumps(metadata, allow_nan=False)) == metadata  # no numpy types, no NaN
    search = metadata["endpoints"]["search"]
    assert search["verdict"] == "regressed" and type(search["n_baseline"]) is int
    assert 29 < search["effect_ms"] < 31 and 100 < search["effect_pct"] < 200 and search["p_value"] < 1e-100
    assert search["ci_low_ms"] < search["effect_ms"] < search["ci_high_ms"] and search["ci_level"] == 0.98
    assert metadata["endpoints"]["checkout"]["p_value"] is None
    assert metadata["passed"] is False and metadata["rule"]["min_absolute_ms"] == 5.0

    table = metadata["table"]
    assert table.splitlines()[2].startswith("| endpoint | verdict | samples (base / cur) | p50 ms | p95 ms |")
    assert "| search | **regressed** | 10000 / 10000 |" in table
    assert "| checkout | **too few samples** | 10 / 10000 |" in table
    assert "| home | ok |" in table

    frame = report.to_frame()
    assert list(frame.index) == ["checkout", "home", "search"] and frame.index.name == "endpoint"
    assert frame.loc["search", "verdict"] == "regressed" and frame.loc["home", "effect_ms"] < 5


# --- cost and the bootstrap itself ------------------------------------------------------------------


def test_200k_samples_per_side_are_sampled_down_deterministically_and_fast() -> None:
    rng = np.random.default_rng(5)
    baseline, current = latencies(rng, 200_000, 8.0), latencies(rng, 200_000, 8.0, shift=30.0)
    started = time.perf_counter()
    result = compare_endpoint("search", baseline, current)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert (result.n_baseline, result.n_compared_baseline, result.n_compared_current) == (200_000, 20_000, 20_000)
    assert result.verdict == Verdict.REGRESSED
    assert result == compare_endpoint("search", baseline, current)  # same seed, same subsample, same verdict
    assert result.baseline_p95_ms == pytest.approx(np.quantile(baseline, 0.95), rel=0.03)
    assert compare_endpoint("other", baseline, current).baseline_p95_ms != result.baseline_p95_ms  # own stream


def test_the_order_statistic_bootstrap_matches_resampling() -> None:
    rng = np.random.default_rng(6)
    values = np.sort(latencies(rng, 400, 8.0))
    fast_replicates = _bootstrap_quantile(values, 0.95, 4_000, rng)
    resampled = np.quantile(rng.choice(values, size=(4_000, len(values)), replace=True), 0.95, axis=1)
    assert fast_replicates.mean() == pytest.approx(resampled.mean(), rel=0.01)
    assert fast_replicates.std() == pytest.approx(resampled.std(), rel=0.1)
    assert stats.ks_2samp(fast_replicates, resampled).pvalue > 0.01
