"""Price a Terraform root's resources per month from the committed price table and a usage file.

Like Infracost, but small and offline: the sizes come from the HCL (`shop_ops.cost.hcl`), what
the HCL cannot say (task count, GB stored and moved, log GB) from `infra/terraform/usage.yaml`,
and the prices from `infra/pricing/aws-<region>.csv`, whose rows are entered by hand and marked
unverified. A resource that cannot be priced is listed with the reason, never priced by a guess.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import yaml
from pydantic import Field

from shop_ops.cost.hcl import Resource, Unresolved, load

COLUMNS = [
    "environment",
    "component",
    "module",
    "address",
    "kind",
    "key",
    "quantity",
    "unit",
    "unit_usd",
    "monthly_usd",
    "source",
    "verified",
]

# vCPUs of the RDS instance classes used: RDS Proxy is billed per vCPU of the instance behind it
# (at least 2). From the RDS instance class table, not a price.
RDS_VCPUS = {"db.t4g.small": 2, "db.t4g.medium": 2, "db.m7g.large": 2}
RDS_PROXY_MIN_VCPUS = 2

# Resource types that are not priced, and why. A type missing here and from the pricers is
# reported as unpriced with "no pricer", so a new type gets a decision.
NOT_PRICED = {
    "aws_vpc": "free",
    "aws_subnet": "free",
    "aws_route_table": "free",
    "aws_route": "free",
    "aws_route_table_association": "free",
    "aws_internet_gateway": "free (data through it is priced as transfer, not estimated here)",
    "aws_default_security_group": "free",
    "aws_security_group": "free",
    "aws_vpc_security_group_ingress_rule": "free",
    "aws_vpc_security_group_egress_rule": "free",
    "aws_iam_role": "free",
    "aws_iam_role_policy": "free",
    "aws_iam_role_policy_attachment": "free",
    "aws_iam_policy": "free",
    "aws_iam_instance_profile": "free",
    "aws_iam_openid_connect_provider": "free",
    "aws_acm_certificate": "free (public certificates)",
    "aws_acm_certificate_validation": "free",
    "aws_lb_listener": "billed with the load balancer (hours + LCU)",
    "aws_lb_listener_rule": "billed with the load balancer (hours + LCU)",
    "aws_lb_target_group": "billed with the load balancer (hours + LCU)",
    "aws_ecs_cluster": "free (the tasks are billed)",
    "aws_ecs_cluster_capacity_providers": "free",
    "aws_ecs_task_definition": "billed as the Fargate tasks of the service that runs it",
    "aws_appautoscaling_target": "free",
    "aws_appautoscaling_policy": "free",
    "aws_db_subnet_group": "free",
    "aws_db_parameter_group": "free",
    "aws_db_proxy_default_target_group": "billed with the proxy",
    "aws_db_proxy_target": "billed with the proxy",
    "aws_elasticache_subnet_group": "free",
    "aws_elasticache_parameter_group": "free",
    "aws_flow_log": "billed as the ingestion of its log group",
    "aws_s3_bucket_acl": "billed with the bucket",
    "aws_s3_bucket_lifecycle_configuration": "billed with the bucket",
    "aws_s3_bucket_logging": "billed with the bucket",
    "aws_s3_bucket_ownership_controls": "billed with the bucket",
    "aws_s3_bucket_policy": "billed with the bucket",
    "aws_s3_bucket_public_access_block": "billed with the bucket",
    "aws_s3_bucket_server_side_encryption_configuration": "billed with the bucket",
    "aws_s3_bucket_versioning": "billed with the bucket (old versions count as stored GB)",
    "aws_s3_bucket_replication_configuration": (
        "not priced yet: inter-region transfer and replication requests of the replicated GB"
    ),
    "aws_cloudfront_cache_policy": "free",
    "aws_cloudfront_origin_access_control": "free",
    "aws_route53_record": "free (alias queries to AWS resources; the zone is priced where created)",
    "aws_secretsmanager_secret_version": "billed with the secret",
    "aws_secretsmanager_secret_rotation": "billed with the secret",
    "aws_serverlessapplicationrepository_cloudformation_stack": (
        "the rotation Lambda: a few invocations a month, inside Lambda's free tier"
    ),
    "aws_ecr_lifecycle_policy": "free",
    "aws_kms_alias": "free",
    "aws_budgets_budget": "free for the first two budgets per account (a third costs about $0.62/month, not counted)",
    "random_password": "not an AWS resource",
}


@dataclass(frozen=True)
class Price:
    """One row of the price table."""

    kind: str
    key: str
    unit: str
    usd: float
    source: str
    entered: str
    verified: bool


Prices = dict[tuple[str, str], Price]


def load_prices(path: Path) -> Prices:
    """The price table (`#` lines are comments), by (kind, key); key is "-" where the kind has one price."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    prices: Prices = {}
    for row in csv.DictReader(lines):
        verified = row["verified"].strip().lower()
        if verified not in ("true", "false"):
            raise ValueError(f"{path}: {row['kind']} {row['key']}: verified must be true or false, not {verified!r}")
        price = Price(
            kind=row["kind"],
            key=row["key"],
            unit=row["unit"],
            usd=float(row["usd"]),
            source=row["source"],
            entered=row["entered"],
            verified=verified == "true",
        )
        if (price.kind, price.key) in prices:
            raise ValueError(f"{path}: {price.kind} {price.key} appears twice")
        prices[(price.kind, price.key)] = price
    return prices


def load_usage(path: Path) -> dict[str, dict[str, Any]]:
    """The usage file's assumptions, by environment root name."""
    return yaml.safe_load(path.read_text())["environments"]


@dataclass(frozen=True)
class Unpriced:
    """A resource the estimate leaves out, and why."""

    address: str
    type: str
    reason: str
    environment: str = ""


@dataclass(frozen=True)
class Estimate:
    """Priced lines (COLUMNS) and the resources left out."""

    lines: pd.DataFrame
    unpriced: list[Unpriced]

    @property
    def total_usd(self) -> float:
        return float(self.lines["monthly_usd"].sum())


class Unpriceable(Exception):
    """A resource of a priced type that cannot be priced (an unresolved size, a missing price row)."""


@dataclass(frozen=True)
class Quantity:
    """So much of one price row, for all instances of a resource (count included)."""

    kind: str
    key: str
    quantity: float


@dataclass(frozen=True)
class Context:
    """What a pricer may read besides its resource."""

    resources: list[Resource]
    usage: dict[str, Any]

    @property
    def hours(self) -> float:
        return float(self.usage["hours_per_month"])

    def siblings(self, resource: Resource, rtype: str) -> list[Resource]:
        return [r for r in self.resources if r.module == resource.module and r.type == rtype]

    def need(self, name: str) -> Any:
        if name not in self.usage:
            raise Unpriceable(f"usage has no {name!r}")
        return self.usage[name]


def _attribute(resource: Resource, name: str) -> Any:
    value = resource.attributes.get(name)
    if isinstance(value, Unresolved):
        raise Unpriceable(f"{name} = {value.expression} could not be evaluated")
    return value


def _ecs_service(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    if _attribute(r, "launch_type") != "FARGATE":
        raise Unpriceable("only FARGATE services are priced")
    tasks = ctx.siblings(r, "aws_ecs_task_definition")
    if len(tasks) != 1:
        raise Unpriceable(f"expected one task definition beside the service, found {len(tasks)}")
    vcpu = int(_attribute(tasks[0], "cpu")) / 1024
    gb = int(_attribute(tasks[0], "memory")) / 1024
    task_hours = float(ctx.need("ecs_tasks")) * ctx.hours * n
    return [Quantity("fargate_vcpu", "-", vcpu * task_hours), Quantity("fargate_memory", "-", gb * task_hours)]


def _lb(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    if (r.attributes.get("load_balancer_type") or "application") != "application":
        raise Unpriceable("only application load balancers are priced")
    hours = ctx.hours * n
    return [Quantity("alb", "-", hours), Quantity("alb_lcu", "-", float(ctx.need("alb_lcu")) * hours)]


def _nat_gateway(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    # nat_gb is the environment's total, whatever the number of gateways.
    return [Quantity("nat_gateway", "-", ctx.hours * n), Quantity("nat_gateway_data", "-", float(ctx.need("nat_gb")))]


def _eip(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    return [Quantity("public_ipv4", "-", ctx.hours * n)]


def _db_instance(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    multi_az = _attribute(r, "multi_az") is True
    storage = r.attributes.get("allocated_storage")
    if storage is None and "replicate_source_db" in r.attributes:
        # A replica has the storage of its source: the module's instance that is not a replica.
        sources = [s for s in ctx.siblings(r, "aws_db_instance") if "replicate_source_db" not in s.attributes]
        if len(sources) != 1:
            raise Unpriceable("the replica's source instance is not the one other instance of its module")
        storage = _attribute(sources[0], "allocated_storage")
    if isinstance(storage, Unresolved) or storage is None:
        raise Unpriceable("allocated_storage could not be evaluated")
    storage_type = r.attributes.get("storage_type") or "gp3"
    if storage_type != "gp3" and "replicate_source_db" not in r.attributes:
        raise Unpriceable(f"storage_type {storage_type} has no price row")
    suffix = "_multi_az" if multi_az else ""
    return [
        Quantity(f"rds_postgres{suffix}", str(_attribute(r, "instance_class")), ctx.hours * n),
        Quantity(f"rds_storage_gp3{suffix}", "-", float(storage) * n),
    ]


def _db_proxy(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    sources = [s for s in ctx.siblings(r, "aws_db_instance") if "replicate_source_db" not in s.attributes]
    if len(sources) != 1:
        raise Unpriceable("the proxy's instance is not the one primary instance of its module")
    instance_class = str(_attribute(sources[0], "instance_class"))
    if instance_class not in RDS_VCPUS:
        raise Unpriceable(f"vCPUs of {instance_class} unknown (RDS_VCPUS)")
    vcpus = max(RDS_VCPUS[instance_class], RDS_PROXY_MIN_VCPUS)
    return [Quantity("rds_proxy", "-", vcpus * ctx.hours * n)]


def _elasticache(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    nodes = int(_attribute(r, "num_cache_clusters"))
    return [Quantity("elasticache", str(_attribute(r, "node_type")), nodes * ctx.hours * n)]


def _s3_bucket(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    stored = ctx.need("s3_gb")
    if r.name not in stored:
        raise Unpriceable(f"usage s3_gb has no {r.name!r}")
    return [Quantity("s3_standard", "-", float(stored[r.name]) * n)]


def _cloudfront(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    return [Quantity("cloudfront_data_out", "-", float(ctx.need("cloudfront_gb")))]


def _health_check(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    # Optional features billed on top: HTTPS, string matching, fast (10 s) interval, latency measurement.
    kind = str(_attribute(r, "type"))
    options = sum(
        [
            kind.startswith("HTTPS"),
            kind.endswith("STR_MATCH"),
            r.attributes.get("request_interval") == 10,
            r.attributes.get("measure_latency") is True,
        ]
    )
    found = [Quantity("route53_health_check", "-", float(n))]
    if options:
        found.append(Quantity("route53_health_check_option", "-", float(options * n)))
    return found


def _route53_zone(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    return [Quantity("route53_hosted_zone", "-", float(n))]


def _secret(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    return [Quantity("secretsmanager_secret", "-", float(n))]


def _log_group(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    per_group = ctx.need("log_gb")
    name = r.attributes.get("name")
    gb = per_group.get(name, per_group["default"]) if isinstance(name, str) else per_group["default"]
    return [Quantity("cloudwatch_logs_ingest", "-", float(gb) * n)]


def _kms_key(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    return [Quantity("kms_key", "-", float(n))]


def _instance(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    return [Quantity("ec2", str(_attribute(r, "instance_type")), ctx.hours * n)]


def _ecr_repository(r: Resource, n: int, ctx: Context) -> list[Quantity]:
    # ecr_gb is all repositories' images together.
    return [Quantity("ecr_storage", "-", float(ctx.need("ecr_gb")))]


Pricer = Callable[[Resource, int, Context], list[Quantity]]

PRICERS: dict[str, Pricer] = {
    "aws_ecs_service": _ecs_service,
    "aws_lb": _lb,
    "aws_nat_gateway": _nat_gateway,
    "aws_eip": _eip,
    "aws_db_instance": _db_instance,
    "aws_db_proxy": _db_proxy,
    "aws_elasticache_replication_group": _elasticache,
    "aws_s3_bucket": _s3_bucket,
    "aws_cloudfront_distribution": _cloudfront,
    "aws_route53_health_check": _health_check,
    "aws_route53_zone": _route53_zone,
    "aws_secretsmanager_secret": _secret,
    "aws_cloudwatch_log_group": _log_group,
    "aws_kms_key": _kms_key,
    "aws_instance": _instance,
    "aws_ecr_repository": _ecr_repository,
}


def estimate(resources: list[Resource], prices: Prices, usage: dict[str, Any], environment: str) -> Estimate:
    """Monthly USD per priced line of one environment root's resources; the rest listed as unpriced.

    `usage` is the whole usage file's `environments` mapping; `environment` picks the root's entry.
    """
    if environment not in usage:
        raise ValueError(f"usage has no environment {environment!r} (has {sorted(usage)})")
    ctx = Context(resources=resources, usage=usage[environment])
    rows: list[dict[str, Any]] = []
    unpriced: list[Unpriced] = []
    for r in resources:
        pricer = PRICERS.get(r.type)
        if pricer is None:
            reason = NOT_PRICED.get(r.type, "no pricer for this type")
            unpriced.append(Unpriced(r.address, r.type, reason, environment))
            continue
        if isinstance(r.count, Unresolved):
            unpriced.append(
                Unpriced(r.address, r.type, f"count/for_each {r.count.expression} could not be evaluated", environment)
            )
            continue
        if r.count == 0:
            continue
        try:
            quantities = pricer(r, r.count, ctx)
            for q in quantities:
                if (q.kind, q.key) not in prices:
                    raise Unpriceable(f"no price row for {q.kind} {q.key}")
        except Unpriceable as exc:
            unpriced.append(Unpriced(r.address, r.type, str(exc), environment))
            continue
        for q in quantities:
            price = prices[(q.kind, q.key)]
            rows.append(
                {
                    "environment": environment,
                    "component": r.component,
                    "module": r.module,
                    "address": r.address,
                    "kind": q.kind,
                    "key": q.key,
                    "quantity": q.quantity,
                    "unit": price.unit,
                    "unit_usd": price.usd,
                    "monthly_usd": q.quantity * price.usd,
                    "source": price.source,
                    "verified": price.verified,
                }
            )
    return Estimate(lines=pd.DataFrame(rows, columns=COLUMNS), unpriced=unpriced)


TASK_COLUMNS = ["environment", "address", "vcpu", "memory_mb"]
# The Terraform roots under environments/ that cost money: the two environments and what they share.
ROOTS = ("staging", "production", "shared")


def task_sizes(resources: list[Resource], environment: str) -> pd.DataFrame:
    """The ECS task definitions' sizes (TASK_COLUMNS): vCPU and MiB, where the HCL says them as numbers."""
    rows = []
    for r in resources:
        if r.type != "aws_ecs_task_definition":
            continue
        cpu, memory = r.attributes.get("cpu"), r.attributes.get("memory")
        if isinstance(cpu, (int, float, str)) and isinstance(memory, (int, float, str)):
            rows.append(
                {"environment": environment, "address": r.address, "vcpu": int(cpu) / 1024, "memory_mb": int(memory)}
            )
    return pd.DataFrame(rows, columns=TASK_COLUMNS).astype({"vcpu": float, "memory_mb": int})


class TerraformCosts(dg.ConfigurableResource):
    """The estimate of the Terraform roots (`terraform_costs`): the HCL, the price table and the usage file."""

    terraform_dir: str  # infra/terraform: environments/<root>/ and usage.yaml
    price_table: str  # infra/pricing/aws-<region>.csv
    roots: list[str] = Field(default_factory=lambda: [*ROOTS])

    def _loaded(self, root: str) -> list[Resource]:
        folder = Path(self.terraform_dir) / "environments" / root
        if not folder.is_dir():
            raise FileNotFoundError(f"no Terraform root {folder} (terraform_dir {self.terraform_dir}, root {root!r})")
        loaded = load(folder)
        if loaded.skipped_modules:
            # A module the reader cannot follow would silently drop its resources from the total.
            raise ValueError(f"{folder}: module calls not followed: {loaded.skipped_modules}")
        return loaded.resources

    def estimate(self) -> Estimate:
        """Every root's priced lines, one frame; the unpriced resources of all roots."""
        prices = load_prices(Path(self.price_table))
        usage = load_usage(Path(self.terraform_dir) / "usage.yaml")
        parts = [estimate(self._loaded(root), prices, usage, root) for root in self.roots]
        lines = pd.concat([p.lines for p in parts if not p.lines.empty], ignore_index=True)
        return Estimate(lines=lines, unpriced=[u for p in parts for u in p.unpriced])

    def task_sizes(self) -> pd.DataFrame:
        """The task sizes of every root that defines ECS tasks."""
        return pd.concat([task_sizes(self._loaded(root), root) for root in self.roots], ignore_index=True)
