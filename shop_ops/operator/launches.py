"""What each launching command of `shop-ops` launches: the existing job, its run config and tags, from the arguments.

Plain functions (only `registry_release` asks the registry it is given): `deploy`, `migrate`, `health`,
`rollback`, `backup`, `renew-certs` each become one `Launch` of a job the UI launches too, with the same run
config and partition tags the Launchpad gives it, plus the operator's name (`shop-ops/launched-by`, the tag
CI's launches carry) and the command. The guards (approval, verified on staging, one deploy per environment,
stale backup partitions) stay inside the jobs.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shop_ops.assets.deployments import ReleaseConfig, rollback_run_config
from shop_ops.operator.dagster_api import ASSET_JOB, OperatorError, promote_run_config
from shop_ops.release.registry_watch import DIGEST, WatchedRegistry, release_version
from shop_ops.settings import ENVIRONMENTS

RELEASED_BACKEND = "backend_release_tag"  # database_schema's input: the image it migrates with
LAUNCHED_BY = "shop-ops/launched-by"  # who launched a run (scripts/dagster-job.sh sets it for CI too)
COMMAND = "shop-ops/command"  # which operator command launched it


@dataclass(frozen=True)
class Launch:
    """One run to launch: job, run config, tags, and (ASSET_JOB only) the assets it materializes."""

    what: str  # for people: "deploy 1.2.3 to staging"
    job: str
    run_config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    asset_selection: list[list[str]] | None = None


def operator_name(given: str | None = None) -> str:
    """`given`, else $USER, else the login name; an OperatorError when none is known."""
    name = (given if given is not None else os.environ.get("USER") or _login()).strip()
    if not name:
        raise OperatorError("no operator name: pass --operator NAME (or set USER)")
    return name


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (a bare container)
        return ""


def check_environment(environment: str) -> str:
    if environment not in ENVIRONMENTS:
        raise OperatorError(f"unknown environment {environment!r}: use one of {', '.join(ENVIRONMENTS)}")
    return environment


def check_version(version: str) -> str:
    if release_version(version) is None:
        raise OperatorError(f"version {version!r} is not a release version MAJOR.MINOR.PATCH (e.g. 1.4.0)")
    return version


def _tags(command: str, operator: str, **extra: str) -> dict[str, str]:
    return {LAUNCHED_BY: operator, COMMAND: command, **extra}


def deploy(environment: str, release: Mapping[str, str], operator: str, approved_by: str | None = None) -> Launch:
    """`release_staging` (staging) or `promote_production` (production, needs `approved_by`) for `release`:
    {version, backend_digest, frontend_digest}, as the push sensor and promote-config configure them."""
    check_environment(environment)
    version = check_version(release["version"])
    for role in ("backend", "frontend"):
        if not DIGEST.match(release[f"{role}_digest"]):
            raise OperatorError(f"{role} digest {release[f'{role}_digest']!r} of {version} is not sha256:<64 hex>")
    tags = _tags("deploy", operator, **{"release/version": version})
    if environment == "production":
        if not (approved_by or "").strip():
            raise OperatorError(f"deploy of {version} to production needs --approved-by NAME (who approved it)")
        config = promote_run_config(release, approved_by or "")
        return Launch(f"deploy {version} to production", "promote_production", config, tags)
    # As registry_push_sensor configures release_staging.
    values = ReleaseConfig(
        version=version, backend_digest=release["backend_digest"], frontend_digest=release["frontend_digest"]
    )
    config = {"ops": {f"{environment}__deployment": {"config": values.model_dump()}}}
    return Launch(f"deploy {version} to {environment}", "release_staging", config, tags)


def migrate(environment: str, operator: str) -> Launch:
    """`<env>/database_schema` materialized alone, as its "Materialize" button in the UI does."""
    check_environment(environment)
    return Launch(
        f"migrate the {environment} database", ASSET_JOB, {}, _tags("migrate", operator, environment=environment),
        asset_selection=[[environment, "database_schema"]],
    )  # fmt: skip


def health(operator: str) -> Launch:
    return Launch("probe every environment's readiness", "check_environment_health", {}, _tags("health", operator))


def rollback(environment: str, operator: str, reason: str | None = None) -> Launch:
    """`rollback` for the partition `environment`: the Launchpad's partition config and tags, with the reason."""
    check_environment(environment)
    config = rollback_run_config.get_run_config_for_partition_key(environment)
    text = (reason or "").strip() or f"rollback of {environment} requested by {operator} (shop-ops rollback)"
    config["ops"]["rollback_environment"]["config"]["reason"] = text
    tags = {**rollback_run_config.get_tags_for_partition_key(environment), **_tags("rollback", operator)}
    return Launch(f"roll {environment} back to its previous verified release", "rollback", config, tags)


def backup(day: date, operator: str) -> Launch:
    """`nightly_backup` for the partition `day` (the schedule launches the newest complete day)."""
    return Launch(
        f"back up every environment's database for {day}", "nightly_backup", {},
        _tags("backup", operator, **{"dagster/partition": day.isoformat()}),
    )  # fmt: skip


def renew_certificates(operator: str) -> Launch:
    return Launch(
        "renew certificates near expiry, reload the routers, scan", "renew_certificates", {},
        _tags("renew-certs", operator),
    )  # fmt: skip


def registry_release(
    registry: WatchedRegistry, backend_repository: str, frontend_repository: str, version: str
) -> dict[str, str]:
    """The release `version` as the registry holds it (the release tag in both repositories): {version, digests}.

    `registry` is what the push sensor reads (`RegistryResource.images_api()`: the registry's API, ECR's on aws).
    """
    check_version(version)
    found: dict[str, str] = {"version": version}
    for role, repository in (("backend", backend_repository), ("frontend", frontend_repository)):
        digest = registry.manifest_digest(repository, version)
        if digest is None:
            raise OperatorError(
                f"{repository}:{version} is not in the registry {registry.url}: push both images with the release tag "
                f"{version} first (build_images / check_pushed_build tag them), or check the version"
            )
        found[f"{role}_digest"] = digest
    return found
