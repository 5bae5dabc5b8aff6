"""The local environment's monitoring: Prometheus, Alertmanager, the Pushgateway and the exporters, under `<state>/monitoring`.

    monitoring/prometheus/      prometheus.yml (rendered on every `up`), TSDB, pid file, log
    monitoring/alertmanager/    alertmanager.yml (rendered on every `up`: file references, no secret),
                                silences and notification state, pid file, log
    secrets/alertmanager/       the notifier's secrets given as variables, as 0600 files
    monitoring/pushgateway/     the pipeline's pushed figures (persisted), pid file, log
    monitoring/exporters/<name>/   node, and per environment postgres, postgres-replica, pgbouncer, router,
                                redis-cache, redis-carts, redis-carts-replica, sentinel (<kind>-<env>): pid file, log
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
from pathlib import Path
from typing import Any

from shop_ops.localenv.data_tier import DataTier
from shop_ops.observability import alertmanager as am
from shop_ops.observability import prometheus as prom
from shop_ops.services.exporters import (
    Exporter,
    NginxExporter,
    NodeExporter,
    PgBouncerExporter,
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
        self, settings: Settings, router_status_urls: dict[str, str], dsns: dict[str, str], data: DataTier
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
        queries = settings.infra_path / "prometheus" / "postgres-exporter" / "queries.yaml"
        self.exporters: dict[str, Exporter] = {"node": NodeExporter(exporters / "node", ports["node"])}
        # (exporter name, job, environment, role) of each environment's scrape targets.
        self.jobs: list[tuple[str, str, str, str | None]] = []
        for env, local in settings.local_environments().items():

            def add(kind: str, job: str, role: str | None, exporter: Exporter, env: str = env) -> None:
                self.exporters[f"{kind}-{env}"] = exporter
                self.jobs.append((f"{kind}-{env}", job, env, role))

            def folder(kind: str, env: str = env) -> Path:
                return exporters / f"{kind}-{env}"

            password = settings.database_password_file(env)
            add("postgres", "postgres", "primary", PostgresExporter(
                folder("postgres"), ports[f"postgres-{env}"], dsn=dsns[env], password_file=password, queries=queries,
            ))  # fmt: skip
            if local.replica_port is not None:
                replica_dsn = f"postgresql://shop@127.0.0.1:{local.replica_port}/{local.database}"
                add("postgres-replica", "postgres", "replica", PostgresExporter(
                    folder("postgres-replica"), ports[f"postgres-replica-{env}"], dsn=replica_dsn,
                    password_file=password, queries=queries,
                ))  # fmt: skip
            bouncer = data.pgbouncers[env]
            add("pgbouncer", "pgbouncer", None, PgBouncerExporter(
                folder("pgbouncer"), ports[f"pgbouncer-{env}"], pgbouncer_port=bouncer.port, user=bouncer.stats_user,
                pgpass_file=bouncer.stats_pgpass, database=local.database,
            ))  # fmt: skip
            add("router", "router", None, NginxExporter(
                folder("router"), ports[f"router-{env}"], status_url=router_status_urls[env]
            ))  # fmt: skip
            admin = settings.redis_admin_password_file(env)
            redis_ports = local.redis
            for kind, role, port in (
                ("redis-cache", "cache", redis_ports.cache_port), ("redis-carts", "carts", redis_ports.carts_port),
                ("redis-carts-replica", "carts-replica", redis_ports.carts_replica_port),
                ("sentinel", "sentinel", redis_ports.sentinel_port),
            ):  # fmt: skip
                add(kind, "redis", role, RedisExporter(
                    folder(kind), ports[f"{kind}-{env}"], redis_address=f"127.0.0.1:{port}", password_file=admin,
                    user="admin",
                ))  # fmt: skip

    # ------------------------------------------------------------------ configuration
    def render(self) -> str:
        """prometheus.yml for this stack (targets with their environment label)."""
        obs = self.settings.observability

        def targets(job: str) -> list[prom.Target]:
            return [
                prom.Target(self.exporters[name].address, env, role)
                for name, of_job, env, role in self.jobs
                if of_job == job
            ]

        return prom.render_config(
            scrape_interval_s=obs.scrape_interval_seconds,
            evaluation_interval_s=obs.evaluation_interval_seconds,
            rule_files=[path.resolve() for path in self.rules],
            shop_targets_dir=self.settings.metrics_targets_dir().resolve(),
            postgres=targets("postgres"),
            pgbouncer=targets("pgbouncer"),
            redis=targets("redis"),
            router=targets("router"),
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
