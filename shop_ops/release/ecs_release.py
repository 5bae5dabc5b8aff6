"""Releases on ECS (aws profile): the local deploy's rules over an ECS service — guards, ledger, migrate, roll out, verify.

Plain functions over a boto3 ECS client, the `RegistryClient` (for the pinned ECR references)
and the `ReleaseLedger`; no Dagster. The counterpart of `bluegreen.deploy` / `bluegreen.rollback`:

- `deploy_release_ecs`: `check_guards` (production needs `approved_by` and digests verified on
  staging), then the environment's deploy lock (below); a ledger row; a new task definition revision
  with both images pinned by digest; the migration as a one-off task of that revision
  (`shop-migrate head --expand-only`, must exit 0) before the service moves; the rolling update
  with the circuit breaker until steady (`ecs.deploy_to_ecs`); verification through the
  environment's public URL (smoke tests + k6, the local verifier). Not steady or not verified:
  back to the previous task definition, and the attempt fails with the reason.
- `rollback_release_ecs`: the service back on the task definition of the previous verified
  release (ledger), found in the family's registration history by its two image references.

One deploy per environment: both functions hold the environment's lock in the release ledger
(`ReleaseLedger.environment_lock`: a PostgreSQL advisory lock in Dagster's storage database on
aws, which every run task reaches) and refuse at once while another run holds it. The run queue's
limit on the run tag `environment` (deploy/ecs/dagster.yaml) queues such runs before they start;
the lock holds even when that limit is missing or a run lacks the tag.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shop_ops.release.bluegreen import DeployRefused, Release, Verifier, check_guards
from shop_ops.release.ecs import (
    EcsDeployError,
    deploy_to_ecs,
    describe_service,
    find_task_definition,
    rollback_ecs,
    task_definition_family,
)
from shop_ops.release.ecs_tasks import EcsTaskError, run_task_to_completion
from shop_ops.release.images import pinned_release_images
from shop_ops.release.ledger import EnvironmentLocked, ReleaseLedger
from shop_ops.resources.registry import RegistryClient

SLOT = "ecs"  # the ledger's `slot` on aws: the service's rolling update, no blue/green slots
MIGRATE_COMMAND = ("shop-migrate", "head", "--expand-only")


class EcsReleaseFailed(RuntimeError):
    """The release started (ledger row written) but does not serve; `result` has the numbers and the reason."""

    def __init__(self, message: str, result: EcsReleaseResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class EcsReleaseDeps:
    """Everything one environment's ECS release touches."""

    ecs: Any  # a boto3 ECS client (AwsResource.ecs())
    cluster: str
    service: str
    url: str  # the environment's public URL: verification runs against it
    registry: RegistryClient  # ECR: only its address is used, for image@digest references
    ledger: ReleaseLedger
    backend_repository: str = "shop/backend"
    frontend_repository: str = "shop/frontend"
    migrate_container: str = "backend"
    migrate_command: Sequence[str] = MIGRATE_COMMAND
    deploy_timeout_s: float = 600
    migrate_timeout_s: float = 900
    poll_s: float = 10
    log: Callable[[str], None] = field(default=lambda _line: None)


@dataclass
class EcsReleaseResult:
    """One deploy or rollback: its ledger row, the task definitions involved, seconds per step."""

    environment: str
    release_id: str
    version: str
    kind: str  # deploy | rollback
    previous_release_id: str | None
    status: str = "deploying"
    reason: str = ""
    task_definition: str = ""  # what the release runs (the new revision; for a rollback, the found one)
    previous_task_definition: str = ""  # what the service ran before
    migration_task: str = ""
    backend_digest: str = ""
    frontend_digest: str = ""
    previous_version: str | None = None
    steps: dict[str, float] = field(default_factory=dict)  # migrate, rollout, verify, rollback
    verification: dict[str, float] = field(default_factory=dict)  # the verifier's numbers (k6 p95, error rate)
    total_seconds: float = 0.0

    def metadata(self) -> dict[str, Any]:
        """Flat values (numbers as numbers) for asset metadata; no secrets in any of them."""
        values: dict[str, Any] = {
            "environment": self.environment,
            "release_id": self.release_id,
            "kind": self.kind,
            "version": self.version,
            "backend_digest": self.backend_digest,
            "frontend_digest": self.frontend_digest,
            "previous_version": self.previous_version or "",
            "status": self.status,
            "task_definition": self.task_definition,
            "previous_task_definition": self.previous_task_definition,
            "previous_release_id": self.previous_release_id or "",
            "total_seconds": self.total_seconds,
        }
        if self.migration_task:
            values["migration_task"] = self.migration_task
        values.update({f"{name}_seconds": seconds for name, seconds in self.steps.items()})
        values.update(self.verification)
        return values


@contextmanager
def environment_lock(ledger: ReleaseLedger, environment: str) -> Iterator[None]:
    """The ledger's deploy lock of `environment`; DeployRefused (nothing touched) while another run holds it."""
    try:
        with ledger.environment_lock(environment):
            yield
    except EnvironmentLocked as exc:
        raise DeployRefused(str(exc)) from None


def pinned_images(deps: EcsReleaseDeps, backend_digest: str, frontend_digest: str) -> dict[str, str]:
    """{container name: registry/repository@digest} for the task definition."""
    return pinned_release_images(
        deps.registry, deps.backend_repository, deps.frontend_repository, backend_digest, frontend_digest
    )


def _seconds(since: float) -> float:
    return round(time.monotonic() - since, 3)


def deploy_release_ecs(
    environment: str,
    release: Release,
    deps: EcsReleaseDeps,
    verify: Verifier,
    approved_by: str | None = None,
) -> EcsReleaseResult:
    """Put `release` on `environment`'s ECS service, verified, or leave the service on its previous task definition.

    DeployRefused (nothing touched, no ledger row): a guard said no. EcsReleaseFailed (ledger row
    `failed` or `rolled_back`): the migration, the rollout or the verification failed; the reason
    says which and whether the service is back on its previous task definition.
    """
    check_guards(environment, release, deps.ledger, approved_by)
    with environment_lock(deps.ledger, environment):
        return _deploy(environment, release, deps, verify, approved_by)


def _deploy(
    environment: str, release: Release, deps: EcsReleaseDeps, verify: Verifier, approved_by: str | None
) -> EcsReleaseResult:
    began = time.monotonic()
    images = pinned_images(deps, release.backend_digest, release.frontend_digest)
    previous = deps.ledger.serving(environment)
    release_id = deps.ledger.start(
        environment, release.version, release.backend_digest, release.frontend_digest, SLOT,
        approved_by=approved_by, previous_release_id=previous.release_id if previous else None,
    )  # fmt: skip
    result = EcsReleaseResult(
        environment, release_id, release.version, "deploy", previous.release_id if previous else None,
        backend_digest=release.backend_digest, frontend_digest=release.frontend_digest,
        previous_version=previous.version if previous else None,
    )  # fmt: skip
    steps = result.steps

    def fail(status: str, reason: str) -> EcsReleaseFailed:
        result.status, result.reason = status, reason
        result.total_seconds = _seconds(began)
        deps.ledger.finish(release_id, status, reason=reason, steps=steps, measures=result.verification)
        deps.log(f"{environment}: {release.version} {status}: {reason}")
        return EcsReleaseFailed(
            f"{environment} deploy of {release.version} {status.replace('_', ' ')}: {reason}", result
        )

    migrated = False

    def migrate(task_definition: str) -> None:
        nonlocal migrated
        result.task_definition = task_definition
        deps.log(f"{environment}: migrating with a one-off task of {task_definition}")
        started = time.monotonic()
        try:
            task = run_task_to_completion(
                deps.ecs, deps.cluster, deps.service, task_definition, deps.migrate_container,
                deps.migrate_command, started_by=release_id, timeout_s=deps.migrate_timeout_s, poll_s=deps.poll_s,
            )  # fmt: skip
        finally:
            steps["migrate"] = _seconds(started)
        result.migration_task = task.task_arn
        migrated = True

    deps.log(f"{environment}: deploying {release.version} to ECS service {deps.cluster}/{deps.service}")
    try:
        deployed = deploy_to_ecs(
            deps.ecs, deps.cluster, deps.service, images,
            timeout_s=deps.deploy_timeout_s, poll_s=deps.poll_s, before_update=migrate,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any failure ends the attempt with its reason
        if migrated:
            what = "ECS deploy failed"
        else:
            what = "migration failed" if result.task_definition else "ECS deploy could not start"
        detail = str(exc) if isinstance(exc, EcsDeployError | EcsTaskError) else f"{type(exc).__name__}: {exc}"
        if migrated:
            detail += f"; the service may already run {result.task_definition}: check it, roll back with `rollback`"
        raise fail("failed", f"{what}: {detail}") from None
    result.task_definition = deployed.new_task_definition
    result.previous_task_definition = deployed.previous_task_definition
    steps["rollout"] = deployed.wait_seconds
    if deployed.outcome == "rolled_back":
        if deployed.rollback is not None:
            steps["rollback"] = deployed.rollback.seconds
        raise fail("rolled_back", f"the ECS rollout did not become steady: {deployed.reason}")

    deps.log(f"{environment}: {deployed.new_task_definition} is steady; verifying through {deps.url}")
    started = time.monotonic()
    try:
        verdict = verify(deps.url)
        passed, reason = bool(verdict.passed), str(verdict.reason)
        result.verification = dict(verdict.numbers())
    except Exception as exc:  # noqa: BLE001 - a crashing verifier is a failed verification
        passed, reason = False, f"the verifier raised {type(exc).__name__}: {exc}"
    steps["verify"] = _seconds(started)
    if not passed:
        back_to = deployed.previous_task_definition
        started = time.monotonic()
        try:
            rollback = rollback_ecs(
                deps.ecs, deps.cluster, deps.service, back_to, timeout_s=deps.deploy_timeout_s, poll_s=deps.poll_s
            )
            after = f"rolled back to {back_to}, " + (
                "steady"
                if rollback.stable
                else f"NOT steady ({rollback.reason}): an incident, see the service's events"
            )
        except Exception as exc:  # noqa: BLE001 - the attempt must still end in the ledger
            after = (
                f"the rollback to {back_to} failed ({exc}): the service may still run {deployed.new_task_definition}"
            )
        steps["rollback"] = _seconds(started)
        raise fail("rolled_back", f"verification failed: {reason}; {after}")

    if previous is not None:
        deps.ledger.mark(previous.release_id, "replaced")
    result.status, result.reason = "verified", reason or f"verified through {deps.url}"
    result.total_seconds = _seconds(began)
    deps.ledger.finish(release_id, "verified", reason=result.reason, steps=steps, measures=result.verification)
    deps.log(f"{environment}: {release.version} serves from {deployed.new_task_definition} ({result.total_seconds}s)")
    return result


def rollback_release_ecs(
    environment: str,
    deps: EcsReleaseDeps,
    *,
    reason: str = "rollback requested",
) -> EcsReleaseResult:
    """Put `environment`'s service back on the task definition of its previous verified release.

    That task definition is the newest ACTIVE revision of the service's family that runs exactly
    the previous release's two image references. The release that served is marked
    `rolled_back`; the rollback is a new `verified` ledger row once the service is steady.
    """
    with environment_lock(deps.ledger, environment):
        return _rollback(environment, deps, reason)


def _rollback(environment: str, deps: EcsReleaseDeps, reason: str) -> EcsReleaseResult:
    began = time.monotonic()
    current = deps.ledger.serving(environment)
    target = deps.ledger.previous_verified(environment)
    if target is None:
        raise DeployRefused(f"{environment} has no previous verified release to roll back to")
    images = pinned_images(deps, target.backend_digest, target.frontend_digest)
    try:
        serving_td = str(describe_service(deps.ecs, deps.cluster, deps.service)["taskDefinition"])
        family = task_definition_family(serving_td)
        task_definition = find_task_definition(deps.ecs, family, images)
    except EcsDeployError as exc:
        raise DeployRefused(f"rollback of {environment} refused: {exc}") from None
    if task_definition is None:
        raise DeployRefused(
            f"rollback of {environment} refused: no ACTIVE revision of task definition family {family!r} runs "
            f"{target.version} ({images['backend']}, {images['frontend']}); it was deregistered or never deployed "
            f"there. Deploy {target.version} again with release_staging / promote_production"
        )
    release_id = deps.ledger.start(
        environment, target.version, target.backend_digest, target.frontend_digest, SLOT,
        previous_release_id=current.release_id if current else None, kind="rollback",
    )  # fmt: skip
    result = EcsReleaseResult(
        environment, release_id, target.version, "rollback", current.release_id if current else None,
        task_definition=task_definition, previous_task_definition=serving_td,
        backend_digest=target.backend_digest, frontend_digest=target.frontend_digest,
        previous_version=current.version if current else None,
    )  # fmt: skip
    deps.log(f"{environment}: rolling back to {target.version} ({task_definition})")
    started = time.monotonic()
    try:
        rolled = rollback_ecs(
            deps.ecs, deps.cluster, deps.service, task_definition, timeout_s=deps.deploy_timeout_s, poll_s=deps.poll_s
        )
        problem = "" if rolled.stable else f"{task_definition} is NOT steady: {rolled.reason}"
    except Exception as exc:  # noqa: BLE001 - the attempt must still end in the ledger
        problem = f"update to {task_definition} failed: {exc}"
    result.steps["rollback"] = _seconds(started)
    result.total_seconds = _seconds(began)
    if problem:
        result.status, result.reason = "failed", problem
        deps.ledger.finish(release_id, "failed", reason=result.reason, steps=result.steps)
        raise EcsReleaseFailed(f"{environment} rollback to {target.version} failed: {result.reason}", result)
    if current is not None:
        deps.ledger.mark(current.release_id, "rolled_back", reason=reason)
    result.status = "verified"
    result.reason = f"{reason}: back on {target.version} ({target.release_id}), {task_definition}"
    deps.ledger.finish(release_id, "verified", reason=result.reason, steps=result.steps)
    return result
