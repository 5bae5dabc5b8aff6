"""Operating the shop from outside the pipeline: the `shop-ops` operator commands (docs/operations.md).

Launching commands (`jobs launch`, `deploy`, `migrate`, `health`, `rollback`, `backup`, `renew-certs`) start
the code location's existing jobs through Dagster's GraphQL API, as the UI does, and follow them; CI's
self-hosted steps use them too. Direct commands (`db check`, `cache clear`, `restart`, `logs collect`) act
through the pipeline's own resources, built from the settings by shop_ops.definitions' helpers. Nothing in
the code location imports this package.
"""
