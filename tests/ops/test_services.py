"""PostgreSQL clusters of shop_ops.services wherever their folders are: spaces in the path, or behind a closed folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop_ops.services.processes import PostgresCluster, ServiceError, free_port

pytestmark = pytest.mark.services  # real PostgreSQL clusters


@pytest.fixture
def spaced_folder() -> Iterator[Path]:
    """A folder with spaces in its path that PostgreSQL's OS user may enter."""
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-pg-"))
    base.chmod(0o755)
    folder = base / "pg cluster"
    folder.mkdir()
    yield folder
    shutil.rmtree(base, ignore_errors=True)


def test_cluster_with_spaces_in_its_path_serves_its_socket_and_archives_wal(spaced_folder: Path) -> None:
    archive = spaced_folder / "wal archive"
    # scram-sha-256: the superuser reaches the cluster over the unix socket in the data folder.
    cluster = PostgresCluster(spaced_folder / "data", free_port(), wal_archive=archive, tcp_auth="scram-sha-256")
    cluster.init()
    cluster.start()
    try:
        assert cluster.psql("SELECT 1") == "1"
        cluster.psql("CREATE TABLE t AS SELECT 1 AS x")
        segment = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + 20
        while not (archive / segment).exists():
            assert time.monotonic() < deadline, f"{segment} not archived: {os.listdir(archive)}"
            time.sleep(0.2)
    finally:
        cluster.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does PostgreSQL run as another OS user")
def test_cluster_behind_a_folder_its_user_cannot_enter_is_refused_by_name(root_only_checkout: Path) -> None:
    cluster = PostgresCluster(root_only_checkout / "data", free_port())
    with pytest.raises(ServiceError, match=r"cannot enter .*shop ops checkout"):
        cluster.init()


def test_free_ports_are_distinct_and_outside_the_kernels_ephemeral_range() -> None:
    # An outgoing connection takes its local port from the ephemeral range; a port chosen there
    # could be taken between choosing it and binding it (the stack's exporter once lost that race).
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert not [p for p in ports if low <= p <= high]
