"""The pipeline's figures as Prometheus gauges (shop_ops.observability.pipeline_metrics), read back from the exposition text.

No service here: pushing to a real Pushgateway and reading the figures back through Prometheus
is tested in test_exporters.py and test_dashboards.py.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shop_ops.observability import pipeline_metrics as pm


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_runs_keep_the_latest_per_job_and_environment() -> None:
    runs = [
        pm.RunOutcome("release_staging", False, 50, 1000, "staging"),
        pm.RunOutcome("release_staging", True, 40, 2000, "staging"),  # later: this one counts
        pm.RunOutcome("rollback", True, 5, 1500, "production"),
        pm.RunOutcome("build_images", True, 90, 1200),  # no environment
    ]
    got = samples(pm.run_metrics(reversed(runs)))
    staging = (("dagster_job", "release_staging"), ("environment", "staging"))
    assert got[("shop_ops_run_success", staging)] == 1
    assert got[("shop_ops_run_duration_seconds", staging)] == 40
    assert got[("shop_ops_run_finished_timestamp_seconds", staging)] == 2000
    # An empty label value is no label to Prometheus.
    assert got[("shop_ops_run_success", (("dagster_job", "build_images"), ("environment", "")))] == 1
    assert len([key for key in got if key[0] == "shop_ops_run_success"]) == 3


def test_each_figure_is_a_gauge_with_its_environment() -> None:
    registries = [
        pm.release_metrics(environment="production", version="1.4.0", lead_time_s=900, finished_at=5000, slot="green"),
        pm.backup_metrics(environment="production", finished_at=4000, size_bytes=1e6),
        pm.restore_metrics(environment="production", rto_s=80, rpo_s=2.5, finished_at=4500),
        pm.load_test_metrics(environment="production", p95_s={"checkout": 0.25}, finished_at=4800),
    ]
    for registry in registries:
        text = generate_latest(registry).decode()
        for family in text_string_to_metric_families(text):
            assert family.type == "gauge", family.name
            assert family.name.startswith("shop_ops_")
            for sample in family.samples:
                assert sample.labels["environment"] == "production", sample
    release = samples(registries[0])
    assert release[("shop_ops_release_info", (("environment", "production"), ("slot", "green"), ("version", "1.4.0")))] == 1  # fmt: skip
    assert release[("shop_ops_release_lead_time_seconds", (("environment", "production"), ("version", "1.4.0")))] == 900  # fmt: skip
    # No baseline given: no baseline series (the dashboard's ratio then shows nothing, rather than a wrong 1).
    assert not any(name == "shop_ops_load_test_baseline_p95_seconds" for name, _ in samples(registries[3]))


def test_bad_figures_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="negative"):
        pm.release_metrics(environment="staging", version="1.0.0", lead_time_s=-1, finished_at=1)
    with pytest.raises(ValueError, match="environment"):
        pm.backup_metrics(environment="", finished_at=1, size_bytes=1)
    with pytest.raises(ValueError, match="without any scenario"):
        pm.load_test_metrics(environment="staging", p95_s={}, finished_at=1)
    with pytest.raises(ValueError, match="negative duration"):
        pm.run_metrics([pm.RunOutcome("rollback", True, -3, 1)])
    assert pm.grouping_key("staging") == {"environment": "staging"}
    assert pm.grouping_key() == {}
