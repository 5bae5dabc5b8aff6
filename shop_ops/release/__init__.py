"""Release domain logic: images (build, policy, release tag) and migrations, as plain functions without Dagster."""
