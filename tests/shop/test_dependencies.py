"""Which failures the shop answers 503 naming PostgreSQL or Redis, and the cache's Redis breaker (no services)."""

from __future__ import annotations

import time

import asyncpg
import pytest
import redis.asyncio.sentinel
import redis.exceptions
import redis.sentinel
import sqlalchemy.exc

from shop.cache import RedisBreaker
from shop.dependencies import unavailable_dependency


def through_sqlalchemy(driver_error: Exception) -> sqlalchemy.exc.DBAPIError:
    """What SQLAlchemy's asyncpg dialect raises: DBAPIError -> the adapted error (.orig) -> asyncpg's (__cause__)."""
    adapted = Exception(str(driver_error))
    adapted.__cause__ = driver_error
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, adapted)


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.MaxConnectionsError("Too many connections"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.asyncio.sentinel.MasterNotFoundError("No master found for 'shop-carts'"),
        redis.sentinel.MasterNotFoundError("No master found for 'shop-carts'"),
    ],
)
def test_redis_unavailable_whichever_client_raised_it(exc: Exception):
    assert unavailable_dependency(exc) == "redis"


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        through_sqlalchemy(
            asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command")
        ),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
    ],
)
def test_database_unavailable(exc: Exception):
    assert unavailable_dependency(exc) == "database"


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
        through_sqlalchemy(asyncpg.exceptions.UndefinedColumnError('column "x" does not exist')),
        OSError("raised by the shop's own code, not a driver"),
        ValueError("a bug"),
    ],
)
def test_other_failures_stay_errors_of_the_shop(exc: Exception):
    assert unavailable_dependency(exc) is None


def test_breaker_skips_redis_after_a_failure_then_lets_one_probe_through():
    breaker = RedisBreaker(cooldown=0.05)
    assert breaker.allows()
    breaker.failed(redis.exceptions.TimeoutError())
    assert not breaker.allows()  # skipped: no timeout paid
    time.sleep(0.06)
    assert breaker.allows()  # the probe
    assert not breaker.allows()  # others keep skipping while it runs
    breaker.failed(redis.exceptions.TimeoutError())  # still down: closed for another cooldown
    assert not breaker.allows()
    time.sleep(0.06)
    assert breaker.allows()
    breaker.abandon()  # the probe's request went away: another may probe
    assert breaker.allows()
    breaker.succeeded()
    assert breaker.allows() and breaker.allows()  # closed: everyone uses Redis
