"""Release domain logic without Dagster: images, migrations and schema rules, the one release flow and its strategies."""
