"""Lead time of a release: push of a new version of both images -> staging serving it, with per-step seconds.

Needs the local environment (`make run`). Pushes the local build under the next patch version
(`shop_ops/localenv/version_push.py`: a one-line layer that says the version, since a re-tag
of images already released is not a new release);
`registry_push_sensor` (5 s interval) starts `release_staging`, which migrates, deploys blue/green,
verifies (smoke tests + a 5 s k6 check) and retires the old slot. The times come from the push
and from the release ledger (.state/releases.sqlite).

    .venv/bin/python bench/release_lead_time.py [--timeout 300]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import httpx

from shop_ops.localenv.docker_api import DockerApi
from shop_ops.localenv.version_push import (
    build_version_layers,
    next_patch_version,
    push_release,
    wait_for_finished_attempt,
)
from shop_ops.resources.containers import DockerEngine
from shop_ops.resources.ledger import open_ledger
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
        version = next_patch_version(registry, settings.images.backend_repository)
    except Exception as exc:  # noqa: BLE001 - any failure means the stack is not there
        sys.exit(f"the local registry does not answer ({exc}): start the local environment with `make run`")
    engine = DockerEngine(DockerApi(state).docker_host)
    refs = build_version_layers(version, engine, registry, settings.images)
    pushed_at = time.time()
    push_release(engine, registry, refs)
    push_seconds = time.time() - pushed_at
    print(f"pushed {version} of both images in {push_seconds:.1f}s; waiting for staging to serve it", flush=True)

    row = wait_for_finished_attempt(open_ledger(settings.ledger, settings.state_path), "staging", version, args.timeout)
    if row is None:
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
