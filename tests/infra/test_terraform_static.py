"""Static checks of infra/terraform/ with python-hcl2: it parses, tags, private data stores, outputs, safety settings.

No Terraform binary or provider can be downloaded on our machines, so nothing here plans or
validates; these tests read the HCL as data, with the parsing helpers of shop_ops.cost.hcl
(which the cost estimate uses too).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shop_ops.cost import hcl
from shop_ops.cost.hcl import Resource, Unresolved, blocks, component_of, parse, single, text
from shop_ops.settings import AwsEnvironment, AwsSettings, CostSettings, ImageSettings

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
ENVIRONMENTS = ("staging", "production")
# Every root module of AWS (applied on its own, with its own state).
ROOTS = ("bootstrap", "environments/shared", "environments/staging", "environments/production")
# The repository's settings on GitHub (tests/delivery/test_github_settings.py checks it against the workflows).
GITHUB_ROOT = "github"

# Where each value of config/aws.yaml comes from: setting -> output of each environment root
# (infra/terraform/README.md has the same table). Keep the two in step.
AWS_OUTPUTS = {
    "region": "region",
    "ecs_cluster": "ecs_cluster",
    "ecr_registry": "ecr_registry",
    "backups_bucket": "backups_bucket",
    "backups_copy_bucket": "backups_copy_bucket",
    "dr_region": "dr_region",
    "restore_subnet_group": "restore_subnet_group",
    "restore_security_groups": "restore_security_groups",
    "dr_kms_key_id": "dr_kms_key_id",
}
IMAGE_OUTPUTS = {"backend_repository": "backend_repository", "frontend_repository": "frontend_repository"}
ENVIRONMENT_OUTPUTS = {
    "ecs_service": "ecs_service",
    "database_secret_arn": "database_secret_arn",
    "url": "url",
    "db_instance": "db_instance",
}
# Settings that are the pipeline's own choices, not names of resources: Terraform has no output for them.
NOT_FROM_TERRAFORM = {
    "restore_instance_class",
    "deploy_timeout_seconds",
    "migrate_timeout_seconds",
    "poll_seconds",
    "backend_budget_mb",
    "frontend_budget_mb",
    "keep_releases",
    "keep_builds",
}

# The two Redis of each environment, both calls of modules/cache: the cache may evict, the cart store must not.
REDIS_MODULES = {"cache": "allkeys-lru", "carts": "noeviction"}

TAG_KEYS = {"Project", "Environment", "Component", "Owner", "CostCenter"}
# The AWS resource types used here that take tags. A type missing from both lists fails
# test_every_resource_type_is_classified, so a new one gets a decision.
TAGGABLE = {
    "aws_acm_certificate",
    "aws_appautoscaling_target",
    "aws_budgets_budget",
    "aws_cloudfront_distribution",
    "aws_cloudwatch_log_group",
    "aws_db_instance",
    "aws_db_parameter_group",
    "aws_db_proxy",
    "aws_db_subnet_group",
    "aws_default_security_group",
    "aws_dynamodb_table",
    "aws_ecr_repository",
    "aws_ecs_cluster",
    "aws_ecs_service",
    "aws_ecs_task_definition",
    "aws_eip",
    "aws_elasticache_parameter_group",
    "aws_elasticache_replication_group",
    "aws_elasticache_subnet_group",
    "aws_flow_log",
    "aws_iam_instance_profile",
    "aws_iam_openid_connect_provider",
    "aws_iam_policy",
    "aws_iam_role",
    "aws_instance",
    "aws_internet_gateway",
    "aws_kms_key",
    "aws_lb",
    "aws_lb_listener",
    "aws_lb_listener_rule",
    "aws_lb_target_group",
    "aws_nat_gateway",
    "aws_route53_health_check",
    "aws_route_table",
    "aws_s3_bucket",
    "aws_secretsmanager_secret",
    "aws_security_group",
    "aws_serverlessapplicationrepository_cloudformation_stack",
    "aws_subnet",
    "aws_vpc",
    "aws_vpc_security_group_egress_rule",
    "aws_vpc_security_group_ingress_rule",
}
# Types used here that have no tags argument (configuration of a tagged parent, or tagless APIs).
NOT_TAGGABLE = {
    # GitHub's resources (infra/terraform/github): no AWS tags
    "github_actions_environment_variable",
    "github_actions_variable",
    "github_branch_protection",
    "github_repository_environment",
    "github_repository_environment_deployment_policy",
    "aws_acm_certificate_validation",
    "aws_appautoscaling_policy",
    "aws_cloudfront_cache_policy",
    "aws_cloudfront_origin_access_control",
    "aws_db_proxy_default_target_group",
    "aws_db_proxy_target",
    "aws_ecr_lifecycle_policy",
    "aws_ecs_cluster_capacity_providers",
    "aws_iam_role_policy",
    "aws_iam_role_policy_attachment",
    "aws_kms_alias",
    "aws_route",
    "aws_route53_record",
    "aws_route_table_association",
    "aws_s3_bucket_acl",
    "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_logging",
    "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_policy",
    "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_replication_configuration",
    "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_versioning",
    "aws_secretsmanager_secret_rotation",
    "aws_secretsmanager_secret_version",
    "random_password",
}
# ALB policies that allow nothing older than TLS 1.2.
TLS12_POLICIES = {
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-FS-1-2-Res-2020-10",
}


# --- parsing helpers (shop_ops.cost.hcl; these wrappers name folders relative to infra/terraform/) ----


def tf_files() -> list[Path]:
    """Every .tf file under infra/terraform/, provider caches excluded."""
    return hcl.tf_files(TERRAFORM)


def resources(paths: list[Path] | None = None) -> Iterator[tuple[Path, str, str, dict[str, Any]]]:
    """(file, type, name, body) of every resource."""
    return hcl.resources(paths if paths is not None else tf_files())


def root_files(root: str) -> list[Path]:
    return hcl.folder_files(TERRAFORM / root)


def merged(root: str, kind: str) -> dict[str, Any]:
    """All blocks of one kind in a root or module folder, label -> body (locals: name -> value)."""
    return hcl.merged(TERRAFORM / root, kind)


def resolve(root: str, value: Any) -> Any:
    """`local.name` in a root's module arguments -> that local's literal value; other values as they are."""
    match = re.fullmatch(r"local\.(\w+)", text(value))
    return merged(root, "locals")[match.group(1)] if match else value


def config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config" / "aws.yaml").read_text())


# --- checks ------------------------------------------------------------------------------------------


def test_every_file_parses() -> None:
    files = tf_files()
    assert len(files) > 40, f"expected the modules and roots under {TERRAFORM}, found {len(files)} files"
    failures = []
    for path in files:
        try:
            parse(path)
        except Exception as exc:  # noqa: BLE001 - collect every file's error, then report them all
            failures.append(f"{path.relative_to(TERRAFORM)}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


def test_every_resource_type_is_classified() -> None:
    used = {rtype for _, rtype, _, _ in resources()}
    unknown = used - TAGGABLE - NOT_TAGGABLE
    assert not unknown, f"add these types to TAGGABLE or NOT_TAGGABLE: {sorted(unknown)}"


def test_every_taggable_resource_has_the_five_tags() -> None:
    missing = []
    for path, rtype, name, body in resources():
        if rtype not in TAGGABLE:
            continue
        where = f"{path.relative_to(TERRAFORM)}: {rtype}.{name}"
        if "tags" not in body:
            missing.append(f"{where} has no tags")
        elif component_of(body["tags"]) is None:
            missing.append(f"{where}: tags = {text(body['tags'])!r} is not merge(var.tags, {{ Component = ... }})")
    assert not missing, "\n".join(missing)


def test_modules_take_tags_and_roots_give_the_four_others() -> None:
    """var.tags in every module; each root's local.tags has Project, Environment, Owner, CostCenter and reaches every module."""
    for module in sorted(p.name for p in (TERRAFORM / "modules").iterdir() if p.is_dir()):
        assert "tags" in merged(f"modules/{module}", "variable"), f"modules/{module} has no variable tags"
    for root in ROOTS:
        tags = merged(root, "locals").get("tags")
        assert isinstance(tags, dict), f"{root}: no local tags map"
        assert set(tags) == TAG_KEYS - {"Component"}, f"{root}: local.tags has {sorted(tags)}"
        for name, call in merged(root, "module").items():
            assert text(call.get("tags")) == "local.tags", f"{root}: module {name} is not given tags = local.tags"
        providers = list(merged_providers(root))
        assert providers, f"{root} configures no provider"
        for name, provider in providers:
            default_tags = single(provider["default_tags"])["tags"]
            assert component_of(default_tags) is not None, (
                f"{root}: provider {name}'s default_tags are not local.tags + Component"
            )


def merged_providers(root: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in root_files(root):
        yield from blocks(parse(path), "provider")


def security_rules(target: str) -> list[tuple[str, dict[str, Any]]]:
    """Ingress rules (separate resources) whose security_group_id is `aws_security_group.<target>`."""
    paths = root_files("modules/security")
    found = []
    for _, rtype, name, body in resources(paths):
        if rtype in {"aws_vpc_security_group_ingress_rule", "aws_security_group_rule"}:
            if text(body.get("security_group_id")) == f"aws_security_group.{target}.id":
                if rtype == "aws_security_group_rule" and body.get("type") != "ingress":
                    continue
                found.append((name, body))
    return found


@pytest.mark.parametrize("group", ["database", "redis"])
def test_database_and_redis_admit_only_the_app(group: str) -> None:
    groups = {
        name: body
        for _, rtype, name, body in resources(root_files("modules/security"))
        if rtype == "aws_security_group"
    }
    assert "ingress" not in groups[group], f"aws_security_group.{group} has inline ingress: use rule resources"
    allowed = {"aws_security_group.app.id", "aws_security_group.bastion[0].id"}
    if group == "database":
        # RDS Proxy sits in the database group itself and connects to the instance through it.
        allowed.add("aws_security_group.database.id")
    rules = security_rules(group)
    sources = {
        text(body.get("referenced_security_group_id") or body.get("source_security_group_id")) for _, body in rules
    }
    assert "aws_security_group.app.id" in sources, f"{group}: no rule admits the app"
    for name, body in rules:
        open_to = {k for k in ("cidr_ipv4", "cidr_ipv6", "prefix_list_id", "cidr_blocks") if k in body}
        assert not open_to, f"{group} rule {name} admits addresses ({sorted(open_to)}), not a security group"
        source = text(body.get("referenced_security_group_id") or body.get("source_security_group_id"))
        assert source in allowed, f"{group} rule {name} admits {source}"
    # And the stores are placed in those groups, privately.
    for env in ENVIRONMENTS:
        calls = merged(f"environments/{env}", "module")
        assert text(calls["database"]["security_group_id"]) == "module.security.database_security_group_id"
        for redis in REDIS_MODULES:
            assert text(calls[redis]["security_group_id"]) == "module.security.redis_security_group_id", (env, redis)
    for _, rtype, name, body in resources(root_files("modules/database")):
        if rtype == "aws_db_instance":
            assert body["publicly_accessible"] is False, f"aws_db_instance.{name} is publicly accessible"
            assert body["vpc_security_group_ids"] == ["${var.security_group_id}"], name


def test_every_setting_names_an_output_of_each_environment() -> None:
    names = set(AwsSettings.model_fields) | set(ImageSettings.model_fields)
    assert names - NOT_FROM_TERRAFORM == set(AWS_OUTPUTS) | set(IMAGE_OUTPUTS), "update AWS_OUTPUTS / IMAGE_OUTPUTS"
    assert set(AwsEnvironment.model_fields) == set(ENVIRONMENT_OUTPUTS), "update ENVIRONMENT_OUTPUTS"
    cfg = config()
    in_config = set(cfg["aws"]) | set(cfg["images"]) | {k for e in cfg["environments"].values() for k in e}
    assert in_config - NOT_FROM_TERRAFORM <= set(AWS_OUTPUTS) | set(IMAGE_OUTPUTS) | set(ENVIRONMENT_OUTPUTS)
    wanted = {*AWS_OUTPUTS.values(), *IMAGE_OUTPUTS.values(), *ENVIRONMENT_OUTPUTS.values()}
    for env in ENVIRONMENTS:
        outputs = merged(f"environments/{env}", "output")
        assert wanted <= set(outputs), f"environments/{env}/outputs.tf lacks {sorted(wanted - set(outputs))}"
    # Shared values pass through from environments/shared, which must have them.
    shared = merged("environments/shared", "output")
    assert set(AWS_OUTPUTS.values()) <= set(shared), sorted(set(AWS_OUTPUTS.values()) - set(shared))


def test_config_aws_yaml_names_the_output_of_each_value() -> None:
    """Every value of config/aws.yaml that names a resource says `# output <name>`, the mapping above."""
    annotated: dict[str, str] = {}
    section = None
    for line in (ROOT / "config" / "aws.yaml").read_text().splitlines():
        match = re.match(r"^(\s*)(\w+):\s*(\S.*?)?\s*(?:#\s*output\s+(\w+))?\s*$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key, value, output = match.groups()
        if not indent:
            section = key
        elif value and section in ("aws", "images", "environments"):
            assert output or key in NOT_FROM_TERRAFORM, f"config/aws.yaml {section}.{key} names no Terraform output"
            if output:
                assert annotated.setdefault(key, output) == output, key
    assert annotated == {
        k: v for k, v in {**AWS_OUTPUTS, **IMAGE_OUTPUTS, **ENVIRONMENT_OUTPUTS}.items() if k in annotated
    }
    assert set(annotated) == set(AWS_OUTPUTS) | set(IMAGE_OUTPUTS) | set(ENVIRONMENT_OUTPUTS)


def test_terraform_names_are_the_names_config_uses() -> None:
    cfg = config()
    shared = merged("environments/shared", "locals")
    for key in ("region", "dr_region", "ecs_cluster", "backups_bucket", "backups_copy_bucket"):
        assert shared[key] == cfg["aws"][key], f"environments/shared local.{key} != config/aws.yaml aws.{key}"
    repos = text(merged("environments/shared", "module")["ecr"]["repositories"])
    for key in IMAGE_OUTPUTS:
        assert cfg["images"][key] in repos
    for env in ENVIRONMENTS:
        local = merged(f"environments/{env}", "locals")
        want = cfg["environments"][env]
        assert local["environment"] == env
        assert local["service"] == want["ecs_service"], f"{env}: service {local['service']} != {want['ecs_service']}"
        assert local["db_instance"] == want["db_instance"], f"{env}: db_instance {local['db_instance']}"
        assert f"https://{local['domain_name']}" == want["url"], f"{env}: domain {local['domain_name']}"
        # Secret names: shop/<env>/db (modules/secrets) is what the ARN in config names.
        assert text(merged(f"environments/{env}", "module")["secrets"]["prefix"]) == "shop/${local.environment}"
        assert f":secret:shop/{env}/db" in want["database_secret_arn"]
    secret_names = {
        text(b["name"]) for _, t, _, b in resources(root_files("modules/secrets")) if t == "aws_secretsmanager_secret"
    }
    assert "${var.prefix}/db" in secret_names


def test_ecs_services_roll_back_with_the_circuit_breaker() -> None:
    services = [(p, n, b) for p, t, n, b in resources() if t == "aws_ecs_service"]
    assert services
    for path, name, body in services:
        breaker = single(body["deployment_circuit_breaker"])
        assert breaker == {"enable": True, "rollback": True} | {
            k: v for k, v in breaker.items() if k.startswith("__")
        }, f"{path.relative_to(TERRAFORM)}: aws_ecs_service.{name} circuit breaker {breaker}"
        # The pipeline refuses services on the CODE_DEPLOY or EXTERNAL controller.
        assert single(body["deployment_controller"])["type"] == "ECS"
        # It changes images in the containers named backend and frontend (shop_ops/release/ecs.py).
        source = path.read_text()
        assert re.search(r'name\s*=\s*"backend"', source) and re.search(r'name\s*=\s*"frontend"', source)


def test_rds_is_encrypted_backed_up_and_multi_az_in_production() -> None:
    instances = {n: b for _, t, n, b in resources(root_files("modules/database")) if t == "aws_db_instance"}
    for name, body in instances.items():
        assert body["storage_encrypted"] is True, f"aws_db_instance.{name} is not encrypted"
    assert text(instances["this"]["backup_retention_period"]) == "var.backup_retention_days"
    assert text(instances["this"]["multi_az"]) == "var.multi_az"
    assert str(instances["this"]["engine_version"]).startswith(("15", "${var.engine_version}"))
    variables = merged("modules/database", "variable")
    assert variables["engine_version"]["default"].startswith("15")
    assert variables["backup_retention_days"]["default"] >= 7
    assert ">= 7" in text(single(variables["backup_retention_days"]["validation"])["condition"])
    for env in ENVIRONMENTS:
        call = merged(f"environments/{env}", "module")["database"]
        days = resolve(f"environments/{env}", call["backup_retention_days"])
        assert days >= 7, f"{env}: backups kept {days} days, fewer than 7"
        multi_az = resolve(f"environments/{env}", call["multi_az"])
        assert multi_az is (env == "production"), f"{env}: multi_az = {multi_az}"
    production_cache = merged("environments/production", "module")["cache"]
    assert resolve("environments/production", production_cache["automatic_failover"]) is True


def test_rds_preloads_pg_stat_statements_and_logs_slow_statements() -> None:
    """The slow_queries asset reads pg_stat_statements; slow statements reach the exported postgresql log."""
    [group] = [b for _, t, _, b in resources(root_files("modules/database")) if t == "aws_db_parameter_group"]
    params = {p["name"]: p for p in group["parameter"]}
    preload = params["shared_preload_libraries"]
    assert "pg_stat_statements" in str(preload["value"]).split(",")
    assert preload.get("apply_method") == "pending-reboot"  # a static parameter: RDS refuses "immediate"
    assert text(params["log_min_duration_statement"]["value"]) == "tostring(var.slow_query_ms)"
    assert merged("modules/database", "variable")["slow_query_ms"]["default"] > 0
    assert "postgresql" in text(merged("modules/database", "locals")["log_exports"])


def test_the_redis_module_encrypts_and_takes_its_eviction_policy() -> None:
    found = {t: b for _, t, _, b in resources(root_files("modules/cache"))}
    group = found["aws_elasticache_replication_group"]
    assert group["at_rest_encryption_enabled"] is True and group["transit_encryption_enabled"] is True
    assert text(group["auth_token"]) == "var.auth_token"
    assert str(group["engine_version"]).startswith("${var.engine_version}")
    assert merged("modules/cache", "variable")["engine_version"]["default"].startswith("7")
    assert text(group["parameter_group_name"]) == "aws_elasticache_parameter_group.this.name"
    # Each call has its own parameter group, named after its replication group.
    params = found["aws_elasticache_parameter_group"]
    assert "${var.name}" in params["name"]
    assert {p["name"]: text(p["value"]) for p in params["parameter"]} == {"maxmemory-policy": "var.maxmemory_policy"}


def redis_groups(env: str) -> dict[str, dict[str, Resource]]:
    """module name -> {type: resource} of the ElastiCache resources of one environment, values evaluated."""
    loaded = hcl.load(TERRAFORM / "environments" / env)
    found: dict[str, dict[str, Resource]] = {}
    for r in loaded.resources:
        if r.type.startswith("aws_elasticache_"):
            found.setdefault(r.module.removeprefix("module."), {})[r.type] = r
    return found


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_has_a_cache_that_evicts_and_a_cart_store_that_does_not(env: str) -> None:
    """Carts live 7 days, so any eviction policy could drop one: they get a Redis of their own that never
    evicts, survives a node (a replica in another zone, automatic failover) and is snapshotted daily."""
    groups = redis_groups(env)
    assert set(groups) == set(REDIS_MODULES), f"{env}: ElastiCache resources in {sorted(groups)}"
    ids, parameter_groups = set(), set()
    for module, policy in REDIS_MODULES.items():
        group = groups[module]["aws_elasticache_replication_group"].attributes
        parameters = groups[module]["aws_elasticache_parameter_group"].attributes
        assert {p["name"]: p["value"] for p in parameters["parameter"]} == {"maxmemory-policy": policy}, module
        assert group["at_rest_encryption_enabled"] is True and group["transit_encryption_enabled"] is True
        # One password for both (SHOP_REDIS_PASSWORD): the token modules/secrets stores.
        assert group["auth_token"] == Unresolved("module.secrets.redis_auth_token"), module
        ids.add(group["replication_group_id"])
        parameter_groups.add(parameters["name"])
    assert ids == {f"shop-{env}-cache", f"shop-{env}-carts"} and len(parameter_groups) == 2
    carts = groups["carts"]["aws_elasticache_replication_group"].attributes
    assert carts["num_cache_clusters"] >= 2, f"{env}: the cart store has no replica"
    assert carts["automatic_failover_enabled"] is True and carts["multi_az_enabled"] is True
    # A week of daily snapshots in production: as long as a cart lives.
    assert carts["snapshot_retention_limit"] >= (7 if env == "production" else 1)
    cache = groups["cache"]["aws_elasticache_replication_group"].attributes
    assert cache["snapshot_retention_limit"] == 0, "the cache holds nothing worth a snapshot"
    if env == "production":
        assert cache["num_cache_clusters"] >= 2 and cache["automatic_failover_enabled"] is True


def test_the_backend_gets_both_redis_urls_and_one_password() -> None:
    ecs = merged("modules/ecs", "locals")
    environment = {e["name"]: text(e["value"]) for e in ecs["backend_environment"]}
    assert environment["SHOP_REDIS_URL"] == "var.redis_url"
    assert environment["SHOP_CARTS_REDIS_URL"] == "var.carts_redis_url"
    assert not any("SENTINEL" in name for name in environment)  # ElastiCache fails over by DNS
    secrets = {e["name"]: text(e["valueFrom"]) for e in ecs["backend_secrets"]}
    assert secrets["SHOP_REDIS_PASSWORD"] == "var.redis_auth_secret_arn"
    for env in ENVIRONMENTS:
        call = merged(f"environments/{env}", "module")["ecs"]
        assert text(call["redis_url"]) == "module.cache.url", env
        assert text(call["carts_redis_url"]) == "module.carts.url", env
        assert text(call["redis_auth_secret_arn"]) == "module.secrets.redis_auth_secret_arn", env
    url = merged("modules/cache", "output")["url"]["value"]
    assert url.startswith("rediss://") and "primary_endpoint_address" in url  # TLS, the failover-following name


def test_alb_serves_tls12_plus_and_redirects_http() -> None:
    listeners = {n: b for _, t, n, b in resources(root_files("modules/alb")) if t == "aws_lb_listener"}
    https = [b for b in listeners.values() if b["protocol"] == "HTTPS"]
    assert https
    for body in https:
        assert body["ssl_policy"] in TLS12_POLICIES, body["ssl_policy"]
    for body in listeners.values():
        if body["protocol"] == "HTTP":
            action = single(body["default_action"])
            assert action["type"] == "redirect" and single(action["redirect"])["protocol"] == "HTTPS"
    groups = {n: b for _, t, n, b in resources(root_files("modules/alb")) if t == "aws_lb_target_group"}
    assert single(groups["backend"]["health_check"])["path"] == "/readyz"
    assert single(groups["storefront"]["health_check"])["path"] == "/"


def test_remote_state_is_locked() -> None:
    for root in (*ROOTS[1:], GITHUB_ROOT):
        backend = None
        for path in root_files(root):
            for entry in parse(path).get("terraform", []):
                for b in entry.get("backend", []):
                    backend = b
        assert backend is not None and "s3" in backend, f"{root} has no s3 backend"
        assert backend["s3"]["dynamodb_table"] and backend["s3"]["encrypt"] is True


def test_the_pipelines_budgets_are_the_aws_budgets() -> None:
    """daily_budget_schedule and AWS Budgets warn at the same amounts (settings costs.budgets_usd)."""
    budgets = CostSettings().budgets_usd
    for env in ENVIRONMENTS:
        assert float(merged(f"environments/{env}", "locals")["monthly_budget_usd"]) == budgets[env], env
    tfvars = parse(TERRAFORM / "environments" / "shared" / "terraform.tfvars")
    assert float(tfvars["account_budget_usd"]) == budgets["account"]
    assert "costs" not in config()  # the aws profile keeps the defaults checked here
