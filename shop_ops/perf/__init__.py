"""Performance domain logic: running k6 and reading its results, as plain functions without Dagster."""
