"""The web shop backend: catalog, Redis carts, idempotent checkout, operations endpoints."""
