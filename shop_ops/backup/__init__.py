"""Backup domain logic without Dagster: logical dumps with their fingerprints, restore checks."""
