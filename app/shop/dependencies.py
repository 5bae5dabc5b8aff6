"""Which failures mean PostgreSQL or Redis is unavailable (down, hung, no primary): named, answered 503."""

from __future__ import annotations

import asyncpg
import redis.exceptions
import sqlalchemy.exc

# Redis is down or hung, or names no primary: redis-py raises these whichever client (plain URL,
# Sentinel) ran the command. ConnectionError covers refused and reset connections, a pool with no
# free connection within its timeout (MaxConnectionsError, "No connection available."), failed
# authentication, a server still loading its data, and Sentinel's MasterNotFoundError /
# SlaveNotFoundError; TimeoutError a server that accepted the connection and does not answer.
# ReadOnlyError: the command went to a replica (the old primary, just demoted by a failover).
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)

# PostgreSQL cannot be reached or does not answer in time. asyncpg raises these itself (straight
# calls, db.fetchrow); through SQLAlchemy they arrive wrapped (DBAPIError.orig, whose __cause__ is
# asyncpg's) or, for the builtin ones, as they are.
_DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # refused, the server closed the connection
    asyncpg.exceptions.InterfaceError,  # the connection is closed, or still cancelling a timed-out statement
    asyncpg.exceptions.InternalClientError,  # the connection died mid-operation
    # Admin shutdown, starting up, a terminated backend, and a statement cancelled by the role's
    # statement_timeout (QueryCanceledError): the server is there but does not serve the request.
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,  # the role's idle_in_transaction_session_timeout
    sqlalchemy.exc.TimeoutError,  # no pooled connection free within the pool's timeout
)

# Bare OS errors (refused, reset) and timeouts (asyncpg's connect timeout and command_timeout raise
# the builtin TimeoutError) carry no driver in their class: the traceback names it.
_DRIVER_MODULES = {"asyncpg": "database", "sqlalchemy": "database", "redis": "redis"}

# The exception classes that may mean an unavailable dependency, for the app's exception handlers;
# `unavailable_dependency` decides per exception.
CANDIDATES: tuple[type[BaseException], ...] = (
    *REDIS_UNAVAILABLE,
    *_DATABASE_UNAVAILABLE,
    sqlalchemy.exc.DBAPIError,
    OSError,  # TimeoutError, ConnectionError and their subclasses
)


# How an answer names each dependency to people.
NAMES = {"database": "the database (PostgreSQL)", "redis": "Redis"}


def unavailable_dependency(exc: BaseException) -> str | None:
    """ "redis" or "database" when `exc` says that dependency is unavailable; None for any other failure."""
    if isinstance(exc, REDIS_UNAVAILABLE):
        return "redis"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return "database"
        # SQLAlchemy's DBAPIError -> the dialect's adapted error (.orig) -> asyncpg's (its __cause__)
        cause = exc.orig.__cause__ if exc.orig is not None and exc.orig.__cause__ is not None else exc.orig
        return unavailable_dependency(cause) if cause is not None else None
    if isinstance(exc, _DATABASE_UNAVAILABLE):
        return "database"
    if isinstance(exc, OSError):
        return _raised_by(exc)
    return None


def _raised_by(exc: BaseException) -> str | None:
    """The dependency whose driver raised `exc`: the innermost frame of a known driver in its traceback."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        package = tb.tb_frame.f_globals.get("__name__", "").partition(".")[0]
        found = _DRIVER_MODULES.get(package, found)
        tb = tb.tb_next
    return found
