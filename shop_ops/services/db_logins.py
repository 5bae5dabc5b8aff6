"""The two alternating login roles of one environment's database: their files, which one serves, and the SQL that makes, sets and locks them.

AWS's "alternating users" scheme on a local PostgreSQL: the serving backends never log in as
the owner role `shop` but as one of two login roles (`shop_a`, `shop_b`), each a member of
`shop` (INHERIT, and `ALTER ROLE ... SET role = 'shop'` so that a session acts as `shop`:
anything it creates is owned by `shop`, as the migrations' objects are). One of them serves
(LOGIN, a SCRAM verifier of the password in its file); the other is locked (NOLOGIN, no
password, no file) until the next rotation gives it a new password (shop_ops/security/rotation.py).

Files under the state's `secrets/` folder:

    <env>-db-login                 which login role serves (one line; written after each switch)
    <env>-db-<role>-password       that role's password (0640, the shop containers' group; mounted
                                   read-only into the serving backends); removed when it is locked

`shop` keeps its own LOGIN and static password for the pipeline's direct sessions (migrations,
the seed, the deploy lock, backups, exporters, the heartbeat); its password is not rotated.
Plain classes over `PostgresCluster` (its superuser over the unix socket) and `PgBouncer`; no Dagster.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shop_ops.services.files import ensure_secret_file, fsync_dir, replace_secret_file, write_private
from shop_ops.services.pgbouncer import PgBouncer
from shop_ops.services.processes import PostgresCluster, ServiceError, scram_verifier
from shop_ops.services.redaction import remember_file

OWNER = "shop"
LOGIN_ROLES = ("shop_a", "shop_b")
_ROLE = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class LoginFiles:
    """Where one environment's login roles keep their passwords and the record of which one serves."""

    folder: Path  # the state's secrets/ folder
    environment: str
    roles: tuple[str, str] = LOGIN_ROLES

    def __post_init__(self) -> None:
        for role in self.roles:
            if not _ROLE.fullmatch(role):
                raise ServiceError(f"login role {role!r}: use lower-case letters, digits and '_'")
        if self.roles[0] == self.roles[1]:
            raise ServiceError(f"the two login roles must differ, got {self.roles[0]!r} twice")

    @property
    def record(self) -> Path:
        return self.folder / f"{self.environment}-db-login"

    def password_file(self, role: str) -> Path:
        return self.folder / f"{self.environment}-db-{role}-password"

    def serving(self) -> str | None:
        """The login role the serving backends use, or None before `DatabaseLogins.ensure` made them."""
        try:
            role = self.record.read_text().strip()
        except FileNotFoundError:
            return None
        if role not in self.roles:
            raise ServiceError(
                f"{self.record} names {role!r}, not one of the login roles {', '.join(self.roles)}: "
                f"write the one that serves into it (see pg_stat_activity on the {self.environment} database)"
            )
        return role

    def other(self, role: str) -> str:
        return self.roles[1] if role == self.roles[0] else self.roles[0]

    def record_serving(self, role: str) -> None:
        if role not in self.roles:
            raise ServiceError(f"{role!r} is not one of the login roles {', '.join(self.roles)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        write_private(self.record, role + "\n")
        fsync_dir(self.folder)

    def serving_login(self) -> tuple[str, Path] | None:
        """(role, its password file) the serving backends log in with; None: not set up (they use the owner)."""
        role = self.serving()
        return (role, self.password_file(role)) if role else None


def _quote(role: str) -> str:
    if not _ROLE.fullmatch(role):
        raise ServiceError(f"{role!r} is not a role name (lower-case letters, digits and '_')")
    return f'"{role}"'


def verifier_matches(verifier: str, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier was made from `password` (same salt and iterations)."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$[^:]+:.+", verifier or "")
    if not match or not password:
        return False
    salt = base64.b64decode(match.group(2))
    return scram_verifier(password, int(match.group(1)), salt) == verifier


@dataclass
class DatabaseLogins:
    """One environment's two login roles on its cluster, its PgBouncer's auth file, and their files.

    `cluster` (and `replica`) are administered as their superuser over the unix socket;
    `pgbouncer` None: the backends connect directly. `container_gid`: the group the shop's
    containers read the password files as (None: 0600, the owner only).
    """

    cluster: PostgresCluster
    files: LoginFiles
    role_defaults: Mapping[str, str] = field(default_factory=dict)
    pgbouncer: PgBouncer | None = None
    replica: PostgresCluster | None = None
    owner: str = OWNER
    container_gid: int | None = None

    @property
    def environment(self) -> str:
        return self.files.environment

    # ------------------------------------------------------------------ set-up (shop-ops local up)
    def ensure(self) -> str:
        """Both login roles exist as members of the owner with its defaults; the serving one (the record's,
        else the first) logs in with the password of its file (made once). Idempotent; the serving role."""
        owner = _quote(self.owner)
        for role in self.files.roles:
            name = _quote(role)
            if not self.cluster.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'"):
                self.cluster.psql(f"CREATE ROLE {name} NOLOGIN INHERIT IN ROLE {owner}")
            elif not self.cluster.psql(f"SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
                                       f"JOIN pg_roles o ON o.oid = m.roleid WHERE r.rolname = '{role}' "
                                       f"AND o.rolname = '{self.owner}'"):  # fmt: skip
                self.cluster.psql(f"GRANT {owner} TO {name}")
            # Its sessions act as the owner: what they create belongs to it, as the migrations' objects do.
            self.cluster.psql(f"ALTER ROLE {name} INHERIT")
            self.cluster.set_role_defaults(role, {"role": self.owner, **self.role_defaults})
        serving = self.files.serving() or self.files.roles[0]
        path = self.files.password_file(serving)
        ensure_secret_file(path, group=self.container_gid)
        password = path.read_text().strip()
        if verifier_matches(self._verifier(serving), password):
            self.cluster.psql(f"ALTER ROLE {_quote(serving)} LOGIN")
        else:  # a new salt only when needed: a PgBouncer holding the old verifier keeps working meanwhile
            self.cluster.set_role_password(serving, password)
        if self.files.serving() is None:
            self.files.record_serving(serving)
        return serving

    def pooled_roles(self) -> list[str]:
        """The roles PgBouncer's auth file must hold: the owner and whichever login role can log in now."""
        return pooled_login_roles(self.cluster, (self.owner, *self.files.roles))

    def sync_pooler(self) -> None:
        """PgBouncer's auth file = the verifiers of `pooled_roles`, reloaded (nothing without PgBouncer)."""
        if self.pgbouncer is not None:
            self.pgbouncer.sync_auth(self.cluster, self.pooled_roles())

    # ------------------------------------------------------------------ rotation steps
    def issue_password(self, role: str) -> None:
        """A new random password in `role`'s file (never logged), set as its SCRAM verifier with LOGIN;
        PgBouncer's auth file synced so clients may log in as it."""
        if role not in self.files.roles:
            raise ServiceError(f"{role!r} is not one of the login roles {', '.join(self.files.roles)}")
        path = self.files.password_file(role)
        replace_secret_file(path, group=self.container_gid)
        remember_file(path)  # masked in whatever this process logs or stores from now on
        self.cluster.set_role_password(role, path.read_text().strip())
        self.sync_pooler()

    def lock(self, role: str) -> int:
        """`role` can no longer log in: NOLOGIN, its password removed (verifier and file), PgBouncer's auth
        file without it, its remaining sessions (primary, replica) terminated; how many were terminated."""
        if role not in self.files.roles:
            raise ServiceError(f"{role!r} is not one of the login roles: the owner {self.owner} is never locked")
        self.cluster.psql(f"ALTER ROLE {_quote(role)} NOLOGIN PASSWORD NULL")
        self.files.password_file(role).unlink(missing_ok=True)
        self.sync_pooler()  # a reload: PgBouncer authenticates no new client as `role`
        return sum(self._terminate(cluster, role) for cluster in (self.cluster, self.replica) if cluster)

    def sessions(self, role: str) -> int:
        """`role`'s sessions on the primary now (PgBouncer's server connections included)."""
        return int(self.cluster.psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'") or 0)

    def can_log_in(self, role: str) -> bool:
        return self.cluster.psql(f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}'") == "t"

    def _verifier(self, role: str) -> str:
        return self.cluster.psql(f"SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = '{role}'")

    @staticmethod
    def _terminate(cluster: PostgresCluster, role: str) -> int:
        # PgBouncer's pooled server connections of `role` end here too: it opens no new ones (NOLOGIN).
        out = cluster.psql(
            f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{role}'"
        )
        return int(out or 0)


class LoginRotationSteps(Protocol):
    """The steps of one environment's login rotation that a release target supplies (blue/green slots locally);
    `shop_ops.security.rotation.rotate` runs them in order. Here, below both, so each side may name it."""

    environment: str

    def lock(self) -> AbstractContextManager[None]:
        """Hold the environment's deploy lock (as releases do), or raise at once."""
        ...

    def serving_login(self) -> str:
        """The login role the serving release uses now."""
        ...

    def idle_login(self) -> str:
        """The other one: the rotation's new login role."""
        ...

    def issue(self, role: str) -> None:
        """A new password for `role` (never logged), set where logins are checked, `role` able to log in."""
        ...

    def restart_on(self, role: str, steps: dict[str, float]) -> dict[str, str]:
        """The serving release restarted onto `role` (the same images), its old instances retired; facts for
        metadata. Raises with nothing switched when the new instances never serve."""
        ...

    def withdraw(self, role: str) -> None:
        """After a failed restart: `role` locked again (the old login role serves on)."""
        ...

    def retire_login(self, role: str) -> int:
        """The previous login role locked; how many of its sessions were terminated."""
        ...


def pooled_login_roles(cluster: PostgresCluster, roles: Sequence[str] = (OWNER, *LOGIN_ROLES)) -> list[str]:
    """Of `roles`, those that can log in with a SCRAM password now: what `PgBouncer.sync_auth` must be given
    (a locked login role has no verifier, and sync_auth refuses a role without one)."""
    names = ", ".join(f"'{r}'" for r in roles if _ROLE.fullmatch(r))
    rows = cluster.psql(
        f"SELECT rolname FROM pg_authid WHERE rolname IN ({names}) AND rolcanlogin "
        "AND rolpassword LIKE 'SCRAM-SHA-256$%' ORDER BY rolname"
    )
    return [row for row in rows.splitlines() if row]
