"""shop-ops: the operations pipeline of the shop, as one Dagster code location."""
