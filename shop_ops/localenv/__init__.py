"""The local environment's bootstrapper (`shop-ops local up | down | status`): a leaf only the CLI imports."""
