"""A real Prometheus scrapes the real shop with the repository's rules, and its discovery follows a blue/green switch.

Prometheus (Debian's `prometheus`) runs on a free port with 1 s scrape and evaluation intervals,
the rules of infra/prometheus/rules and the configuration shop_ops.observability.prometheus
renders; the shop's discovery file points at the session's shop backend as staging, slot blue.
After some requests: the target is up with its labels, the SLO recording rules give series for
staging, every rule evaluates without error; then the file is rewritten to slot green and the
scrape follows it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shop_ops.observability import prometheus as prom
from shop_ops.services.discovery import write_shop_targets
from shop_ops.services.processes import PrometheusServer, ServiceError, free_port
from tests.support import ShopServer, wait_until

pytestmark = pytest.mark.services  # runs prometheus and promtool, outside programs

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "infra" / "prometheus" / "rules").glob("*.yml"))
WAIT_S = 30


def shop_targets(url: str) -> list[dict[str, Any]]:
    return [t for t in prom.targets(url) if t["labels"].get("job") == "shop"]


def some_requests(server: ShopServer, count: int = 5) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(count):
            assert client.get("/api/products").status_code == 200


@pytest.fixture(scope="module")
def prometheus(server: ShopServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus scraping the shop backend as staging/blue, and itself."""
    folder = tmp_path_factory.mktemp("prometheus")
    discovery = folder / "targets"
    write_shop_targets(discovery, "staging", [("blue", f"127.0.0.1:{server.port}")])
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        prom.render_config(
            scrape_interval_s=1, evaluation_interval_s=1, rule_files=RULE_FILES, shop_targets_dir=discovery,
            prometheus=f"127.0.0.1:{port}",
        )
    )  # fmt: skip
    srv = PrometheusServer(datadir=folder / "server", port=port, config=config, retention="1d")
    srv.start()
    yield srv
    srv.stop()
    assert not srv.running()


def test_render_config_lists_every_job_with_its_labels(tmp_path: Path, promtool: str) -> None:
    text = prom.render_config(
        scrape_interval_s=0.5, evaluation_interval_s=15, rule_files=RULE_FILES, shop_targets_dir=tmp_path,
        alertmanagers=["127.0.0.1:9093"],
        postgres=[prom.Target("127.0.0.1:9187", "staging"), prom.Target("127.0.0.1:9188", "production")],
        redis=[prom.Target("127.0.0.1:9121", "staging"), prom.Target("127.0.0.1:9121", "production")],
        router=[prom.Target("127.0.0.1:9113", "staging")],
        node=[prom.Target("127.0.0.1:9100")],
        prometheus="127.0.0.1:9090",
    )  # fmt: skip
    config = yaml.safe_load(text)
    assert config["global"] == {"scrape_interval": "500ms", "scrape_timeout": "500ms", "evaluation_interval": "15s"}
    assert config["rule_files"] == [str(p) for p in RULE_FILES]
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == ["shop", "postgres", "redis", "router", "node", "prometheus", "alertmanager"]
    assert jobs["shop"]["file_sd_configs"][0]["files"] == [str(tmp_path / "shop-*.json")]
    assert jobs["postgres"]["static_configs"] == [
        {"targets": ["127.0.0.1:9187"], "labels": {"environment": "staging"}},
        {"targets": ["127.0.0.1:9188"], "labels": {"environment": "production"}},
    ]
    # One Redis serving both environments: the same target twice, one per environment label.
    assert [c["labels"]["environment"] for c in jobs["redis"]["static_configs"]] == ["staging", "production"]
    assert jobs["node"]["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:9090"]}]
    # Only the jobs given: no empty static jobs.
    minimal = yaml.safe_load(
        prom.render_config(scrape_interval_s=1, evaluation_interval_s=1, rule_files=[], shop_targets_dir=tmp_path)
    )
    assert [job["job_name"] for job in minimal["scrape_configs"]] == ["shop"]
    assert "alerting" not in minimal
    with pytest.raises(ValueError, match="not absolute"):
        prom.render_config(
            scrape_interval_s=1, evaluation_interval_s=1, rule_files=[Path("rules.yml")], shop_targets_dir=tmp_path
        )
    # promtool accepts it (and the rule files it names).
    (tmp_path / "prometheus.yml").write_text(text)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_write_shop_targets_replaces_the_file_whole(tmp_path: Path) -> None:
    path = write_shop_targets(tmp_path, "production", [("green", "127.0.0.1:8102")])
    assert path == tmp_path / "shop-production.json"
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:8102"], "labels": {"environment": "production", "slot": "green"}}
    ]
    write_shop_targets(tmp_path, "production", [])
    assert json.loads(path.read_text()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop-production.json"]  # no temp file left
    with pytest.raises(ValueError, match="slot"):
        write_shop_targets(tmp_path, "production", [("purple", "127.0.0.1:1")])
    with pytest.raises(ValueError, match="not a plain name"):
        write_shop_targets(tmp_path, "../etc", [("blue", "127.0.0.1:1")])


def test_the_rendered_config_of_the_running_server_passes_promtool(prometheus: PrometheusServer, promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "config", str(prometheus.config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_shop_is_scraped_with_its_environment_and_slot(prometheus: PrometheusServer, server: ShopServer) -> None:
    some_requests(server)

    def up_target() -> dict[str, Any] | None:
        return next((t for t in shop_targets(prometheus.url) if t["health"] == "up"), None)

    target = wait_until("an up target of job shop", up_target)
    assert target["labels"]["environment"] == "staging"
    assert target["labels"]["slot"] == "blue"
    assert target["labels"]["instance"] == f"127.0.0.1:{server.port}"
    # Its own scrape may come a moment after the shop's first one.
    itself = wait_until('up{job="prometheus"}', lambda: prom.query(prometheus.url, 'up{job="prometheus"}'))
    assert itself[0]["value"][1] == "1"


@pytest.mark.parametrize(
    "record",
    ["environment:shop_http_requests:rate5m", "environment:shop_http_requests_errors:ratio_rate5m",
     "environment:shop_http_requests_slow:ratio_rate5m",
     "environment:shop_http_request_duration_seconds:p95_5m"],
)  # fmt: skip
def test_slo_recording_rules_give_series_for_staging(
    prometheus: PrometheusServer, server: ShopServer, record: str
) -> None:
    def series() -> list[dict[str, Any]]:
        some_requests(server, 2)  # the counters must move between two scrapes
        return prom.query(prometheus.url, f'{record}{{environment="staging"}}')

    found = wait_until(f'{record}{{environment="staging"}}', series)
    assert [s["metric"] for s in found] == [{"__name__": record, "environment": "staging"}]


def test_every_rule_evaluates_without_error(prometheus: PrometheusServer) -> None:
    loaded = {Path(g["file"]).name for g in prom.rule_groups(prometheus.url)}
    assert loaded == {p.name for p in RULE_FILES}

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [dict(r, group=g["name"]) for g in prom.rule_groups(prometheus.url) for r in g["rules"]]
        return rules if all(r["health"] != "unknown" for r in rules) else None

    rules = wait_until("every rule evaluated once", evaluated)
    bad = [(r["group"], r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, "\n".join(map(str, bad))


def test_the_scrape_follows_a_blue_green_switch(prometheus: PrometheusServer, server: ShopServer) -> None:
    """After the tests that expect slot blue: it moves the backend to slot green (same port; no second backend needed)."""
    write_shop_targets(prometheus.datadir.parent / "targets", "staging", [("green", f"127.0.0.1:{server.port}")])

    def switched() -> list[dict[str, Any]] | None:
        found = shop_targets(prometheus.url)
        slots = {t["labels"].get("slot") for t in found}
        return found if slots == {"green"} and all(t["health"] == "up" for t in found) else None

    found = wait_until("only slot green scraped, and up", switched)
    assert [t["labels"]["environment"] for t in found] == ["staging"]
    up = wait_until('up{job="shop", slot="green"}', lambda: prom.query(prometheus.url, 'up{job="shop", slot="green"}'))
    assert up[0]["value"][1] == "1"


def test_api_errors_are_named(prometheus: PrometheusServer) -> None:
    with pytest.raises(prom.PrometheusApiError, match="bad_data"):
        prom.query(prometheus.url, "sum(")
    with pytest.raises(prom.PrometheusApiError, match="cannot be reached"):
        prom.targets(f"http://127.0.0.1:{free_port()}")


def test_start_names_a_taken_port_and_a_missing_binary(
    prometheus: PrometheusServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = PrometheusServer(
        datadir=tmp_path / "second", port=prometheus.port, config=prometheus.config, retention="1d"
    )
    with pytest.raises(ServiceError, match=f"port {prometheus.port} for Prometheus is already in use"):
        second.start()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="install Debian's prometheus package"):
        second.start()
    assert second.process is None
