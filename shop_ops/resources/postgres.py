"""Each environment's PostgreSQL database (role `shop`): DSNs, the password file, the Alembic revision.

`DatabaseTarget` is plain data usable without Dagster; `PostgresResource` maps environment
names to targets. Passwords come only from files (`password_file`; definitions.py names each
local environment's), never from config values or metadata.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import dagster as dg
import psycopg2


class DatabaseError(RuntimeError):
    """A database of an environment is unknown or does not answer."""


class DatabaseTarget(dg.Config):
    """Where one environment's database is and how the shop's role logs in."""

    host: str = "127.0.0.1"
    port: int
    database: str = "shop"
    user: str = "shop"
    password_file: str | None = None

    def password(self) -> str | None:
        if not self.password_file:
            return None
        try:
            return Path(self.password_file).read_text().strip()
        except OSError as exc:
            raise DatabaseError(f"database password file {self.password_file}: {exc.strerror}") from None

    def url(self, driver: str = "postgresql+asyncpg") -> str:
        """The URL without a password (the shop reads the password from SHOP_DATABASE_PASSWORD(_FILE))."""
        return f"{driver}://{quote(self.user)}@{self.host}:{self.port}/{quote(self.database)}"

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def connect(self, connect_timeout: int = 10) -> psycopg2.extensions.connection:
        """A psycopg2 connection; DatabaseError naming the database when it does not answer."""
        try:
            return psycopg2.connect(
                host=self.host,
                port=self.port,
                dbname=self.database,
                user=self.user,
                password=self.password(),
                connect_timeout=connect_timeout,
            )
        except psycopg2.OperationalError as exc:
            raise DatabaseError(f"database {self.describe()} does not answer: {str(exc).strip()}") from None

    def current_revision(self, connect_timeout: int = 10) -> str | None:
        """The database's Alembic revision, or None when it was never migrated."""
        conn = self.connect(connect_timeout)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
                row = cur.fetchone()
                if not row or not row[0]:
                    return None
                cur.execute("SELECT version_num FROM alembic_version")
                row = cur.fetchone()
                return str(row[0]) if row else None
        finally:
            conn.close()


class PostgresResource(dg.ConfigurableResource):
    """The database of each environment (staging, production)."""

    environments: dict[str, DatabaseTarget]

    def target(self, environment: str) -> DatabaseTarget:
        try:
            return self.environments[environment]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none"
            raise DatabaseError(f"no database configured for environment {environment!r} (known: {known})") from None

    def current_revision(self, environment: str) -> str | None:
        return self.target(environment).current_revision()
