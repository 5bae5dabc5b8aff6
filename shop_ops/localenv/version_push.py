"""Push the local build to the local registry as a new release version, as a CI pipeline would push one.

For benchmarks and end-to-end tests of the release path (`registry_push_sensor` -> `release_staging`).
A re-tag of images already released is not a new release (the sensor skips known digests), so each
version gets a one-line layer over the local images (`localhost/shop-<role>:local`, built by `up`)
that says the version: the backend's `/version` answers it, the frontend's label carries it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from shop_ops.release.images import registry_auth
from shop_ops.release.registry_watch import release_version
from shop_ops.resources.containers import DockerEngine
from shop_ops.resources.ledger import ReleaseLedger
from shop_ops.resources.registry import RegistryClient
from shop_ops.settings import ImageSettings

VERSION_LINES = {
    "backend": "ENV SHOP_VERSION={version}",
    "frontend": "LABEL org.opencontainers.image.version={version}",
}


def next_patch_version(registry: RegistryClient, repository: str) -> str:
    """The release version after the highest one in `repository` (0.0.1 when there is none)."""
    versions = sorted(v for v in (release_version(t) for t in registry.tags(repository)) if v)
    major, minor, patch = versions[-1] if versions else (0, 0, 0)
    return f"{major}.{minor}.{patch + 1}"


def build_version_layers(
    version: str, engine: DockerEngine, registry: RegistryClient, images: ImageSettings
) -> dict[str, str]:
    """Build both version layers, tagged for the registry; returns {role: image reference}."""
    repositories = {"backend": images.backend_repository, "frontend": images.frontend_repository}
    refs = {role: registry.image_ref(repository, version) for role, repository in repositories.items()}
    with tempfile.TemporaryDirectory(prefix="shop-ops-version-layer-") as context:
        for role, ref in refs.items():
            line = VERSION_LINES[role].format(version=version)
            (Path(context) / "Dockerfile").write_text(f"FROM localhost/shop-{role}:local\n{line}\n")
            engine.build(Path(context), ref)
    return refs


def push_release(engine: DockerEngine, registry: RegistryClient, refs: dict[str, str]) -> dict[str, str]:
    """Push the built references (backend first, as a CI pipeline would); returns {role: manifest digest}."""
    auth = registry_auth(registry)
    return {role: engine.push(ref, auth=auth, insecure=True) for role, ref in refs.items()}


def wait_for_finished_attempt(
    ledger: ReleaseLedger, environment: str, version: str, timeout: float, poll: float = 0.5
) -> dict[str, Any] | None:
    """The latest ledger attempt to put `version` on `environment` once it has finished; None after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        attempts = [row for row in ledger.history(environment) if row["version"] == version]
        if attempts and attempts[-1]["finished_at"] is not None:
            return attempts[-1]
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)
