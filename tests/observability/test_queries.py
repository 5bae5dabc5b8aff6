"""Query insight on a real PostgreSQL 15: pg_stat_statements and the slow-query log switched on, the top statements
ranked by total time (domain and `slow_queries` asset), and no password in the log or the statistics."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.database import slow_queries
from shop_ops.observability import queries
from shop_ops.resources.postgres import DatabaseError, DatabaseTarget, PostgresResource
from shop_ops.services.processes import PostgresCluster, free_port
from tests.support import running_cluster

pytestmark = pytest.mark.services

SLOW_MS = 100
PASSWORD = "shop-password-not-a-secret-1"
NEW_PASSWORD = "rotated-password-not-a-secret-2"
NAIVE_PASSWORD = "naive-password-not-a-secret-3"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A new cluster as `shop-ops local up` makes one: query insight in its postgresql.conf from initdb on,
    TCP logins with a password, database `shop` owned by `shop`."""
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-queries-"))
    base.chmod(0o755)  # PostgreSQL runs as its own OS user
    cluster = PostgresCluster(
        datadir=base / "data", port=free_port(), tcp_auth="scram-sha-256", extra_conf=queries.postgres_conf(SLOW_MS)
    )
    try:
        cluster.init()
        cluster.start()
        cluster.set_role_password("shop", PASSWORD)
        cluster.create_database("shop", owner="shop")
        assert not queries.enable(cluster, "shop", SLOW_MS)  # in place since initdb: no restart
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def target(cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> DatabaseTarget:
    password_file = tmp_path_factory.mktemp("secrets") / "shop-password"
    password_file.write_text(PASSWORD + "\n")
    return DatabaseTarget(port=cluster.port, database="shop", password_file=str(password_file))


@pytest.fixture(scope="module")
def workload(target: DatabaseTarget) -> None:
    """What the shop's role ran: 20 inserts, 50 fast reads, one slow statement."""
    conn = target.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE items (id serial PRIMARY KEY, x int NOT NULL)")
            for i in range(20):
                cur.execute("INSERT INTO items (x) VALUES (%s)", (i,))
            for i in range(50):
                cur.execute("SELECT count(*) FROM items WHERE x > %s", (i % 7,))
            cur.execute("SELECT pg_sleep(0.3)")
    finally:
        conn.close()


def _top(target: DatabaseTarget, limit: int = 10) -> queries.TopStatements:
    conn = target.connect()
    try:
        return queries.top_statements(conn, "staging", limit)
    finally:
        conn.close()


def test_top_statements_are_ranked_by_total_time_with_their_calls(target, workload):
    top = _top(target)
    frame = top.frame
    assert list(frame.columns) == queries.COLUMNS
    by_query = {row.query: row for row in frame.itertuples()}
    sleep = by_query["SELECT pg_sleep($1)"]
    assert frame.iloc[0]["query"] == "SELECT pg_sleep($1)"  # the most total time
    assert sleep.calls == 1 and 300 <= sleep.total_ms < 2000 and sleep.share > 0.5
    read = by_query["SELECT count(*) FROM items WHERE x > $1"]
    insert = by_query["INSERT INTO items (x) VALUES ($1)"]
    assert (read.calls, read.rows) == (50, 50) and (insert.calls, insert.rows) == (20, 20)
    assert read.mean_ms == pytest.approx(read.total_ms / 50, abs=0.002)
    assert list(frame["total_ms"]) == sorted(frame["total_ms"], reverse=True)
    assert set(frame["environment"]) == {"staging"} and frame["share"].sum() <= 1.0001
    # Utility commands are not kept (track_utility off): no CREATE TABLE, no ALTER ROLE.
    assert not any(q.upper().startswith(("CREATE", "ALTER")) for q in frame["query"])
    assert top.calls >= 71 and top.total_ms >= sleep.total_ms and top.hidden_ms == 0
    assert list(_top(target, limit=2).frame["query"]) == list(frame["query"][:2])


def test_the_slow_statement_alone_is_in_the_server_log(cluster, workload):
    log = (cluster.datadir / "server.log").read_text()
    slow = [line for line in log.splitlines() if "statement: SELECT pg_sleep(0.3)" in line]
    assert len(slow) == 1 and " LOG:  duration: " in slow[0]
    assert float(slow[0].split("duration: ")[1].split(" ms")[0]) >= 300
    assert "FROM items WHERE" not in log  # fast statements are not logged
    assert cluster.psql("SHOW log_parameter_max_length") == "0"


def test_slow_queries_asset_materializes_the_top_statements(target, workload):
    result = dg.materialize(
        [slow_queries("staging", top=2)], resources={"postgres": PostgresResource(environments={"staging": target})}
    )
    assert result.success
    frame = result.output_for_node("staging__slow_queries")
    assert len(frame) == 2 and frame.iloc[0]["query"] == "SELECT pg_sleep($1)" and frame.iloc[0]["calls"] == 1
    metadata = result.asset_materializations_for_node("staging__slow_queries")[0].metadata
    assert metadata["top_query"].value == "SELECT pg_sleep($1)" and metadata["top_total_ms"].value >= 300
    assert metadata["statements"].value >= 3 and metadata["total_ms"].value >= metadata["top_total_ms"].value
    assert "pg_sleep" in metadata["top_statements"].value and metadata["database"].value == target.describe()


def test_a_database_without_the_extension_names_the_fix(cluster, target):
    cluster.create_database("no_insight", owner="shop")
    conn = target.model_copy(update={"database": "no_insight"}).connect()
    try:
        with pytest.raises(queries.QueryInsightError, match=r"not installed in database no_insight .*CREATE EXTENSION"):
            queries.top_statements(conn, "staging", 5)
    finally:
        conn.close()


def test_an_existing_cluster_is_switched_over_with_one_restart():
    with running_cluster("shop-ops-test-queries-old-") as old:
        old.create_database("shop", owner="shop")
        assert old.psql("SHOW shared_preload_libraries") == ""
        assert queries.enable(old, "shop", 250)  # the library needs a restart
        assert not queries.enable(old, "shop", 250)  # applied: no second restart
        shown = old.psql(
            "SELECT current_setting('pg_stat_statements.track'), current_setting('log_min_duration_statement')"
        )
        assert shown == "top|250ms"
        assert old.psql("SELECT count(*) >= 0 FROM pg_stat_statements", "shop") == "t"


def test_a_password_never_reaches_the_log_or_the_statistics(cluster, target, tmp_path):
    """Even with every statement logged (slow_query_ms 0), setting a password leaves no trace of it."""
    log = cluster.datadir / "server.log"
    cluster.apply_settings({"log_min_duration_statement": "0"})
    try:
        start = log.stat().st_size
        cluster.psql(f"ALTER ROLE shop PASSWORD '{NAIVE_PASSWORD}'")  # the naive way: logged
        cluster.set_role_password("shop", NEW_PASSWORD)
        written = log.read_bytes()[start:].decode()
        assert NAIVE_PASSWORD in written  # the log does see statements here ...
        assert NEW_PASSWORD not in written and "SCRAM-SHA-256$" not in written  # ... but not set_role_password's
        rows = cluster.psql("SELECT count(*) FROM pg_stat_statements WHERE query ILIKE '%password%'", "shop")
        assert rows == "0"  # utility commands are not tracked
    finally:
        cluster.apply_settings({"log_min_duration_statement": str(SLOW_MS)})
    # The verifier is right: the new password logs in, the old one does not.
    new_file = tmp_path / "new-password"
    new_file.write_text(NEW_PASSWORD)
    conn = target.model_copy(update={"password_file": str(new_file)}).connect()
    conn.close()
    with pytest.raises(DatabaseError, match="password authentication failed"):
        target.connect()
    cluster.set_role_password("shop", PASSWORD)  # as the other tests expect
