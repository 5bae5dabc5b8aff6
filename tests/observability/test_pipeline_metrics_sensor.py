"""pipeline_metrics_sensor reads runs, materializations and the ledger, and a real Pushgateway serves the figures.

The Dagster instance is a temporary one with real runs: small stand-in assets under the keys the
sensor reads (staging's database_backup, restore_test, dr_drill, load-test assets) materialize
the metadata the real assets write, and one job fails. The release comes from a real ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shop_ops.resources.ledger import LedgerResource, ReleaseLedger
from shop_ops.sensors.pipeline_metrics import build_pipeline_metrics_sensor
from shop_ops.services.exporters import Pushgateway
from shop_ops.services.processes import free_port

pytestmark = pytest.mark.services  # runs the Pushgateway

DIGEST = "sha256:" + "b" * 64


def stand_in(key: list[str], **metadata: float) -> dg.AssetsDefinition:
    @dg.asset(key=key)
    def _asset() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=metadata)

    return _asset


@dg.op
def always_fails() -> None:
    raise RuntimeError("this job fails on purpose")


@dg.job
def broken_job() -> None:
    always_fails()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    server = Pushgateway(tmp_path_factory.mktemp("pushgateway"), free_port())
    server.start()
    yield server
    server.stop()


def scraped(gateway: Pushgateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the Pushgateway serves: (name, sorted labels without instance) -> value."""
    text = httpx.get(gateway.metrics_url, timeout=10).text
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "instance"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_pipelines_figures_reach_the_pushgateway(gateway: Pushgateway, tmp_path: Path) -> None:
    ledger = ReleaseLedger(tmp_path)
    first = ledger.start("staging", "1.0.0", DIGEST, DIGEST, "green")
    ledger.finish(first, "verified")
    with dg.instance_for_test() as instance:
        assets = [
            stand_in(["staging", "database_backup"], bytes=123456),
            stand_in(["staging", "restore_test"], rto_seconds=4.5),
            stand_in(["staging", "dr_drill"], rto_seconds=7.25, rpo_seconds=1.5),
            stand_in(["staging", "load_test_baseline"], p95_ms=12.0),
            stand_in(["staging", "nightly_load_test"], p95_ms=15.0),
        ]
        assert dg.materialize(assets, instance=instance).success
        assert not broken_job.execute_in_process(instance=instance, raise_on_error=False).success
        sensor = build_pipeline_metrics_sensor(gateway.url, ["staging", "production"], dg.DefaultSensorStatus.STOPPED)
        context = dg.build_sensor_context(
            instance=instance, resources={"ledger": LedgerResource(state_dir=str(tmp_path))}
        )
        result = sensor(context)
    assert "pushed 5 groups" in result.skip_message, result.skip_message
    samples = scraped(gateway)

    def one(name: str, **labels: str) -> float:
        matches = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
        assert len(matches) == 1, (name, labels, [k for k in samples if k[0] == name])
        return matches[0]

    assert one("shop_ops_run_success", dagster_job="broken_job") == 0
    assert one("shop_ops_run_success", dagster_job="__ephemeral_asset_job__") == 1
    assert one("shop_ops_run_duration_seconds", dagster_job="broken_job") >= 0
    assert one("shop_ops_backup_size_bytes", environment="staging") == 123456
    # The drill is the newer proof of recovery: its RTO and RPO, not the restore test's.
    assert one("shop_ops_restore_rto_seconds", environment="staging") == 7.25
    assert one("shop_ops_restore_rpo_seconds", environment="staging") == 1.5
    assert one("shop_ops_load_test_p95_seconds", environment="staging", scenario="mix") == 0.015
    assert one("shop_ops_load_test_baseline_p95_seconds", environment="staging", scenario="mix") == 0.012
    assert one("shop_ops_release_info", environment="staging", version="1.0.0", slot="green") == 1
    assert 0 <= one("shop_ops_release_lead_time_seconds", environment="staging") < 60
    # Production has no figures yet: nothing is pushed for it.
    assert not [k for k in samples if ("environment", "production") in k[1]]


def test_a_pushgateway_that_does_not_answer_skips_the_tick_naming_it(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    sensor = build_pipeline_metrics_sensor(url, ["staging"], dg.DefaultSensorStatus.STOPPED)
    with dg.instance_for_test() as instance:
        assert broken_job.execute_in_process(instance=instance, raise_on_error=False).success is False
        context = dg.build_sensor_context(
            instance=instance, resources={"ledger": LedgerResource(state_dir=str(tmp_path))}
        )
        result = sensor(context)
    assert f"the Pushgateway at {url} does not answer" in result.skip_message
