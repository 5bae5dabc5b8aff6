"""Grafana dashboards of the shop and its pipeline, built as data with grafana-foundation-sdk; `python -m` writes infra/grafana/dashboards.

Five dashboards, each a pure function returning the dashboard's JSON model (a dict):
- `shop`: RED per route and per environment, the SLO recording rules, traffic per release,
  the edge (router) and the cache;
- `database_cache`: PostgreSQL (postgres exporter, the shop's pool) and Redis (redis exporter);
- `machine`: CPU, memory, load, disks, network (node exporter) and the scrape targets;
- `releases`: the serving release, lead times and the pipeline's runs, with release annotations;
- `backups_load_tests`: backup age and size, restore RTO/RPO, load-test p95 against the baseline.

Every panel reads Prometheus through the `$datasource` variable; `$environment` (from the
shop's scrape targets) and `$instance` (from the node exporter's) filter them. Where
infra/prometheus/rules has a recording rule for a figure, the panel reads the rule.

Release annotations come from the release ledger by way of the pipeline's pushed gauge
`shop_ops_release_finished_timestamp_seconds{environment, version}` (observability/pipeline_metrics.py):
the ledger is SQLite locally, which Grafana cannot read, so each release is pushed to the
Pushgateway, and the annotation query places a mark at the gauge's value
(`useValueForTime`). Traffic per release joins the shop's request counters with the pushed
`shop_ops_release_info{environment, version}` on `environment`: the shop's own metrics carry
no version label.

`python -m shop_ops.observability.dashboards [folder]` writes one `<name>.json` per dashboard
(default infra/grafana/dashboards); `--check` only says whether the files there are current.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "dashboards"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["shop-ops"]
ENV = 'environment=~"$environment"'
RATE = "$__rate_interval"
# Mirrors infra/prometheus/rules/machine.yml: writable, real file systems only.
REAL_FS = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|fuse.lxcfs"'
# What the shop's SLOs allow (infra/prometheus/README.md): burn rate = bad ratio / budget.
AVAILABILITY_BUDGET = 0.005
LATENCY_BUDGET = 0.05

PanelBuilder = Builder[model.Panel]


# ---------------------------------------------------------------------- building blocks
def _query(
    expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, table_format: bool = False
) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    if instant:
        query = query.instant()
    if table_format:
        query = query.format(PromQueryFormat.TABLE)
    return query


def _queries(panel: Any, queries: Sequence[tuple[str, str]], **kwargs: Any) -> Any:
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, ref=chr(ord("A") + index), **kwargs))
    return panel


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def _graph(title: str, description: str, unit: str, *queries: tuple[str, str], width: int = 12) -> PanelBuilder:
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    return _queries(panel, queries).span(width).height(8)


def _stat(
    title: str,
    description: str,
    unit: str,
    *queries: tuple[str, str],
    thresholds: dash.ThresholdsConfig | None = None,
    mappings: list[model.ValueMapping] | None = None,
    width: int = 6,
) -> PanelBuilder:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    )
    if thresholds is not None:
        panel = panel.thresholds(thresholds)
    if mappings:
        panel = panel.mappings(mappings)
    return _queries(panel, queries).span(width).height(5)


def _table(title: str, description: str, expr: str, width: int = 12) -> PanelBuilder:
    panel = table.Panel().title(title).description(description).datasource(DATASOURCE)
    return panel.with_target(_query(expr, ref="A", instant=True, table_format=True)).span(width).height(7)


def _datasource_variable() -> dash.DatasourceVariable:
    return dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def _environment_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("environment")
        .label("Environment")
        .datasource(DATASOURCE)
        .query('label_values(up{job="shop"}, environment)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".+")
    )


def _release_annotation() -> dash.AnnotationQuery:
    return (
        dash.AnnotationQuery()
        .name("Releases")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("blue")
        .expr(f"shop_ops_release_finished_timestamp_seconds{{{ENV}}} * 1000")
    )


# The Prometheus options of an annotation that the SDK's AnnotationQuery has no fields for.
_RELEASE_ANNOTATION_OPTIONS = {
    "useValueForTime": True,
    "step": "60s",
    "titleFormat": "{{environment}}: release {{version}}",
    "textFormat": "{{version}} went live in {{environment}} (release ledger, pushed by the pipeline)",
    "tagKeys": "environment,version",
}


def _base(uid: str, title: str, description: str, *, instance: bool = False) -> dash.Dashboard:
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(_datasource_variable())
    )
    if instance:
        return board.with_variable(
            dash.QueryVariable("instance")
            .label("Machine")
            .datasource(DATASOURCE)
            .query('label_values(node_uname_info{job="node"}, instance)')
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".+")
        )
    return board.with_variable(_environment_variable())


def _finish(board: dash.Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data: panel ids numbered in order, annotation options the SDK lacks added."""
    built = board.build()
    data: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    annotations = data.setdefault("annotations", {}).setdefault("list", [])
    annotations.insert(
        0,
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
    )
    for annotation in annotations:
        if annotation.get("name") == "Releases":
            annotation.update(_RELEASE_ANNOTATION_OPTIONS)
    return data


# ---------------------------------------------------------------------- dashboards
def shop() -> dict[str, Any]:
    """The shop: SLO figures per environment, RED per route, traffic per release, the router and the cache."""
    api = f'job="shop", {ENV}'
    per_release = (
        f"* on (environment) group_left (version) max by (environment, version) (shop_ops_release_info{{{ENV}}})"
    )
    board = (
        _base(
            "shop-ops-shop",
            "Shop: requests, errors, duration",
            "RED of the shop's backend per environment, route and release; the router and the cache.",
        )
        .annotation(_release_annotation())
        .with_row(dash.Row("Service level (API requests, rules of infra/prometheus/rules/shop-slo.yml)"))
        .with_panel(
            _stat(
                "Requests/s",
                "API requests per second, 5-minute rate.",
                "reqps",
                (f"environment:shop_http_requests:rate5m{{{ENV}}}", "{{environment}}"),
            )
        )
        .with_panel(
            _stat(
                "5xx ratio",
                "Share of API requests answered 5xx, 5-minute window; the SLO allows 0.5 %.",
                "percentunit",
                (f"environment:shop_http_requests_errors:ratio_rate5m{{{ENV}}}", "{{environment}}"),
                thresholds=_thresholds((None, "green"), (AVAILABILITY_BUDGET, "red")),
            )
        )
        .with_panel(
            _stat(
                "p95 duration",
                "95th percentile of API request durations, 5-minute window.",
                "s",
                (f"environment:shop_http_request_duration_seconds:p95_5m{{{ENV}}}", "{{environment}}"),
                thresholds=_thresholds((None, "green"), (0.2, "red")),
            )
        )
        .with_panel(
            _stat(
                "Within 200 ms",
                "Share of API requests served within 200 ms, 5-minute window; the SLO wants 95 %.",
                "percentunit",
                (f"1 - environment:shop_http_requests_slow:ratio_rate5m{{{ENV}}}", "{{environment}}"),
                thresholds=_thresholds((None, "red"), (1 - LATENCY_BUDGET, "green")),
            )
        )
        .with_panel(
            _graph(
                "Error budget burn rate (1 h)",
                "How many times faster than the SLO allows the budgets burn; 14.4 over 1 h pages.",
                "x",
                (
                    f"environment:shop_http_requests_errors:ratio_rate1h{{{ENV}}} / {AVAILABILITY_BUDGET}",
                    "{{environment}} availability",
                ),
                (
                    f"environment:shop_http_requests_slow:ratio_rate1h{{{ENV}}} / {LATENCY_BUDGET}",
                    "{{environment}} latency",
                ),
                width=24,
            )
        )
        .with_row(dash.Row("Per route (rate, errors, duration)"))
        .with_panel(
            _graph(
                "Requests/s per route",
                "Every request the backend counted, by method and route.",
                "reqps",
                (
                    f"sum by (environment, method, route) (rate(shop_http_requests_total{{{api}}}[{RATE}]))",
                    "{{environment}} {{method}} {{route}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "5xx/s per route",
                "Server errors by route (0 where a route served none).",
                "reqps",
                (
                    f'sum by (environment, method, route) (rate(shop_http_requests_total{{{api}, status=~"5.."}}[{RATE}]))'
                    f" or 0 * sum by (environment, method, route) (rate(shop_http_requests_total{{{api}}}[{RATE}]))",
                    "{{environment}} {{method}} {{route}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "p95 duration per route",
                "95th percentile per API route, 5-minute window (recording rule).",
                "s",
                (
                    f"environment_route:shop_http_request_duration_seconds:p95_5m{{{ENV}}}",
                    "{{environment}} {{method}} {{route}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "Responses per status",
                "Every response by status code.",
                "reqps",
                (
                    f"sum by (environment, status) (rate(shop_http_requests_total{{{api}}}[{RATE}]))",
                    "{{environment}} {{status}}",
                ),
            )
        )
        .with_row(dash.Row("Per release (joined with the release the pipeline pushed)"))
        .with_panel(
            _graph(
                "Requests/s per release",
                "API requests per environment and serving release.",
                "reqps",
                (
                    f'sum by (environment) (rate(shop_http_requests_total{{{api}, route=~"/api/.+"}}[{RATE}])) {per_release}',
                    "{{environment}} {{version}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "5xx ratio per release",
                "Share of API requests answered 5xx per environment and serving release.",
                "percentunit",
                (
                    f'(sum by (environment) (rate(shop_http_requests_total{{{api}, route=~"/api/.+", status=~"5.."}}[{RATE}]))'
                    f' or 0 * sum by (environment) (rate(shop_http_requests_total{{{api}, route=~"/api/.+"}}[{RATE}])))'
                    f' / sum by (environment) (rate(shop_http_requests_total{{{api}, route=~"/api/.+"}}[{RATE}])) {per_release}',
                    "{{environment}} {{version}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "p95 duration per release",
                "95th percentile of API request durations per environment and serving release.",
                "s",
                (
                    f"histogram_quantile(0.95, sum by (environment, version, le) (sum by (environment, le) "
                    f'(rate(shop_http_request_duration_seconds_bucket{{{api}, route=~"/api/.+"}}[{RATE}])) {per_release}))',
                    "{{environment}} {{version}}",
                ),
                width=24,
            )
        )
        .with_row(dash.Row("Router and cache"))
        .with_panel(
            _stat(
                "Backends up",
                "Scrape health of the serving slot's backend.",
                "none",
                (f"up{{{api}}}", "{{environment}} {{slot}}"),
                mappings=[
                    model.ValueMap(
                        options={
                            "0": model.ValueMappingResult(text="down", color="red"),
                            "1": model.ValueMappingResult(text="up", color="green"),
                        }
                    )
                ],
            )
        )
        .with_panel(
            _stat(
                "Router up",
                "The nginx exporter reaches the router's stub_status page.",
                "none",
                (f'nginx_up{{job="router", {ENV}}}', "{{environment}}"),
                mappings=[
                    model.ValueMap(
                        options={
                            "0": model.ValueMappingResult(text="down", color="red"),
                            "1": model.ValueMappingResult(text="up", color="green"),
                        }
                    )
                ],
            )
        )
        .with_panel(
            _graph(
                "Router requests/s",
                "Requests nginx handled (all locations, the edge cache's hits included).",
                "reqps",
                (
                    f'sum by (environment) (rate(nginx_http_requests_total{{job="router", {ENV}}}[{RATE}]))',
                    "{{environment}}",
                ),
                width=6,
            )
        )
        .with_panel(
            _graph(
                "Router connections",
                "Open client connections of the router.",
                "short",
                (f'nginx_connections_active{{job="router", {ENV}}}', "{{environment}} active"),
                (f'nginx_connections_waiting{{job="router", {ENV}}}', "{{environment}} idle keep-alive"),
                width=6,
            )
        )
        .with_panel(
            _graph(
                "Cache hit ratio",
                "The backend's cache lookups that hit, per level (in-process and Redis).",
                "percentunit",
                (
                    f'(sum by (environment, level) (rate(shop_cache_requests_total{{{api}, result="hit"}}[{RATE}]))'
                    f" or 0 * sum by (environment, level) (rate(shop_cache_requests_total{{{api}}}[{RATE}])))"
                    f" / sum by (environment, level) (rate(shop_cache_requests_total{{{api}}}[{RATE}]))",
                    "{{environment}} {{level}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "DB pool in use",
                "Connections the backend's pool has checked out, of its size (recording rule).",
                "percentunit",
                (f"environment:shop_db_pool_checked_out:ratio{{{ENV}}}", "{{environment}}"),
            )
        )
    )
    return _finish(board)


def database_cache() -> dict[str, Any]:
    """PostgreSQL and Redis of each environment, through their exporters."""
    pg = f'job="postgres", {ENV}'
    rd = f'job="redis", {ENV}'
    updown = [
        model.ValueMap(
            options={
                "0": model.ValueMappingResult(text="down", color="red"),
                "1": model.ValueMappingResult(text="up", color="green"),
            }
        )
    ]
    board = (
        _base(
            "shop-ops-data",
            "Shop: database and cache",
            "PostgreSQL (postgres exporter) and Redis (redis exporter) per environment.",
        )
        .annotation(_release_annotation())
        .with_row(dash.Row("PostgreSQL"))
        .with_panel(
            _stat(
                "PostgreSQL up",
                "The exporter's last connection to the cluster worked.",
                "none",
                (f"pg_up{{{pg}}}", "{{environment}}"),
                mappings=updown,
            )
        )
        .with_panel(
            _stat(
                "Connections used",
                "Of the connections ordinary roles may open (max_connections minus the superuser reserve; recording rule).",
                "percentunit",
                (f"environment_instance:pg_connections_used:ratio{{{ENV}}}", "{{environment}}"),
                thresholds=_thresholds((None, "green"), (0.8, "orange"), (0.95, "red")),
            )
        )
        .with_panel(
            _stat(
                "Database size",
                "Size of each database of the cluster.",
                "bytes",
                (f'sum by (environment) (pg_database_size_bytes{{{pg}, datname!~"template.*"}})', "{{environment}}"),
            )
        )
        .with_panel(
            _stat(
                "Seconds since the last archived WAL",
                "NaN until a segment was archived; the backups' freshness check owns alerting on it.",
                "s",
                (f"pg_stat_archiver_last_archive_age{{{pg}}}", "{{environment}}"),
            )
        )
        .with_panel(
            _graph(
                "Backends per database",
                "Connections per database.",
                "short",
                (f'pg_stat_database_numbackends{{{pg}, datname!~"template.*"}}', "{{environment}} {{datname}}"),
            )
        )
        .with_panel(
            _graph(
                "Transactions/s",
                "Commits and rollbacks over all databases.",
                "ops",
                (
                    f"sum by (environment) (rate(pg_stat_database_xact_commit{{{pg}}}[{RATE}]))",
                    "{{environment}} commits",
                ),
                (
                    f"sum by (environment) (rate(pg_stat_database_xact_rollback{{{pg}}}[{RATE}]))",
                    "{{environment}} rollbacks",
                ),
            )
        )
        .with_panel(
            _graph(
                "WAL archiving",
                "Segments archived and archive_command failures in the last hour.",
                "short",
                (f"increase(pg_stat_archiver_archived_count{{{pg}}}[1h])", "{{environment}} archived"),
                (f"increase(pg_stat_archiver_failed_count{{{pg}}}[1h])", "{{environment}} failed"),
            )
        )
        .with_panel(
            _graph(
                "Shop's pool in use",
                "Connections the backend's pool has checked out, of its size (recording rule).",
                "percentunit",
                (f"environment:shop_db_pool_checked_out:ratio{{{ENV}}}", "{{environment}}"),
            )
        )
        .with_row(dash.Row("Redis"))
        .with_panel(
            _stat(
                "Redis up",
                "The exporter's last connection to Redis worked.",
                "none",
                (f"redis_up{{{rd}}}", "{{environment}}"),
                mappings=updown,
            )
        )
        .with_panel(
            _stat("Clients", "Connected clients.", "short", (f"redis_connected_clients{{{rd}}}", "{{environment}}"))
        )
        .with_panel(
            _graph(
                "Memory",
                "Memory in use and the maxmemory limit (0: no limit).",
                "bytes",
                (f"redis_memory_used_bytes{{{rd}}}", "{{environment}} used"),
                (f"redis_memory_max_bytes{{{rd}}}", "{{environment}} maxmemory"),
            )
        )
        .with_panel(
            _graph(
                "Evicted keys/s",
                "Keys dropped by the maxmemory policy (carts included).",
                "ops",
                (f"rate(redis_evicted_keys_total{{{rd}}}[{RATE}])", "{{environment}}"),
            )
        )
        .with_panel(
            _graph(
                "Commands/s",
                "Commands Redis processed.",
                "ops",
                (f"rate(redis_commands_processed_total{{{rd}}}[{RATE}])", "{{environment}}"),
            )
        )
        .with_panel(
            _graph(
                "Keyspace hit ratio",
                "Lookups of existing keys, of all lookups.",
                "percentunit",
                (
                    f"rate(redis_keyspace_hits_total{{{rd}}}[{RATE}]) / (rate(redis_keyspace_hits_total{{{rd}}}[{RATE}]) + rate(redis_keyspace_misses_total{{{rd}}}[{RATE}]))",
                    "{{environment}}",
                ),
            )
        )
    )
    return _finish(board)


def machine() -> dict[str, Any]:
    """The machines: CPU, memory, load, disks, network (node exporter) and every scrape target's health."""
    node = 'job="node", instance=~"$instance"'
    board = (
        _base(
            "shop-ops-machine",
            "Shop: machine",
            "The machines the shop runs on (node exporter) and Prometheus's targets.",
            instance=True,
        )
        .with_row(dash.Row("CPU and memory"))
        .with_panel(
            _stat(
                "CPU busy",
                "Busy share of all CPUs, 5-minute average (recording rule; HostHighCpu at 90 %).",
                "percentunit",
                ('instance:node_cpu_utilisation:rate5m{instance=~"$instance"}', "{{instance}}"),
                thresholds=_thresholds((None, "green"), (0.9, "red")),
            )
        )
        .with_panel(
            _stat(
                "Memory used",
                "Of the memory, what is not available to new processes.",
                "percentunit",
                (
                    f"1 - node_memory_MemAvailable_bytes{{{node}}} / node_memory_MemTotal_bytes{{{node}}}",
                    "{{instance}}",
                ),
                thresholds=_thresholds((None, "green"), (0.9, "red")),
            )
        )
        .with_panel(
            _stat(
                "Load (1 min)",
                "Runnable and uninterruptible tasks, per CPU.",
                "short",
                (
                    f'node_load1{{{node}}} / on (instance) count by (instance) (node_cpu_seconds_total{{{node}, mode="idle"}})',
                    "{{instance}}",
                ),
            )
        )
        .with_panel(
            _stat(
                "Up for",
                "Since the machine booted.",
                "s",
                (f"node_time_seconds{{{node}}} - node_boot_time_seconds{{{node}}}", "{{instance}}"),
            )
        )
        .with_panel(
            _graph(
                "CPU by mode",
                "Share of all CPUs per mode (idle left out).",
                "percentunit",
                (
                    f'sum by (instance, mode) (rate(node_cpu_seconds_total{{{node}, mode!="idle"}}[{RATE}]))'
                    f' / on (instance) group_left count by (instance) (node_cpu_seconds_total{{{node}, mode="idle"}})',
                    "{{instance}} {{mode}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "Load",
                "Load averages.",
                "short",
                (f"node_load1{{{node}}}", "{{instance}} 1m"),
                (f"node_load5{{{node}}}", "{{instance}} 5m"),
                (f"node_load15{{{node}}}", "{{instance}} 15m"),
            )
        )
        .with_row(dash.Row("Disks and network"))
        .with_panel(
            _graph(
                "Disk space left",
                "Free share of each writable file system (recording rule; disk alerts below 40/20/5 %).",
                "percentunit",
                (
                    'instance_mountpoint:node_filesystem_avail:ratio{instance=~"$instance"}',
                    "{{instance}} {{mountpoint}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "Space left in 24 h",
                "Free bytes a day ahead at the last 6 hours' trend (below 0: full within a day).",
                "bytes",
                (
                    f"predict_linear(node_filesystem_avail_bytes{{{node}, {REAL_FS}}}[6h], 24 * 3600)",
                    "{{instance}} {{mountpoint}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "Disk I/O",
                "Bytes read and written per second, per disk.",
                "Bps",
                (f"rate(node_disk_read_bytes_total{{{node}}}[{RATE}])", "{{instance}} {{device}} read"),
                (f"rate(node_disk_written_bytes_total{{{node}}}[{RATE}])", "{{instance}} {{device}} written"),
            )
        )
        .with_panel(
            _graph(
                "Network",
                "Bytes received and sent per second, per interface.",
                "Bps",
                (f"rate(node_network_receive_bytes_total{{{node}}}[{RATE}])", "{{instance}} {{device}} in"),
                (f"rate(node_network_transmit_bytes_total{{{node}}}[{RATE}])", "{{instance}} {{device}} out"),
            )
        )
        .with_row(dash.Row("Scrape targets"))
        .with_panel(
            _graph(
                "Targets up per job",
                "Targets Prometheus scraped successfully, of all its targets, per job.",
                "percentunit",
                ("sum by (job) (up) / count by (job) (up)", "{{job}}"),
                width=24,
            )
        )
    )
    return _finish(board)


def releases() -> dict[str, Any]:
    """Releases (annotations from the ledger, pushed by the pipeline), their lead times and the pipeline's runs."""
    outcome = [
        model.ValueMap(
            options={
                "0": model.ValueMappingResult(text="failed", color="red"),
                "1": model.ValueMappingResult(text="succeeded", color="green"),
            }
        )
    ]
    board = (
        _base(
            "shop-ops-releases",
            "Shop: releases and pipeline runs",
            "What serves each environment, how long releases took, and the pipeline's latest runs.",
        )
        .annotation(_release_annotation())
        .with_row(dash.Row("Releases"))
        .with_panel(
            _table(
                "Serving release",
                "The release the pipeline last put live in each environment.",
                f"shop_ops_release_info{{{ENV}}}",
            )
        )
        .with_panel(
            _stat(
                "Lead time",
                "From the image push to serving, for the release live now.",
                "s",
                (f"shop_ops_release_lead_time_seconds{{{ENV}}}", "{{environment}} {{version}}"),
            )
        )
        .with_panel(
            _stat(
                "Since the last release",
                "Time since a release last went live.",
                "s",
                (
                    f"time() - max by (environment) (shop_ops_release_finished_timestamp_seconds{{{ENV}}})",
                    "{{environment}}",
                ),
            )
        )
        .with_panel(
            _graph(
                "Lead time per release",
                "Lead time of each release while it served.",
                "s",
                (f"shop_ops_release_lead_time_seconds{{{ENV}}}", "{{environment}} {{version}}"),
            )
        )
        .with_panel(
            _graph(
                "5xx ratio around releases",
                "Share of API requests answered 5xx (recording rule), with the releases marked.",
                "percentunit",
                (f"environment:shop_http_requests_errors:ratio_rate5m{{{ENV}}}", "{{environment}}"),
            )
        )
        .with_row(dash.Row("Pipeline runs (latest per Dagster job)"))
        .with_panel(
            _stat(
                "Latest outcome",
                "Whether each job's latest run succeeded; failed runs alert through run_failure_alert_sensor.",
                "none",
                ("shop_ops_run_success", "{{dagster_job}} {{environment}}"),
                mappings=outcome,
                width=12,
            )
        )
        .with_panel(
            _stat(
                "Since the latest run",
                "Time since each job's latest run finished.",
                "s",
                ("time() - shop_ops_run_finished_timestamp_seconds", "{{dagster_job}} {{environment}}"),
                width=12,
            )
        )
        .with_panel(
            _graph(
                "Run duration",
                "Wall time of each job's latest run.",
                "s",
                ("shop_ops_run_duration_seconds", "{{dagster_job}} {{environment}}"),
                width=24,
            )
        )
    )
    return _finish(board)


def backups_load_tests() -> dict[str, Any]:
    """Backups, restore tests and load tests, from the figures the pipeline pushes."""
    board = (
        _base(
            "shop-ops-backups",
            "Shop: backups and load tests",
            "Backup age and size, restore RTO/RPO and load-test p95, as the pipeline pushed them.",
        )
        .annotation(_release_annotation())
        .with_row(dash.Row("Backups and restore tests"))
        .with_panel(
            _stat(
                "Backup age",
                "Since the newest verified backup finished (the backups' freshness sensor alerts; this only shows).",
                "s",
                (f"time() - shop_ops_backup_last_success_timestamp_seconds{{{ENV}}}", "{{environment}}"),
                thresholds=_thresholds((None, "green"), (26 * 3600, "red")),
            )
        )
        .with_panel(
            _stat(
                "Restore RTO",
                "Recovery time of the latest restore test.",
                "s",
                (f"shop_ops_restore_rto_seconds{{{ENV}}}", "{{environment}}"),
            )
        )
        .with_panel(
            _stat(
                "Restore RPO",
                "Data lost in the latest restore test.",
                "s",
                (f"shop_ops_restore_rpo_seconds{{{ENV}}}", "{{environment}}"),
            )
        )
        .with_panel(
            _stat(
                "Since the last restore test",
                "Time since a restore test finished.",
                "s",
                (f"time() - shop_ops_restore_finished_timestamp_seconds{{{ENV}}}", "{{environment}}"),
            )
        )
        .with_panel(
            _graph(
                "Backup size",
                "Size of the newest verified backup.",
                "bytes",
                (f"shop_ops_backup_size_bytes{{{ENV}}}", "{{environment}}"),
            )
        )
        .with_panel(
            _graph(
                "RTO and RPO",
                "Recovery time and recovery point of each restore test.",
                "s",
                (f"shop_ops_restore_rto_seconds{{{ENV}}}", "{{environment}} RTO"),
                (f"shop_ops_restore_rpo_seconds{{{ENV}}}", "{{environment}} RPO"),
            )
        )
        .with_row(dash.Row("Load tests (k6)"))
        .with_panel(
            _graph(
                "Load-test p95 per scenario",
                "p95 of the latest k6 run and of its baseline, per scenario.",
                "s",
                (f"shop_ops_load_test_p95_seconds{{{ENV}}}", "{{environment}} {{scenario}}"),
                (f"shop_ops_load_test_baseline_p95_seconds{{{ENV}}}", "{{environment}} {{scenario}} baseline"),
            )
        )
        .with_panel(
            _graph(
                "p95 against the baseline",
                "Latest p95 divided by the baseline's, per scenario (above 1: slower).",
                "x",
                (
                    f"shop_ops_load_test_p95_seconds{{{ENV}}} / shop_ops_load_test_baseline_p95_seconds{{{ENV}}}",
                    "{{environment}} {{scenario}}",
                ),
            )
        )
        .with_panel(
            _stat(
                "Since the last load test",
                "Time since a k6 run finished.",
                "s",
                (f"time() - shop_ops_load_test_finished_timestamp_seconds{{{ENV}}}", "{{environment}}"),
                width=12,
            )
        )
        .with_panel(
            _stat(
                "Live p95",
                "p95 of real API traffic now (recording rule), beside the load test's.",
                "s",
                (f"environment:shop_http_request_duration_seconds:p95_5m{{{ENV}}}", "{{environment}}"),
                width=12,
            )
        )
    )
    return _finish(board)


DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "shop": shop,
    "database-cache": database_cache,
    "machine": machine,
    "releases": releases,
    "backups-load-tests": backups_load_tests,
}


# ---------------------------------------------------------------------- output
def render(data: dict[str, Any]) -> str:
    """A dashboard's JSON text as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def panel_queries(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and annotation query of a dashboard, rows' panels included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]))
            walk(panel.get("panels", []))

    walk(data.get("panels", []))
    for annotation in data.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            found.append((f"annotation {annotation.get('name')!r}", annotation["expr"]))
    return found


def write(folder: Path = DEFAULT_FOLDER) -> list[Path]:
    """Write every dashboard as `<name>.json` into `folder`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in DASHBOARDS.items():
        path = folder / f"{name}.json"
        path.write_text(render(build()))
        paths.append(path)
    return paths


def stale(folder: Path = DEFAULT_FOLDER) -> list[str]:
    """Names of the dashboards whose file in `folder` is missing or differs from what the code builds."""
    out = []
    for name, build in DASHBOARDS.items():
        path = folder / f"{name}.json"
        if not path.is_file() or path.read_text() != render(build()):
            out.append(name)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards (or, with --check, report the stale ones and exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m shop_ops.observability.dashboards", description=__doc__.splitlines()[0]
    )
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="where the JSON files go")
    parser.add_argument("--check", action="store_true", help="only check that the files are current")
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.folder)
        if names:
            print(
                f"stale dashboards in {args.folder}: {', '.join(names)}: run python -m shop_ops.observability.dashboards",
                file=sys.stderr,
            )
            return 1
        print(f"{len(DASHBOARDS)} dashboards in {args.folder} are current")
        return 0
    for path in write(args.folder):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
