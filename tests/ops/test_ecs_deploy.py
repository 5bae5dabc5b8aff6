"""Contract tests of the ECS deploy (shop_ops.release.ecs) against a real local moto server.

What this proves and what it does not: moto checks request shapes (botocore validates every
parameter against the ECS service model, moto parses and stores them) and lets us assert the
call sequence and the state a real ECS API would hold afterwards (task definition revisions,
the service's task definition and deployment configuration). It does not run containers or
model ECS rollouts: moto gives every service a single PRIMARY deployment whose runningCount
is MOTO_ECS_SERVICE_RUNNING (2 here) and whose rolloutState is fixed at creation (COMPLETED
when desiredCount <= 2, else IN_PROGRESS forever); `update_service` does not start a new
deployment and never reports FAILED. So the failed-rollout paths are made like this:

- timeout: a service with desiredCount 3, which moto itself keeps IN_PROGRESS; the deploy's
  real clock runs out (1 s) and it rolls back. Nothing is patched: the code under test sees
  only what moto answers.
- circuit breaker: a botocore `after-call` hook on this test's client rewrites
  DescribeServices answers for the new revision to rolloutState FAILED, which is what ECS
  reports when the breaker trips. Requests still go to moto unchanged.
"""

from __future__ import annotations

import time
import uuid

import pytest

from shop_ops.definitions import release_target
from shop_ops.release.ecs import (
    EcsDeployError,
    register_revision,
    rollback_ecs,
    service_state,
    update_to_revision,
)
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.settings import ROOT, load_settings
from tests.ops.conftest import MOTO_ECS_RUNNING, REGION


def deploy_to_ecs(ecs, cluster: str, service: str, images: dict, timeout_s: float, poll_s: float):
    """The two halves the ECS release runs as its migrate and roll-out steps, back to back."""
    svc, previous, new = register_revision(ecs, cluster, service, images)
    return update_to_revision(ecs, cluster, service, svc, previous, new, timeout_s=timeout_s, poll_s=poll_s)


OLD = {
    "backend": "127.0.0.1:5055/shop/backend@sha256:" + "a" * 64,
    "frontend": "127.0.0.1:5055/shop/frontend@sha256:" + "b" * 64,
}
NEW = {
    "backend": "127.0.0.1:5055/shop/backend@sha256:" + "c" * 64,
    "frontend": "127.0.0.1:5055/shop/frontend@sha256:" + "d" * 64,
}
# Fields of describe_task_definition that the API sets itself (not part of what we register).
SERVER_FIELDS = {"taskDefinitionArn", "revision", "status", "registeredAt", "registeredBy", "requiresAttributes"}


def make_service(ecs, desired: int = 2) -> tuple[str, str, str]:
    """A cluster, a two-container task definition and a service on it; (cluster, service, task definition ARN)."""
    cluster = f"shop-{uuid.uuid4().hex[:8]}"
    ecs.create_cluster(clusterName=cluster)
    container = {
        "essential": True,
        "environment": [{"name": "SHOP_WORKERS", "value": "2"}],
        "secrets": [{"name": "SHOP_DATABASE_URL", "valueFrom": "arn:aws:secretsmanager:eu-central-1:1:secret:db"}],
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/shop", "awslogs-region": REGION}},
    }
    td = ecs.register_task_definition(
        family=cluster,
        taskRoleArn="arn:aws:iam::123456789012:role/shop-task",
        executionRoleArn="arn:aws:iam::123456789012:role/shop-exec",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="512",
        memory="1024",
        containerDefinitions=[
            {**container, "name": "backend", "image": OLD["backend"], "cpu": 384, "memory": 768,
             "portMappings": [{"containerPort": 8000, "protocol": "tcp"}]},
            {**container, "name": "frontend", "image": OLD["frontend"], "cpu": 128, "memory": 256,
             "portMappings": [{"containerPort": 8080, "protocol": "tcp"}]},
        ],
        tags=[{"key": "app", "value": "shop"}],
    )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
    ecs.create_service(
        cluster=cluster,
        serviceName="shop-staging",
        taskDefinition=td,
        desiredCount=desired,
        launchType="FARGATE",
        deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 50},
    )
    # moto's create_service drops deploymentConfiguration (its update_service keeps it): set it again.
    ecs.update_service(
        cluster=cluster,
        service="shop-staging",
        deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 50},
    )
    return cluster, "shop-staging", td


def service_of(ecs, cluster: str, service: str) -> dict:
    return ecs.describe_services(cluster=cluster, services=[service])["services"][0]


def without_images(td: dict) -> dict:
    td = {k: v for k, v in td.items() if k not in SERVER_FIELDS}
    td["containerDefinitions"] = [{k: v for k, v in c.items() if k != "image"} for c in td["containerDefinitions"]]
    return td


def test_deploy_registers_new_images_only_and_updates_with_circuit_breaker(ecs, calls):
    cluster, service, old_td = make_service(ecs)
    calls.items.clear()

    result = deploy_to_ecs(ecs, cluster, service, NEW, timeout_s=10, poll_s=0.1)

    assert result.outcome == "deployed", result.reason
    assert result.previous_task_definition == old_td
    assert result.new_task_definition.endswith(f"task-definition/{cluster}:2")
    assert result.rollback is None
    assert calls.names() == [
        "DescribeServices",
        "DescribeTaskDefinition",
        "RegisterTaskDefinition",
        "UpdateService",
        "DescribeServices",
    ]
    # The update: the new revision, the service's deployment settings kept, the breaker with rollback.
    assert calls.params("UpdateService") == [
        {
            "cluster": cluster,
            "service": service,
            "taskDefinition": result.new_task_definition,
            "deploymentConfiguration": {
                "maximumPercent": 200,
                "minimumHealthyPercent": 50,
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            },
        }
    ]
    # The new revision is the old one with only the images changed (cpu, memory, ports, env, roles, tags kept).
    old = ecs.describe_task_definition(taskDefinition=old_td, include=["TAGS"])
    new = ecs.describe_task_definition(taskDefinition=result.new_task_definition, include=["TAGS"])
    assert without_images(new["taskDefinition"]) == without_images(old["taskDefinition"])
    assert {c["name"]: c["image"] for c in new["taskDefinition"]["containerDefinitions"]} == NEW
    assert new["tags"] == old["tags"] == [{"key": "app", "value": "shop"}]
    # moto's state: the service points at the new revision with the breaker configured.
    svc = service_of(ecs, cluster, service)
    assert svc["taskDefinition"] == result.new_task_definition
    assert svc["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}


def test_deploy_one_container_keeps_the_other_image(ecs):
    cluster, service, _ = make_service(ecs)
    result = deploy_to_ecs(ecs, cluster, service, {"backend": NEW["backend"]}, timeout_s=10, poll_s=0.1)
    td = ecs.describe_task_definition(taskDefinition=result.new_task_definition)["taskDefinition"]
    assert {c["name"]: c["image"] for c in td["containerDefinitions"]} == {
        "backend": NEW["backend"],
        "frontend": OLD["frontend"],
    }


def test_timeout_rolls_back_to_previous_task_definition(ecs, calls):
    # desiredCount above what moto reports running: its deployment stays IN_PROGRESS forever.
    cluster, service, old_td = make_service(ecs, desired=MOTO_ECS_RUNNING + 1)
    calls.items.clear()
    started = time.monotonic()

    result = deploy_to_ecs(ecs, cluster, service, NEW, timeout_s=1, poll_s=0.2)

    assert time.monotonic() - started < 5
    assert result.outcome == "rolled_back"
    assert "not steady after 1s" in result.reason and "IN_PROGRESS" in result.reason
    assert 1 <= result.wait_seconds < 2
    assert service_of(ecs, cluster, service)["taskDefinition"] == old_td
    updates = calls.params("UpdateService")
    assert [u["taskDefinition"] for u in updates] == [result.new_task_definition, old_td]
    assert all(u["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"] for u in updates)
    # Sequence: read, register, update, poll until the timeout, read, update back, poll again.
    names = calls.names()
    assert names[:4] == ["DescribeServices", "DescribeTaskDefinition", "RegisterTaskDefinition", "UpdateService"]
    second_update = names.index("UpdateService", 4)
    assert set(names[4:second_update]) == {"DescribeServices"} and second_update - 4 >= 3
    assert set(names[second_update + 1 :]) == {"DescribeServices"}
    # moto keeps this service IN_PROGRESS on any task definition, so the rollback is not confirmed steady either.
    assert result.rollback is not None and not result.rollback.stable
    assert "NOT steady" in result.reason


def test_circuit_breaker_failure_rolls_back_at_once(ecs, calls):
    cluster, service, old_td = make_service(ecs)

    def breaker_trips(parsed, **_kwargs) -> None:
        # What ECS answers when the breaker trips on the new revision; moto cannot report FAILED itself.
        for svc in parsed.get("services", []):
            if svc["taskDefinition"] != old_td:
                for deployment in svc["deployments"]:
                    deployment["rolloutState"] = "FAILED"
                    deployment["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."

    ecs.meta.events.register("after-call.ecs.DescribeServices", breaker_trips)
    calls.items.clear()

    result = deploy_to_ecs(ecs, cluster, service, NEW, timeout_s=10, poll_s=0.1)

    assert result.outcome == "rolled_back"
    assert "FAILED (circuit breaker)" in result.reason and "tasks failed to start" in result.reason
    assert result.wait_seconds < 1  # no waiting for the timeout once ECS says FAILED
    assert result.rollback is not None and result.rollback.stable
    assert result.rollback.to_task_definition == old_td
    assert [u["taskDefinition"] for u in calls.params("UpdateService")] == [result.new_task_definition, old_td]
    assert service_of(ecs, cluster, service)["taskDefinition"] == old_td


def test_rollback_ecs(ecs):
    cluster, service, old_td = make_service(ecs)
    deployed = deploy_to_ecs(ecs, cluster, service, NEW, timeout_s=10, poll_s=0.1)

    result = rollback_ecs(ecs, cluster, service, old_td, timeout_s=10, poll_s=0.1)

    assert result.stable, result.reason
    assert (result.from_task_definition, result.to_task_definition) == (deployed.new_task_definition, old_td)
    assert service_of(ecs, cluster, service)["taskDefinition"] == old_td


def test_missing_cluster_and_service_are_named(ecs, calls):
    with pytest.raises(EcsDeployError, match=r"cluster 'no-such-cluster' does not exist"):
        deploy_to_ecs(ecs, "no-such-cluster", "shop-staging", NEW, timeout_s=1, poll_s=0.1)
    cluster, _, _ = make_service(ecs)
    calls.items.clear()
    with pytest.raises(EcsDeployError, match=rf"service 'shop-nope' does not exist in cluster '{cluster}'"):
        deploy_to_ecs(ecs, cluster, "shop-nope", NEW, timeout_s=1, poll_s=0.1)
    with pytest.raises(EcsDeployError, match=r"cluster 'no-such-cluster'"):
        rollback_ecs(ecs, "no-such-cluster", "shop-staging", "shop:1", timeout_s=1, poll_s=0.1)
    assert "RegisterTaskDefinition" not in calls.names()
    assert "UpdateService" not in calls.names()


def test_bad_images_change_nothing(ecs, calls):
    cluster, service, old_td = make_service(ecs)
    calls.items.clear()
    with pytest.raises(EcsDeployError, match=r"no container\(s\) worker; it has backend, frontend"):
        deploy_to_ecs(ecs, cluster, service, {"worker": NEW["backend"]}, timeout_s=1, poll_s=0.1)
    with pytest.raises(EcsDeployError, match=r"must be pinned by digest"):
        deploy_to_ecs(ecs, cluster, service, {"backend": "shop/backend:1.2.0"}, timeout_s=1, poll_s=0.1)
    assert "RegisterTaskDefinition" not in calls.names() and "UpdateService" not in calls.names()
    assert service_of(ecs, cluster, service)["taskDefinition"] == old_td


def test_service_state_judgement():
    td = "arn:aws:ecs:eu-central-1:1:task-definition/shop:2"
    primary = {"id": "d2", "status": "PRIMARY", "runningCount": 2, "desiredCount": 2, "rolloutState": "COMPLETED"}
    steady = {"status": "ACTIVE", "taskDefinition": td, "runningCount": 2, "desiredCount": 2, "deployments": [primary]}
    assert service_state(steady, td).stable
    draining_old = {**steady, "deployments": [primary, {"id": "d1", "status": "ACTIVE", "runningCount": 1}]}
    assert not service_state(draining_old, td).stable and not service_state(draining_old, td).failed
    moved = {**steady, "taskDefinition": td.replace(":2", ":1")}  # ECS's own breaker rollback
    assert service_state(moved, td).failed
    assert service_state({**steady, "status": "DRAINING"}, td).failed


def test_resource_holds_no_credentials_and_reads_the_aws_profile():
    registry, ledger = RegistryResource(url="https://ecr.test"), LedgerResource()
    assert set(AwsResource.model_fields) == {"region", "endpoint_url", "max_attempts"}
    resource = release_target(load_settings(ROOT / "config" / "aws.yaml"), registry, ledger).aws
    assert resource.region == "eu-central-1"
    assert "testing" not in repr(resource)
