"""Container CPU and memory sampled through the real Docker API (podman's service) while work runs.

Containers run from the local base image with a busy loop or `sleep`; names carry a random
suffix and are removed in teardown. The pure parts (CPU from counter deltas, the summary, the
sampler's error handling) are checked on synthetic readings without services.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from shop_ops.localenv.docker_api import DockerApi
from shop_ops.perf.usage import COLUMNS, SUMMARY_COLUMNS, UsageSampler, usage_frame, usage_summary
from shop_ops.resources.containers import ContainerError, ContainerStats, DockerEngine

BASE_IMAGE = "localhost/shop-base-python:bookworm"  # built once into the repository's podman storage
BUSY = ["python3", "-c", "while True: pass"]
IDLE = ["sleep", "600"]


@pytest.fixture(scope="module")
def engine(docker_api: DockerApi) -> Iterator[DockerEngine]:
    """The same engine as tests/ops' fixture (not visible from here), for this module."""
    eng = DockerEngine(docker_api.docker_host)
    if not eng.image_exists(BASE_IMAGE):
        pytest.skip(f"{BASE_IMAGE} is not in the podman storage (scripts/build-images.sh builds it)")
    yield eng
    eng.close()


@pytest.fixture
def start(engine: DockerEngine) -> Iterator:
    """start(suffix, command, **labels) -> a running container's name; every one is removed at teardown."""
    names: list[str] = []
    label = f"usage-test-{uuid.uuid4().hex[:8]}"

    def _start(suffix: str, command: list[str], **labels: str) -> str:
        name = f"{label}-{suffix}"
        names.append(name)
        engine.start_service(name, BASE_IMAGE, command, labels={"io.shop-ops.test": label, **labels}, stop_timeout=1)
        return name

    _start.label = label  # type: ignore[attr-defined]
    yield _start
    for name in names:
        engine.stop_service(name, timeout=0)


# ---------------------------------------------------------------------------------------------- engine
def test_stats_reads_a_running_container_fast_and_none_when_gone(engine, start):
    name = start("idle", IDLE)
    stats = engine.stats(name)
    assert stats is not None
    assert stats.container_id == engine._service(name).id
    assert abs(datetime.now(UTC) - stats.time) < timedelta(seconds=5)
    assert stats.cpu_total_ns > 0 and stats.online_cpus >= 1
    assert stats.memory_bytes > 0
    assert stats.memory_limit_bytes is None  # unlimited: podman reports the host's memory, not a limit

    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        assert engine.stats(name) is not None
        latencies.append(time.perf_counter() - started)
    assert sorted(latencies)[10] < 0.2, latencies  # ~3 ms here: one read per second per container is cheap

    engine.stop_service(name, timeout=0)
    assert engine.stats(name) is None
    assert engine.stats(f"no-such-container-{uuid.uuid4().hex[:8]}") is None


def test_stats_reports_a_memory_limit_and_none_for_a_created_container(engine, start):
    api = engine.client.api
    name = f"{start.label}-limited"
    host_config = api.create_host_config(network_mode="host", mem_limit="64m")
    api.create_container(BASE_IMAGE, IDLE, name=name, host_config=host_config, stop_timeout=1)
    try:
        assert engine.stats(name) is None  # created, not started: podman answers 200 with no body
        api.start(name)
        stats = engine.stats(name)
        assert stats is not None and stats.memory_limit_bytes == 64 * 2**20
    finally:
        engine.stop_service(name, timeout=0)


# ---------------------------------------------------------------------------------------------- sampler
def test_sampler_tells_a_busy_container_from_an_idle_one_and_survives_a_removal(engine, start):
    busy, idle, doomed = start("busy", BUSY), start("idle", IDLE), start("doomed", IDLE)
    messages: list[str] = []
    interval, duration = 0.5, 3.0
    with UsageSampler(engine, [busy, idle, doomed], interval_s=interval, log=messages.append) as sampler:
        time.sleep(duration / 2)
        engine.stop_service(doomed, timeout=0)
        removed_at = datetime.now(UTC)
        time.sleep(duration / 2)
        stop_started = time.monotonic()
    assert time.monotonic() - stop_started < 1.0  # the thread waits on an Event, not a sleep
    assert not sampler.sampling
    frame = sampler.frame()
    assert tuple(frame.columns) == COLUMNS
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype) and str(frame["time"].dtype.tz) == "UTC"

    summary = usage_summary(frame)
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert summary.loc[busy, "cpu_mean_percent"] > 50, summary  # ~100 on an idle machine: one core
    assert summary.loc[idle, "cpu_mean_percent"] < 10, summary
    assert summary.loc[busy, "cpu_max_percent"] < 130  # one thread: never much above one core
    assert (frame["memory_mb"] > 0).all()
    assert frame["memory_limit_mb"].isna().all()  # none of them has a limit
    expected = duration / interval
    for name in (busy, idle):
        assert expected - 2 <= summary.loc[name, "samples"] <= expected + 2, summary
        cpu = frame.loc[frame["container"] == name, "cpu_percent"]
        assert math.isnan(cpu.iloc[0]) and cpu.iloc[1:].notna().all()  # the first reading has no predecessor

    doomed_rows = frame[frame["container"] == doomed]
    assert 1 <= len(doomed_rows) <= expected / 2 + 2
    assert doomed_rows["time"].max() <= removed_at
    assert sampler.errors == 0, messages
    assert messages == [f"usage sampler: {doomed} does not run (any more); no rows while it is gone"]


def test_sampler_by_labels_picks_up_a_container_started_mid_run(engine, start):
    first = start("first", IDLE, role="web")
    start("other", IDLE, role="db")  # carries the test label but not role=web
    labels = {"io.shop-ops.test": start.label, "role": "web"}
    messages: list[str] = []
    with UsageSampler(engine, labels=labels, interval_s=0.3, log=messages.append) as sampler:
        time.sleep(0.8)
        second = start("second", BUSY, role="web")
        time.sleep(1.5)
    assert messages == []
    counts = sampler.frame()["container"].value_counts()
    assert set(counts.index) == {first, second}
    assert counts[first] > counts[second] >= 2


# ---------------------------------------------------------------------------------------------- pure
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _reading(seconds: float, cpu_s: float, memory_mib: float = 100, container_id: str = "a", limit_mib=None):
    return ContainerStats(
        container_id=container_id,
        time=T0 + timedelta(seconds=seconds),
        cpu_total_ns=int(cpu_s * 1e9),
        system_cpu_ns=None,
        online_cpus=2,
        memory_bytes=int(memory_mib * 2**20),
        memory_limit_bytes=int(limit_mib * 2**20) if limit_mib else None,
    )


def test_cpu_percent_is_of_one_core_from_consecutive_readings_of_one_container_id():
    readings = [
        ("web", _reading(2, 10.5, limit_mib=512)),  # out of order: sorted by time
        ("web", _reading(0, 10.0, limit_mib=512)),
        ("web", _reading(1, 10.0, limit_mib=512)),
        ("web", _reading(4, 14.5, limit_mib=512)),  # two cores busy over two seconds
        ("web", _reading(5, 0.2, container_id="b")),  # restarted under the same name: counter from zero
        ("web", _reading(6, 0.3, container_id="b")),
        ("db", _reading(0, 1.0, memory_mib=50)),
    ]
    frame = usage_frame(readings)
    web = frame[frame["container"] == "web"]["cpu_percent"].tolist()
    assert math.isnan(web[0]) and math.isnan(web[4])
    assert web[1:4] + web[5:] == pytest.approx([0.0, 50.0, 200.0, 10.0])
    assert frame.loc[frame["container"] == "web", "memory_limit_mb"].tolist()[:4] == [512.0] * 4
    assert math.isnan(frame["memory_limit_mb"].iloc[-1])

    summary = usage_summary(frame)
    assert summary.loc["web", "samples"] == 6 and summary.loc["db", "samples"] == 1
    assert summary.loc["web", "cpu_mean_percent"] == pytest.approx(65.0)
    assert summary.loc["web", "cpu_max_percent"] == pytest.approx(200.0)
    assert summary.loc["web", "cpu_p95_percent"] == pytest.approx(pd.Series([0, 50, 200, 10]).quantile(0.95))
    assert summary.loc["db", "memory_max_mb"] == pytest.approx(50.0)
    assert math.isnan(summary.loc["db", "cpu_mean_percent"])  # one reading: no CPU figure


def test_empty_frame_and_summary_keep_their_columns():
    frame = usage_frame([])
    assert tuple(frame.columns) == COLUMNS and frame.empty
    assert tuple(usage_summary(frame).columns) == SUMMARY_COLUMNS


def test_sampler_logs_engine_errors_keeps_sampling_and_stops_promptly(monkeypatch):
    calls = {"n": 0}

    def flaky_stats(self, name_or_id, timeout=10):
        calls["n"] += 1
        if calls["n"] in (2, 3, 4):
            raise ContainerError(f"stats of {name_or_id}: 500 Server Error")
        if calls["n"] == 5:
            raise RuntimeError("a bug, not an API error")
        return _reading(calls["n"] * 0.05, calls["n"] * 0.01)

    monkeypatch.setattr(DockerEngine, "stats", flaky_stats)
    messages: list[str] = []
    sampler = UsageSampler(DockerEngine("unix:///nonexistent.sock"), ["web"], interval_s=0.05, log=messages.append)
    with sampler:
        deadline = time.monotonic() + 5
        while calls["n"] < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert sampler.errors == 4
    assert messages[0] == "usage sampler: web: stats of web: 500 Server Error"
    assert messages[1] == "usage sampler: sampler: RuntimeError: a bug, not an API error"
    assert messages[2] == "usage sampler: web: the same error 2 more time(s)"
    assert len(sampler.frame()) >= 5

    slow = UsageSampler(DockerEngine("unix:///nonexistent.sock"), ["web"], interval_s=60, log=messages.append)
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    slow.stop()
    assert time.monotonic() - started < 0.5 and not slow.sampling


def test_sampler_needs_names_or_labels():
    engine = DockerEngine("unix:///nonexistent.sock")
    with pytest.raises(ValueError):
        UsageSampler(engine)
    with pytest.raises(ValueError):
        UsageSampler(engine, ["a"], labels={"x": "y"})
    with pytest.raises(TypeError):
        UsageSampler(engine, "web")
