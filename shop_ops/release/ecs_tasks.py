"""One-off ECS tasks: run a task definition with a command override in a service's network, wait for it to stop.

The aws profile's migration step: `shop-migrate head --expand-only` in the backend container of
the release's new task definition revision, started with `run_task` in the same cluster, launch
type / capacity providers and awsvpc network (subnets, security groups) as the environment's
service, then polled with `describe_tasks` until it is STOPPED. It passed when that container
exited 0. Its output (the JSON line with the revisions) goes where the task definition's log
configuration sends it (CloudWatch Logs); it is not read back here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from shop_ops.release.ecs import describe_service

# Service fields that say where and how its tasks run; run_task takes them under the same names.
PLACEMENT_FIELDS = ("launchType", "capacityProviderStrategy", "platformVersion", "networkConfiguration")
STARTED_BY_MAX = 36  # the RunTask API's limit on startedBy


class EcsTaskError(RuntimeError):
    """A one-off task could not start, did not stop in time or exited non-zero; the message names the task."""


@dataclass(frozen=True)
class EcsTaskResult:
    task_arn: str
    task_definition: str
    container: str
    exit_code: int
    seconds: float


def run_params(
    svc: Mapping[str, Any],
    cluster: str,
    task_definition: str,
    container: str,
    command: Sequence[str],
    started_by: str,
) -> dict[str, Any]:
    """The `run_task` request: one task of `task_definition` placed like the service's tasks, `command` in `container`."""
    params: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": task_definition,
        "count": 1,
        "startedBy": started_by[:STARTED_BY_MAX],
        "overrides": {"containerOverrides": [{"name": container, "command": list(command)}]},
    }
    params.update({key: svc[key] for key in PLACEMENT_FIELDS if svc.get(key)})
    return params


def _judge(task: Mapping[str, Any], container: str, command: Sequence[str]) -> int:
    """The container's exit code when it is 0; EcsTaskError with ECS's reasons otherwise."""
    arn = task.get("taskArn", "?")
    found = next((c for c in task.get("containers", []) if c.get("name") == container), None)
    why = "; ".join(
        part
        for part in (
            f"stopCode {task['stopCode']}" if task.get("stopCode") else "",
            f"stoppedReason {task['stoppedReason']!r}" if task.get("stoppedReason") else "",
            f"container reason {found['reason']!r}" if found and found.get("reason") else "",
        )
        if part
    )
    if found is None:
        names = ", ".join(c.get("name", "?") for c in task.get("containers", [])) or "none"
        raise EcsTaskError(f"task {arn} stopped without a container {container!r} (containers: {names}); {why}")
    exit_code = found.get("exitCode")
    if exit_code == 0:
        return 0
    shown = " ".join(command)
    if exit_code is None:
        raise EcsTaskError(
            f"`{shown}` in task {arn} stopped before container {container!r} ran ({why or 'no reason given'}); "
            "see the task's stopped reason in the ECS console (image pull, secrets, capacity)"
        )
    raise EcsTaskError(
        f"`{shown}` in task {arn} exited {exit_code}{f' ({why})' if why else ''}; "
        f"its output is in container {container!r}'s log stream (the task definition's log configuration)"
    )


def run_task_to_completion(
    ecs: Any,
    cluster: str,
    service: str,
    task_definition: str,
    container: str,
    command: Sequence[str],
    started_by: str,
    timeout_s: float = 900,
    poll_s: float = 10,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> EcsTaskResult:
    """Run `command` in `container` of one task of `task_definition`, placed like `service`'s tasks; wait for STOPPED.

    Returns when the container exited 0. Raises EcsTaskError when ECS places no task, the
    container exits non-zero or never ran, or the task is still not STOPPED after `timeout_s`
    (it is then stopped, so a migration never runs on unattended).
    """
    started = clock()
    svc = describe_service(ecs, cluster, service)
    params = run_params(svc, cluster, task_definition, container, command, started_by)
    try:
        response = ecs.run_task(**params)
    except ClientError as exc:
        raise EcsTaskError(f"run_task of {task_definition} in cluster {cluster!r} failed: {exc}") from None
    tasks = response.get("tasks") or []
    if not tasks:
        reasons = ", ".join(f"{f.get('arn', '?')}: {f.get('reason', '?')}" for f in response.get("failures", []))
        raise EcsTaskError(
            f"run_task of {task_definition} in cluster {cluster!r} placed no task ({reasons or 'no reason'})"
        )
    arn = str(tasks[0]["taskArn"])
    deadline = started + timeout_s
    while True:
        try:
            described = ecs.describe_tasks(cluster=cluster, tasks=[arn]).get("tasks") or []
        except ClientError as exc:
            raise EcsTaskError(f"describe_tasks of {arn} failed: {exc}") from None
        if not described:
            raise EcsTaskError(f"task {arn} is not known to cluster {cluster!r} any more")
        task = described[0]
        if task.get("lastStatus") == "STOPPED":
            exit_code = _judge(task, container, command)
            return EcsTaskResult(arn, task_definition, container, exit_code, round(clock() - started, 3))
        remaining = deadline - clock()
        if remaining <= 0:
            reason = f"shop-ops: not stopped after {timeout_s:g}s"
            try:
                ecs.stop_task(cluster=cluster, task=arn, reason=reason)
            except ClientError as exc:
                raise EcsTaskError(
                    f"task {arn} still {task.get('lastStatus')} after {timeout_s:g}s and stop_task failed: {exc}"
                ) from None
            raise EcsTaskError(
                f"`{' '.join(command)}` in task {arn} was still {task.get('lastStatus')} after {timeout_s:g}s; "
                "it was stopped. Raise aws.migrate_timeout_seconds if the migration needs longer"
            )
        sleep(min(poll_s, remaining))
