"""Load-testing domain logic without Dagster: the statistical comparison of two k6 runs per endpoint."""

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
