"""Lead time of a release: push of a new version of both images -> staging serving it, with per-step seconds.

Needs the local environment (`make run`). Builds a thin layer over the current local images
(`localhost/shop-*:local`, built by `up` or scripts/build-images.sh) that says the new version
(a re-tag of images already released is not a new release), then pushes both to the local
registry under the next patch version;
`registry_push_sensor` (5 s interval) starts `release_staging`, which migrates, deploys blue/green,
verifies (smoke tests + a 5 s k6 check) and retires the old slot. The times come from the push
and from the release ledger (.state/releases.sqlite).

    .venv/bin/python bench/release_lead_time.py [--timeout 300]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

from shop_ops.localstack.docker_api import DockerApi
from shop_ops.release.ledger import ReleaseLedger
from shop_ops.release.registry_watch import release_version
from shop_ops.resources.containers import DockerEngine, RegistryAuth
from shop_ops.resources.registry import RegistryClient
from shop_ops.settings import get_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    settings = get_settings()
    state = settings.state_path
    registry = RegistryClient(f"http://127.0.0.1:{settings.registry.port}", state / "registry" / "credentials.json")
    try:
        tags = registry.tags(settings.images.backend_repository)
    except Exception as exc:  # noqa: BLE001 - any failure means the stack is not there
        sys.exit(f"the local registry does not answer ({exc}): start the local environment with `make run`")
    versions = sorted(v for v in (release_version(t) for t in tags) if v)
    major, minor, patch = versions[-1] if versions else (0, 0, 0)
    version = f"{major}.{minor}.{patch + 1}"
    user, password = registry.credentials()  # type: ignore[misc]
    auth = RegistryAuth(user, password, server=registry.address)
    engine = DockerEngine(DockerApi(state).docker_host)

    refs = {}
    with tempfile.TemporaryDirectory(prefix="shop-ops-bench-release-") as context:
        for role, repository, line in (
            ("backend", settings.images.backend_repository, f"ENV SHOP_VERSION={version}"),
            ("frontend", settings.images.frontend_repository, f"LABEL org.opencontainers.image.version={version}"),
        ):
            (Path(context) / "Dockerfile").write_text(f"FROM localhost/shop-{role}:local\n{line}\n")
            refs[role] = registry.image_ref(repository, version)
            engine.build(Path(context), refs[role], use_cache=True)
    pushed_at = time.time()
    for ref in refs.values():
        engine.push(ref, auth=auth, insecure=True)
    push_seconds = time.time() - pushed_at
    print(f"pushed {version} of both images in {push_seconds:.1f}s; waiting for staging to serve it", flush=True)

    ledger = ReleaseLedger(state)
    deadline = time.monotonic() + args.timeout
    row = None
    while time.monotonic() < deadline:
        attempts = [r for r in ledger.history("staging") if r["version"] == version]
        row = attempts[-1] if attempts else None
        if row is not None and row["finished_at"] is not None:
            break
        time.sleep(0.5)
    if row is None or row["finished_at"] is None:
        sys.exit(f"staging did not finish releasing {version} within {args.timeout:.0f}s (see the Dagster UI)")
    if row["status"] != "verified":
        sys.exit(f"the release of {version} ended {row['status']}: {row['reason']}")
    router = f"http://127.0.0.1:{settings.local_environments()['staging'].router_port}"
    served = httpx.get(f"{router}/version", timeout=5).json().get("version")
    if served != version:
        sys.exit(f"the ledger says {version} is verified, but staging's /version answers {served!r}")
    steps = {key.removesuffix("_seconds"): value for key, value in row.items() if key.endswith("_seconds")}
    print()
    print(f"release lead time, {time.strftime('%Y-%m-%d')}, {platform.node()}, sensor interval 5 s")
    print("| step | seconds |")
    print("| --- | ---: |")
    print(f"| push both images | {push_seconds:.1f} |")
    print(
        f"| push done -> release run started (sensor tick + run launch) | {row['started_at'] - (pushed_at + push_seconds):.1f} |"
    )
    for name, seconds in steps.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| **push -> staging serves and is verified** | **{row['finished_at'] - pushed_at:.1f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
