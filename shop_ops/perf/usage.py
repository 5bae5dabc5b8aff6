"""CPU and memory of the shop's containers sampled through the Docker API while a load test runs, for right-sizing.

`UsageSampler` reads each container's stats every `interval_s` seconds in a background
thread; `frame()` turns the readings into one row per reading:

- `cpu_percent`: CPU time the container used between two consecutive readings over the
  wall-clock time between them (the engine's read times), in percent of ONE core (100 = one
  core busy; two busy cores = 200). A container's first reading has no predecessor: NaN, as
  after a restart under the same name (another container id, the counter starts again).
- `memory_mb`, `memory_limit_mb`: MiB (2**20 bytes, the unit of ECS task sizes); the limit is
  NaN when the container has none. podman 4.3 counts the page cache in the usage.

Sampling never fails the load test: a container that is gone just has no more rows (logged
once), an engine error is logged and the next tick tries again. `usage_summary` reduces the
rows to one line per container.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

import pandas as pd

from shop_ops.resources.containers import ContainerError, ContainerStats, DockerEngine

MIB = 2**20
COLUMNS = ("time", "container", "cpu_percent", "memory_mb", "memory_limit_mb")
SUMMARY_COLUMNS = (
    "samples",
    "cpu_mean_percent",
    "cpu_p95_percent",
    "cpu_max_percent",
    "memory_mean_mb",
    "memory_max_mb",
)

_logger = logging.getLogger(__name__)


class UsageSampler:
    """Samples containers' stats every `interval_s` in a thread, from `with` entry (or `start`) to exit (or `stop`).

    Name the containers (`containers`) or select them by labels (`labels`: every label must
    match; the selection is listed again at every tick, so containers started mid-run, e.g. a
    blue/green switch, are sampled from then on). `log` receives one line per problem. The
    thread talks to `engine`'s Docker API through a client of its own (docker-py clients are
    not shared across threads here).

        with UsageSampler(engine, labels={"io.shop-ops.env": "staging"}) as sampler:
            run_k6(...)
        usage = sampler.frame()
    """

    def __init__(
        self,
        engine: DockerEngine,
        containers: Sequence[str] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        interval_s: float = 1.0,
        log: Callable[[str], None] | None = None,
        request_timeout_s: float = 5.0,
    ) -> None:
        if (containers is None) == (labels is None):
            raise ValueError("name the containers or give labels to select them, not both")
        if isinstance(containers, str):
            raise TypeError("containers is a sequence of names, not one string")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.engine = DockerEngine(engine.docker_host, timeout=engine.timeout)  # the thread's own client
        self.containers = list(containers) if containers is not None else None
        self.labels = dict(labels) if labels is not None else None
        self.interval_s = float(interval_s)
        self.request_timeout_s = request_timeout_s
        self._log = log or _logger.warning
        self._readings: list[tuple[str, ContainerStats]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._gone: set[str] = set()  # containers reported gone (logged once until they return)
        self._last_error: dict[str, str] = {}  # per target: the last error logged, to log repeats once
        self._repeats: dict[str, int] = {}
        self.errors = 0  # engine errors over the run (logged or repeats of a logged one)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> UsageSampler:
        if self._thread is not None:
            raise RuntimeError("this sampler was already started")
        self._thread = threading.Thread(target=self._run, name="usage-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> pd.DataFrame:
        """Stop sampling (within one engine call: at most `request_timeout_s`) and return `frame()`."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(self.request_timeout_s + 1 if timeout_s is None else timeout_s)
            if thread.is_alive():
                self._log("usage sampler: the engine did not answer in time; returning the readings so far")
        for key, count in self._repeats.items():
            if count:
                self._log(f"usage sampler: {key}: the same error {count} more time(s)")
        self._repeats.clear()
        return self.frame()

    def __enter__(self) -> UsageSampler:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def sampling(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ results
    def frame(self) -> pd.DataFrame:
        """One row per reading so far (see the module's docstring), ordered by container then time."""
        with self._lock:
            readings = list(self._readings)
        return usage_frame(readings)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.engine.close()

    def _loop(self) -> None:
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - sampling must never fail the load test
                self._error("sampler", f"{type(exc).__name__}: {exc}")
            next_tick += self.interval_s
            delay = next_tick - time.monotonic()
            if delay < 0:  # the engine was slower than the interval: skip the missed ticks
                next_tick, delay = time.monotonic(), 0.0
            if self._stopping.wait(delay):
                break

    def _targets(self) -> list[str]:
        if self.containers is not None:
            return self.containers
        return [service.name for service in self.engine.list_services(labels=self.labels)]

    def _tick(self) -> None:
        try:
            targets = self._targets()
        except Exception as exc:  # noqa: BLE001 - docker-py's and requests' errors alike: try again next tick
            self._error("listing", f"{type(exc).__name__}: {exc}")
            return
        self._last_error.pop("listing", None)
        for name in targets:
            if self._stopping.is_set():
                return
            try:
                stats = self.engine.stats(name, timeout=self.request_timeout_s)
            except ContainerError as exc:
                self._error(name, str(exc))
                continue
            self._last_error.pop(name, None)
            if stats is None:
                if name not in self._gone:
                    self._gone.add(name)
                    self._log(f"usage sampler: {name} does not run (any more); no rows while it is gone")
                continue
            self._gone.discard(name)
            with self._lock:
                self._readings.append((name, stats))

    def _error(self, key: str, message: str) -> None:
        self.errors += 1
        if self._last_error.get(key) == message:
            self._repeats[key] = self._repeats.get(key, 0) + 1
            return
        self._last_error[key] = message
        self._log(f"usage sampler: {key}: {message}")


def usage_frame(readings: Sequence[tuple[str, ContainerStats]]) -> pd.DataFrame:
    """Rows of (container name, reading) as the sampler's frame: CPU from consecutive readings of one container id."""
    rows: list[dict[str, object]] = []
    previous: dict[str, ContainerStats] = {}
    for name, stats in sorted(readings, key=lambda item: (item[0], item[1].time)):
        before = previous.get(name)
        previous[name] = stats
        rows.append(
            {
                "time": stats.time,
                "container": name,
                "cpu_percent": _cpu_percent(before, stats),
                "memory_mb": stats.memory_bytes / MIB,
                "memory_limit_mb": stats.memory_limit_bytes / MIB if stats.memory_limit_bytes else math.nan,
            }
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["container"] = frame["container"].astype(str)
    for column in ("cpu_percent", "memory_mb", "memory_limit_mb"):
        frame[column] = frame[column].astype(float)
    return frame


def _cpu_percent(before: ContainerStats | None, after: ContainerStats) -> float:
    if before is None or before.container_id != after.container_id:
        return math.nan
    seconds = (after.time - before.time).total_seconds()
    used_ns = after.cpu_total_ns - before.cpu_total_ns
    if seconds <= 0 or used_ns < 0:
        return math.nan
    return used_ns / 1e9 / seconds * 100


def usage_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per container (the index): readings, mean/p95/max CPU (percent of one core) and mean/max memory (MiB).

    CPU statistics skip the readings without a predecessor (NaN); a container with a single
    reading has NaN CPU statistics.
    """
    grouped = frame.groupby("container", sort=True)
    summary = pd.DataFrame(
        {
            "samples": grouped.size(),
            "cpu_mean_percent": grouped["cpu_percent"].mean(),
            "cpu_p95_percent": grouped["cpu_percent"].quantile(0.95),
            "cpu_max_percent": grouped["cpu_percent"].max(),
            "memory_mean_mb": grouped["memory_mb"].mean(),
            "memory_max_mb": grouped["memory_mb"].max(),
        },
        columns=list(SUMMARY_COLUMNS),
    )
    summary.index.name = "container"
    return summary.astype({"samples": int})
