"""The pipeline's own figures as Prometheus gauges pushed to the Pushgateway: runs, releases, backups, restores, load tests.

Each builder turns one kind of figure into a fresh `CollectorRegistry`; `push` sends a registry
to the Pushgateway as one group (HTTP PUT: the group's previous metrics are replaced, so a
gauge always holds the latest figure). Push each kind under its own job name (the `*_JOB`
constants) and, where the figure belongs to one environment, with the grouping key
{"environment": ...} (`grouping_key`), so that staging's push never replaces production's.
Prometheus scrapes the Pushgateway with `honor_labels: true` (prometheus.render_config), keeping the
pushed `job` and `environment` labels.

Times are pushed as Unix timestamps, never as ages: an age pushed once goes stale, while
`time() - shop_ops_backup_last_success_timestamp_seconds` stays true between pushes (the
dashboards compute ages that way). Environment-less figures (a run of `build_images`) carry
`environment=""`, which Prometheus treats as no label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.error import HTTPError, URLError

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

RUNS_JOB = "shop_ops_runs"
RELEASES_JOB = "shop_ops_releases"
BACKUPS_JOB = "shop_ops_backups"
RESTORES_JOB = "shop_ops_restores"
LOAD_TESTS_JOB = "shop_ops_load_tests"
_LABEL_VALUE = re.compile(r"^[^\n]*$")


class PushgatewayError(RuntimeError):
    """The Pushgateway did not take a push; the message names its URL and what happened."""


@dataclass(frozen=True)
class RunOutcome:
    """One finished Dagster run: its job, whether it succeeded, how long it took, when it ended (Unix time)."""

    job: str
    succeeded: bool
    duration_s: float
    finished_at: float
    environment: str | None = None


def _check(value: str, what: str) -> str:
    if not value or not _LABEL_VALUE.match(value):
        raise ValueError(f"{what} must be a non-empty single line, got {value!r}")
    return value


def grouping_key(environment: str | None = None) -> dict[str, str]:
    """The Pushgateway grouping key of one environment's figures ({} when they belong to none)."""
    return {"environment": _check(environment, "environment")} if environment is not None else {}


def run_metrics(runs: Iterable[RunOutcome]) -> CollectorRegistry:
    """Per Dagster job (and environment, where the run had one): the latest run's outcome, duration and end.

    shop_ops_run_success{dagster_job, environment}                  1 succeeded, 0 failed
    shop_ops_run_duration_seconds{dagster_job, environment}         wall time of the run
    shop_ops_run_finished_timestamp_seconds{dagster_job, environment}
    Of several runs of one job and environment, the one that finished last counts. Push as
    RUNS_JOB with the full list of latest runs (one PUT replaces the group).
    """
    registry = CollectorRegistry()
    labels = ("dagster_job", "environment")
    success = Gauge("shop_ops_run_success", "Whether the latest run of the job succeeded (1) or failed (0)", labels, registry=registry)  # fmt: skip
    duration = Gauge("shop_ops_run_duration_seconds", "Wall time of the latest run of the job", labels, registry=registry)  # fmt: skip
    finished = Gauge("shop_ops_run_finished_timestamp_seconds", "When the latest run of the job finished (Unix time)", labels, registry=registry)  # fmt: skip
    latest: dict[tuple[str, str], RunOutcome] = {}
    for run in sorted(runs, key=lambda r: r.finished_at):
        if run.duration_s < 0:
            raise ValueError(f"run of {run.job} has a negative duration {run.duration_s}")
        latest[(_check(run.job, "job"), _check(run.environment, "environment") if run.environment else "")] = run
    for key, run in latest.items():
        success.labels(*key).set(1 if run.succeeded else 0)
        duration.labels(*key).set(run.duration_s)
        finished.labels(*key).set(run.finished_at)
    return registry


def release_metrics(
    *, environment: str, version: str, lead_time_s: float, finished_at: float, slot: str | None = None
) -> CollectorRegistry:
    """A release that now serves `environment`: its version, lead time and when it went live.

    shop_ops_release_info{environment, version, slot}                  1 (the serving release)
    shop_ops_release_lead_time_seconds{environment, version}           image pushed -> serving
    shop_ops_release_finished_timestamp_seconds{environment, version}  when it went live (Unix
                                                                       time; the dashboards'
                                                                       release annotations)
    Push as RELEASES_JOB with grouping_key(environment).
    """
    if lead_time_s < 0:
        raise ValueError(f"lead time of {version} in {environment} is negative: {lead_time_s}")
    registry = CollectorRegistry()
    _check(environment, "environment")
    _check(version, "version")
    info = Gauge("shop_ops_release_info", "The release serving the environment (always 1)", ("environment", "version", "slot"), registry=registry)  # fmt: skip
    lead = Gauge("shop_ops_release_lead_time_seconds", "From the image push to the release serving the environment", ("environment", "version"), registry=registry)  # fmt: skip
    done = Gauge("shop_ops_release_finished_timestamp_seconds", "When the release went live in the environment (Unix time)", ("environment", "version"), registry=registry)  # fmt: skip
    info.labels(environment, version, slot or "").set(1)
    lead.labels(environment, version).set(lead_time_s)
    done.labels(environment, version).set(finished_at)
    return registry


def backup_metrics(*, environment: str, finished_at: float, size_bytes: float) -> CollectorRegistry:
    """The newest verified backup of `environment`'s database: when it finished and its size.

    shop_ops_backup_last_success_timestamp_seconds{environment}   age = time() - this
    shop_ops_backup_size_bytes{environment}
    Push as BACKUPS_JOB with grouping_key(environment).
    """
    registry = CollectorRegistry()
    _check(environment, "environment")
    when = Gauge("shop_ops_backup_last_success_timestamp_seconds", "When the newest verified backup finished (Unix time)", ("environment",), registry=registry)  # fmt: skip
    size = Gauge("shop_ops_backup_size_bytes", "Size of the newest verified backup", ("environment",), registry=registry)  # fmt: skip
    when.labels(environment).set(finished_at)
    size.labels(environment).set(size_bytes)
    return registry


def restore_metrics(*, environment: str, rto_s: float, rpo_s: float, finished_at: float) -> CollectorRegistry:
    """The latest restore test or DR drill of `environment`: recovery time and recovery point reached.

    shop_ops_restore_rto_seconds{environment}   from the start of the restore to a serving database
    shop_ops_restore_rpo_seconds{environment}   data lost: newest restored commit to the target time
    shop_ops_restore_finished_timestamp_seconds{environment}
    Push as RESTORES_JOB with grouping_key(environment).
    """
    registry = CollectorRegistry()
    _check(environment, "environment")
    rto = Gauge("shop_ops_restore_rto_seconds", "Recovery time of the latest restore test", ("environment",), registry=registry)  # fmt: skip
    rpo = Gauge("shop_ops_restore_rpo_seconds", "Recovery point (data lost) of the latest restore test", ("environment",), registry=registry)  # fmt: skip
    done = Gauge("shop_ops_restore_finished_timestamp_seconds", "When the latest restore test finished (Unix time)", ("environment",), registry=registry)  # fmt: skip
    rto.labels(environment).set(rto_s)
    rpo.labels(environment).set(rpo_s)
    done.labels(environment).set(finished_at)
    return registry


def load_test_metrics(
    *,
    environment: str,
    p95_s: Mapping[str, float],
    finished_at: float,
    baseline_p95_s: Mapping[str, float] | None = None,
) -> CollectorRegistry:
    """The latest k6 run against `environment`: p95 per scenario (and the baseline's, where there is one).

    shop_ops_load_test_p95_seconds{environment, scenario}
    shop_ops_load_test_baseline_p95_seconds{environment, scenario}
    shop_ops_load_test_finished_timestamp_seconds{environment}
    Push as LOAD_TESTS_JOB with grouping_key(environment).
    """
    if not p95_s:
        raise ValueError(f"a load test of {environment} without any scenario's p95")
    registry = CollectorRegistry()
    _check(environment, "environment")
    p95 = Gauge("shop_ops_load_test_p95_seconds", "95th percentile of the latest load test's request durations", ("environment", "scenario"), registry=registry)  # fmt: skip
    done = Gauge("shop_ops_load_test_finished_timestamp_seconds", "When the latest load test finished (Unix time)", ("environment",), registry=registry)  # fmt: skip
    for scenario, value in p95_s.items():
        p95.labels(environment, _check(scenario, "scenario")).set(value)
    if baseline_p95_s:
        base = Gauge("shop_ops_load_test_baseline_p95_seconds", "95th percentile of the baseline the load test is compared with", ("environment", "scenario"), registry=registry)  # fmt: skip
        for scenario, value in baseline_p95_s.items():
            base.labels(environment, _check(scenario, "scenario")).set(value)
    done.labels(environment).set(finished_at)
    return registry


def push(
    gateway_url: str,
    job: str,
    metrics: CollectorRegistry,
    grouping_key: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> None:
    """Replace the group `job` (+ `grouping_key`) on the Pushgateway at `gateway_url` with `metrics`.

    PushgatewayError, naming the URL, when the gateway cannot be reached or refuses the push.
    """
    _check(job, "job")
    try:
        push_to_gateway(gateway_url, job, metrics, grouping_key=dict(grouping_key or {}), timeout=timeout)
    except HTTPError as exc:
        body = exc.read().decode(errors="replace").strip()[:500]
        raise PushgatewayError(
            f"the Pushgateway at {gateway_url} refused the push of job {job} ({exc.code}): {body or exc.reason}"
        ) from exc
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PushgatewayError(
            f"the Pushgateway at {gateway_url} does not answer ({reason}): is it running? (job {job} not pushed)"
        ) from exc
