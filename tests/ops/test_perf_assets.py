"""The performance assets in Dagster against real backends: 30 ms slower search fails the blocking check and alerts.

Two backend containers side by side against the same database and Redis: the built release, and
a thin layer over it (tests/perf/slow_search: a module, imported at start by a .pth file, that
delays every catalog search by 30 ms). `staging/load_test_baseline` is taken against the
release; `staging/nightly_load_test` then runs against the slow layer (its blocking check
`no_latency_regression` fails and the notifier posts to a real webhook receiver) and against the
release again (it passes, nothing is sent). Only the release target is this test's own: a URL and
the containers to sample, no deploys. bench/perf_regression.py repeats the comparison five times
and records the detection rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from shop_ops.assets.performance import REGRESSION_CHECK, capacity_report, load_test_baseline, nightly_load_test
from shop_ops.localenv.docker_api import DockerApi
from shop_ops.perf.loadtest import LoadTester
from shop_ops.resources.containers import ContainersResource, DockerEngine
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.notifier import NotifierResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.resources.shop_admin import ShopAdminResource
from shop_ops.services.processes import RedisServer, free_port
from tests.perf.slow_search import SLOW_TAG, build_slow_layer
from tests.support import FixedTarget

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def backends(
    built: dict, docker_api: DockerApi, shop_db: str, redis_server: RedisServer, admin_token: str
) -> Iterator[dict[str, tuple[str, str]]]:
    """{"release": (url, container), "slow": (url, container)}: both on the host network, same database and Redis."""
    engine = DockerEngine(docker_api.docker_host)
    release = next(image["ref"] for image in built["images"] if image["name"] == "backend")
    images = {"release": release, "slow": build_slow_layer(engine, release)}
    backends, names = {}, []
    try:
        for role, image in images.items():
            port = free_port()
            name = f"shop-ops-test-perf-{role}-{port}"
            env = {
                "SHOP_DATABASE_URL": shop_db, "SHOP_REDIS_URL": redis_server.url(6), "SHOP_HOST": "127.0.0.1",
                "SHOP_PORT": str(port), "SHOP_WORKERS": "1", "SHOP_ADMIN_TOKEN": admin_token, "SHOP_ACCESS_LOG": "false",
            }  # fmt: skip
            engine.start_service(name, image, env=env, stop_timeout=5, replace=True)
            names.append(name)
            backends[role] = (f"http://127.0.0.1:{port}", name)
        engine.wait_answering(names, [f"{url}/readyz" for url, _ in backends.values()])
        yield backends
    finally:
        for name in names:
            engine.stop_service(name, timeout=5)
        engine.remove_image(SLOW_TAG)
        engine.close()


def test_a_30ms_slower_search_fails_the_check_and_alerts_an_unchanged_rerun_passes(
    backends: dict[str, tuple[str, str]], admin_token: str, docker_api: DockerApi, webhook, tmp_path: Path
) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(admin_token)
    # 360 iterations of the mix per run: every endpoint gets the 30 samples the check needs.
    load_tester = LoadTester(
        k6=K6Resource(), containers=ContainersResource(docker_host=docker_api.docker_host),
        shop_admin=ShopAdminResource(token_files={"staging": str(token_file)}), rate=60, duration_seconds=6, min_stock=1000,
        synthetic_order_max_age_hours=1, storefront=False,
    )  # fmt: skip
    baseline, nightly = load_test_baseline("staging"), nightly_load_test("staging")
    today = datetime.now(UTC).date().isoformat()
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))

    def resources(role: str) -> dict[str, object]:
        url, container = backends[role]
        target = FixedTarget(
            target_url=url, containers=[container], registry=RegistryResource(url="http://127.0.0.1:9"),
            ledger=LedgerResource(state_dir=str(tmp_path)), k6=K6Resource(),
        )  # fmt: skip
        return {"load_tester": load_tester, "release_target": target,
                "notifier": NotifierResource(slack_webhook_url=webhook.url)}  # fmt: skip

    def materialize(role: str, asset: dg.AssetsDefinition) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [baseline, nightly], selection=[asset.key], partition_key=today if asset is nightly else None,
            resources=resources(role), instance=instance, raise_on_error=False,
        )  # fmt: skip

    taken = materialize("release", baseline)
    assert taken.success
    metadata = taken.asset_materializations_for_node(baseline.node_def.name)[0].metadata
    assert metadata["passed"].value is True and metadata["requests"].value > 700
    assert metadata["cpu_mean_percent"].value > 0 and metadata["memory_max_mb"].value > 0  # the container, sampled
    assert metadata["cpu_p95_percent"].value >= metadata["cpu_mean_percent"].value

    slow = materialize("slow", nightly)
    [check] = slow.get_asset_check_evaluations()
    assert check.check_name == REGRESSION_CHECK and check.passed is False
    assert not slow.success  # a blocking check that failed fails the run
    failed = {name for name, row in check.metadata["endpoints"].value.items() if row["verdict"] != "ok"}
    assert {"search", "products"} <= failed and not failed & {"create_cart", "get_cart", "checkout", "order"}
    assert check.metadata["effect_ms search"].value > 25
    [alert] = webhook.received
    assert "latency regression in staging" in alert["text"] and "search" in alert["text"]

    rerun = materialize("release", nightly)
    [check] = rerun.get_asset_check_evaluations()
    assert check.passed is True and rerun.success, check.metadata["table"].value
    assert len(webhook.received) == 1  # nothing more sent
    # Analysts load the night's requests as a DataFrame, tagged with the release it measured.
    frame = dg.Definitions(assets=[baseline, nightly], resources=resources("release")).load_asset_value(
        nightly.key, partition_key=today, instance=instance
    )
    assert isinstance(frame, pd.DataFrame) and set(frame["endpoint"]) >= {"search", "checkout", "order"}
    assert (frame["environment"] == "staging").all() and len(frame) > 700


def test_capacity_report_records_each_scenarios_breaking_point(
    backends: dict[str, tuple[str, str]], admin_token: str, docker_api: DockerApi, tmp_path: Path
) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(admin_token)
    url, container = backends["release"]
    # A short climb (10 -> 40 it/s in 2 stages of 2 s) that the shop holds: the breaking point is the top stage.
    load_tester = LoadTester(
        k6=K6Resource(), containers=ContainersResource(docker_host=docker_api.docker_host),
        shop_admin=ShopAdminResource(token_files={"staging": str(token_file)}), stress_start_rate=10, stress_max_rate=40, stress_steps=2,
        stress_duration_seconds=4, p95_ms=1000, storefront=False,
    )  # fmt: skip
    target = FixedTarget(
        target_url=url, containers=[container], registry=RegistryResource(url="http://127.0.0.1:9"),
        ledger=LedgerResource(state_dir=str(tmp_path)), k6=K6Resource(),
    )  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    first, result = (
        dg.materialize([capacity_report], resources={"load_tester": load_tester, "release_target": target},
                       instance=instance)
        for _ in range(2)
    )  # fmt: skip
    assert "change_pct_browse" not in first.asset_materializations_for_node("capacity_report")[0].metadata
    capacity = result.output_for_node("capacity_report")
    assert sorted(capacity["scenario"]) == ["browse", "cart", "checkout"]
    assert capacity.set_index("scenario")["breaking_rate"].to_dict() == pytest.approx(
        {"browse": 28.0, "cart": 8.0, "checkout": 4.0}
    )
    assert capacity["broke_at_rate"].isna().all() and (capacity["stages"] == 2).all()
    metadata = result.asset_materializations_for_node("capacity_report")[0].metadata
    assert metadata["breaking_rate_checkout"].value == pytest.approx(4.0)
    assert metadata["change_pct_browse"].value == 0  # against the first report: the same capacity
    assert "| browse" in metadata["stages"].value and metadata["release"].value.startswith("none yet")
