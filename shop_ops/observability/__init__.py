"""Observability domain logic without Dagster: Prometheus configuration, scrape discovery and its HTTP API."""
