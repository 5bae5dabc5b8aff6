"""One load test against an environment: restock, k6 with raw samples and the shop's CPU and memory, restock, purge.

The order matters: a product change empties every cached search page, so stock is topped up
before the run and after it, never during; synthetic orders older than the retention age are
deleted after the run so load tests do not grow the orders table without bound. `LoadTester` is
the Dagster resource (`load_tester`) that holds the settings; `run_load_test` is the plain flow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd

from shop_ops.perf.profiles import MIX_SCRIPT, LoadProfile
from shop_ops.perf.regression import RegressionReport, compare_runs
from shop_ops.perf.usage import UsageSampler, usage_summary
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.k6 import K6Error, K6Resource, K6Summary
from shop_ops.resources.shop_admin import ShopAdmin, ShopAdminError, ShopAdminResource

Log = Callable[[str], None]
SETUP_SCENARIOS = ("setup", "teardown")
K6_THRESHOLDS_CROSSED = 99  # k6's exit code when a threshold failed: a result, not an error


class LoadTestError(RuntimeError):
    """The load test could not run (bad target, k6 failed to run, the shop refused the admin calls)."""


class K6Runner(Protocol):
    def run(self, script: Path, env: dict[str, str], timeout_s: float = ..., *, samples: bool = ...) -> K6Summary: ...


@dataclass(frozen=True)
class LoadTestRun:
    """What one run measured: k6's summary with its raw samples, the containers' usage, the housekeeping."""

    environment: str
    url: str
    profile: LoadProfile
    summary: K6Summary
    usage: pd.DataFrame
    restocked_before: int
    restocked_after: int
    purged_orders: int

    @property
    def requests(self) -> pd.DataFrame:
        """One row per request of the scenarios (setup and teardown left out)."""
        assert self.summary.samples is not None
        frame = self.summary.samples.requests
        return frame[~frame["scenario"].isin(SETUP_SCENARIOS)].reset_index(drop=True)

    @property
    def endpoints(self) -> pd.DataFrame:
        assert self.summary.samples is not None
        frame = self.summary.samples.endpoints
        return frame[~frame["scenario"].isin(SETUP_SCENARIOS)].reset_index(drop=True)

    def metadata(self) -> dict[str, Any]:
        """The headline figures as numbers (the UI plots them), the per-endpoint and usage tables as markdown."""
        samples = self.summary.samples
        assert samples is not None
        usage = usage_summary(self.usage)
        return {
            "profile": self.profile.name,
            "url": self.url,
            "rate": float(self.profile.rate),
            "duration_s": float(self.profile.duration_s),
            "passed": self.summary.passed,
            "failed_thresholds": ", ".join(self.summary.failed_thresholds) or "none",
            "p95_ms": float(self.summary.p95_ms),
            "error_rate": float(self.summary.error_rate),
            "requests": int(self.summary.requests),
            "req_per_s": float(self.summary.req_per_s),
            "checks_pass_rate": float(samples.checks_pass_rate),
            "data_received_mb": samples.data_received_bytes / 1e6,
            "data_sent_mb": samples.data_sent_bytes / 1e6,
            "cpu_mean_percent": float(usage["cpu_mean_percent"].sum()) if not usage.empty else 0.0,
            # The containers' p95s added up: the peak the cost report right-sizes the task on.
            "cpu_p95_percent": float(usage["cpu_p95_percent"].sum()) if not usage.empty else 0.0,
            "memory_max_mb": float(usage["memory_max_mb"].sum()) if not usage.empty else 0.0,
            "restocked": self.restocked_before + self.restocked_after,
            "synthetic_orders_purged": self.purged_orders,
            "endpoints": dg.MetadataValue.md(_markdown(self.endpoints)),
            "usage": dg.MetadataValue.md(_markdown(usage) if not usage.empty else "no container sampled"),
        }


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3g")


def check_target(url: str, loopback_only: bool) -> None:
    """LoadTestError unless `url` is http(s) and, with `loopback_only` (the local profile), on 127.0.0.1."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTestError(f"load test target {url!r} is not an http(s) URL")
    if loopback_only:
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise LoadTestError(
                f"load test target {url} is not on 127.0.0.1: the local profile only load-tests this machine"
            )


def run_load_test(
    environment: str,
    url: str,
    profile: LoadProfile,
    *,
    k6: K6Runner,
    script: Path = MIX_SCRIPT,
    admin: ShopAdmin,
    sampler: Callable[[], UsageSampler],
    min_stock: int,
    purge_older_than_s: int,
    log: Log,
) -> LoadTestRun:
    """Restock, run the mix with `profile` against `url` while `sampler` samples the shop, restock, purge.

    A failed threshold is a result (`summary.passed` False); LoadTestError when k6 cannot run or stops
    with another exit code (its stderr's end says why).
    """
    restocked_before = admin.restock(min_stock)
    log(f"{environment}: restocked {restocked_before} products to >= {min_stock} before the run")
    log(f"{environment}: k6 {profile.name} at {profile.rate:g} it/s for {profile.duration_s:g}s against {url}")
    with sampler() as usage:
        try:
            summary = k6.run(script, profile.k6_env(url), timeout_s=profile.timeout_s, samples=True)
        except K6Error as exc:
            raise LoadTestError(f"k6 could not load-test {environment}: {exc}") from None
    if summary.exit_code not in (0, K6_THRESHOLDS_CROSSED):  # e.g. 107: setup() threw (no stock, shop down)
        raise LoadTestError(
            f"k6 stopped {environment}'s load test (exit {summary.exit_code}): {summary.stderr_tail[-800:]}"
        )
    if summary.samples is None:
        raise LoadTestError("k6 returned no samples")
    if summary.requests == 0:
        raise LoadTestError(f"k6 made no request to {url}; k6 said: {summary.stderr_tail[-500:]}")
    log(
        f"{environment}: {summary.requests} requests, {summary.req_per_s:.0f} req/s, p95 {summary.p95_ms:.1f} ms, "
        f"errors {summary.error_rate:.2%}, thresholds {'held' if summary.passed else 'FAILED: ' + ', '.join(summary.failed_thresholds)}"
    )
    restocked_after = admin.restock(min_stock)
    purged = admin.purge_synthetic_orders(purge_older_than_s)
    log(f"{environment}: restocked {restocked_after} products after the run; purged {purged} old synthetic orders")
    return LoadTestRun(
        environment=environment, url=url, profile=profile, summary=summary, usage=usage.frame(),
        restocked_before=restocked_before, restocked_after=restocked_after, purged_orders=purged,
    )  # fmt: skip


def durations(requests: pd.DataFrame) -> dict[str, list[float]]:
    """Request durations (ms) per endpoint of a stored run (a baseline or nightly frame), for compare_runs."""
    frame = requests[~requests["scenario"].isin(SETUP_SCENARIOS)]
    return {str(name): group.tolist() for name, group in frame.groupby("endpoint", sort=True)["duration_ms"]}


def compare_frames(baseline: pd.DataFrame, current: pd.DataFrame) -> RegressionReport:
    """The regression rule (shop_ops.perf.regression) applied to two stored runs."""
    return compare_runs(durations(baseline), durations(current))


class LoadTester(dg.ConfigurableResource):
    """Runs load tests against the environments (`load_tester`); profiles and housekeeping from the settings."""

    k6: K6Resource
    containers: ContainersResource
    mix_script: str = str(MIX_SCRIPT)  # loadtests/mix.js (the run image has a copy)
    # Each environment's admin token (restock, purge synthetic orders).
    shop_admin: ShopAdminResource
    loopback_only: bool = True
    rate: float = 40
    duration_seconds: float = 60
    stress_start_rate: float = 50
    stress_max_rate: float = 1500
    stress_steps: int = 10
    stress_duration_seconds: float = 300
    p95_ms: float = 200
    min_stock: int = 1000
    synthetic_order_max_age_hours: float = 24
    usage_interval_seconds: float = 1.0
    # The homepage flow's GET / (the storefront's HTML): off only against a bare backend.
    storefront: bool = True

    def load_profile(self) -> LoadProfile:
        """Release baselines and nightly runs: the `load` profile."""
        return LoadProfile(
            name="load",
            rate=self.rate,
            duration_s=self.duration_seconds,
            p95_ms=self.p95_ms,
            storefront=self.storefront,
        )

    def stress_profile(self) -> LoadProfile:
        """The capacity report: the `stress` profile."""
        return LoadProfile(
            name="stress", rate=self.stress_start_rate, duration_s=self.stress_duration_seconds,
            max_rate=self.stress_max_rate, steps=self.stress_steps, p95_ms=self.p95_ms, storefront=self.storefront,
        )  # fmt: skip

    def _admin(self, environment: str, url: str) -> ShopAdmin:
        try:
            return self.shop_admin.client(environment, url)
        except ShopAdminError as exc:
            raise LoadTestError(str(exc)) from None

    def run(self, environment: str, url: str, containers: Sequence[str], profile: LoadProfile, log: Log) -> LoadTestRun:
        """`profile` against `environment` at `url`, sampling `containers` (the serving app containers)."""
        check_target(url, self.loopback_only)
        engine = self.containers.engine()  # connects on first use: never where `containers` is empty (ECS)

        def sampler() -> UsageSampler:
            return UsageSampler(engine, list(containers), interval_s=self.usage_interval_seconds, log=log)

        return run_load_test(
            environment, url, profile, k6=self.k6, script=Path(self.mix_script), admin=self._admin(environment, url),
            sampler=sampler,
            min_stock=self.min_stock, purge_older_than_s=int(self.synthetic_order_max_age_hours * 3600), log=log,
        )  # fmt: skip
