"""The Grafana dashboards of infra/grafana: the committed JSON is what the generator builds, and every panel shows data.

Grafana cannot run here, so its part is played by Prometheus's HTTP API: every panel target's
and annotation's PromQL, with the dashboard variables filled in ($environment = staging, the
node exporter's address for $instance, 30 s for $__rate_interval), must return at least one
series from a real Prometheus (1 s scrape and evaluation, the repository's rules) that scrapes
the real shop (after some requests, directly and through a real nginx router), a postgres
exporter on the test cluster, a redis exporter on the test Redis, a node exporter, an nginx
exporter on the router's stub_status page, and a Pushgateway that the pipeline's own figures
were pushed to with shop_ops.observability.pipeline_metrics.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shop_ops.observability import dashboards
from shop_ops.observability import pipeline_metrics as pm
from shop_ops.observability import prometheus as prom
from shop_ops.resources.router import Router, Upstreams
from shop_ops.services.discovery import write_shop_targets
from shop_ops.services.exporters import (
    Exporter,
    NginxExporter,
    NodeExporter,
    PostgresExporter,
    Pushgateway,
    RedisExporter,
)
from shop_ops.services.processes import PostgresCluster, PrometheusServer, RedisServer, free_port
from tests.support import ShopServer

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "infra" / "prometheus" / "rules").glob("*.yml"))
GRAFANA = ROOT / "infra" / "grafana"
ENVIRONMENT = "staging"
RATE_INTERVAL = "30s"
WAIT_S = 45
NOW = time.time()


# ---------------------------------------------------------------------- the JSON itself (no services)
def test_the_committed_dashboards_are_what_the_generator_builds() -> None:
    stale = dashboards.stale(GRAFANA / "dashboards")
    assert not stale, f"stale dashboards {stale}: run .venv/bin/python -m shop_ops.observability.dashboards"
    committed = {path.stem for path in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == set(dashboards.DASHBOARDS), "a JSON file in infra/grafana/dashboards that no code builds"


def test_check_mode_names_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dashboards.main([str(tmp_path), "--check"]) == 1
    assert "stale dashboards" in capsys.readouterr().err
    assert dashboards.main([str(tmp_path)]) == 0
    assert dashboards.main([str(tmp_path), "--check"]) == 0


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_each_dashboard_is_a_sound_grafana_model(name: str) -> None:
    data = dashboards.DASHBOARDS[name]()
    assert data["uid"].startswith("shop-ops-") and data["title"] and "shop-ops" in data["tags"]
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"] for v in data["templating"]["list"]}
    assert "datasource" in variables
    for panel in data["panels"]:
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"panel {panel['title']!r} repeats a refId"
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, f"panel {panel['title']!r} uses undefined variables {used - variables}"
    uids = [dashboards.DASHBOARDS[other]()["uid"] for other in dashboards.DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_provisioning_points_grafana_at_the_dashboards_and_prometheus() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "shop-ops.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "${SHOP_OPS_DASHBOARDS}"


# ---------------------------------------------------------------------- every panel shows data
@dataclass
class Stack:
    prometheus: PrometheusServer
    node: Exporter
    server: ShopServer
    router: Router


def pipeline_figures(gateway: str) -> None:
    """What the pipeline pushes after its runs: runs, a release to staging, a backup, a restore test, a k6 run."""
    runs = [
        pm.RunOutcome("release_staging", True, 312.5, NOW - 600, ENVIRONMENT),
        pm.RunOutcome("nightly_backup", False, 40.0, NOW - 300, ENVIRONMENT),
        pm.RunOutcome("build_images", True, 95.0, NOW - 900),
    ]
    pm.push(gateway, pm.RUNS_JOB, pm.run_metrics(runs))
    release = pm.release_metrics(environment=ENVIRONMENT, version="9.9.9", lead_time_s=1800, finished_at=NOW - 600, slot="blue")  # fmt: skip
    pm.push(gateway, pm.RELEASES_JOB, release, pm.grouping_key(ENVIRONMENT))
    backup = pm.backup_metrics(environment=ENVIRONMENT, finished_at=NOW - 3600, size_bytes=52_428_800)
    pm.push(gateway, pm.BACKUPS_JOB, backup, pm.grouping_key(ENVIRONMENT))
    restore = pm.restore_metrics(environment=ENVIRONMENT, rto_s=84.0, rpo_s=3.2, finished_at=NOW - 3000)
    pm.push(gateway, pm.RESTORES_JOB, restore, pm.grouping_key(ENVIRONMENT))
    k6 = pm.load_test_metrics(
        environment=ENVIRONMENT, p95_s={"homepage": 0.08, "checkout": 0.21}, finished_at=NOW - 1200,
        baseline_p95_s={"homepage": 0.07, "checkout": 0.2},
    )  # fmt: skip
    pm.push(gateway, pm.LOAD_TESTS_JOB, k6, pm.grouping_key(ENVIRONMENT))


@pytest.fixture(scope="module")
def stack(
    server: ShopServer,
    postgres: PostgresCluster,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("dashboards")
    router_folder = Path(tempfile.mkdtemp(prefix="shop-ops-test-router-d-"))
    router = Router(ENVIRONMENT, router_folder, free_port(), cache_lifetime=0)
    exporters: dict[str, Exporter] = {
        "pushgateway": Pushgateway(folder / "pushgateway", free_port()),
        "node": NodeExporter(folder / "node", free_port()),
        "postgres": PostgresExporter(folder / "postgres", free_port(), dsn=postgres.dsn()),
        "redis": RedisExporter(folder / "redis", free_port(), redis_address=f"127.0.0.1:{redis_server.port}"),
        "router": NginxExporter(folder / "nginx", free_port(), status_url=router.status_url),
    }
    port = free_port()
    srv = PrometheusServer(datadir=folder / "prometheus", port=port, config=folder / "prometheus.yml", retention="1d")
    try:
        router.start(Upstreams("blue", server.port, server.port))
        for exporter in exporters.values():
            exporter.start()
        pipeline_figures(exporters["pushgateway"].url)
        discovery = folder / "targets"
        write_shop_targets(discovery, ENVIRONMENT, [("blue", f"127.0.0.1:{server.port}")])
        rendered = prom.render_config(
            scrape_interval_s=1, evaluation_interval_s=1, rule_files=RULE_FILES, shop_targets_dir=discovery,
            postgres=[prom.Target(exporters["postgres"].address, ENVIRONMENT)],
            redis=[prom.Target(exporters["redis"].address, ENVIRONMENT)],
            router=[prom.Target(exporters["router"].address, ENVIRONMENT)],
            node=[prom.Target(exporters["node"].address)],
            prometheus=f"127.0.0.1:{port}", pushgateway=exporters["pushgateway"].address,
        )  # fmt: skip
        srv.config.write_text(rendered)
        srv.start()
        yield Stack(srv, exporters["node"], server, router)
    finally:
        srv.stop()
        for exporter in exporters.values():
            exporter.stop()
        router.stop()
        shutil.rmtree(router_folder, ignore_errors=True)


def some_traffic(stack: Stack) -> None:
    """A few API reads straight to the backend and through the router (a 404 too)."""
    for base in (stack.server.url, stack.router.url):
        with httpx.Client(base_url=base, timeout=10) as client:
            for path in ("/api/products", "/api/categories", "/api/products?q=tea", "/healthz", "/api/nope"):
                client.get(path)


def fill_in(expr: str, stack: Stack) -> str:
    """The expression as Grafana sends it, for environment staging and the test's node exporter."""
    values = {"__rate_interval": RATE_INTERVAL, "environment": ENVIRONMENT, "instance": stack.node.address}
    filled = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], expr)
    assert "$" not in filled, filled
    return filled


def empty_queries(stack: Stack, data: dict[str, Any]) -> list[str]:
    empty = []
    for where, expr in dashboards.panel_queries(data):
        if not prom.query(stack.prometheus.url, fill_in(expr, stack)):
            empty.append(f"{where}: {fill_in(expr, stack)}")
    return empty


def series_of(stack: Stack, expr: str) -> list[dict[str, Any]]:
    """The query's series once it has some (with some traffic meanwhile); fails after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not (found := prom.query(stack.prometheus.url, expr)):
        if time.monotonic() > deadline:
            pytest.fail(f"no series for {expr} within {WAIT_S} s")
        some_traffic(stack)
        time.sleep(0.5)
    return found


@pytest.mark.parametrize("name", list(dashboards.DASHBOARDS))
def test_every_panel_of_the_dashboard_returns_series(stack: Stack, name: str) -> None:
    data = dashboards.DASHBOARDS[name]()
    deadline = time.monotonic() + WAIT_S
    while True:
        some_traffic(stack)
        empty = empty_queries(stack, data)
        if not empty:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{len(empty)} queries of dashboard {name} returned no series within {WAIT_S} s:\n" + "\n".join(empty))  # fmt: skip
        time.sleep(1)


@pytest.mark.parametrize("name", list(dashboards.DASHBOARDS))
def test_the_variables_offer_the_test_values(stack: Stack, name: str) -> None:
    """Each `label_values(selector, label)` variable query lists the value the panels were checked with."""
    expected = {"environment": ENVIRONMENT, "instance": stack.node.address}
    for variable in dashboards.DASHBOARDS[name]()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        response = httpx.get(f"{stack.prometheus.url}/api/v1/series", params={"match[]": match[1]}, timeout=10)
        values = {series.get(match[2]) for series in response.json()["data"]}
        assert expected[variable["name"]] in values, f"{variable['name']}: {values}"


def test_releases_show_in_the_traffic_and_as_annotations(stack: Stack) -> None:
    """The shop's traffic is split by the release the pipeline pushed; the annotation sits at the release's time."""
    shop = dashboards.shop()
    (per_release,) = [expr for where, expr in dashboards.panel_queries(shop) if "'Requests/s per release'" in where]
    found = series_of(stack, fill_in(per_release, stack))
    assert [(s["metric"]["environment"], s["metric"]["version"]) for s in found] == [(ENVIRONMENT, "9.9.9")]
    (annotation,) = [expr for where, expr in dashboards.panel_queries(shop) if where.startswith("annotation")]
    (mark,) = series_of(stack, fill_in(annotation, stack))
    assert mark["metric"]["version"] == "9.9.9"
    assert float(mark["value"][1]) == pytest.approx((NOW - 600) * 1000, abs=1)
    # honor_labels: the pushed job and environment are kept, not the scrape job's.
    (run,) = series_of(stack, 'shop_ops_run_success{dagster_job="nightly_backup"}')
    assert run["metric"]["job"] == pm.RUNS_JOB and run["metric"]["environment"] == ENVIRONMENT
    assert run["value"][1] == "0"
