"""Latency regression check: does tonight's k6 run show a real, relevant slowdown on any endpoint?

Input: raw request durations in milliseconds per endpoint (k6's `http_req_duration` per endpoint
tag), once from a release's baseline run and once from the current run. Two tests per endpoint:

* Mann-Whitney U, one-sided (current slower than baseline), for a shift of the bulk. It works on
  ranks, so it needs no assumption about the shape of a latency distribution and is not thrown by
  outliers, and it is the most sensitive test for the usual slowdown, where every request pays a
  few extra milliseconds and the median moves. It misses a slowdown in the tail alone, such as a
  slow path for a few per cent of requests or a lock under contention, because the ranks hardly
  move.
* A bootstrap of the quantile the floor is stated in (p95 by default), for the tail: the
  difference of the two p95s with a confidence interval, and a one-sided p-value (the share of
  bootstrap differences at or below zero). The tail is what users notice and what the floor is
  about. It needs no model of the distribution.

Decision rule: an endpoint has **regressed** when

    p95 increase (point estimate) > floor = max(min_absolute_ms, min_relative * baseline p95)
    and (Mann-Whitney p < alpha or tail bootstrap p < alpha).

The defaults mean "p95 up more than 10 % and more than 5 ms". The floor keeps noise from crying
wolf: with thousands of samples both tests flag differences that are real but do not matter,
for example a shared machine being a little busier tonight and every request paying +0.5 ms. The
significance condition stops the point estimate from crossing the floor by chance when samples are
few or the tail is noisy. Either test may supply the significance, so that both kinds of slowdown
are caught: the bulk moving, or only the tail. The floor makes the extra false-alarm chance of
"either test" negligible (tests/perf/test_regression.py: 0 false alarms in 100 identical runs).

The other rule considered was "the lower bound of the p95 difference's confidence interval is
above the floor". It was rejected because it flags only slowdowns that are *certainly* larger than
the floor. The p95 of a few thousand samples is uncertain by several milliseconds, so a slowdown
moderately above the floor (+20 ms against a 17 ms floor on a 170 ms p95) would pass most nights,
and "a real slowdown never passes" matters more here than "a borderline one is never flagged".
With the point estimate, a slowdown well above the floor is always caught and one right at the
floor about half the time, which is what a floor means. The confidence interval is reported in
the metadata so a reader can see how sure a verdict is.

Fewer than `min_samples` (30) on either side is not a pass. The verdict is "too few samples" and
it counts as a failure, as does an endpoint missing from the current run. An endpoint that only
the current run has is listed and does not fail.

Cost is bounded. Each side is sampled down, deterministically from `seed` and the endpoint's
name, to `max_samples` (20,000). The bootstrap (2,000 iterations) draws the bootstrap
distribution of an order statistic directly: the k-th smallest of n values resampled with
replacement is x_(ceil(n·U)) with U ~ Beta(k, n-k+1). Interpolating between two neighbouring order
statistics matches numpy's default quantile. This has the same distribution as resampling and
calling np.quantile, but it costs one sort plus O(iterations) instead of O(iterations * n).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict, Unpack

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

ALPHA = 0.01
MIN_RELATIVE = 0.10
MIN_ABSOLUTE_MS = 5.0
QUANTILE = 0.95
BOOTSTRAP = 2_000
SEED = 0
MIN_SAMPLES = 30
MAX_SAMPLES = 20_000

Samples = Sequence[float] | NDArray[np.floating]
Array = NDArray[np.float64]


class Verdict(StrEnum):
    OK = "ok"
    REGRESSED = "regressed"
    TOO_FEW_SAMPLES = "too few samples"
    MISSING = "missing in current run"
    NEW = "new in current run"


FAILING = frozenset({Verdict.REGRESSED, Verdict.TOO_FEW_SAMPLES, Verdict.MISSING})


class CompareOptions(TypedDict, total=False):
    """The keyword options of `compare_endpoint`, passed through by `compare_runs`."""

    alpha: float
    min_relative: float
    min_absolute_ms: float
    quantile: float
    bootstrap: int
    seed: int
    min_samples: int
    max_samples: int


@dataclass(frozen=True)
class EndpointComparison:
    """One endpoint's baseline against its current latencies (ms). A value is None if it could not be computed.

    Percentiles, effect and tests are all computed on the compared samples, i.e. after sampling down.
    """

    name: str
    verdict: Verdict
    reason: str
    n_baseline: int  # finite samples received
    n_current: int
    n_compared_baseline: int  # after sampling down to max_samples
    n_compared_current: int
    quantile: float  # the quantile the effect, its CI and the floor are about (0.95: p95)
    baseline_p50_ms: float | None
    baseline_p95_ms: float | None
    current_p50_ms: float | None
    current_p95_ms: float | None
    baseline_q_ms: float | None  # the chosen quantile (equals the p95 by default)
    current_q_ms: float | None
    effect_ms: float | None  # current_q - baseline_q
    effect_relative: float | None  # effect_ms / baseline_q
    floor_ms: float | None  # max(min_absolute_ms, min_relative * baseline_q)
    ci_low_ms: float | None  # bootstrap percentile CI of effect_ms; its low end is a one-sided (1 - alpha) bound
    ci_high_ms: float | None
    ci_level: float  # 1 - 2·alpha
    u_statistic: float | None  # Mann-Whitney U of the current run
    p_value: float | None  # Mann-Whitney, one-sided: current slower
    tail_p_value: float | None  # bootstrap, one-sided: the chosen quantile higher now; at least 1/(bootstrap+1)
    prob_slower: float | None  # U / (n_current·n_baseline): P(a current request is slower than a baseline one)

    @property
    def failed(self) -> bool:
        """Regressed, too few samples or missing: the check fails on this endpoint."""
        return self.verdict in FAILING

    @property
    def label(self) -> str:
        """The chosen quantile's name: p95, p99, p99.9."""
        return _label(self.quantile)

    def metadata(self) -> dict[str, Any]:
        """Plain JSON-able values (str, int, float, None; no NaN) for Dagster metadata and tables."""
        return {
            "verdict": str(self.verdict),
            "n_baseline": self.n_baseline,
            "n_current": self.n_current,
            "n_compared_baseline": self.n_compared_baseline,
            "n_compared_current": self.n_compared_current,
            "quantile": self.quantile,
            "baseline_p50_ms": _ms(self.baseline_p50_ms),
            "current_p50_ms": _ms(self.current_p50_ms),
            "baseline_p95_ms": _ms(self.baseline_p95_ms),
            "current_p95_ms": _ms(self.current_p95_ms),
            "baseline_q_ms": _ms(self.baseline_q_ms),
            "current_q_ms": _ms(self.current_q_ms),
            "effect_ms": _ms(self.effect_ms),
            "effect_pct": None if self.effect_relative is None else round(100 * self.effect_relative, 2),
            "floor_ms": _ms(self.floor_ms),
            "ci_low_ms": _ms(self.ci_low_ms),
            "ci_high_ms": _ms(self.ci_high_ms),
            "ci_level": self.ci_level,
            "mann_whitney_u": _plain(self.u_statistic),
            "p_value": _plain(self.p_value),
            "tail_p_value": _plain(self.tail_p_value),
            "prob_slower": None if self.prob_slower is None else round(self.prob_slower, 4),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RegressionReport:
    """All endpoints of two runs, sorted by name, and the options they were compared with."""

    comparisons: tuple[EndpointComparison, ...]
    quantile: float
    alpha: float
    min_relative: float
    min_absolute_ms: float

    @property
    def passed(self) -> bool:
        """No endpoint regressed, had too few samples or is missing, and there was something to compare."""
        return bool(self.comparisons) and not self.failures

    @property
    def failures(self) -> tuple[EndpointComparison, ...]:
        return tuple(c for c in self.comparisons if c.failed)

    @property
    def problems(self) -> list[str]:
        """One line per failing endpoint ("name: reason"), or why an empty report fails."""
        if not self.comparisons:
            return ["no endpoints in either run: nothing was measured"]
        return [f"{c.name}: {c.reason}" for c in self.failures]

    def __getitem__(self, name: str) -> EndpointComparison:
        for comparison in self.comparisons:
            if comparison.name == name:
                return comparison
        raise KeyError(name)

    def summary(self) -> str:
        """One line for the check's description."""
        label = _label(self.quantile)
        if self.passed:
            return f"{label} regression check passed on {len(self.comparisons)} endpoint(s)"
        failing = ", ".join(f"{c.name} {c.verdict}" for c in self.failures) or self.problems[0]
        return (
            f"{label} regression check failed on {len(self.failures)} of {len(self.comparisons)} endpoint(s): {failing}"
        )

    def markdown(self) -> str:
        """A table, one row per endpoint, headed by the rule it was judged by."""
        label = _label(self.quantile)
        ci = f"{1 - 2 * self.alpha:.0%} CI"
        lines = [
            f"**{self.summary()}**. Regressed = {label} up more than {self.min_absolute_ms:g} ms and more than "
            f"{self.min_relative:.0%}, significant at alpha {self.alpha:g} (Mann-Whitney or tail bootstrap).",
            "",
            f"| endpoint | verdict | samples (base / cur) | p50 ms | {label} ms | Δ {label} | {ci} ms | floor ms | Mann-Whitney p | tail p |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in self.comparisons:
            change = "–" if c.effect_ms is None else f"{c.effect_ms:+.1f} ms ({c.effect_relative or 0:+.1%})"
            interval = "–" if c.ci_low_ms is None else f"{c.ci_low_ms:+.1f} … {c.ci_high_ms:+.1f}"
            cells = [
                c.name.replace("|", "\\|"),
                f"**{c.verdict}**" if c.failed else str(c.verdict),
                f"{c.n_baseline} / {c.n_current}",
                f"{_num(c.baseline_p50_ms)} → {_num(c.current_p50_ms)}",
                f"{_num(c.baseline_q_ms)} → {_num(c.current_q_ms)}",
                change,
                interval,
                _num(c.floor_ms),
                _p(c.p_value),
                _p(c.tail_p_value),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def metadata(self) -> dict[str, Any]:
        """Plain JSON-able values for the asset check; wrap "table" in MetadataValue.md when wiring."""
        return {
            "passed": self.passed,
            "summary": self.summary(),
            "problems": self.problems,
            "rule": {
                "quantile": self.quantile,
                "alpha": self.alpha,
                "min_relative": self.min_relative,
                "min_absolute_ms": self.min_absolute_ms,
            },
            "endpoints": {c.name: c.metadata() for c in self.comparisons},
            "table": self.markdown(),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per endpoint (index: endpoint), the columns of `EndpointComparison.metadata()`."""
        rows = {c.name: c.metadata() for c in self.comparisons}
        columns = list(next(iter(rows.values())).keys()) if rows else ["verdict", "reason"]
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
        frame.index.name = "endpoint"
        return frame


def compare_endpoint(
    name: str,
    baseline_ms: Samples,
    current_ms: Samples,
    *,
    alpha: float = ALPHA,
    min_relative: float = MIN_RELATIVE,
    min_absolute_ms: float = MIN_ABSOLUTE_MS,
    quantile: float = QUANTILE,
    bootstrap: int = BOOTSTRAP,
    seed: int = SEED,
    min_samples: int = MIN_SAMPLES,
    max_samples: int = MAX_SAMPLES,
) -> EndpointComparison:
    """Compares one endpoint's latencies (ms) by the rule in the module docstring. Non-finite values are dropped."""
    _validate(alpha, min_relative, min_absolute_ms, quantile, bootstrap, min_samples, max_samples)
    baseline, current = _finite(baseline_ms), _finite(current_ms)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    base = np.sort(_sample_down(baseline, max_samples, rng))
    cur = np.sort(_sample_down(current, max_samples, rng))
    b50, b95, bq = _quantiles(base, quantile)
    c50, c95, cq = _quantiles(cur, quantile)
    label = _label(quantile)
    common: dict[str, Any] = {
        "name": name,
        "n_baseline": len(baseline),
        "n_current": len(current),
        "n_compared_baseline": len(base),
        "n_compared_current": len(cur),
        "quantile": quantile,
        "baseline_p50_ms": b50,
        "baseline_p95_ms": b95,
        "current_p50_ms": c50,
        "current_p95_ms": c95,
        "baseline_q_ms": bq,
        "current_q_ms": cq,
        "ci_level": round(1 - 2 * alpha, 6),
    }
    effect = None if bq is None or cq is None else cq - bq
    relative = None if effect is None or not bq else effect / bq
    floor = None if bq is None else max(min_absolute_ms, min_relative * bq)

    if len(baseline) < min_samples or len(current) < min_samples:
        reason = (
            f"too few samples: {len(baseline)} in the baseline, {len(current)} in the current run "
            f"(at least {min_samples} on each side are needed to judge)"
        )
        return EndpointComparison(
            **common, verdict=Verdict.TOO_FEW_SAMPLES, reason=reason, effect_ms=effect, effect_relative=relative,
            floor_ms=floor, ci_low_ms=None, ci_high_ms=None, u_statistic=None, p_value=None, tail_p_value=None,
            prob_slower=None,
        )  # fmt: skip
    assert bq is not None and cq is not None and effect is not None and floor is not None

    mw = stats.mannwhitneyu(cur, base, alternative="greater", method="asymptotic")
    u, p = float(mw.statistic), float(mw.pvalue)
    differences = _bootstrap_quantile(cur, quantile, bootstrap, rng) - _bootstrap_quantile(
        base, quantile, bootstrap, rng
    )
    low, high = (float(v) for v in np.quantile(differences, [alpha, 1 - alpha]))
    tail_p = float((1 + np.count_nonzero(differences <= 0)) / (bootstrap + 1))

    relevant = effect > floor
    significant = p < alpha or tail_p < alpha
    change = f"{label} {bq:.1f} → {cq:.1f} ms ({effect:+.1f} ms, {relative or 0:+.1%})"
    evidence = (
        f"{1 - 2 * alpha:.0%} CI {low:+.1f}…{high:+.1f} ms, Mann-Whitney p={_p(p)}, tail p={_p(tail_p)}, "
        f"alpha {alpha:g}"
    )
    if relevant and significant:
        verdict, lead = Verdict.REGRESSED, f"{change} is above the floor of {floor:.1f} ms and significant"
    elif relevant:
        verdict, lead = Verdict.OK, f"{change} is above the floor of {floor:.1f} ms but not significant"
    elif effect > 0:
        verdict, lead = Verdict.OK, f"{change} is within the floor of {floor:.1f} ms"
    else:
        verdict, lead = Verdict.OK, f"no slowdown: {change}"
    return EndpointComparison(
        **common, verdict=verdict, reason=f"{lead} ({evidence})", effect_ms=effect, effect_relative=relative,
        floor_ms=floor, ci_low_ms=low, ci_high_ms=high, u_statistic=u, p_value=p, tail_p_value=tail_p,
        prob_slower=u / (len(cur) * len(base)),
    )  # fmt: skip


def compare_runs(
    baseline: Mapping[str, Samples], current: Mapping[str, Samples], **options: Unpack[CompareOptions]
) -> RegressionReport:
    """Compares every endpoint of two runs (endpoint tag -> durations in ms); options as for `compare_endpoint`.

    An endpoint missing from the current run fails. One that only the current run has is listed
    as "new in current run" and passes, because there is nothing to compare it with yet.
    """
    quantile = options.get("quantile", QUANTILE)
    alpha = options.get("alpha", ALPHA)
    min_relative = options.get("min_relative", MIN_RELATIVE)
    min_absolute_ms = options.get("min_absolute_ms", MIN_ABSOLUTE_MS)
    comparisons = []
    for name in sorted(set(baseline) | set(current)):
        if name not in current:
            comparisons.append(_one_run_only(name, baseline[name], Verdict.MISSING, quantile, alpha))
        elif name not in baseline:
            comparisons.append(_one_run_only(name, current[name], Verdict.NEW, quantile, alpha))
        else:
            comparisons.append(compare_endpoint(name, baseline[name], current[name], **options))
    return RegressionReport(tuple(comparisons), quantile, alpha, min_relative, min_absolute_ms)


def _one_run_only(name: str, samples: Samples, verdict: Verdict, quantile: float, alpha: float) -> EndpointComparison:
    values = np.sort(_finite(samples))
    p50, p95, q = _quantiles(values, quantile)
    if verdict is Verdict.MISSING:
        reason = f"missing in the current run (the baseline has {len(values)} samples): the endpoint was not measured"
        sides = {"n_baseline": len(values), "n_current": 0, "baseline_p50_ms": p50, "baseline_p95_ms": p95,
                 "baseline_q_ms": q, "current_p50_ms": None, "current_p95_ms": None, "current_q_ms": None}  # fmt: skip
    else:
        reason = f"new in the current run ({len(values)} samples): no baseline to compare with yet"
        sides = {"n_baseline": 0, "n_current": len(values), "baseline_p50_ms": None, "baseline_p95_ms": None,
                 "baseline_q_ms": None, "current_p50_ms": p50, "current_p95_ms": p95, "current_q_ms": q}  # fmt: skip
    return EndpointComparison(
        name=name, verdict=verdict, reason=reason, **sides, n_compared_baseline=0, n_compared_current=0,
        quantile=quantile, effect_ms=None, effect_relative=None, floor_ms=None, ci_low_ms=None, ci_high_ms=None,
        ci_level=round(1 - 2 * alpha, 6), u_statistic=None, p_value=None, tail_p_value=None, prob_slower=None,
    )  # fmt: skip


def _bootstrap_quantile(sorted_values: Array, quantile: float, iterations: int, rng: np.random.Generator) -> Array:
    """`iterations` bootstrap replicates of np.quantile(sorted_values, quantile), drawn via order statistics.

    numpy's default ("linear") quantile interpolates between the k-th and (k+1)-th smallest values,
    k = floor((n-1)·q) + 1. In a resample of n values drawn with replacement, the k-th smallest is
    sorted_values[ceil(n·U_k) - 1], where U_k ~ Beta(k, n-k+1) is the k-th smallest of n uniforms.
    The next one is U_k + (1 - U_k)·Beta(1, n-k), the smallest of the n-k uniforms above U_k.
    """
    n = len(sorted_values)
    position = (n - 1) * quantile
    k = math.floor(position) + 1
    fraction = position - (k - 1)
    u_k = rng.beta(k, n - k + 1, size=iterations)
    lower = sorted_values[_order_index(u_k, n)]
    if k >= n:
        return lower
    u_next = u_k + (1 - u_k) * rng.beta(1, n - k, size=iterations)
    upper = sorted_values[_order_index(u_next, n)]
    return lower + fraction * (upper - lower)


def _order_index(uniforms: Array, n: int) -> NDArray[np.int64]:
    return np.clip(np.ceil(uniforms * n).astype(np.int64) - 1, 0, n - 1)


def _sample_down(values: Array, cap: int, rng: np.random.Generator) -> Array:
    return values if len(values) <= cap else rng.choice(values, size=cap, replace=False)


def _finite(samples: Samples) -> Array:
    values = np.asarray(samples, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def _quantiles(sorted_values: Array, quantile: float) -> tuple[float | None, float | None, float | None]:
    if len(sorted_values) == 0:
        return None, None, None
    p50, p95, q = np.quantile(sorted_values, [0.5, 0.95, quantile])
    return float(p50), float(p95), float(q)


def _validate(
    alpha: float,
    min_relative: float,
    min_absolute_ms: float,
    quantile: float,
    bootstrap: int,
    min_samples: int,
    max_samples: int,
) -> None:
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be between 0 and 0.5, not {alpha}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, not {quantile}")
    if min_relative < 0 or min_absolute_ms < 0:
        raise ValueError(f"the minimum effect must not be negative ({min_relative}, {min_absolute_ms} ms)")
    if not 100 <= bootstrap <= 100_000:
        raise ValueError(f"bootstrap iterations must be between 100 and 100,000, not {bootstrap}")
    if bootstrap * alpha < 5:
        raise ValueError(f"{bootstrap} bootstrap iterations are too few for alpha {alpha}: need alpha * iterations ≥ 5")
    if min_samples < 2 or max_samples < min_samples:
        raise ValueError(f"need 2 ≤ min_samples ≤ max_samples, not {min_samples} and {max_samples}")


def _label(quantile: float) -> str:
    return f"p{100 * quantile:g}"


def _plain(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _ms(value: float | None) -> float | None:
    plain = _plain(value)
    return None if plain is None else round(plain, 3)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<1e-300" if value == 0 else f"{value:.2g}"  # the normal approximation underflows to 0
