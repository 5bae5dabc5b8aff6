"""Database migrations from a release's own image: `shop-migrate` in a one-off container on the host network."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shop_ops.resources.containers import DockerEngine, Hardening, RegistryAuth

PASSWORD_MOUNT = "/run/secrets/shop_database_password"
# The shop's settings require a Redis URL; shop-migrate never connects to it.
UNUSED_REDIS_URL = "redis://127.0.0.1:6379/0"


class MigrationError(RuntimeError):
    """shop-migrate failed or printed no result; the message carries the end of its log."""


Steps = list[tuple[str, str]]  # (revision, phase), oldest first


@dataclass(frozen=True)
class MigrationResult:
    image: str
    revision_before: str | None
    revision_after: str | None
    applied: Steps
    held_back: Steps  # contracting migrations (and all after them) that --expand-only kept back
    seconds: float
    log: str


@dataclass(frozen=True)
class MigrateOutput:
    revision_before: str | None
    revision_after: str | None
    applied: Steps
    held_back: Steps


def parse_migrate_output(stdout: str) -> MigrateOutput:
    """shop-migrate's last stdout line: {"revision_before", "revision_after", "applied", "held_back"}."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
        steps = {
            key: [(str(step["revision"]), str(step["phase"])) for step in result[key]]
            for key in ("applied", "held_back")
        }
        return MigrateOutput(result["revision_before"], result["revision_after"], **steps)
    except (IndexError, ValueError, KeyError, TypeError):
        raise MigrationError(f"shop-migrate printed no result line: {stdout.strip()[-500:]!r}") from None


def migrate_database(
    engine: DockerEngine,
    image: str,
    database_url: str,
    password_file: Path | None = None,
    revision: str = "head",
    timeout: float = 600,
    registry_auth: RegistryAuth | None = None,
    insecure_registry: bool = False,
    expand_only: bool = False,
) -> MigrationResult:
    """Run `shop-migrate REVISION` from `image` (pin it by digest: pulled when absent) against `database_url`.

    `database_url` carries no password; `password_file` is mounted read-only for the shop to read.
    `expand_only`: contracting migrations (and all after them) are held back (`held_back`).
    """
    engine.ensure_image(image, auth=registry_auth, insecure=insecure_registry)
    env = {"SHOP_DATABASE_URL": database_url, "SHOP_REDIS_URL": UNUSED_REDIS_URL}
    mounts: dict[str | Path, str] = {}
    if password_file is not None:
        mounts[password_file] = PASSWORD_MOUNT
        env["SHOP_DATABASE_PASSWORD_FILE"] = PASSWORD_MOUNT
    result = engine.run_once(
        image, ["shop-migrate", revision, *(["--expand-only"] if expand_only else [])], env=env, mounts=mounts, timeout=timeout,
        labels={"io.shop-ops.role": "migrate"}, hardening=Hardening(),  # read-only root, no capabilities
    )  # fmt: skip
    if not result.ok:
        raise MigrationError(f"shop-migrate in {image} exited {result.exit_code}:\n{result.logs.strip()[-2000:]}")
    out = parse_migrate_output(result.stdout)
    return MigrationResult(
        image=image, revision_before=out.revision_before, revision_after=out.revision_after, applied=out.applied,
        held_back=out.held_back, seconds=result.seconds, log=result.logs,
    )  # fmt: skip
