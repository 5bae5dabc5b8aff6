"""infra/terraform/modules/secrets/app-users.sql on a real PostgreSQL 15: the aws app's two alternating users.

The master is a CREATEROLE role that owns the database (as RDS's master user, which is no
superuser); then the step of AWS's multi-user rotation function that matters here: the master
gives the idle user a password. What this cannot show: RDS itself, password checks (the test
cluster trusts loopback) and the rotation function's own code.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from shop_ops.services.processes import PostgresCluster, pg_bin

SQL = Path(__file__).resolve().parents[2] / "infra" / "terraform" / "modules" / "secrets" / "app-users.sql"


def psql(cluster: PostgresCluster, user: str, database: str, *args: str, sql: str = "") -> str:
    result = subprocess.run(
        [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", user, "-d", database, "-v",
         "ON_ERROR_STOP=1", "-qAt", *args, "-f", "-"],
        input=sql, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def master(postgres: PostgresCluster) -> tuple[str, str, str]:
    """(master role, database it owns with a `products` table, app user name); dropped afterwards."""
    suffix = secrets.token_hex(3)
    master, database, app = f"master_{suffix}", f"appdb_{suffix}", f"app_{suffix}"
    postgres.psql(f'CREATE ROLE "{master}" LOGIN CREATEROLE; CREATE DATABASE "{database}" OWNER "{master}"')
    psql(postgres, master, database, sql="CREATE TABLE products (id int); INSERT INTO products VALUES (1), (2)")
    yield master, database, app
    postgres.psql(f'DROP DATABASE "{database}"')
    postgres.psql(f'DROP ROLE IF EXISTS "{app}"; DROP ROLE IF EXISTS "{app}_clone"; DROP ROLE "{master}"')


def test_both_users_act_as_the_master_role_after_a_rotation_sets_the_clones_password(postgres, master):
    owner, database, app = master
    for _ in range(2):  # idempotent
        psql(postgres, owner, database, "-v", f"master={owner}", "-v", f"app={app}", sql=SQL.read_text())
    # The rotation function's setSecret for an existing idle user, run with the master login.
    psql(postgres, owner, database, sql=f"ALTER USER \"{app}_clone\" WITH PASSWORD '{secrets.token_hex(12)}'")

    for user in (app, f"{app}_clone"):
        table = f"made_by_{user}"
        out = psql(postgres, user, database, sql=(
            f"SELECT current_user, session_user; SELECT count(*) FROM products; CREATE TABLE {table} (id int);"
            f"SELECT tableowner FROM pg_tables WHERE tablename = '{table}'"
        ))  # fmt: skip
        assert out.splitlines() == [f"{owner}|{user}", "2", owner]
    # Each sees the other's tables: one owner.
    assert psql(postgres, app, database, sql=f"SELECT count(*) FROM made_by_{app}_clone") == "0"
    members = psql(postgres, owner, database, sql=(
        f"SELECT string_agg(r.rolname, ',' ORDER BY r.rolname) FROM pg_auth_members m JOIN pg_roles r ON r.oid = "
        f"m.member WHERE m.roleid = '{owner}'::regrole"
    ))  # fmt: skip
    assert members == f"{app},{app}_clone"
