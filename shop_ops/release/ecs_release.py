"""Releases on ECS (aws profile): the steps of `flow.deploy` / `flow.rollback` over one ECS service.

- migrate: a new task definition revision with both images pinned by digest, then the migration
  as a one-off ECS task of that revision (`shop-migrate head --expand-only`, must exit 0) before
  the service moves;
- roll out: the rolling update with the circuit breaker until steady (`ecs.update_to_revision`);
  not steady: the service is put back on its previous task definition (`rolled_back`);
- verify (the flow) through the environment's public URL; failed: back to the previous revision;
- rollback: the service back on the task definition of the previous verified release, found in
  the family's registration history by its two image references.

One deploy per environment: the environment's lock in the release ledger (`ReleaseLedger.environment_lock`:
a PostgreSQL advisory lock in Dagster's storage database on aws, which every run task reaches),
refused at once while another run holds it. The run queue's limit on the run tag `environment`
(deploy/ecs/dagster.yaml) queues such runs before they start; the lock holds even without it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shop_ops.release.ecs import (
    EcsDeployError,
    describe_service,
    find_task_definition,
    register_revision,
    rollback_ecs,
    task_definition_family,
    update_to_revision,
)
from shop_ops.release.ecs_tasks import EcsTaskError, run_task_to_completion
from shop_ops.release.flow import DeployRefused, Log, Placement, Release, StepFailed
from shop_ops.release.images import pinned_release_images
from shop_ops.resources.ledger import EnvironmentLocked, LedgerEntry, ReleaseLedger
from shop_ops.resources.registry import RegistryClient

SLOT = "ecs"  # the ledger's `slot` on aws: the service's rolling update, no blue/green slots
MIGRATE_COMMAND = ("shop-migrate", "head", "--expand-only")


def _seconds(since: float) -> float:
    return round(time.monotonic() - since, 3)


def _detail(exc: Exception) -> str:
    return str(exc) if isinstance(exc, EcsDeployError | EcsTaskError) else f"{type(exc).__name__}: {exc}"


@dataclass
class EcsService:
    """The release steps for one environment's ECS service (a `flow.Strategy`)."""

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
    log: Log = field(default=lambda _line: None)
    _service: dict[str, Any] = field(default_factory=dict, repr=False)  # as described when the revision was made

    @contextmanager
    def lock(self, environment: str) -> Iterator[None]:
        try:
            with self.ledger.environment_lock(environment):
                yield
        except EnvironmentLocked as exc:
            raise DeployRefused(str(exc)) from None

    def place(self, environment: str) -> Placement:
        return Placement(label="task_definition", ledger_slot=SLOT)

    def images(self, backend_digest: str, frontend_digest: str) -> dict[str, str]:
        return pinned_release_images(
            self.registry, self.backend_repository, self.frontend_repository, backend_digest, frontend_digest
        )

    def migrate(self, environment: str, release: Release, images: dict[str, str], place: Placement) -> dict[str, Any]:
        self.log(f"{environment}: deploying {release.version} to ECS service {self.cluster}/{self.service}")
        try:
            self._service, place.previous, place.target = register_revision(
                self.ecs, self.cluster, self.service, images
            )
        except Exception as exc:  # noqa: BLE001 - the attempt ends with the reason
            raise StepFailed(f"ECS deploy could not start: {_detail(exc)}") from None
        self.log(f"{environment}: migrating with a one-off task of {place.target}")
        try:
            task = run_task_to_completion(
                self.ecs, self.cluster, self.service, place.target, self.migrate_container, self.migrate_command,
                started_by=place.release_id, timeout_s=self.migrate_timeout_s, poll_s=self.poll_s,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            raise StepFailed(f"migration failed: {_detail(exc)}") from None
        place.details["migration_task"] = task.task_arn
        return {}

    def roll_out(self, environment: str, images: dict[str, str], place: Placement, steps: dict[str, float]) -> str:
        try:
            deployed = update_to_revision(
                self.ecs, self.cluster, self.service, self._service, place.previous, place.target,
                timeout_s=self.deploy_timeout_s, poll_s=self.poll_s,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            raise StepFailed(
                f"ECS deploy failed: {_detail(exc)}; the service may already run {place.target}: check it, "
                "roll back with `rollback`"
            ) from None
        steps["rollout"] = deployed.wait_seconds
        if deployed.outcome == "rolled_back":
            if deployed.rollback is not None:
                steps["rollback"] = deployed.rollback.seconds
            raise StepFailed(f"the ECS rollout did not become steady: {deployed.reason}", "rolled_back")
        self.log(f"{environment}: {place.target} is steady")
        return self.url

    def revert(self, place: Placement, steps: dict[str, float]) -> str:
        started = time.monotonic()
        try:
            back = rollback_ecs(
                self.ecs,
                self.cluster,
                self.service,
                place.previous,
                timeout_s=self.deploy_timeout_s,
                poll_s=self.poll_s,
            )
            note = f"; rolled back to {place.previous}, " + (
                "steady" if back.stable else f"NOT steady ({back.reason}): an incident, see the service's events"
            )
        except Exception as exc:  # noqa: BLE001 - the attempt must still end in the ledger
            note = f"; the rollback to {place.previous} failed ({exc}): the service may still run {place.target}"
        steps["rollback"] = _seconds(started)
        return note

    def check_rollback(self, environment: str, target: LedgerEntry, images: dict[str, str], place: Placement) -> None:
        try:
            place.previous = str(describe_service(self.ecs, self.cluster, self.service)["taskDefinition"])
            family = task_definition_family(place.previous)
            found = find_task_definition(self.ecs, family, images)
        except EcsDeployError as exc:
            raise DeployRefused(f"rollback of {environment} refused: {exc}") from None
        if found is None:
            raise DeployRefused(
                f"rollback of {environment} refused: no ACTIVE revision of task definition family {family!r} runs "
                f"{target.version} ({images['backend']}, {images['frontend']}); it was deregistered or never "
                f"deployed there. Deploy {target.version} again with release_staging / promote_production"
            )
        place.target = found

    def restore(self, environment: str, images: dict[str, str], place: Placement, steps: dict[str, float]) -> float:
        started = time.monotonic()
        try:
            rolled = rollback_ecs(
                self.ecs, self.cluster, self.service, place.target, timeout_s=self.deploy_timeout_s, poll_s=self.poll_s
            )
        except Exception as exc:  # noqa: BLE001
            raise StepFailed(f"update to {place.target} failed: {exc}") from None
        finally:
            steps["rollback"] = _seconds(started)
        if not rolled.stable:
            raise StepFailed(f"{place.target} is NOT steady: {rolled.reason}")
        return steps["rollback"]

    def retire(self, place: Placement, steps: dict[str, float]) -> None:
        """Nothing to remove: the rolling update already replaced the previous revision's tasks."""
