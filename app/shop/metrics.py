"""Prometheus metrics: requests by route and status, DB pool, cache hits and misses.

With several server workers, PROMETHEUS_MULTIPROC_DIR (set by `shop-serve`) makes the
counters process-shared; /metrics then aggregates every worker.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

REQUESTS = Counter("shop_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "shop_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
)
CACHE = Counter("shop_cache_requests_total", "Cache lookups", ["level", "result"])
DB_POOL_CHECKED_OUT = Gauge("shop_db_pool_checked_out", "DB connections in use", multiprocess_mode="livesum")
DB_POOL_SIZE = Gauge("shop_db_pool_size", "DB pool size", multiprocess_mode="livesum")
ORDERS = Counter("shop_orders_total", "Orders placed", ["synthetic"])
# Degraded service (shop/dependencies.py): Redis commands that failed (down, hung, no primary) by what
# used Redis, cache lookups served without Redis (result "bypass" of shop_cache_requests_total), and
# requests answered 503 because PostgreSQL or Redis was unavailable.
REDIS_ERRORS = Counter("shop_redis_errors_total", "Redis commands that failed: down, hung or no primary", ["use"])
DEPENDENCY_UNAVAILABLE = Counter(
    "shop_dependency_unavailable_total", "Requests answered 503: a dependency was unavailable", ["dependency"]
)
# Reporting reads (shop/reporting.py): by the database that answered (replica, primary), and those that
# went to the primary although a replica is configured (it could not answer).
REPORTING_READS = Counter(
    "shop_db_reporting_reads_total", "Reporting reads by the database that answered", ["database"]
)
REPLICA_FALLBACKS = Counter(
    "shop_db_replica_fallbacks_total", "Reporting reads sent to the primary because the replica could not answer"
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def render() -> bytes:
    """The exposition text, aggregated over workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(DEFAULT_REGISTRY)
