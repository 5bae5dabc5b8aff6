"""The aws side of `rotate_database_password`: contract tests on a local moto server, not on AWS.

What they prove: the order and shapes of the calls (botocore validates every parameter against
the Secrets Manager and ECS models; moto parses and stores them): RotateSecret on the
environment's app secret, DescribeSecret polled until the version it started is AWSCURRENT, then
UpdateService with forceNewDeployment on the environment's service (same task definition),
waited for until steady, /readyz through the environment URL (a real shop server), and the
ledger row; and that a rotation that never finishes times out naming the secret, with no
UpdateService at all and the AWSPENDING label removed.

What moto does differently, and how these tests deal with it: moto's RotateSecret without a
rotation Lambda labels an *empty* new version AWSCURRENT at once (GetSecretValue then fails for
AWSCURRENT), and with one it runs the Lambda in Docker. AWS instead invokes the configured
function (`SecretsManagerRDSPostgreSQLRotationMultiUser`), which writes the other user's
credentials as AWSPENDING (createSecret), sets its password in PostgreSQL with the master secret
(setSecret), logs in with it (testSecret) and moves AWSCURRENT to it (finishSecret). So the test
plays Secrets Manager's invocation of that function: a botocore `before-call` hook on the test's
Secrets Manager client answers RotateSecret (after botocore validated the parameters) and does
the function's Secrets Manager steps with real moto calls (PutSecretValue AWSPENDING, later
UpdateSecretVersionStage AWSCURRENT); the database steps are not played (no database here; the
local rotation tests cover PostgreSQL). Every other request goes to moto unchanged. moto's ECS
runs no containers and reports a fixed deployment state (tests/ops/test_ecs_deploy.py): a
service of at most MOTO_ECS_RUNNING tasks is steady, a larger one never is.
Also: moto's UpdateSecretVersionStage does not move the version GetSecretValue returns when no
stage is named (AWS returns AWSCURRENT); the code under test and these tests always name it.
"""

from __future__ import annotations

import json
import secrets as random_secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from shop_ops.release.ecs_rotation import alternate_user
from shop_ops.release.flow import DeployRefused
from shop_ops.release.targets import EcsTarget
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.security.rotation import RotationFailed, rotate
from tests.ops.conftest import MOTO_ECS_RUNNING

ECR = "123456789012.dkr.ecr.eu-central-1.amazonaws.com"


@dataclass
class RotationFunction:
    """Plays Secrets Manager invoking the multi-user rotation function, for the secrets in `secrets` only.

    `finish_after`: seconds until finishSecret (None: it never finishes, as when the function cannot
    reach the database). Uses its own client, so its calls are plain moto calls.
    """

    client: Any
    secrets: set[str]
    finish_after: float | None = 0.3
    started: list[str] = field(default_factory=list)  # version ids it was asked to rotate to
    _threads: list[threading.Thread] = field(default_factory=list)

    def install(self, client: Any) -> None:
        client.meta.events.register("before-call.secrets-manager.RotateSecret", self.rotate)

    def rotate(self, params: dict, **_kwargs: Any) -> tuple[AWSResponse, dict] | None:
        body = json.loads(params["body"])
        secret_id, token = body["SecretId"], body["ClientRequestToken"]
        if secret_id not in self.secrets:
            return None  # not ours: moto answers
        current = json.loads(
            self.client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]
        )
        pending = {**current, "username": alternate_user(current["username"]), "password": random_secrets.token_hex(16)}
        # createSecret: the other user's credentials as AWSPENDING of the version Secrets Manager named.
        self.client.put_secret_value(
            SecretId=secret_id, ClientRequestToken=token, SecretString=json.dumps(pending), VersionStages=["AWSPENDING"]
        )
        self.started.append(token)
        if self.finish_after is not None:
            thread = threading.Thread(target=self._finish, args=(secret_id, token), daemon=True)
            thread.start()
            self._threads.append(thread)
        described = self.client.describe_secret(SecretId=secret_id)
        return AWSResponse(described["ARN"], 200, {}, None), {
            "ARN": described["ARN"], "Name": described["Name"], "VersionId": token,
        }  # fmt: skip

    def _finish(self, secret_id: str, token: str) -> None:
        time.sleep(self.finish_after or 0)
        stages = self.client.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
        current = next(version for version, labels in stages.items() if "AWSCURRENT" in labels)
        # finishSecret: AWSCURRENT to the new version; Secrets Manager then drops its AWSPENDING label.
        self.client.update_secret_version_stage(
            SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=current
        )
        self.client.update_secret_version_stage(
            SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=token
        )

    def join(self) -> None:
        for thread in self._threads:
            thread.join(5)


@dataclass
class AwsEnvironment:
    cluster: str
    service: str
    task_definition: str
    secret_arn: str
    first_version: str


def make_environment(aws: Any, ecs: Any, desired: int = MOTO_ECS_RUNNING) -> AwsEnvironment:
    """One Fargate service whose task definition reads username and password from the app secret."""
    sm = aws.client("secretsmanager")
    suffix = uuid.uuid4().hex[:8]
    master = sm.create_secret(
        Name=f"shop/staging/db-master-{suffix}",
        SecretString=json.dumps({"username": "shop", "password": random_secrets.token_hex(16)}),
    )["ARN"]
    app = {
        "engine": "postgres", "host": "shop-staging.example.internal", "port": 5432, "dbname": "shop",
        "username": "shop_app", "password": random_secrets.token_hex(16), "masterarn": master,
    }  # fmt: skip
    created = sm.create_secret(Name=f"shop/staging/db-{suffix}", SecretString=json.dumps(app))
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as in test_ecs_release.py
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"shop-{vpc}", Description="shop tasks", VpcId=vpc)["GroupId"]
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}}
    cluster = f"shop-{suffix}"
    ecs.create_cluster(clusterName=cluster)
    arn = created["ARN"]
    task_definition = ecs.register_task_definition(
        family=f"{cluster}-staging", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512",
        memory="1024", executionRoleArn="arn:aws:iam::123456789012:role/shop-exec",
        containerDefinitions=[{
            "name": "backend", "image": f"{ECR}/shop/backend@sha256:{'0' * 64}", "essential": True,
            "readonlyRootFilesystem": True, "user": "10001",
            "secrets": [{"name": "SHOP_DATABASE_USER", "valueFrom": f"{arn}:username::"},
                        {"name": "SHOP_DATABASE_PASSWORD", "valueFrom": f"{arn}:password::"}],
        }],
    )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
    ecs.create_service(
        cluster=cluster, serviceName="shop-staging", taskDefinition=task_definition, desiredCount=desired,
        launchType="FARGATE", networkConfiguration=network,
    )  # fmt: skip
    return AwsEnvironment(cluster, "shop-staging", task_definition, arn, created["VersionId"])


def target(aws: Any, env: AwsEnvironment, url: str, state: str, **timeouts: float) -> EcsTarget:
    return EcsTarget(
        registry=RegistryResource(url=f"https://{ECR}"), ledger=LedgerResource(state_dir=state), k6=K6Resource(),
        aws=aws, cluster=env.cluster, services={"staging": env.service}, urls={"staging": url},
        database_secrets={"staging": env.secret_arn}, poll_seconds=0.1, **timeouts,
    )  # fmt: skip


def current(sm: Any, arn: str) -> tuple[str, dict]:
    stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    version = next(v for v, labels in stages.items() if "AWSCURRENT" in labels)
    return version, json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])


def primary_deployment(ecs: Any, env: AwsEnvironment) -> dict:
    svc = ecs.describe_services(cluster=env.cluster, services=[env.service])["services"][0]
    return {"task_definition": svc["taskDefinition"],
            "id": next(d["id"] for d in svc["deployments"] if d["status"] == "PRIMARY")}  # fmt: skip


def steps_with(target: EcsTarget, function: RotationFunction, calls: list[str]) -> Any:
    """The target's rotation steps, their Secrets Manager client handed to the stand-in rotation function."""
    steps = target.login_rotation("staging", lambda _line: None)
    function.install(steps.secrets)
    steps.ecs.meta.events.register("provide-client-params.ecs", lambda model, **_kw: calls.append(model.name))
    steps.secrets.meta.events.register(
        "provide-client-params.secrets-manager", lambda model, **_kw: calls.append(model.name)
    )
    return steps


def test_rotation_moves_the_secret_to_the_other_user_then_redeploys_the_service(aws, ecs, server, tmp_path):
    env = make_environment(aws, ecs)
    sm = aws.client("secretsmanager")
    function = RotationFunction(aws.client("secretsmanager"), {env.secret_arn}, finish_after=0.3)
    before = primary_deployment(ecs, env)
    calls: list[str] = []
    ecs_target = target(aws, env, server.url, str(tmp_path), rotation_timeout_seconds=10, deploy_timeout_seconds=10)
    steps = steps_with(ecs_target, function, calls)

    result = rotate(steps, ecs_target.ledger.open(), run_id="run-1")
    function.join()

    # The secret: a new AWSCURRENT version (the one RotateSecret started) naming the other user.
    version, document = current(sm, env.secret_arn)
    assert version == function.started[0] != env.first_version
    assert (result.from_role, result.to_role, document["username"]) == ("shop_app", "shop_app_clone", "shop_app_clone")
    assert document["masterarn"] and document["host"] == "shop-staging.example.internal"
    # The service: a new deployment, same task definition (so the same family), only after the secret moved.
    after = primary_deployment(ecs, env)
    assert after["task_definition"] == env.task_definition and after["id"] != before["id"]
    assert calls.index("UpdateService") > calls.index("RotateSecret")
    assert calls.index("UpdateService") > max(i for i, name in enumerate(calls) if name == "DescribeSecret")
    updates = [n for n in calls if n == "UpdateService"]
    assert len(updates) == 1
    assert result.details["service"] == env.service and result.details["secret_version"] == version
    assert {"issue_seconds", "redeploy_seconds", "verify_seconds", "lock_previous_seconds"} <= set(result.metadata())
    rows = ecs_target.ledger.open().rotations("staging")
    assert [(r["from_role"], r["to_role"], r["status"], r["run_id"]) for r in rows] == [
        ("shop_app", "shop_app_clone", "rotated", "run-1")
    ]
    assert not any(document["password"] in str(value) for row in rows for value in row.values())
    assert not any(document["password"] in str(value) for value in result.metadata().values())

    # A second rotation flips back to the first user (the multi-user function alternates).
    again = rotate(steps_with(ecs_target, function, calls), ecs_target.ledger.open(), run_id="run-2")
    function.join()
    assert (again.from_role, again.to_role, current(sm, env.secret_arn)[1]["username"]) == (
        "shop_app_clone", "shop_app", "shop_app"
    )  # fmt: skip


def test_a_rotation_that_never_finishes_times_out_and_redeploys_nothing(aws, ecs, tmp_path):
    env = make_environment(aws, ecs)
    sm = aws.client("secretsmanager")
    function = RotationFunction(aws.client("secretsmanager"), {env.secret_arn}, finish_after=None)
    before = primary_deployment(ecs, env)
    calls: list[str] = []
    ecs_target = target(aws, env, "http://127.0.0.1:9", str(tmp_path), rotation_timeout_seconds=1)
    steps = steps_with(ecs_target, function, calls)

    with pytest.raises(RotationFailed) as failed:
        rotate(steps, ecs_target.ledger.open(), run_id="run-3")

    message = str(failed.value)
    assert env.secret_arn in message and "did not finish within 1s" in message and "CloudWatch logs" in message
    assert "shop_app still serves" in message
    assert "UpdateService" not in calls and primary_deployment(ecs, env) == before
    # The unfinished version lost AWSPENDING (so the next rotation can start); AWSCURRENT never moved.
    stages = sm.describe_secret(SecretId=env.secret_arn)["VersionIdsToStages"]
    assert stages[function.started[0]] == [] or function.started[0] not in stages
    assert current(sm, env.secret_arn)[0] == env.first_version
    assert [r["status"] for r in ecs_target.ledger.open().rotations("staging")] == ["failed"]


def test_a_deployment_that_never_gets_steady_fails_the_run_naming_the_service(aws, ecs, tmp_path):
    # moto keeps a service of more than MOTO_ECS_RUNNING tasks IN_PROGRESS forever.
    env = make_environment(aws, ecs, desired=MOTO_ECS_RUNNING + 1)
    function = RotationFunction(aws.client("secretsmanager"), {env.secret_arn}, finish_after=0)
    calls: list[str] = []
    ecs_target = target(aws, env, "http://127.0.0.1:9", str(tmp_path), deploy_timeout_seconds=1)
    steps = steps_with(ecs_target, function, calls)

    with pytest.raises(RotationFailed) as failed:
        rotate(steps, ecs_target.ledger.open())
    function.join()

    assert f"{env.cluster}/{env.service} did not become steady as shop_app_clone" in str(failed.value)
    # The secret did move: both users stay valid (the previous one until the next rotation), nothing to undo.
    assert current(aws.client("secretsmanager"), env.secret_arn)[1]["username"] == "shop_app_clone"
    assert calls.count("UpdateService") == 1


def test_the_secret_must_be_configured_for_the_environment(aws, tmp_path):
    ecs_target = EcsTarget(
        registry=RegistryResource(url=f"https://{ECR}"), ledger=LedgerResource(state_dir=str(tmp_path)),
        k6=K6Resource(), aws=aws, cluster="c", services={"staging": "s"}, urls={"staging": "http://x"},
    )  # fmt: skip
    with pytest.raises(Exception, match=r"set environments\.staging\.database_secret_arn"):
        ecs_target.login_rotation("staging", lambda _line: None)


def test_alternate_user_follows_the_rotation_functions_naming():
    assert alternate_user("shop_app") == "shop_app_clone"
    assert alternate_user("shop_app_clone") == "shop_app"


def test_a_rotation_is_refused_while_a_release_holds_the_environment(aws, ecs, tmp_path):
    env = make_environment(aws, ecs)
    function = RotationFunction(aws.client("secretsmanager"), {env.secret_arn})
    calls: list[str] = []
    ecs_target = target(aws, env, "http://127.0.0.1:9", str(tmp_path))
    steps = steps_with(ecs_target, function, calls)

    with ecs_target.ledger.open().environment_lock("staging"), pytest.raises(DeployRefused):
        rotate(steps, ecs_target.ledger.open())

    assert "RotateSecret" not in calls and "UpdateService" not in calls and function.started == []
    assert ecs_target.ledger.open().rotations("staging") == []
