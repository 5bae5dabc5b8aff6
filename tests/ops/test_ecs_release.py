"""Releases on ECS (the aws profile) against a real local moto server and a real shop: the plain functions and the jobs.

What this proves: the request shapes (botocore validates every parameter against the ECS
model, moto parses and stores them) and the order of calls of a release — register the new
revision, the migration as a one-off task of it (RunTask with the command override, in the
service's network; moto itself refuses an awsvpc task without networkConfiguration), polled
until STOPPED, then UpdateService with the circuit breaker — the guards refusing before any
ECS call, the ledger rows, verification through the environment URL (a real shop server,
real smoke tests and k6), and the rollbacks to the right task definition. It does not prove
real ECS behaviour: moto runs no containers, its tasks go RUNNING -> STOPPED one step per
DescribeTasks with exit code 0 for the first container only, and its services report the
fixed deployment state described in test_ecs_deploy.py. A failing migration is made by a
botocore after-call hook on the test's client that rewrites the stopped task's exit code to
1, as ECS reports it; the requests still go to moto unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest
import yaml

from shop_ops.assets.deployments import deployment_history, deployments
from shop_ops.assets.performance import load_test_baseline
from shop_ops.definitions import resources
from shop_ops.jobs import promote_production, release_staging
from shop_ops.jobs import rollback as rollback_job
from shop_ops.release.ecs import find_task_definition
from shop_ops.release.ecs_release import EcsService
from shop_ops.release.ecs_tasks import EcsTaskError, run_task_to_completion
from shop_ops.release.flow import DeployFailed, DeployRefused, Release, deploy, rollback
from shop_ops.release.verify import verify_environment
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.ledger import FILENAME, ReleaseLedger
from shop_ops.resources.registry import RegistryClient
from shop_ops.settings import ROOT, load_settings
from tests.ops.conftest import REGION
from tests.support import dagster_pg_env

ECR = "123456789012.dkr.ecr.eu-central-1.amazonaws.com"
BREAKER = {"enable": True, "rollback": True}
MIGRATE = ["shop-migrate", "head", "--expand-only"]
V0 = Release("0.9.0", "sha256:" + "0" * 64, "sha256:" + "1" * 64)  # what the services run at creation
V1 = Release("1.0.0", "sha256:" + "a" * 64, "sha256:" + "b" * 64)
V2 = Release("1.1.0", "sha256:" + "c" * 64, "sha256:" + "d" * 64)


def images_of(release: Release) -> dict[str, str]:
    return {
        "backend": f"{ECR}/shop/backend@{release.backend_digest}",
        "frontend": f"{ECR}/shop/frontend@{release.frontend_digest}",
    }


@dataclass
class EcsCluster:
    """A cluster with one Fargate service per environment, each in an awsvpc network, on its first revision."""

    name: str
    services: dict[str, str]  # environment -> service
    first: dict[str, str]  # environment -> the task definition ARN the service was created with
    network: dict


@pytest.fixture
def cluster(aws, ecs) -> EcsCluster:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto gives an awsvpc task's network interface a DNS name only in a VPC with DNS hostnames (as ECS VPCs have).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"shop-{vpc}", Description="shop tasks", VpcId=vpc)["GroupId"]
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}}
    name = f"shop-{uuid.uuid4().hex[:8]}"
    ecs.create_cluster(clusterName=name)
    services, first = {}, {}
    for environment in ("staging", "production"):
        service = f"shop-{environment}"
        env = [{"name": "SHOP_WORKERS", "value": "2"}]
        secrets = [{"name": "SHOP_DATABASE_PASSWORD", "valueFrom": f"arn:aws:secretsmanager:{REGION}:1:secret:db"}]
        old = images_of(V0)
        first[environment] = ecs.register_task_definition(
            family=f"{name}-{environment}",
            executionRoleArn="arn:aws:iam::123456789012:role/shop-exec",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="512",
            memory="1024",
            containerDefinitions=[  # backend first: moto describes only a task's first container
                {"name": "backend", "image": old["backend"], "essential": True, "cpu": 384, "memory": 768,
                 "environment": env, "secrets": secrets, "portMappings": [{"containerPort": 8000}]},
                {"name": "frontend", "image": old["frontend"], "essential": True, "cpu": 128, "memory": 256,
                 "portMappings": [{"containerPort": 8080}]},
            ],
        )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
        ecs.create_service(
            cluster=name, serviceName=service, taskDefinition=first[environment], desiredCount=2,
            launchType="FARGATE", networkConfiguration=network,
        )  # fmt: skip
        # moto's create_service drops deploymentConfiguration (its update_service keeps it): set it again.
        ecs.update_service(
            cluster=name, service=service, deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 50}
        )
        services[environment] = service
    return EcsCluster(name, services, first, network)


@pytest.fixture
def ledger(tmp_path) -> ReleaseLedger:
    return ReleaseLedger(tmp_path / "state")


@pytest.fixture
def make_deps(ecs, cluster, ledger, server):
    def make(environment: str = "staging", url: str | None = None) -> EcsService:
        return EcsService(
            ecs=ecs, cluster=cluster.name, service=cluster.services[environment], url=url or server.url,
            registry=RegistryClient(f"https://{ECR}"), ledger=ledger, deploy_timeout_s=5, migrate_timeout_s=5,
            poll_s=0.05,
        )  # fmt: skip

    return make


def short_verify(url: str):
    """The release verifier (smoke tests, then k6) with a 1 s k6 run instead of 5 s."""
    return verify_environment(url, K6Resource(), duration="1s")


def not_called(url: str):
    raise AssertionError(f"verification must not run (got {url})")


def service_of(ecs, cluster: EcsCluster, environment: str) -> dict:
    return ecs.describe_services(cluster=cluster.name, services=[cluster.services[environment]])["services"][0]


def images_in(ecs, task_definition: str) -> dict[str, str]:
    td = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    return {c["name"]: c["image"] for c in td["containerDefinitions"]}


# ---------------------------------------------------------------------------------------------- plain functions
def test_staging_release_sequence_and_request_shapes(ecs, calls, cluster, make_deps, ledger):
    calls.items.clear()

    result = deploy("staging", V1, make_deps(), verify=short_verify)

    assert result.status == "verified", result.reason
    new = result.placement.target
    assert result.placement.previous == cluster.first["staging"] and new != cluster.first["staging"]
    names = calls.names()
    # read, register, the service's placement, the migration task polled until STOPPED, then the rolling update
    assert names[:5] == [
        "DescribeServices", "DescribeTaskDefinition", "RegisterTaskDefinition", "DescribeServices", "RunTask",
    ]  # fmt: skip
    update = names.index("UpdateService")
    assert set(names[5:update]) == {"DescribeTasks"} and update - 5 >= 4  # moto: one state step per describe
    assert set(names[update + 1 :]) == {"DescribeServices"}
    [run] = calls.params("RunTask")
    assert run == {
        "cluster": cluster.name,
        "taskDefinition": new,
        "count": 1,
        "startedBy": result.release_id,
        "overrides": {"containerOverrides": [{"name": "backend", "command": MIGRATE}]},
        "launchType": "FARGATE",
        "networkConfiguration": cluster.network,
    }
    [update_params] = calls.params("UpdateService")
    assert update_params["taskDefinition"] == new
    assert update_params["deploymentConfiguration"]["deploymentCircuitBreaker"] == BREAKER
    # moto's state: the new revision runs exactly the release's ECR images; the migration task ran from it.
    assert images_in(ecs, new) == images_of(V1)
    assert service_of(ecs, cluster, "staging")["taskDefinition"] == new
    [task] = ecs.describe_tasks(cluster=cluster.name, tasks=[result.placement.details["migration_task"]])["tasks"]
    assert task["taskDefinitionArn"] == new and task["lastStatus"] == "STOPPED"
    assert task["overrides"]["containerOverrides"] == [{"name": "backend", "command": MIGRATE}]
    # the ledger: verified, so promote's guard passes for these digests
    [row] = ledger.history()
    assert (row["status"], row["slot"], row["version"], row["kind"]) == ("verified", "ecs", "1.0.0", "deploy")
    assert ledger.is_verified("staging", V1.backend_digest, V1.frontend_digest)
    assert {"migrate", "rollout", "verify"} <= set(result.steps)


@pytest.mark.parametrize(
    ("approved_by", "release", "refusal"),
    [("", V1, "approved_by is required"), ("ada", V2, "has not been verified on staging")],
)
def test_production_guards_refuse_before_any_ecs_call(calls, make_deps, ledger, approved_by, release, refusal):
    deps = make_deps("production")
    calls.items.clear()
    with pytest.raises(DeployRefused, match=refusal):
        deploy(
            "production", release, deps, verify=not_called, approved_by=approved_by,
        )  # fmt: skip
    assert calls.names() == [] and ledger.history() == []


def test_a_second_deploy_or_rollback_of_the_environment_is_refused_while_one_runs(calls, make_deps, ledger):
    """Another run worker holds staging's lock in the (shared) ledger: refused at once, nothing touched."""
    calls.items.clear()
    other_worker = ReleaseLedger(ledger.source)
    with other_worker.environment_lock("staging"):
        with pytest.raises(DeployRefused, match="another deploy, promote or rollback of staging is running"):
            deploy("staging", V1, make_deps(), verify=not_called)
        with pytest.raises(DeployRefused, match="another deploy, promote or rollback of staging is running"):
            rollback("staging", make_deps())
    assert calls.names() == [] and ledger.history() == []


def test_failed_verification_rolls_back_to_the_previous_task_definition(ecs, calls, cluster, make_deps, ledger, server):
    first = deploy("staging", V1, make_deps(), verify=short_verify)
    calls.items.clear()
    broken = make_deps(url=f"{server.url}/no-such-prefix")  # the real shop answers 404 there

    with pytest.raises(DeployFailed) as failed:
        deploy("staging", V2, broken, verify=short_verify)

    message = str(failed.value)
    assert "verification failed: smoke test failed: catalog list answered 404" in message
    assert f"rolled back to {first.placement.target}, steady" in message
    second = failed.value.result
    assert second.status == "rolled_back" and second.placement.previous == first.placement.target
    assert [u["taskDefinition"] for u in calls.params("UpdateService")] == [
        second.placement.target,
        first.placement.target,
    ]
    assert all(
        u["deploymentConfiguration"]["deploymentCircuitBreaker"] == BREAKER for u in calls.params("UpdateService")
    )
    assert service_of(ecs, cluster, "staging")["taskDefinition"] == first.placement.target
    assert [(r["version"], r["status"]) for r in ledger.history()] == [("1.0.0", "verified"), ("1.1.0", "rolled_back")]
    assert ledger.serving("staging").version == "1.0.0"


def test_failed_migration_stops_before_the_service_moves(ecs, calls, cluster, make_deps, ledger):
    def migration_fails(parsed, **_kwargs) -> None:
        # What ECS reports when the migration exits 1; moto always reports exit code 0.
        for task in parsed.get("tasks", []):
            if task.get("lastStatus") == "STOPPED":
                task["stopCode"] = "EssentialContainerExited"
                task["stoppedReason"] = "Essential container in task exited"
                task["containers"][0]["exitCode"] = 1

    ecs.meta.events.register("after-call.ecs.DescribeTasks", migration_fails)
    calls.items.clear()

    with pytest.raises(DeployFailed, match=r"migration failed: `shop-migrate head --expand-only` in task .* exited 1"):
        deploy("staging", V1, make_deps(), verify=not_called)

    assert "RunTask" in calls.names() and "UpdateService" not in calls.names()
    assert service_of(ecs, cluster, "staging")["taskDefinition"] == cluster.first["staging"]
    [row] = ledger.history()
    assert row["status"] == "failed" and "EssentialContainerExited" in row["reason"]


def test_migration_task_that_does_not_stop_in_time_is_stopped(ecs, calls, cluster):
    calls.items.clear()
    with pytest.raises(EcsTaskError, match=r"was still \w+ after 0s; it was stopped"):
        run_task_to_completion(
            ecs, cluster.name, cluster.services["staging"], cluster.first["staging"], "backend", MIGRATE,
            started_by="test", timeout_s=0, poll_s=0.05,
        )  # fmt: skip
    assert calls.names() == ["DescribeServices", "RunTask", "DescribeTasks", "StopTask"]
    [stop] = calls.params("StopTask")
    [task] = ecs.describe_tasks(cluster=cluster.name, tasks=[stop["task"]])["tasks"]
    assert task["lastStatus"] == "STOPPED" and task["stoppedReason"] == "shop-ops: not stopped after 0s"


def test_rollback_finds_the_previous_release_task_definition_by_its_images(ecs, calls, cluster, make_deps, ledger):
    deps = make_deps()
    with pytest.raises(DeployRefused, match="no previous verified release"):
        rollback("staging", deps)
    first = deploy("staging", V1, deps, verify=short_verify)
    second = deploy("staging", V2, deps, verify=short_verify)
    calls.items.clear()

    result = rollback("staging", deps, reason="checkout errors")

    assert result.placement.target == first.placement.target and result.placement.previous == second.placement.target
    assert [u["taskDefinition"] for u in calls.params("UpdateService")] == [first.placement.target]
    assert "RegisterTaskDefinition" not in calls.names()  # the old revision itself, not a copy
    assert service_of(ecs, cluster, "staging")["taskDefinition"] == first.placement.target
    assert [(r["version"], r["kind"], r["status"]) for r in ledger.history()] == [
        ("1.0.0", "deploy", "replaced"), ("1.1.0", "deploy", "rolled_back"), ("1.0.0", "rollback", "verified"),
    ]  # fmt: skip
    assert ledger.get(second.release_id).reason == "checkout errors"

    # A rollback that does not become steady is a failed row; the serving release stays as it was.
    again = deploy("staging", V2, deps, verify=short_verify)

    def breaker_trips_on_v1(parsed, **_kwargs) -> None:
        for svc in parsed.get("services", []):
            if svc["taskDefinition"] == first.placement.target:
                for deployment in svc["deployments"]:
                    deployment["rolloutState"] = "FAILED"

    ecs.meta.events.register("after-call.ecs.DescribeServices", breaker_trips_on_v1)
    with pytest.raises(DeployFailed, match=r"rollback to 1\.0\.0 failed: .* is NOT steady: .*FAILED"):
        rollback("staging", deps)
    ecs.meta.events.unregister("after-call.ecs.DescribeServices", breaker_trips_on_v1)
    assert ledger.history()[-1]["status"] == "failed"
    assert ledger.serving("staging").release_id == again.release_id

    # A revision that is gone cannot be the target: refused, naming what to do instead.
    ecs.deregister_task_definition(taskDefinition=first.placement.target)
    with pytest.raises(DeployRefused, match=r"no ACTIVE revision .* runs 1\.0\.0 .* Deploy 1\.0\.0 again"):
        rollback("staging", deps)


def test_find_task_definition_takes_the_newest_revision_with_those_images(ecs, cluster):
    family = f"{cluster.name}-staging"
    container = {"essential": True, "memory": 256}
    arns = [
        ecs.register_task_definition(
            family=family,
            containerDefinitions=[{**container, "name": "backend", "image": images_of(release)["backend"]},
                                  {**container, "name": "frontend", "image": images_of(release)["frontend"]}],
        )["taskDefinition"]["taskDefinitionArn"]
        for release in (V1, V2, V1)
    ]  # fmt: skip
    assert find_task_definition(ecs, family, images_of(V1)) == arns[2]
    assert find_task_definition(ecs, family, images_of(V2)) == arns[1]
    assert find_task_definition(ecs, family, {**images_of(V1), "frontend": images_of(V2)["frontend"]}) is None
    assert find_task_definition(ecs, f"{cluster.name}-production", images_of(V1)) is None


# ---------------------------------------------------------------------------------------------- Dagster, aws profile
@pytest.fixture
def aws_profile(
    aws, cluster, server, moto_server, postgres, admin_token, monkeypatch, tmp_path
) -> Iterator[dg.Definitions]:
    """SHOP_OPS_CONFIG = an aws profile naming the moto cluster, the shop server as both URLs; its release definitions.

    The release ledger is in PostgreSQL, as on aws (`ledger: dagster_postgres`): DAGSTER_PG_* name a
    fresh database of the test cluster, and nothing is written to the state folder.
    """
    config = yaml.safe_load((ROOT / "config" / "aws.yaml").read_text())
    config["state_dir"] = str(tmp_path / "aws-state")
    config["aws"].update(
        ecs_cluster=cluster.name, deploy_timeout_seconds=5, migrate_timeout_seconds=5, poll_seconds=0.05
    )
    # Each release's k6 baseline runs too, briefly, against the bare backend (no storefront at `/`).
    config["performance"] = {"rate": 10, "duration_seconds": 2, "storefront": False}
    token_file = tmp_path / "admin-token"
    token_file.write_text(admin_token)
    for environment in ("staging", "production"):
        config["environments"][environment]["url"] = server.url
        monkeypatch.setenv(f"SHOP_OPS_{environment.upper()}_ADMIN_TOKEN_FILE", str(token_file))
        # A deploy reads the environment's database secret (the JSON RDS writes) first: one in moto.
        config["environments"][environment]["database_secret_arn"] = aws.client("secretsmanager").create_secret(
            Name=f"shop/{environment}/db-{uuid.uuid4().hex[:8]}",
            SecretString=json.dumps({"username": "shop", "password": uuid.uuid4().hex}),
        )["ARN"]
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(config))
    for name in ("SHOP_OPS_STATE", "SHOP_OPS_PROFILE", "SHOP_OPS_REGISTRY_URL", "SHOP_OPS_REGISTRY_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHOP_OPS_CONFIG", str(path))
    monkeypatch.setenv("SHOP_OPS_AWS_ENDPOINT_URL", moto_server.url)
    for name, value in dagster_pg_env(postgres, "aws_ledger").items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.profile == "aws"
    yield dg.Definitions(
        assets=[*deployments, deployment_history, *(load_test_baseline(env) for env in ("staging", "production"))],
        jobs=[release_staging, promote_production, rollback_job],
        resources=resources(settings),
    )


def release_config(environment: str, release: Release, approved_by: str = "") -> dict:
    config = {"version": release.version, "backend_digest": release.backend_digest,
              "frontend_digest": release.frontend_digest, "approved_by": approved_by}  # fmt: skip
    return {"ops": {f"{environment}__deployment": {"config": config}}}


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    return failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)


def test_release_jobs_on_the_aws_profile(aws_profile, ecs, cluster, tmp_path):
    defs = aws_profile
    with dg.instance_for_test() as instance:

        def run(job: str, run_config: dict, **kwargs) -> dg.ExecuteInProcessResult:
            return defs.resolve_job_def(job).execute_in_process(
                run_config=run_config, instance=instance, raise_on_error=False, **kwargs
            )

        # release_staging: migrate task, new revision with the ECR digests, rolling update with the breaker, verified
        staged = run("release_staging", release_config("staging", V1))
        assert staged.success, failure_of(staged)
        [meta] = [m.metadata for m in staged.asset_materializations_for_node("staging__deployment")]
        v1_staging = meta["task_definition"].value
        assert meta["status"].value == "verified" and meta["migration_task"].value.startswith("arn:aws:ecs:")
        assert meta["backend_digest"].value == V1.backend_digest and meta["frontend_digest"].value == V1.frontend_digest
        # the real k6 check through the real shop: its numbers as numbers
        assert meta["k6_error_rate"].value == 0 and 0 < meta["k6_p95_ms"].value < 200 and meta["k6_requests"].value > 0
        assert images_in(ecs, v1_staging) == images_of(V1)
        # then its k6 baseline through the environment's URL (nothing sampled: ECS runs no local containers)
        [baseline] = [m.metadata for m in staged.asset_materializations_for_node("staging__load_test_baseline")]
        assert baseline["passed"].value is True and baseline["requests"].value > 10
        assert baseline["cpu_mean_percent"].value == 0 and "no container sampled" in baseline["usage"].value
        svc = service_of(ecs, cluster, "staging")
        assert svc["taskDefinition"] == v1_staging
        assert svc["deploymentConfiguration"]["deploymentCircuitBreaker"] == BREAKER

        # promote_production: refused without approved_by and for digests never verified on staging, nothing touched
        for config, refusal in (
            (release_config("production", V1), "approved_by is required"),
            (release_config("production", V2, approved_by="ada"), "has not been verified on staging"),
        ):
            refused = run("promote_production", config)
            assert not refused.success and refusal in failure_of(refused)
        assert service_of(ecs, cluster, "production")["taskDefinition"] == cluster.first["production"]
        family = f"{cluster.name}-production"
        assert ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"] == [cluster.first["production"]]
        # ... and goes through with both
        promoted = run("promote_production", release_config("production", V1, approved_by="ada"))
        assert promoted.success, failure_of(promoted)
        # its read of the database secret is in the shared ledger, by name, with the run (the audit trail's)
        reads = {(a["name"], a["run_id"]) for a in defs.resources["ledger"].open().secret_accesses()}
        assert (defs.resources["secrets"].database_secrets["production"], promoted.run_id) in reads
        assert images_in(ecs, service_of(ecs, cluster, "production")["taskDefinition"]) == images_of(V1)

        # a second staging release, then the rollback job puts V1's revision back
        assert run("release_staging", release_config("staging", V2)).success
        # (partitioned by environment: the partition gives the run its `environment` tag)
        assert defs.resolve_job_def("rollback").get_tags_for_partition_key("staging", None)["environment"] == "staging"
        rolled = run("rollback", {}, partition_key="staging")
        assert rolled.success, failure_of(rolled)
        assert rolled.dagster_run.tags["environment"] == "staging"
        assert service_of(ecs, cluster, "staging")["taskDefinition"] == v1_staging

        # deployment_history reads the same ledger
        history = dg.materialize(
            [deployment_history], instance=instance, resources={"ledger": defs.resources["ledger"]}
        ).output_for_node("deployment_history")
        assert [(r.environment, r.version, r.kind, r.status) for r in history.itertuples()] == [
            ("staging", "1.0.0", "deploy", "replaced"),
            ("production", "1.0.0", "deploy", "verified"),
            ("staging", "1.1.0", "deploy", "rolled_back"),
            ("staging", "1.0.0", "rollback", "verified"),
        ]
        assert set(history["slot"]) == {"ecs"}
        assert not (tmp_path / "aws-state" / FILENAME).exists()  # the shared PostgreSQL ledger, not a local file
        verified_deploys = history[(history["kind"] == "deploy") & (history["status"] != "rolled_back")]
        assert (verified_deploys["k6_error_rate"] == 0).all() and (verified_deploys["k6_p95_ms"] > 0).all()


def test_aws_definitions_carry_the_release_names():
    """shop_ops.definitions as the aws profile loads it (its own process: settings and sensors are read at import)."""
    script = """
import json
import dagster as dg
from shop_ops.definitions import defs
dg.Definitions.validate_loadable(defs)
print(json.dumps({
    "assets": sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()),
    "jobs": sorted(j.name for j in defs.resolve_all_job_defs()),
    "sensor": defs.resolve_sensor_def("registry_push_sensor").default_status.value,
    "sensor_reads": type(defs.resources["registry"].images_api()).__name__,
    "release_target": type(defs.resources["release_target"]).__name__,
    "deployment": sorted(defs.resolve_assets_def(dg.AssetKey(["staging", "deployment"])).required_resource_keys),
    "rollback": sorted(defs.resolve_job_def("rollback").required_resource_keys),
}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_OPS_")} | {"SHOP_OPS_PROFILE": "aws"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"staging/deployment", "production/deployment", "deployment_history"} <= set(loaded["assets"])
    assert {"release_staging", "promote_production", "rollback"} <= set(loaded["jobs"])
    assert loaded["sensor"] == "RUNNING" and loaded["sensor_reads"] == "EcrImages"  # the release path's entry, on ECR
    assert loaded["release_target"] == "EcsTarget"
    assert set(loaded["deployment"]) - {"io_manager"} == {"release_target", "notifier", "secrets"}
    assert set(loaded["rollback"]) - {"io_manager"} == {"release_target", "notifier"}
