"""Sensors of the shop_ops code location: registry pushes start releases, failed runs notify people."""
