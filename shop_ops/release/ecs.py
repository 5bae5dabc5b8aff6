"""Deploy image digests to an ECS service: new task definition revision, update with circuit breaker, wait, roll back.

Plain functions over a boto3 ECS client (`AwsResource.ecs()`), the aws-profile counterpart of
the local blue/green switch:

1. read the service and its current task definition;
2. register a new revision that differs only in the container images;
3. `update_service` to it with the deployment circuit breaker enabled (with rollback);
4. poll `describe_services` until the service is steady on the new revision (exactly one
   deployment, PRIMARY, rolloutState COMPLETED, runningCount == desiredCount), or the
   rollout FAILED (circuit breaker), or the timeout passes;
5. if not steady: `update_service` back to the previous task definition and wait again.

This is the same condition as botocore's `services_stable` waiter plus the rollout state and
the task definition; it is polled here so the timeout is in seconds and a FAILED rollout ends
the wait at once instead of after the waiter's attempts.

`register_revision` and `update_to_revision` are the two halves, so a caller can act on the new
revision before the service moves to it (the aws release runs its migration task from it);
`find_task_definition` finds the revision that ran given images again (the aws rollback target).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

Outcome = Literal["deployed", "rolled_back"]
CIRCUIT_BREAKER = {"enable": True, "rollback": True}


class EcsDeployError(RuntimeError):
    """The deploy could not start or ECS refused a call; the message names the cluster and service."""


@dataclass(frozen=True)
class ServiceState:
    """One look at a service: steady on the wanted task definition, failed (no use waiting), or neither."""

    stable: bool
    failed: bool
    reason: str


@dataclass(frozen=True)
class EcsRollbackResult:
    cluster: str
    service: str
    from_task_definition: str
    to_task_definition: str
    stable: bool
    reason: str
    seconds: float


@dataclass(frozen=True)
class EcsDeployResult:
    cluster: str
    service: str
    previous_task_definition: str
    new_task_definition: str
    outcome: Outcome
    reason: str
    seconds: float  # from update_service to the end, rollback included
    wait_seconds: float  # from update_service to the new revision judged steady, failed or timed out
    rollback: EcsRollbackResult | None = None


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_service(ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    """The service as `describe_services` shows it; EcsDeployError when the cluster or service does not exist."""
    try:
        response = ecs.describe_services(cluster=cluster, services=[service])
    except ClientError as exc:
        if _error_code(exc) == "ClusterNotFoundException":
            raise EcsDeployError(f"ECS cluster {cluster!r} does not exist (service {service!r})") from None
        raise EcsDeployError(f"describe_services on {cluster}/{service} failed: {exc}") from None
    services = response.get("services", [])
    if not services or services[0].get("status") == "INACTIVE":
        reasons = ", ".join(f.get("reason", "?") for f in response.get("failures", [])) or "INACTIVE"
        raise EcsDeployError(f"ECS service {service!r} does not exist in cluster {cluster!r} ({reasons})")
    return dict(services[0])


def service_state(svc: Mapping[str, Any], task_definition: str) -> ServiceState:
    """Judge one `describe_services` entry against the task definition it should be steady on."""
    status = svc.get("status")
    if status != "ACTIVE":
        return ServiceState(False, True, f"service status is {status}")
    deployments = list(svc.get("deployments", []))
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None:
        return ServiceState(False, False, "no PRIMARY deployment yet")
    rollout = primary.get("rolloutState")
    if rollout == "FAILED":
        why = primary.get("rolloutStateReason") or "no reason given"
        return ServiceState(False, True, f"deployment {primary.get('id')} FAILED (circuit breaker): {why}")
    current = svc.get("taskDefinition")
    if current != task_definition:
        # ECS's own circuit-breaker rollback, or another deploy, moved the service away.
        return ServiceState(False, True, f"service now runs {current}, not {task_definition}")
    running, desired = primary.get("runningCount", 0), primary.get("desiredCount", 0)
    summary = (
        f"{len(deployments)} deployment(s); PRIMARY {running}/{desired} running, rolloutState {rollout}; "
        f"service {svc.get('runningCount', 0)}/{svc.get('desiredCount', 0)} running"
    )
    steady = (
        len(deployments) == 1
        and rollout == "COMPLETED"
        and running == desired
        and svc.get("runningCount") == svc.get("desiredCount")
    )
    return ServiceState(steady, False, summary)


def wait_for_steady_state(
    ecs: Any,
    cluster: str,
    service: str,
    task_definition: str,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ServiceState:
    """Poll until steady on `task_definition`, failed, or `timeout_s` passed (then not stable, not failed)."""
    deadline = clock() + timeout_s
    while True:
        state = service_state(describe_service(ecs, cluster, service), task_definition)
        if state.stable or state.failed:
            return state
        remaining = deadline - clock()
        if remaining <= 0:
            return ServiceState(False, False, f"not steady after {timeout_s:g}s: {state.reason}")
        sleep(min(poll_s, remaining))


def register_with_images(ecs: Any, task_definition: str, images: Mapping[str, str]) -> str:
    """Register a new revision of `task_definition` with only the named containers' images changed; its ARN.

    Every field the RegisterTaskDefinition API accepts is carried over as the old revision had it
    (cpu, memory, roles, network mode, ports, environment, secrets, volumes, ...), and its tags.
    """
    for name, image in images.items():
        if "@sha256:" not in image:
            raise EcsDeployError(f"image for container {name!r} must be pinned by digest (…@sha256:…), got {image!r}")
    response = ecs.describe_task_definition(taskDefinition=task_definition, include=["TAGS"])
    old = response["taskDefinition"]
    accepted = ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape.members
    params = {key: copy.deepcopy(value) for key, value in old.items() if key in accepted}
    known = [c["name"] for c in params["containerDefinitions"]]
    unknown = sorted(set(images) - set(known))
    if unknown:
        raise EcsDeployError(
            f"task definition {old['taskDefinitionArn']} has no container(s) {', '.join(unknown)}; "
            f"it has {', '.join(known)}"
        )
    for container in params["containerDefinitions"]:
        if container["name"] in images:
            container["image"] = images[container["name"]]
    if response.get("tags"):
        params["tags"] = response["tags"]
    return str(ecs.register_task_definition(**params)["taskDefinition"]["taskDefinitionArn"])


def _update_service(ecs: Any, svc: Mapping[str, Any], cluster: str, service: str, task_definition: str) -> None:
    """Point the service at `task_definition`, keeping its deployment configuration plus the circuit breaker."""
    config = {**svc.get("deploymentConfiguration", {}), "deploymentCircuitBreaker": dict(CIRCUIT_BREAKER)}
    try:
        ecs.update_service(
            cluster=cluster, service=service, taskDefinition=task_definition, deploymentConfiguration=config
        )
    except ClientError as exc:
        raise EcsDeployError(f"update_service {cluster}/{service} -> {task_definition} failed: {exc}") from None


def task_definition_family(arn: str) -> str:
    """`family` of `arn:aws:ecs:...:task-definition/family:revision` (or of `family:revision`)."""
    return arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


def _revision(arn: str) -> int:
    tail = arn.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def find_task_definition(ecs: Any, family: str, images: Mapping[str, str], max_revisions: int = 100) -> str | None:
    """The newest ACTIVE revision of `family` whose named containers run exactly `images`; None if none does.

    Looks at the newest `max_revisions` revisions (one `describe_task_definition` each). Revisions
    are sorted here by number: `sort=DESC` is asked for, but not every endpoint honours it.
    """
    arns: list[str] = []
    try:
        pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status="ACTIVE", sort="DESC")
        for page in pages:
            # familyPrefix is a prefix: "shop-staging" also lists "shop-staging-worker".
            arns.extend(arn for arn in page.get("taskDefinitionArns", []) if task_definition_family(arn) == family)
        for arn in sorted(arns, key=_revision, reverse=True)[:max_revisions]:
            containers = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"]
            running = {c["name"]: c.get("image") for c in containers}
            if all(running.get(name) == image for name, image in images.items()):
                return arn
    except ClientError as exc:
        raise EcsDeployError(f"listing revisions of task definition family {family!r} failed: {exc}") from None
    return None


def rollback_ecs(
    ecs: Any,
    cluster: str,
    service: str,
    to_task_definition: str,
    timeout_s: float = 600,
    poll_s: float = 10,
) -> EcsRollbackResult:
    """Put the service back on `to_task_definition` and wait for it to be steady (stable=False says it was not)."""
    started = time.monotonic()
    svc = describe_service(ecs, cluster, service)
    from_td = str(svc.get("taskDefinition"))
    _update_service(ecs, svc, cluster, service, to_task_definition)
    state = wait_for_steady_state(ecs, cluster, service, to_task_definition, timeout_s, poll_s)
    return EcsRollbackResult(
        cluster=cluster,
        service=service,
        from_task_definition=from_td,
        to_task_definition=to_task_definition,
        stable=state.stable,
        reason=state.reason,
        seconds=round(time.monotonic() - started, 3),
    )


def register_revision(
    ecs: Any, cluster: str, service: str, images: Mapping[str, str]
) -> tuple[dict[str, Any], str, str]:
    """(the service, its current task definition, a new revision of it with `images`); the service is untouched.

    Raises EcsDeployError when the cluster, service or a container does not exist, an image is not
    pinned by digest, or the service is not on the ECS (rolling update) deployment controller,
    which the circuit breaker needs.
    """
    svc = describe_service(ecs, cluster, service)
    controller = svc.get("deploymentController", {}).get("type", "ECS")
    if controller != "ECS":
        raise EcsDeployError(
            f"ECS service {cluster}/{service} uses the {controller} deployment controller; "
            "the circuit breaker and this deploy need the ECS (rolling update) controller"
        )
    previous = str(svc["taskDefinition"])
    return svc, previous, register_with_images(ecs, previous, images)


def update_to_revision(
    ecs: Any,
    cluster: str,
    service: str,
    svc: Mapping[str, Any],
    previous: str,
    new: str,
    timeout_s: float = 600,
    poll_s: float = 10,
) -> EcsDeployResult:
    """Move the service from `previous` to `new` and wait; not steady: back to `previous` (outcome rolled_back)."""
    started = time.monotonic()
    _update_service(ecs, svc, cluster, service, new)
    state = wait_for_steady_state(ecs, cluster, service, new, timeout_s, poll_s)
    wait_seconds = round(time.monotonic() - started, 3)
    if state.stable:
        seconds = round(time.monotonic() - started, 3)
        return EcsDeployResult(cluster, service, previous, new, "deployed", state.reason, seconds, wait_seconds)
    rollback = rollback_ecs(ecs, cluster, service, previous, timeout_s=timeout_s, poll_s=poll_s)
    steady = "steady" if rollback.stable else f"NOT steady ({rollback.reason})"
    reason = f"{new} did not become steady: {state.reason}; rolled back to {previous}, {steady}"
    return EcsDeployResult(
        cluster, service, previous, new, "rolled_back", reason, round(time.monotonic() - started, 3), wait_seconds,
        rollback,
    )  # fmt: skip
