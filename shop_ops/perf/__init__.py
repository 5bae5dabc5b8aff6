"""Load testing without Dagster: profiles of the realistic mix, one run's flow, the regression check, capacity.

Modules: `profiles` (LoadProfile, the stress plateaus), `loadtest` (restock, k6 with samples and
container usage, restock, purge; the `load_tester` resource), `regression` (two runs compared per
endpoint), `capacity` (a stress run's breaking points), `usage` (CPU and memory through the Docker
API), `shop_admin` (the shop's admin API for restock and purge).
"""

from shop_ops.perf.regression import (
    CompareOptions,
    EndpointComparison,
    RegressionReport,
    Verdict,
    compare_endpoint,
    compare_runs,
)

__all__ = [
    "CompareOptions",
    "EndpointComparison",
    "RegressionReport",
    "Verdict",
    "compare_endpoint",
    "compare_runs",
]
