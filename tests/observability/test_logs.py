"""Central logs: a real rsyslog reads files into the real PostgreSQL log store; the log alerts' decisions on crafted rows."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg2
import pytest

from shop_ops.localenv.docker_api import DockerApi
from shop_ops.observability import logs
from shop_ops.resources.containers import ContainerError, DockerEngine, container_log_path
from shop_ops.resources.router import Router, Upstreams
from shop_ops.services.processes import PostgresCluster, free_port
from shop_ops.services.rsyslog import RsyslogServer
from tests.support import ShopServer, wait_until

WRITER_PASSWORD = "writer-password-not-a-secret"
BASE_IMAGE = "localhost/shop-base-python:bookworm"  # built once into the repository's podman storage
_names = itertools.count(1)


@pytest.fixture(scope="module")
def store_dsn(postgres: PostgresCluster) -> str:
    """A fresh database holding the log store; the superuser's DSN (the collector writes as `shop_logs`)."""
    name = f"logs_{next(_names)}_{os.getpid()}"
    postgres.create_database(name)
    dsn = postgres.dsn(name)
    logs.ensure_schema(dsn, writer="shop_logs", writer_password=WRITER_PASSWORD)
    return dsn


@pytest.fixture(scope="module")
def router(server: ShopServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    """The staging router in front of the shared backend (blue slot; no edge cache)."""
    r = Router("staging", tmp_path_factory.mktemp("router"), free_port(), cache_lifetime=0)
    r.start(Upstreams("blue", server.port, server.port))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, server: ShopServer, router: Router, postgres: PostgresCluster):
    folder = tmp_path_factory.mktemp("sources")
    return {
        "containers": folder / "containers",
        "router_lines": folder / "router-production.log",
        "pg_lines": folder / "postgresql.log",
        "list": [
            logs.container_log_source(folder / "containers", "production", "backend"),
            logs.LogSource(folder / "router-production.log", "router", "production", "json"),
            logs.LogSource(folder / "postgresql.log", "postgresql", "production", "postgresql"),
            logs.LogSource(router.folder / "access.log", "router", "staging", "json"),
            logs.LogSource(server.log_path, "backend", "staging", "json", slot="blue", release="9.9.9"),
            logs.LogSource(postgres.datadir / "server.log", "postgresql", "local", "postgresql"),
        ],
    }


@pytest.fixture(scope="module")
def collector(sources, store_dsn: str, postgres: PostgresCluster, tmp_path_factory) -> Iterator[RsyslogServer]:
    folder = tmp_path_factory.mktemp("rsyslog")
    password_file = folder / "writer-password"
    password_file.write_text(WRITER_PASSWORD + "\n")
    store = logs.LogStore(store_dsn.rsplit("/", 1)[1], postgres.port, password_file=password_file)
    server = RsyslogServer(folder / "collector")
    logs.write_config(server, sources["list"], store, rotate=[sources["router_lines"]])
    server.start()
    yield server
    server.stop()
    assert not server.running()


def append(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.writelines(line + "\n" for line in lines)


def test_lines_arrive_parsed_labelled_and_without_the_podman_prefix(collector, sources, store_dsn):
    rid = f"podman-{time.time_ns()}"
    container_log = container_log_path(sources["containers"], "production", "backend", "green", "1.4.0")
    doc = {"ts": "2026-11-30T17:59:54.150Z", "level": "error", "logger": "shop", "msg": "unhandled error",
           "request_id": rid, "exc": "Traceback (most recent call last):\n  File \"x\"\nKeyError: 'sku'"}  # fmt: skip
    append(container_log, f"2026-11-30T17:59:54.153952531+00:00 stdout F {json.dumps(doc)}",
           "2026-11-30T17:59:55.000000001+00:00 stderr F [INFO] Starting granian (plain text)")  # fmt: skip
    router_rid = f"router-{time.time_ns()}"
    append(sources["router_lines"], json.dumps({
        "ts": "2026-11-30T18:00:01+00:00", "request_id": router_rid, "method": "GET", "uri": "/api/products/7",
        "status": 503, "request_time": 0.002, "upstream_addr": "127.0.0.1:1", "slot": "blue", "environment": "production",
    }))  # fmt: skip
    marker = f'relation "missing_{time.time_ns()}" does not exist'
    append(sources["pg_lines"], f"2026-11-30 18:00:02.123 UTC [4242] ERROR:  {marker}")

    [backend] = wait_until("the podman line", lambda: logs.records(store_dsn, request_id=rid), timeout=12, step=0.2)
    labels = (backend.service, backend.environment, backend.slot, backend.release)
    assert labels == ("backend", "production", "green", "1.4.0")
    assert backend.fields == doc  # every JSON key kept, nothing of the prefix
    assert backend.message == "unhandled error" and backend.level == "error"
    assert backend.ts == datetime(2026, 11, 30, 17, 59, 54, 150000, tzinfo=UTC)
    assert backend.error_kind == "KeyError"
    plain = wait_until(
        "the plain container line",
        lambda: [
            r for r in logs.records(store_dsn, service="backend", environment="production") if "granian" in r.message
        ],
        timeout=12,
        step=0.2,
    )
    assert plain[0].message == "[INFO] Starting granian (plain text)" and plain[0].fields == {}
    assert plain[0].level == "info" and plain[0].slot == "green"

    [access] = wait_until(
        "the router line", lambda: logs.records(store_dsn, request_id=router_rid), timeout=12, step=0.2
    )
    assert (access.service, access.environment, access.slot) == ("router", "production", "blue")
    assert access.fields["status"] == 503 and access.fields["uri"] == "/api/products/7"
    assert access.level == "error" and access.error_kind == "http_503" and access.message == "GET /api/products/7 503"

    [pg] = wait_until(
        "the PostgreSQL line",
        lambda: [
            r for r in logs.records(store_dsn, service="postgresql", environment="production") if marker in r.message
        ],
        timeout=12,
        step=0.2,
    )
    assert pg.level == "error" and pg.fields == {}
    assert pg.ts == datetime(2026, 11, 30, 18, 0, 2, 123000, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(docker_api: DockerApi) -> Iterator[DockerEngine]:
    """The Docker API (podman here), as tests/ops' fixture of that name (not visible from here)."""
    eng = DockerEngine(docker_api.docker_host)
    if not eng.image_exists(BASE_IMAGE):
        pytest.skip(f"{BASE_IMAGE} is not in the podman storage (scripts/build-images.sh builds it)")
    yield eng
    eng.close()


def test_a_container_logs_to_its_log_path_which_outlives_it_and_is_collected(engine, collector, sources, store_dsn):
    path = container_log_path(sources["containers"], "production", "backend", "blue", "2.0.0")
    rid = f"container-{time.time_ns()}"
    line = json.dumps({"level": "info", "msg": "from a container", "request_id": rid})
    name = f"shop-ops-test-logs-{rid}"
    engine.start_service(
        name, BASE_IMAGE, ["python3", "-c", f"print({line!r}, flush=True)"], stop_timeout=1, log_path=path
    )
    try:
        [row] = wait_until(
            "the container's line", lambda: logs.records(store_dsn, request_id=rid), timeout=12, step=0.2
        )
    finally:
        engine.stop_service(name, timeout=0)
    assert (row.service, row.slot, row.release, row.message) == ("backend", "blue", "2.0.0", "from a container")
    assert row.source_file == str(path)
    # podman wrote k8s-file lines there, and the file stays when the container is removed.
    first = path.read_text().splitlines()[0]
    assert first.endswith(f" stdout F {line}") and first[:4].isdigit()


def test_a_container_log_is_kept_under_its_maximum_size(engine, tmp_path):
    path = tmp_path / "logs" / "chatty.log"
    name = f"shop-ops-test-logs-chatty-{time.time_ns()}"
    command = ["python3", "-c", "[print('x' * 100, flush=True) for _ in range(60)]"]
    engine.start_service(name, BASE_IMAGE, command, stop_timeout=1, log_path=path, log_max_size="2k")
    try:
        engine.client.api.wait(name, timeout=20)
    finally:
        engine.stop_service(name, timeout=0)
    assert 0 < path.stat().st_size <= 2048 + 200  # ~8 kB were written


def test_a_request_id_of_the_router_log_is_in_the_backend_log(collector, router, store_dsn):
    res = httpx.get(f"{router.url}/api/products/5", headers={"X-Request-Id": "visitor-chosen-id"}, timeout=10)
    assert res.status_code == 200
    rid = res.headers["x-request-id"]
    assert rid != "visitor-chosen-id"  # nginx's own id, sent to the backend and logged by both
    found = wait_until(
        "the request in both logs",
        lambda: (lambda rows: rows if {r.service for r in rows} == {"router", "backend"} else [])(
            logs.records(store_dsn, request_id=rid)
        ),
        timeout=12,
        step=0.2,
    )
    by_service = {r.service: r for r in found}
    assert by_service["router"].fields["uri"] == "/api/products/5" and by_service["router"].fields["status"] == 200
    assert by_service["router"].environment == "staging" and by_service["router"].slot == "blue"
    assert by_service["backend"].fields["path"] == "/api/products/5" and by_service["backend"].release == "9.9.9"


def test_a_secret_sent_to_the_shop_never_reaches_the_store(collector, router, store_dsn, admin_token):
    window = {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}
    url = f"{router.url}/api/admin/statistics/orders"
    ok = httpx.get(url, params=window, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10)
    failed = httpx.get(
        url, params={**window, "token": admin_token}, headers={"Authorization": "Bearer wrong"}, timeout=10
    )
    assert ok.status_code == 200 and failed.status_code == 401
    for res in (ok, failed):
        rid = res.headers["x-request-id"]
        wait_until(
            "the admin requests",
            lambda rid=rid: (
                [r for r in logs.records(store_dsn, request_id=rid) if r.service == "backend"]
                and logs.records(store_dsn, request_id=rid, service="router")
            ),
            timeout=12,
            step=0.2,
        )
    with psycopg2.connect(store_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM logs.records WHERE position(%s IN message || fields::text || coalesce(source_file, '')) > 0",
            (admin_token,),
        )
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM logs.records")
        assert cur.fetchone()[0] > 0


def test_credentials_in_a_line_are_masked(collector, sources, store_dsn):
    rid = f"masked-{time.time_ns()}"
    doc = {"level": "warning", "msg": "retrying with Authorization: Bearer abc.def.ghi", "request_id": rid,
           "password": "hunter2", "dsn": "postgresql://shop:pw@db/shop?password=s3cr3t"}  # fmt: skip
    append(sources["router_lines"], json.dumps(doc))
    [row] = wait_until(
        "the line with credentials", lambda: logs.records(store_dsn, request_id=rid), timeout=12, step=0.2
    )
    stored = row.message + json.dumps(row.fields)
    for secret in ("abc.def.ghi", "hunter2", "s3cr3t"):
        assert secret not in stored
    assert row.fields["password"] == "[redacted]" and row.message == "retrying with Authorization: Bearer [redacted]"


def test_the_writer_role_may_only_insert(collector, store_dsn):
    with psycopg2.connect(store_dsn.replace("postgres@", "shop_logs@")) as conn, conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT count(*) FROM logs.records")


def test_the_rendered_configuration_holds_no_password(collector, store_dsn):
    text = collector.config.read_text()
    assert WRITER_PASSWORD not in text and "passfile=" in text
    assert 'load="imuxsock"' not in text and 'load="imklog"' not in text
    for path in (collector.config, collector.folder / "pgpass"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert WRITER_PASSWORD in (collector.folder / "pgpass").read_text()
    collector.check_config()  # rsyslogd -N1 accepts it


@pytest.fixture
def password_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster whose TCP logins need a password (scram-sha-256), as a real log store's would."""
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-logs-pg-"))
    base.chmod(0o755)  # PostgreSQL runs as its own OS user
    cluster = PostgresCluster(datadir=base / "data", port=free_port(), tcp_auth="scram-sha-256")
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_root_only_checkout_password_login_and_store_outage(root_only_checkout, password_cluster):
    """State under a mode-700 folder with a space in every path: rsyslog (root) reads and writes there,
    and PostgreSQL (its own OS user) needs no file of it: the password goes from the pgpass file over TCP."""
    password_cluster.create_database("logs")
    admin = f"postgresql://postgres@/logs?host={quote(str(password_cluster.socket_dir))}&port={password_cluster.port}"
    logs.ensure_schema(admin, writer="shop_logs", writer_password=WRITER_PASSWORD)
    state = root_only_checkout / ".state" / "central logs"
    (state / "secrets").mkdir(parents=True)
    password_file = state / "secrets" / "log writer password"
    password_file.write_text(WRITER_PASSWORD)
    source = state / "app logs" / "backend service.log"
    server = RsyslogServer(state / "rsyslog")
    sources = [logs.LogSource(source, "backend", "staging", "json")]
    logs.write_config(server, sources, logs.LogStore("logs", password_cluster.port, password_file=password_file))
    server.start()
    try:
        rid = f"root-only-{time.time_ns()}"
        append(source, json.dumps({"level": "info", "msg": "from a root-only checkout", "request_id": rid}))
        [row] = wait_until(
            "the line from the root-only checkout", lambda: logs.records(admin, request_id=rid), timeout=12, step=0.2
        )
        assert row.source_file == str(source)
        # The store goes away for a while: lines wait in rsyslog's queue and arrive once it is back.
        password_cluster.stop()
        later = f"while-down-{time.time_ns()}"
        append(source, json.dumps({"level": "info", "msg": "written while the store was down", "request_id": later}))
        time.sleep(1)
        password_cluster.start()
        wait_until(
            "the line written while the store was down",
            lambda: logs.records(admin, request_id=later),
            timeout=20,
            step=0.2,
        )
    finally:
        server.stop()
    assert not server.running()
    assert WRITER_PASSWORD not in server.config.read_text()
    # The login was checked: without the password, TCP refuses the role.
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(f"postgresql://shop_logs@127.0.0.1:{password_cluster.port}/logs", passfile="/dev/null").close()


def test_rotated_source_file_keeps_flowing(collector, sources, store_dsn):
    """logrotate (copytruncate) on a source file: lines written after the rotation still arrive."""
    path = sources["router_lines"]
    append(path, json.dumps({"level": "info", "msg": "before rotation", "request_id": f"rot-a-{time.time_ns()}"}))
    assert str(path) in collector.logrotate_config.read_text()
    collector.rotate(force=True)
    assert path.stat().st_size == 0 and Path(f"{path}.1").exists()
    rid = f"rot-b-{time.time_ns()}"
    append(path, json.dumps({"level": "info", "msg": "after rotation", "request_id": rid}))
    wait_until("the line written after rotation", lambda: logs.records(store_dsn, request_id=rid), timeout=12, step=0.2)


def test_retention_deletes_only_old_rows(store_dsn):
    now = datetime.now(UTC)
    with psycopg2.connect(store_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO logs.records (received_at, ts, service, environment, message) VALUES"
            " (%s, %s, 'retention', 'test', 'old'), (%s, %s, 'retention', 'test', 'recent')",
            (now - timedelta(days=15), now - timedelta(days=15), now - timedelta(days=13), now - timedelta(days=13)),
        )
    assert logs.delete_older_than(store_dsn, 14) >= 1
    kept = [r.message for r in logs.records(store_dsn, service="retention")]
    assert kept == ["recent"]
    with pytest.raises(logs.LogsError, match="positive number of days"):
        logs.delete_older_than(store_dsn, 0)


def test_error_counts_and_kinds_from_the_table(store_dsn):
    env = f"crafted{next(_names)}"
    base = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    rows = [
        (base + timedelta(seconds=5), "error", {"code": "payment_declined"}),
        (base + timedelta(seconds=50), "error", {"exc": "Traceback\nValueError: bad"}),
        (base + timedelta(minutes=2, seconds=1), "critical", {"exc": "Traceback\nasyncpg.exceptions.TooManyConnectionsError: x"}),
        (base + timedelta(minutes=2, seconds=2), "info", {"code": "not_an_error"}),
    ]  # fmt: skip
    with psycopg2.connect(store_dsn) as conn, conn.cursor() as cur:
        for ts, level, fields in rows:
            cur.execute(
                "INSERT INTO logs.records (ts, service, environment, level, message, fields) VALUES (%s, 'backend', %s, %s, 'x', %s)",
                (ts, env, level, json.dumps(fields)),
            )
    counts = logs.error_counts_per_minute(store_dsn, base, base + timedelta(minutes=3), environment=env)
    assert list(counts.values()) == [2, 0, 1]
    assert list(counts) == [base + timedelta(minutes=m) for m in range(3)]
    kinds = logs.error_kinds(store_dsn, base, base + timedelta(minutes=3), environment=env)
    assert kinds == {"payment_declined": 1, "ValueError": 1, "asyncpg.exceptions.TooManyConnectionsError": 1}


# ------------------------------------------------------------------------------- pure decisions
NOW = datetime(2026, 6, 1, 12, 30, 20, tzinfo=UTC)
LAST = datetime(2026, 6, 1, 12, 29, tzinfo=UTC)


def hour_of(per_minute: int, last: int) -> dict[datetime, int]:
    counts = {LAST - timedelta(minutes=m): per_minute for m in range(1, 61)}
    counts[LAST] = last
    return counts


def test_a_spike_needs_both_the_threshold_and_five_times_the_hourly_rate():
    spike = logs.error_spike(hour_of(1, 11), NOW, threshold=10)
    assert spike == logs.ErrorSpike(LAST, 11, 1.0)
    assert logs.error_spike(hour_of(1, 10), NOW, threshold=10) is None  # not more than the threshold
    assert logs.error_spike(hour_of(3, 14), NOW, threshold=10) is None  # not more than 5 x 3 per minute
    assert logs.error_spike(hour_of(3, 16), NOW, threshold=10) is not None
    assert logs.error_spike({LAST: 11}, NOW, threshold=10) is not None  # a quiet hour: minutes missing count 0
    # The minute still running does not count: at 12:30:20 the last whole minute is 12:29.
    assert logs.error_spike({NOW.replace(second=0): 50}, NOW, threshold=10) is None
    with pytest.raises(logs.LogsError, match="threshold"):
        logs.error_spike({}, NOW, threshold=-1)


def test_a_new_kind_is_one_not_seen_in_the_seven_days_before():
    assert logs.new_error_kinds({"KeyError": 3, "http_502": 1}, {"http_502": 40}) == ["KeyError"]
    assert logs.new_error_kinds(["http_502"], ["http_502", "ValueError"]) == []
    assert logs.new_kind_window(NOW) == (NOW - timedelta(days=7), NOW)
    assert logs.spike_window(NOW) == (LAST - timedelta(minutes=60), LAST + timedelta(minutes=1))


def test_bad_sources_are_refused_with_the_fix():
    with pytest.raises(logs.LogsError, match="absolute path"):
        logs.LogSource("relative.log", "backend", "staging", "json")
    with pytest.raises(logs.LogsError, match="unknown format"):
        logs.LogSource("/x.log", "backend", "staging", "xml")  # type: ignore[arg-type]
    with pytest.raises(logs.LogsError, match="environment"):
        logs.LogSource("/x.log", "backend", 'staging"; evil', "json")
    with pytest.raises(ContainerError, match="service 'back_end'"):
        container_log_path(Path("/state/logs"), "staging", "back_end", "blue", "1.0.0")


def test_odd_paths_make_a_valid_configuration(tmp_path):
    """Spaces, quotes, "$" and "%" in folder names: rsyslogd -N1 accepts what is rendered; a double quote is refused."""
    odd = tmp_path / "a $HOME 'quoted' 100% folder"
    server = RsyslogServer(odd / "rsyslog")
    source = logs.LogSource(odd / "logs" / "x.log", "backend", "staging", "json")
    logs.write_config(server, [source], logs.LogStore("logs", 5432))
    server.check_config()
    assert "100% folder/logs/x.log" in server.config.read_text()
    with pytest.raises(logs.LogsError, match="double quote"):
        logs.render_config(
            [logs.LogSource(tmp_path / 'x"y.log', "backend", "staging", "json")], logs.LogStore("l", 1), server
        )


def test_odd_bytes_do_not_block_the_queue(collector, sources, store_dsn):
    """Invalid UTF-8, a lone surrogate escape, a NUL escape and control characters: later lines still arrive."""
    with open(sources["router_lines"], "ab") as fh:
        fh.write(b"not json \xff\xfe latin-1 caf\xe9 \x1b[31mred\x1b[0m\n")
        fh.write(b'{"level": "error", "msg": "lone \\ud800 surrogate and nul \\u0000 here", "code": "odd"}\n')
    rid = f"after-odd-{time.time_ns()}"
    append(sources["router_lines"], json.dumps({"level": "info", "msg": "after the odd lines", "request_id": rid}))
    wait_until("the line after the odd ones", lambda: logs.records(store_dsn, request_id=rid), timeout=12, step=0.2)
    odd = [r for r in logs.records(store_dsn, service="router", environment="production") if "latin-1" in r.message]
    assert [r.message for r in odd] == ["not json ?? latin-1 caf? red"]  # bytes fixed, colour codes gone


def test_a_slow_query_is_stored_as_one_and_a_password_in_sql_is_masked(collector, sources, store_dsn, postgres):
    """A real slow statement of a cluster (multi-line), and a crafted slow-log line that sets a password."""
    marker = f"slow-{time.time_ns()}"
    with psycopg2.connect(postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SET log_min_duration_statement = 0")  # this session only: every statement is slow
        cur.execute(f"SELECT pg_sleep(0.05),\n       '{marker}'")
    conn.close()
    role = marker.replace("-", "_")
    append(sources["pg_lines"], "2026-11-30 18:00:03.000 UTC [4243] LOG:  duration: 1.500 ms  statement: "
           f"ALTER ROLE {role} PASSWORD 'hunter3-{marker}'")  # fmt: skip

    def found() -> list[logs.LogRecord]:
        rows = [r for r in logs.slow_queries(store_dsn) if marker in r.message or role in r.message]
        return rows if len(rows) == 2 else []

    rows = {r.environment: r for r in wait_until("both slow-query records", found, timeout=12, step=0.2)}
    real = rows["local"]
    assert real.service == "postgresql" and real.level == "warning" and real.fields["kind"] == "slow_query"
    assert 50 <= real.fields["duration_ms"] < 5000
    assert "statement: SELECT pg_sleep(0.05)," in real.message and marker in real.message  # both lines, one record
    crafted = rows["production"]
    assert crafted.fields == {"kind": "slow_query", "duration_ms": 1.5}
    assert f"hunter3-{marker}" not in crafted.message and "PASSWORD '[redacted]'" in crafted.message
    assert crafted.ts == datetime(2026, 11, 30, 18, 0, 3, tzinfo=UTC)
    assert real.id in {r.id for r in logs.slow_queries(store_dsn, environment="local")}
    assert crafted.id not in {r.id for r in logs.slow_queries(store_dsn, environment="local")}
