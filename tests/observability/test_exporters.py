"""The exporters and the Pushgateway of shop_ops.services.exporters, as the real Debian programs.

Each starts on a free port, serves every metric name the rules in infra/prometheus/rules read
from it (derived from the rule files), and stops by its own pid. The postgres exporter logs in
to a cluster that demands a password (scram-sha-256) and the redis exporters to an environment's
cart store, its replica and Sentinel as the ACL user `admin`, both with the password read from a file: it appears neither on their command
lines nor in their environments. The Pushgateway keeps a push across a restart.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Summary

from shop_ops.observability import pipeline_metrics as pm
from shop_ops.resources.router import Router, Upstreams
from shop_ops.services.exporters import (
    Exporter,
    NginxExporter,
    NodeExporter,
    PostgresExporter,
    Pushgateway,
    RedisExporter,
)
from shop_ops.services.processes import PostgresCluster, ServiceError, free_port, pid_alive
from shop_ops.services.redis import RedisPasswords, RedisTier

pytestmark = pytest.mark.services  # runs the exporters, PostgreSQL, Redis and nginx

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "infra" / "prometheus" / "rules").glob("*.yml"))
# The exporter each metric name prefix comes from (its scrape job in the rules).
PREFIXES = {"postgres": "pg", "redis": "redis", "node": "node", "router": "nginx"}
PG_SECRET = "pg-Secret-4-exporter-only"  # a test cluster's password, not a real secret
REDIS_SECRET = "redis-Secret-4-exporter-only"
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? (?P<value>\S+)")


def rule_metric_names() -> dict[str, set[str]]:
    """Per exporter, the metric names the rule expressions read (recording rules' own names, with `:`, left out)."""
    exprs = [
        rule["expr"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    names: dict[str, set[str]] = {kind: set() for kind in PREFIXES}
    for kind, prefix in PREFIXES.items():
        pattern = re.compile(rf"(?<![\w:]){prefix}_[a-z0-9_]+(?![\w:])")
        for expr in exprs:
            names[kind].update(pattern.findall(expr))
    return names


def served(exporter: Exporter) -> dict[str, float]:
    """Sample name -> value of the first sample, from the exporter's /metrics."""
    text = httpx.get(exporter.metrics_url, timeout=10).text
    samples: dict[str, float] = {}
    # Read as served (prometheus_client's parser would rename a counter `x_count` to `x_count_total`).
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            samples.setdefault(match["name"], float(match["value"]))
    return samples


def proc_text(pid: int, what: str) -> str:
    return Path(f"/proc/{pid}/{what}").read_bytes().replace(b"\0", b"\n").decode(errors="replace")


@pytest.fixture(scope="module")
def secured_postgres() -> Iterator[tuple[PostgresCluster, Path]]:
    """A cluster whose TCP logins need a password, a role `exporter` (pg_monitor) and its password file."""
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-pgx-"))
    base.chmod(0o755)  # as root, PostgreSQL runs as the postgres OS user
    cluster = PostgresCluster(datadir=base / "data", port=free_port(), tcp_auth="scram-sha-256")
    try:
        cluster.init()
        cluster.start()
        cluster.psql(f"CREATE ROLE exporter LOGIN PASSWORD '{PG_SECRET}'; GRANT pg_monitor TO exporter;")
        # A slot, as a primary with a replica has (pg_replication_slots_*); it reserves no WAL.
        cluster.psql("SELECT pg_create_physical_replication_slot('rules_check')")
        secret = base / "exporter-password"
        secret.write_text(PG_SECRET + "\n")
        secret.chmod(0o600)
        yield cluster, secret
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisTier, Path]]:
    """An environment's cache, cart store with its replica and Sentinel; the `admin` user's password file."""
    folder = tmp_path_factory.mktemp("redis-secured")
    secret = folder / "redis-admin-password"
    secret.write_text(REDIS_SECRET + "\n")
    tier = RedisTier(
        environment="staging", folder=folder / "redis", passwords=RedisPasswords("shop-pw-x", REDIS_SECRET),
        cache_port=free_port(), carts_port=free_port(), carts_replica_port=free_port(), sentinel_port=free_port(),
        cache_maxmemory_mb=8, carts_maxmemory_mb=8, down_after_ms=1000, failover_timeout_ms=5000,
    )  # fmt: skip
    tier.start()
    yield tier, secret
    tier.stop()


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    """An nginx router; its stub_status page answers without any backend behind it."""
    folder = Path(tempfile.mkdtemp(prefix="shop-ops-test-router-x-"))
    r = Router("staging", folder, free_port(), cache_lifetime=0)
    r.start(Upstreams("blue", free_port(), free_port()))
    yield r
    r.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def exporters(
    tmp_path_factory: pytest.TempPathFactory,
    secured_postgres: tuple[PostgresCluster, Path],
    secured_redis: tuple[RedisTier, Path],
    router: Router,
) -> Iterator[dict[str, Exporter]]:
    folder = tmp_path_factory.mktemp("exporters")
    cluster, pg_secret = secured_postgres
    redis, redis_secret = secured_redis
    started: dict[str, Exporter] = {
        "node": NodeExporter(folder / "node", free_port()),
        "postgres": PostgresExporter(
            folder / "postgres",
            free_port(),
            dsn=cluster.dsn(user="exporter"),
            password_file=pg_secret,
            queries=ROOT / "infra" / "prometheus" / "postgres-exporter" / "queries.yaml",
        ),
        # The cart store's primary, its replica and Sentinel: the redis rules read all three.
        **{
            name: RedisExporter(
                folder / name, free_port(), redis_address=f"127.0.0.1:{port}", password_file=redis_secret, user="admin"
            )
            for name, port in (
                ("redis", redis.carts_port),
                ("redis-replica", redis.carts_replica_port),
                ("redis-sentinel", redis.sentinel_port),
            )
        },
        "router": NginxExporter(folder / "nginx", free_port(), status_url=router.status_url),
        "pushgateway": Pushgateway(folder / "pushgateway", free_port()),
    }
    try:
        for exporter in started.values():
            exporter.start()
        yield started
    finally:
        for exporter in started.values():
            exporter.stop()
    for name, exporter in started.items():
        assert not exporter.running(), name
        assert not exporter.pidfile.exists(), name


def test_the_rules_read_metrics_of_every_exporter() -> None:
    names = rule_metric_names()
    assert {"pg_up", "pg_stat_database_numbackends", "pg_settings_max_connections"} <= names["postgres"]
    assert {"redis_up", "redis_memory_used_bytes", "redis_evicted_keys_total"} <= names["redis"]
    assert {"node_cpu_seconds_total", "node_filesystem_avail_bytes"} <= names["node"]
    assert names["router"] == {"nginx_up"}


@pytest.mark.parametrize("kind", sorted(PREFIXES))
def test_each_exporter_serves_what_the_rules_read(exporters: dict[str, Exporter], kind: str) -> None:
    samples = served(exporters[kind])
    if kind == "redis":  # one job: the cart store's primary, its replica, Sentinel
        samples = {**served(exporters["redis-sentinel"]), **served(exporters["redis-replica"]), **samples}
    missing = rule_metric_names()[kind] - set(samples)
    assert not missing, f"{kind} exporter does not serve {sorted(missing)}"
    up = f"{PREFIXES[kind]}_up"
    if up in samples:  # it reached its program: through the password file, where there is one
        assert samples[up] == 1, f"{up} is {samples[up]}; see {exporters[kind].log}"


def test_the_router_status_page_answers_loopback_only(router: Router) -> None:
    response = httpx.get(router.status_url, timeout=5)
    assert response.status_code == 200
    assert response.text.startswith("Active connections:")
    assert "deny all" in router.conf.read_text().split("location = /router-status", 1)[1].split("}", 1)[0]


@pytest.mark.parametrize("kind, secret", [("postgres", PG_SECRET), ("redis", REDIS_SECRET)])
def test_passwords_are_neither_on_the_command_line_nor_in_the_environment(
    exporters: dict[str, Exporter], kind: str, secret: str
) -> None:
    exporter = exporters[kind]
    assert exporter.process is not None
    pid = exporter.process.pid
    cmdline, environ = proc_text(pid, "cmdline"), proc_text(pid, "environ")
    assert secret not in cmdline
    assert secret not in environ
    if kind == "postgres":
        variables = dict(line.split("=", 1) for line in environ.splitlines() if "=" in line)
        assert Path(variables["DATA_SOURCE_PASS_FILE"]).read_text().strip() == secret
        assert "DATA_SOURCE_PASS" not in variables
        assert "DATA_SOURCE_NAME" not in variables
    else:
        assert isinstance(exporter, RedisExporter)
        assert f"-redis.password-file={exporter.password_map}" in cmdline.splitlines()
        assert exporter.password_map.stat().st_mode & 0o777 == 0o600


def test_the_pushgateway_keeps_a_push_across_a_restart(exporters: dict[str, Exporter]) -> None:
    gateway = exporters["pushgateway"]
    metrics = pm.backup_metrics(environment="staging", finished_at=1_700_000_000, size_bytes=12345)
    pm.push(gateway.url, pm.BACKUPS_JOB, metrics, pm.grouping_key("staging"))
    assert served(gateway)["shop_ops_backup_size_bytes"] == 12345
    gateway.stop()  # SIGTERM: it writes its persistence file on the way out
    assert isinstance(gateway, Pushgateway)
    assert gateway.persistence_file.is_file()
    gateway.start()
    assert served(gateway)["shop_ops_backup_size_bytes"] == 12345


def test_stop_acts_on_its_own_pid_only(tmp_path: Path) -> None:
    node = NodeExporter(tmp_path / "node", free_port())
    node.start()
    pid = node.pidfile.read_text().strip()
    # Another object (another `shop-ops` command) finds it by the pid file, and stops it.
    other = NodeExporter(tmp_path / "node", node.port)
    assert other.running()
    other.stop()
    assert not pid_alive(int(pid))
    assert not node.pidfile.exists()
    assert node.process is not None
    node.process.wait(timeout=5)  # our child: reap it
    node.process = None
    # A pid file naming some other process (a reused pid): not ours, neither "running" nor killed.
    node.pidfile.parent.mkdir(parents=True, exist_ok=True)
    node.pidfile.write_text(f"{os.getpid()}\n")
    assert not node.running()
    node.stop()
    assert pid_alive(os.getpid())


def test_errors_say_what_to_do(exporters: dict[str, Exporter], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = exporters["node"].port
    with pytest.raises(ServiceError, match=f"port {taken} for the node exporter is already in use"):
        NodeExporter(tmp_path / "node", taken).start()
    with pytest.raises(ValueError, match="carries a password"):
        PostgresExporter(tmp_path / "pg", free_port(), dsn="postgresql://exporter:hunter2@127.0.0.1:5432/postgres")
    with pytest.raises(ServiceError, match=r"password file .* does not exist"):
        PostgresExporter(
            tmp_path / "pg", free_port(), dsn="postgresql://exporter@127.0.0.1:5432/postgres",
            password_file=tmp_path / "missing",
        ).start()  # fmt: skip
    with pytest.raises(pm.PushgatewayError, match=r"Pushgateway at http://127\.0\.0\.1:\d+ does not answer"):
        pm.push(f"http://127.0.0.1:{free_port()}", pm.RUNS_JOB, pm.run_metrics([]))
    # A push the gateway refuses (a gauge's name reused for a counter): its answer is in the message.
    gateway = exporters["pushgateway"]
    pm.push(gateway.url, pm.BACKUPS_JOB, pm.backup_metrics(environment="staging", finished_at=1, size_bytes=1), {"environment": "staging"})  # fmt: skip
    clash = CollectorRegistry()
    Summary("shop_ops_backup_size_bytes", "not a gauge", registry=clash).observe(1)
    with pytest.raises(
        pm.PushgatewayError, match=rf"Pushgateway at {gateway.url} refused the push of job clash \(400\)"
    ):
        pm.push(gateway.url, "clash", clash)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="install Debian's prometheus-pushgateway package"):
        Pushgateway(tmp_path / "pgw", free_port()).start()
