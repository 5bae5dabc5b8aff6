"""The local environment's monitoring: Prometheus, Alertmanager, the Pushgateway and the exporters, under `<state>/monitoring`.

    monitoring/prometheus/      prometheus.yml (rendered on every `up`), TSDB, pid file, log
    monitoring/alertmanager/    alertmanager.yml (rendered on every `up`: file references, no secret),
                                silences and notification state, pid file, log
    secrets/alertmanager/       the notifier's secrets given as variables, as 0600 files
    monitoring/pushgateway/     the pipeline's pushed figures (persisted), pid file, log
    monitoring/exporters/<name>/   node, redis, postgres-<env>, router-<env>: pid file, log
    prometheus/targets/         the shop's backends by file-based discovery (the routers rewrite it)

Prometheus reads the repository's rules (infra/prometheus/rules) and scrapes the exporters, the
shop's serving slots, itself and the Pushgateway, every `observability.scrape_interval_seconds`.
Alertmanager delivers to the notifier's channels (SHOP_OPS_SLACK_*, SHOP_OPS_SMTP_*: see
shop_ops/resources/notifier.py); without any, alerts show in its UI only, and `up` says so.
Ports come from `observability:` in the settings; everything binds 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from shop_ops.observability import alertmanager as am
from shop_ops.observability import prometheus as prom
from shop_ops.services.exporters import (
    Exporter,
    NginxExporter,
    NodeExporter,
    PostgresExporter,
    Pushgateway,
    RedisExporter,
)
from shop_ops.services.processes import AlertmanagerServer, PrometheusServer
from shop_ops.settings import Settings

Step = Callable[[str], AbstractContextManager[None]]
Undo = Callable[[str, Callable[[], None]], None]


class Monitoring:
    """The monitoring services of one local stack, found and controlled through its state folder."""

    def __init__(
        self, settings: Settings, router_status_urls: dict[str, str], dsns: dict[str, str], redis_port: int
    ) -> None:
        self.settings = settings
        obs = settings.observability
        self.folder = settings.state_path / "monitoring"
        self.rules = sorted((settings.infra_path / "prometheus" / "rules").glob("*.yml"))
        self.prometheus = PrometheusServer(
            datadir=self.folder / "prometheus",
            port=obs.prometheus_port,
            config=self.folder / "prometheus" / "prometheus.yml",
            retention=f"{obs.retention_days}d",
        )
        self.alertmanager = AlertmanagerServer(
            datadir=self.folder / "alertmanager",
            port=obs.alertmanager_port,
            config=self.folder / "alertmanager" / "alertmanager.yml",
        )
        self.pushgateway = Pushgateway(self.folder / "pushgateway", obs.pushgateway_port)
        ports = obs.exporter_ports(list(settings.environments))
        exporters = self.folder / "exporters"
        self.exporters: dict[str, Exporter] = {
            "node": NodeExporter(exporters / "node", ports["node"]),
            "redis": RedisExporter(exporters / "redis", ports["redis"], redis_address=f"127.0.0.1:{redis_port}"),
        }
        for env in settings.environments:
            self.exporters[f"postgres-{env}"] = PostgresExporter(
                exporters / f"postgres-{env}", ports[f"postgres-{env}"],
                dsn=dsns[env], password_file=settings.database_password_file(env),
            )  # fmt: skip
            self.exporters[f"router-{env}"] = NginxExporter(
                exporters / f"router-{env}", ports[f"router-{env}"], status_url=router_status_urls[env]
            )

    # ------------------------------------------------------------------ configuration
    def render(self) -> str:
        """prometheus.yml for this stack (targets with their environment label)."""
        envs = list(self.settings.environments)
        obs = self.settings.observability

        def per_env(kind: str) -> list[prom.Target]:
            return [prom.Target(self.exporters[f"{kind}-{env}"].address, env) for env in envs]

        return prom.render_config(
            scrape_interval_s=obs.scrape_interval_seconds,
            evaluation_interval_s=obs.evaluation_interval_seconds,
            rule_files=[path.resolve() for path in self.rules],
            shop_targets_dir=self.settings.metrics_targets_dir().resolve(),
            postgres=per_env("postgres"),
            # One Redis serves both environments (a database each): its target once per environment label.
            redis=[prom.Target(self.exporters["redis"].address, env) for env in envs],
            router=per_env("router"),
            node=[prom.Target(self.exporters["node"].address)],
            prometheus=f"127.0.0.1:{self.prometheus.port}",
            pushgateway=self.pushgateway.address,
            alertmanagers=[f"127.0.0.1:{self.alertmanager.port}"],
        )

    def render_alertmanager(self) -> tuple[str, am.Delivery]:
        """alertmanager.yml for the notifier's channels (secrets as file references only) and those channels."""
        delivery = am.delivery_from_env(self.settings.state_path / "secrets" / "alertmanager")
        return am.render_config(delivery=delivery, require_channel=False), delivery

    def ports(self) -> list[tuple[int, str, Callable[[], bool]]]:
        """(port, service, is-it-ours-and-running) for the stack's port check."""
        plan: list[tuple[int, str, Callable[[], bool]]] = [
            (self.prometheus.port, "prometheus", self.prometheus.running),
            (self.pushgateway.port, "pushgateway", self.pushgateway.running),
            (self.alertmanager.port, "alertmanager", self.alertmanager.running),
        ]
        plan += [(e.port, f"{name} exporter", e.running) for name, e in self.exporters.items()]
        return plan

    def services(self) -> Iterator[tuple[str, Any]]:
        """(name, service) in start order: exporters and the gateway first, then the Prometheus that scrapes them."""
        yield from ((f"{name} exporter", exporter) for name, exporter in self.exporters.items())
        yield "pushgateway", self.pushgateway

    # ------------------------------------------------------------------ lifecycle
    def up(self, step: Step, say: Callable[[str], None], undo: Undo) -> None:
        """Start whatever is not running; rewrite prometheus.yml and reload a running Prometheus if it changed."""
        for name, service in self.services():
            if service.running():
                say(f"{name} on {service.url} ... already running")
                continue
            with step(f"starting the {name} on {service.url}"):
                service.start()
            undo(name, service.stop)
        config, delivery = self.render_alertmanager()
        if not delivery.channels:
            say(
                "alertmanager: no Slack or SMTP settings (SHOP_OPS_SLACK_*, SHOP_OPS_SMTP_*): alerts show in its UI only"
            )
        _up_configured("alertmanager", self.alertmanager, config, am.reload, step, say, undo)
        _up_configured("prometheus", self.prometheus, self.render(), prom.reload, step, say, undo)

    def down(self, stop: Callable[[str, Callable[[], bool], Callable[[], None]], None]) -> None:
        stop("prometheus", self.prometheus.running, self.prometheus.stop)
        stop("alertmanager", self.alertmanager.running, self.alertmanager.stop)
        for name, service in reversed(list(self.services())):
            stop(name, service.running, service.stop)

    def status(self) -> dict[str, Any]:
        """Each service's URL and whether it runs; Prometheus's targets that are not up, by job and instance."""
        result: dict[str, Any] = {
            "prometheus": {
                "url": self.prometheus.url,
                "up": self.prometheus.running(),
                "data": str(self.prometheus.tsdb),
            },
            "pushgateway": {"url": self.pushgateway.url, "up": self.pushgateway.running()},
            "alertmanager": {
                "url": self.alertmanager.url,
                "up": self.alertmanager.running() and am.healthy(self.alertmanager.url),
                "config": str(self.alertmanager.config),
            },
        }
        exporters = {name: {"url": e.metrics_url, "up": e.running()} for name, e in self.exporters.items()}
        result["exporters"] = {"up": all(e["up"] for e in exporters.values()), **exporters}
        if result["prometheus"]["up"]:
            try:
                targets = prom.targets(self.prometheus.url)
            except prom.PrometheusApiError as exc:
                result["prometheus"]["targets_error"] = str(exc)
            else:
                result["prometheus"]["targets"] = len(targets)
                result["prometheus"]["targets_down"] = sorted(
                    f"{t['labels'].get('job')} {t['labels'].get('instance')}" for t in targets if t["health"] != "up"
                )
        return result

    def urls(self) -> list[tuple[str, str]]:
        return [
            ("prometheus", self.prometheus.url),
            ("alertmanager", f"{self.alertmanager.url}  (silences: {self.alertmanager.url}/#/silences)"),
            ("pushgateway", self.pushgateway.url),
        ]


def _up_configured(
    name: str,
    server: PrometheusServer | AlertmanagerServer,
    config: str,
    reload: Callable[[str], None],
    step: Step,
    say: Callable[[str], None],
    undo: Undo,
) -> None:
    """Write `config` if it changed; reload a running server then, or start one that does not run."""
    changed = not server.config.exists() or server.config.read_text() != config
    server.datadir.mkdir(parents=True, exist_ok=True)
    if changed:
        server.config.write_text(config)
    if server.running():
        if changed:
            with step(f"reloading {name} (configuration changed)"):
                reload(server.url)
        else:
            say(f"{name} on {server.url} ... already running")
        return
    with step(f"starting {name} on {server.url}"):
        server.start()
    undo(name, server.stop)
