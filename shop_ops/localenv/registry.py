"""The image registry process for the local environment: `RegistryServer` lives in shop_ops/services/registry.py.

The pipeline restarts it for garbage collection (registry_retention), so the process helper is a
service; this name stays for the local environment's and the tests' imports.
"""

from shop_ops.services.registry import USERNAME, RegistryServer

__all__ = ["USERNAME", "RegistryServer"]
