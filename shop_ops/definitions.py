"""The single Dagster `Definitions` of shop-ops: reads the settings once and builds every resource from them.

This is the one place that looks at the profile: it picks the release strategy (`release_target`:
blue/green slots locally, ECS on aws) and the sensors' default status. Assets, sensors and domain
code get what they need from resources and arguments, never from the settings themselves.
Environment variables read here: the notifier's (SHOP_OPS_UI_URL, SHOP_OPS_SLACK_*, SHOP_OPS_SMTP_*:
`resources/notifier.py`), SHOP_OPS_REGISTRY_URL / SHOP_OPS_REGISTRY_CREDENTIALS_FILE (the
registry), SHOP_OPS_<ENV>_DATABASE_PASSWORD_FILE (each local database's password file),
SHOP_OPS_AWS_ENDPOINT_URL (another AWS endpoint, e.g. moto in tests), SHOP_OPS_<ENV>_ADMIN_TOKEN_FILE
(each shop's admin token: load tests restock and purge synthetic orders, cost reports count orders),
SHOP_OPS_INFRA and SHOP_OPS_CHECKOV (the run image's Terraform copy and checkov: Settings).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg

from shop_ops.assets.backups import (
    database_backup,
    dr_drill,
    freshness_checks,
    pipeline_state_backup,
    restore_test,
    wal_archive_check,
)
from shop_ops.assets.costs import actual_spend, cost_estimate, cost_report
from shop_ops.assets.database import database_schema, slow_queries
from shop_ops.assets.deployments import deployment_history, deployments
from shop_ops.assets.docs import ASSET as API_DOCS
from shop_ops.assets.docs import api_docs_assets
from shop_ops.assets.environment_health import environment_health
from shop_ops.assets.images import image_assets
from shop_ops.assets.observability import slo_report
from shop_ops.assets.performance import capacity_report, load_test_baseline, nightly_load_test
from shop_ops.assets.retention import build_registry_retention_job
from shop_ops.assets.security import (
    audit_log,
    certificate_assets,
    dependency_audit,
    dockerfile_scan,
    terraform_scan,
    tls_scan_assets,
)
from shop_ops.backup.rds_target import RdsBackupTarget
from shop_ops.backup.targets import BackupTarget, LocalBackupTarget, LocalCartStore, LocalCluster
from shop_ops.cost.actual import CostExplorerSpend, NoSpend, SpendSource
from shop_ops.cost.estimate import TerraformCosts
from shop_ops.cost.report import Budgets
from shop_ops.jobs import JOBS
from shop_ops.observability.log_alerts import ErrorLogResource
from shop_ops.observability.slo import ServiceLevels
from shop_ops.perf.loadtest import LoadTester
from shop_ops.release.apps import CONTAINER_UID, stack_id
from shop_ops.release.images import shop_image_specs
from shop_ops.release.targets import BlueGreenTarget, DatabaseLoginsConfig, EcsTarget, ReleaseTarget, ShopWiring
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.backup_store import BackupStoreResource
from shop_ops.resources.containers import ContainersResource, docker_host_for
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.notifier import notifier_from_env
from shop_ops.resources.postgres import DatabaseTarget, PostgresResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.resources.router import EnvironmentRouter, RouterResource, SlotPortsConfig, shared_challenge_root
from shop_ops.resources.shop_admin import ShopAdminResource
from shop_ops.schedules import build_schedules
from shop_ops.security.acm import AcmCertificates
from shop_ops.security.audit import AuditTrail
from shop_ops.security.certificates import CertificateAuthorityResource, CertificateSource
from shop_ops.security.checkov import CheckovScanner
from shop_ops.security.redaction import install_redaction
from shop_ops.security.scanners import ScannerResource, TlsEndpoint
from shop_ops.security.secrets import SecretsResource
from shop_ops.sensors.backup_freshness import build_backup_freshness_sensor
from shop_ops.sensors.log_alerts import build_log_alert_sensor
from shop_ops.sensors.pipeline_metrics import build_pipeline_metrics_sensor
from shop_ops.sensors.registry_push import build_registry_push_sensor
from shop_ops.sensors.run_failure_alerts import build_run_failure_alert_sensor
from shop_ops.services.pebble import Pebble
from shop_ops.services.processes import PostgresCluster
from shop_ops.settings import ENVIRONMENTS, ROOT, Settings, get_settings


def aws_resource(settings: Settings) -> AwsResource:
    """boto3 for the aws profile's region (SHOP_OPS_AWS_ENDPOINT_URL: another endpoint, e.g. moto in tests)."""
    assert settings.aws is not None  # the settings refuse an aws profile without it
    return AwsResource(region=settings.aws.region, endpoint_url=os.environ.get("SHOP_OPS_AWS_ENDPOINT_URL") or None)


def registry_resource(settings: Settings) -> RegistryResource:
    """The local registry (credentials file written by the local environment; its folder for garbage collection,
    unless SHOP_OPS_REGISTRY_URL names another registry), or ECR in the aws profile (its API for housekeeping)."""
    folder: str | None = None
    aws: AwsResource | None = None
    if settings.profile == "local":
        url = f"http://127.0.0.1:{settings.registry.port}"
        credentials: str | None = str(settings.state_path / "registry" / "credentials.json")
        folder = None if os.environ.get("SHOP_OPS_REGISTRY_URL") else str(settings.state_path / "registry")
    else:
        assert settings.aws is not None  # the settings refuse an aws profile without it
        url, credentials = f"https://{settings.aws.ecr_registry}", None
        aws = aws_resource(settings)
    return RegistryResource(
        local_folder=folder,
        aws=aws,
        url=os.environ.get("SHOP_OPS_REGISTRY_URL") or url,
        credentials_file=os.environ.get("SHOP_OPS_REGISTRY_CREDENTIALS_FILE") or credentials,
        backend_repository=settings.images.backend_repository,
        frontend_repository=settings.images.frontend_repository,
    )


def containers_resource(settings: Settings) -> ContainersResource:
    """The Docker API: a Docker engine that answers, else podman's service over the state's storage."""
    return ContainersResource(docker_host=docker_host_for(settings.docker_state_path))


def postgres_resource(settings: Settings) -> PostgresResource:
    """Each local environment's database (the aws profile has none reachable from here)."""
    if settings.profile != "local":
        return PostgresResource(environments={})
    return PostgresResource(
        environments={
            name: DatabaseTarget(
                port=env.postgres_port,
                database=env.database,
                password_file=os.environ.get(f"SHOP_OPS_{name.upper()}_DATABASE_PASSWORD_FILE")
                or str(settings.database_password_file(name)),
            )
            for name, env in settings.local_environments().items()
        }
    )


def shop_wiring(settings: Settings, name: str) -> ShopWiring:
    """What a local environment's shop connects to: PgBouncer, the replica, the Redis cache, the cart store's Sentinel."""
    env = settings.local_environments()[name]
    sentinel, service = settings.carts_sentinel(name)
    folder = settings.postgres_folder(name)
    return ShopWiring(
        redis_url=settings.redis_url(name),
        redis_password_file=str(settings.redis_password_file(name)),
        carts_sentinels=sentinel,
        carts_sentinel_service=service,
        pooled_database_url=f"postgresql+asyncpg://shop@127.0.0.1:{env.pgbouncer_port}/{env.database}",
        replica_database_url=(
            f"postgresql+asyncpg://shop@127.0.0.1:{env.replica_port}/{env.database}" if env.replica_port else ""
        ),
        database_pool_size=settings.data.database_pool_size,
        redis_max_connections=settings.data.redis_max_connections,
        redis_timeout_seconds=settings.data.redis_timeout_ms / 1000,
        database_timeout_seconds=settings.data.database_timeout_ms / 1000,
        # Hardening: each shop container's limits (beside a read-only root, no capabilities, no-new-privileges),
        # the backend's request body limit and CORS origins.
        container_memory_mb=settings.security.container_memory_mb,
        container_cpus=settings.security.container_cpus,
        max_request_bytes=settings.security.max_request_bytes,
        cors_origins=list(settings.security.cors_origins),
        # The serving backends log in as one of two alternating roles (rotate_database_password).
        database_logins=DatabaseLoginsConfig(
            secrets_dir=str(settings.state_path / "secrets"),
            cluster_datadir=str(folder / "data"),
            cluster_port=env.postgres_port,
            replica_datadir=str(folder / "replica") if env.replica_port else "",
            replica_port=env.replica_port or 0,
            pgbouncer_folder=str(folder / "pgbouncer"),
            pgbouncer_port=env.pgbouncer_port,
            database=env.database,
            role_defaults=settings.data.shop_role_defaults(),
        ),
    )


def router_resource(settings: Settings) -> RouterResource:
    """The local environments' nginx routers as `shop-ops local up` starts them: the internal listener, the public
    HTTPS/HTTP listeners and the shared ACME challenge port, the edge cache and the API's rate limit."""
    tls, security = settings.tls, settings.security
    return RouterResource(
        environments={
            name: EnvironmentRouter(
                folder=str(settings.state_path / "routers" / name),
                port=env.router_port,
                blue=SlotPortsConfig(**env.slots["blue"].model_dump()),
                green=SlotPortsConfig(**env.slots["green"].model_dump()),
                https_port=env.https_port,
                http_port=env.http_port,
                server_name=tls.hostname(name),
            )
            for name, env in settings.local_environments().items()
        },
        metrics_targets_dir=str(settings.metrics_targets_dir()),
        cache_lifetime=settings.performance.edge_cache_seconds,
        tls_folder=str(settings.tls_folder()), challenge_port=tls.challenge_port,
        challenge_root=str(shared_challenge_root(settings.tls_folder())), hsts_max_age_seconds=tls.hsts_max_age_seconds,
        api_rate_per_second=security.api_rate_per_second, api_burst=security.api_burst,
        rate_limit_allow=list(security.rate_limit_allow),
    )  # fmt: skip


def pebble_service(settings: Settings) -> Pebble:
    """The local ACME CA (Pebble and its DNS) on the `tls:` ports, state in `<state>/pebble`."""
    tls = settings.tls
    return Pebble(
        settings.state_path / "pebble", tls.acme_port, tls.acme_management_port, tls.dns_port, tls.challenge_port,
        tls.validity_days * 86400,
    )  # fmt: skip


def certificate_source(settings: Settings) -> CertificateSource:
    """The certificates assets' source: Pebble + the routers (local), the ALB's ACM certificates (aws)."""
    tls = settings.tls
    if settings.profile == "aws":
        assert settings.aws is not None
        return AcmCertificates(
            aws=aws_resource(settings),
            domains={name: urlsplit(env.url).hostname or "" for name, env in settings.aws_environments().items()},
            expiry_check_days=tls.expiry_check_days,
        )
    pebble = pebble_service(settings)
    return CertificateAuthorityResource(
        router=router_resource(settings), directory_url=pebble.directory_url, api_ca_file=str(pebble.api_ca_file),
        root_url=f"{pebble.management_url}/roots/0", tls_folder=str(settings.tls_folder()), domain=tls.domain,
        challenge_port=tls.challenge_port, renew_before_days=tls.renew_before_days,
        expiry_check_days=tls.expiry_check_days,
    )  # fmt: skip


def scanners_resource(settings: Settings) -> ScannerResource:
    """The scan assets' programs (sslyze's own venv; hadolint and pip-audit beside this Python) and each
    environment's HTTPS endpoint with the roots to trust: the routers and the local roots (local), the
    environments' URLs and the system's roots (aws)."""
    here = Path(sys.executable).parent
    if settings.profile == "local":
        endpoints = {
            name: TlsEndpoint(port=env.https_port, server_name=settings.tls.hostname(name))
            for name, env in settings.local_environments().items()
        }
        bundle = settings.tls_folder() / "roots.pem"
    else:
        endpoints = {}
        for name, env in settings.aws_environments().items():
            url = urlsplit(env.url)
            host = url.hostname or ""
            endpoints[name] = TlsEndpoint(host=host, port=url.port or 443, server_name=host)
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    return ScannerResource(
        repository=str(ROOT), sslyze_venv=str(settings.sslyze_path), hadolint=str(here / "hadolint"),
        pip_audit=str(here / "pip-audit"), tls_endpoints=endpoints, trust_bundle=str(bundle),
    )  # fmt: skip


def release_target(
    settings: Settings,
    registry: RegistryResource,
    ledger: LedgerResource,
    containers: ContainersResource | None = None,
    postgres: PostgresResource | None = None,
) -> ReleaseTarget:
    """Blue/green slots behind each environment's router (local), or each environment's ECS service (aws)."""
    if settings.profile == "aws":
        assert settings.aws is not None
        environments = settings.aws_environments()
        return EcsTarget(
            registry=registry, ledger=ledger, k6=K6Resource(), verify_script=str(settings.loadtests_path / "verify.js"),
            aws=aws_resource(settings),
            cluster=settings.aws.ecs_cluster,
            services={name: env.ecs_service for name, env in environments.items()},
            database_secrets={name: env.database_secret_arn for name, env in environments.items()},
            urls={name: env.url for name, env in environments.items()},
            deploy_timeout_seconds=settings.aws.deploy_timeout_seconds,
            migrate_timeout_seconds=settings.aws.migrate_timeout_seconds, poll_seconds=settings.aws.poll_seconds,
        )  # fmt: skip
    environments = settings.local_environments()
    router = router_resource(settings)
    return BlueGreenTarget(
        registry=registry, ledger=ledger, k6=K6Resource(), verify_script=str(settings.loadtests_path / "verify.js"),
        containers=containers or containers_resource(settings),
        router=router, postgres=postgres or postgres_resource(settings), stack=stack_id(settings.state_path),
        shops={name: shop_wiring(settings, name) for name in environments},
        admin_token_files={name: str(settings.admin_token_file(name)) for name in environments},
        payment_webhook_secret_files={name: str(settings.payment_webhook_secret_file(name)) for name in environments},
        container_logs_dir=str(settings.container_logs_dir()),
    )  # fmt: skip


def backup_target(settings: Settings, postgres: PostgresResource, containers: ContainersResource) -> BackupTarget:
    """pgBackRest + encrypted dumps in a local folder (local), RDS snapshots copied to the DR region (aws)."""
    backups = settings.backups
    if settings.profile == "aws":
        aws = settings.aws
        assert aws is not None
        endpoint = os.environ.get("SHOP_OPS_AWS_ENDPOINT_URL") or None
        return RdsBackupTarget(
            backup_store=BackupStoreResource(
                bucket=aws.backups_bucket, region=aws.region, endpoint_url=endpoint, copy_bucket=aws.backups_copy_bucket,
                # the copy bucket is in the DR region; without a copy bucket there is no S3 copy (RDS still copies)
                copy_region=aws.dr_region if aws.backups_copy_bucket else None,
            ),
            key_file=os.environ.get("SHOP_OPS_BACKUP_KEY_FILE") or str(settings.backup_key_file()),
            retention_daily=backups.retention_daily, retention_monthly=backups.retention_monthly,
            aws=aws_resource(settings), dr_region=aws.dr_region or aws.region,
            instances={name: env.db_instance for name, env in settings.aws_environments().items() if env.db_instance},
            restore_instance_class=aws.restore_instance_class, restore_subnet_group=aws.restore_subnet_group,
            restore_security_groups=list(aws.restore_security_groups), dr_kms_key_id=aws.dr_kms_key_id,
            poll_seconds=aws.poll_seconds,
        )  # fmt: skip
    clusters = {}
    for name, env in settings.local_environments().items():
        folder = settings.postgres_folder(name)
        cluster = PostgresCluster(datadir=folder / "data", port=env.postgres_port)
        clusters[name] = LocalCluster(
            datadir=str(cluster.datadir), port=cluster.port, socket_dir=str(cluster.socket_dir),
            pgbackrest_dir=str(folder / "pgbackrest"),
        )  # fmt: skip
    # Each environment's cart store (Redis: primary and replica), snapshotted as its `admin` user.
    cart_stores = {
        name: LocalCartStore(
            ports=[env.redis.carts_port, env.redis.carts_replica_port],
            admin_password_file=str(settings.redis_admin_password_file(name)),
        )
        for name, env in settings.local_environments().items()
    }
    return LocalBackupTarget(
        backup_store=BackupStoreResource(folder=str(settings.backup_folder())),
        key_file=os.environ.get("SHOP_OPS_BACKUP_KEY_FILE") or str(settings.backup_key_file()),
        retention_daily=backups.retention_daily, retention_monthly=backups.retention_monthly,
        postgres=postgres, containers=containers, clusters=clusters, cart_stores=cart_stores,
        scratch_dir=str((settings.state_path / "postgres").resolve() / "scratch"),
        process_max=backups.process_max, archive_timeout_seconds=backups.archive_timeout_seconds,
    )  # fmt: skip


def secrets_resource(settings: Settings, ledger: LedgerResource | None = None) -> SecretsResource:
    """The state's secret files (local), or Secrets Manager with each environment's database secret (aws); every
    access recorded by name in `ledger` (the audit trail's `secret_access`)."""
    if settings.profile == "aws":
        assert settings.aws is not None
        return SecretsResource(
            backend="aws", region=settings.aws.region,
            endpoint_url=os.environ.get("SHOP_OPS_AWS_ENDPOINT_URL") or None,
            database_secrets={name: env.database_secret_arn for name, env in settings.aws_environments().items()},
            ledger=ledger,
        )  # fmt: skip
    overrides = {name: os.environ.get(f"SHOP_OPS_{name.upper()}_DATABASE_PASSWORD_FILE") for name in ENVIRONMENTS}
    return SecretsResource(
        folder=str(settings.state_path / "secrets"),
        # The files the release target hands the shop's containers, under the names its pre-flight reads.
        paths={
            "backup.key": str(settings.backup_key_file()),
            **{f"{n}-db-password": p for n, p in overrides.items() if p},
            **{f"{n}-admin-token": str(settings.admin_token_file(n)) for n in ENVIRONMENTS},
            **{f"{n}-payment-webhook-secret": str(settings.payment_webhook_secret_file(n)) for n in ENVIRONMENTS},
        },
        shared_group=CONTAINER_UID,  # the shop containers' group reads the files they mount
        ledger=ledger,
    )


def shop_admin(settings: Settings) -> ShopAdminResource:
    """Each environment's admin token file: locally `shop-ops local up` writes them (Settings.admin_token_file);
    elsewhere only SHOP_OPS_<ENV>_ADMIN_TOKEN_FILE names one."""
    return ShopAdminResource(
        token_files={
            name: str(settings.admin_token_file(name))
            if settings.profile == "local"
            else os.environ.get(f"SHOP_OPS_{name.upper()}_ADMIN_TOKEN_FILE", "")
            for name in ENVIRONMENTS
        }
    )


def load_tester(settings: Settings, containers: ContainersResource, admin: ShopAdminResource) -> LoadTester:
    """k6 profiles and the load tests' housekeeping from `performance:`; only 127.0.0.1 in the local profile."""
    perf = settings.performance
    return LoadTester(
        k6=K6Resource(), containers=containers, mix_script=str(settings.loadtests_path / "mix.js"), shop_admin=admin,
        loopback_only=settings.profile == "local", rate=perf.rate, duration_seconds=perf.duration_seconds,
        stress_start_rate=perf.stress_start_rate, stress_max_rate=perf.stress_max_rate, stress_steps=perf.stress_steps,
        stress_duration_seconds=perf.stress_duration_seconds, p95_ms=perf.p95_ms, min_stock=perf.min_stock,
        synthetic_order_max_age_hours=perf.synthetic_order_max_age_hours,
        usage_interval_seconds=perf.usage_interval_seconds, storefront=perf.storefront,
    )  # fmt: skip


def spend_source(settings: Settings) -> SpendSource:
    """Cost Explorer in the aws profile; locally nothing runs on AWS, so no bill (SHOP_OPS_AWS_ENDPOINT_URL: moto)."""
    if settings.profile != "aws":
        return NoSpend(reason="the local profile runs nothing on AWS: no bill to read (the estimate stands alone)")
    assert settings.aws is not None
    return CostExplorerSpend(aws=aws_resource(settings), project=settings.costs.project_tag)


def pushgateway_url(settings: Settings) -> str:
    """Where pipeline_metrics_sensor pushes: the local environment's Pushgateway, or `observability.pushgateway_url`."""
    obs = settings.observability
    local = f"http://127.0.0.1:{obs.pushgateway_port}" if settings.profile == "local" else ""
    return obs.pushgateway_url or local


def error_log(settings: Settings) -> ErrorLogResource:
    """The log alerts' store: the local log store (PostgreSQL), or the ECS services' CloudWatch log groups (aws)."""
    if settings.profile == "local":
        return ErrorLogResource(
            store="postgres", dsn=settings.logs_dsn(), retention_days=settings.observability.log_retention_days
        )
    assert settings.aws is not None
    return ErrorLogResource(
        store="cloudwatch",
        log_groups=[f"/shop/{env}/{service}" for env in ENVIRONMENTS for service in ("backend", "frontend")],
        region=settings.aws.region,
        endpoint_url=os.environ.get("SHOP_OPS_AWS_ENDPOINT_URL") or None,
    )


def service_levels(settings: Settings) -> ServiceLevels:
    """The SLO report's Prometheus: the local environment's, or `observability.prometheus_url` (aws)."""
    obs = settings.observability
    url = obs.prometheus_url or (f"http://127.0.0.1:{obs.prometheus_port}" if settings.profile == "local" else "")
    return ServiceLevels(
        prometheus_url=url, environments=list(ENVIRONMENTS), days=obs.slo_days,
        availability=obs.availability_objective, latency_ms=obs.latency_objective_ms,
        latency_ratio=obs.latency_objective_ratio,
    )  # fmt: skip


def resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Every resource, configured from the settings; the release strategy picked by profile."""
    registry = registry_resource(settings)
    ledger = LedgerResource(location=settings.ledger, state_dir=str(settings.state_path))
    containers, postgres = containers_resource(settings), postgres_resource(settings)
    admin = shop_admin(settings)
    return {
        "containers": containers,
        "registry": registry,
        "postgres": postgres,
        "ledger": ledger,
        "notifier": notifier_from_env(),
        "release_target": release_target(settings, registry, ledger, containers, postgres),
        "backup_target": backup_target(settings, postgres, containers),
        "load_tester": load_tester(settings, containers, admin),
        "shop_admin": admin,
        "terraform_costs": TerraformCosts(
            terraform_dir=str(settings.infra_path / "terraform"),
            price_table=str(settings.infra_path / "pricing" / settings.costs.price_table),
        ),
        "spend": spend_source(settings),
        "budgets": Budgets(usd=dict(settings.costs.budgets_usd)),
        "service_levels": service_levels(settings),
        "error_log": error_log(settings),
        "certificate_authority": certificate_source(settings),
        "scanners": scanners_resource(settings),
        "secrets": secrets_resource(settings, ledger),
        "audit_trail": AuditTrail(ledger=ledger, retention_days=settings.security.audit_retention_days),
        "terraform_scanner": CheckovScanner(
            checkov=str(settings.checkov_path), directory=str(settings.infra_path / "terraform")
        ),
    }


settings = get_settings()
# Every known secret is masked in whatever Dagster stores (dagster.yaml: the redacting event log storage and
# compute log manager) and in this process's output: the state's secret files, the backup key, the registry's
# credentials and the SHOP_OPS_* secret variables (shop_ops/security/redaction.py).
install_redaction(
    [settings.state_path / "secrets", settings.backup_key_file(), settings.state_path / "registry" / "credentials.json"]
)
# Sensors and schedules run from the start on one machine (local profile); elsewhere someone turns them on.
sensor_status = dg.DefaultSensorStatus.RUNNING if settings.profile == "local" else dg.DefaultSensorStatus.STOPPED
schedule_status = dg.DefaultScheduleStatus.RUNNING if settings.profile == "local" else dg.DefaultScheduleStatus.STOPPED
images = [
    definition
    for spec in shop_image_specs(
        backend_budget_mb=settings.images.backend_budget_mb,
        frontend_budget_mb=settings.images.frontend_budget_mb,
        backend_repository=settings.images.backend_repository,
        frontend_repository=settings.images.frontend_repository,
    )
    # The backend's release tag waits for the API docs' verdict on the same build (blocking checks + release gate).
    for definition in image_assets(spec, gate=dg.AssetKey(API_DOCS) if spec.name == "backend" else None)
]
api_docs = api_docs_assets(dg.AssetKey("backend_image"), settings.state_path / "api-docs")

backup_assets = [
    *(database_backup(environment) for environment in ENVIRONMENTS),
    *(restore_test(environment) for environment in ENVIRONMENTS),
    # The pipeline's own state in SQLite (local). On aws it is Dagster's PostgreSQL: its own RDS
    # instance's snapshots back it up, and its dump + restore test is not built yet (docs/aws-deploy.md).
    *([pipeline_state_backup] if settings.profile == "local" else []),
]
backup_checks = [
    *freshness_checks(backup_assets, timedelta(hours=settings.backups.max_age_hours)),
    *(wal_archive_check(environment) for environment in ENVIRONMENTS),
]

defs = dg.Definitions(
    assets=[
        *images,
        *api_docs,
        *(database_schema(environment) for environment in ENVIRONMENTS),
        *(slow_queries(environment, settings.data.slow_queries_top) for environment in ENVIRONMENTS),
        *deployments,
        deployment_history,
        environment_health,
        *backup_assets,
        *(dr_drill(environment) for environment in ENVIRONMENTS),
        *(load_test_baseline(environment) for environment in ENVIRONMENTS),
        *(nightly_load_test(environment) for environment in ENVIRONMENTS),
        capacity_report,
        cost_estimate,
        actual_spend,
        cost_report,
        terraform_scan,
        *certificate_assets(list(ENVIRONMENTS)),
        *tls_scan_assets(list(ENVIRONMENTS)),
        dockerfile_scan,
        dependency_audit,
        audit_log,
        slo_report,
    ],
    asset_checks=backup_checks,
    jobs=[
        *JOBS,
        build_registry_retention_job(
            settings.images.keep_releases, settings.images.keep_builds, prune_local_images=settings.profile == "local"
        ),
    ],
    schedules=build_schedules(schedule_status),
    sensors=[
        # On from the start everywhere: it is the release path's one entry (on aws it lists ECR through its API).
        build_registry_push_sensor(dg.DefaultSensorStatus.RUNNING),
        build_run_failure_alert_sensor(sensor_status),
        build_backup_freshness_sensor([key for c in backup_checks for key in c.check_keys], sensor_status),
        build_pipeline_metrics_sensor(pushgateway_url(settings), ENVIRONMENTS, sensor_status),
        build_log_alert_sensor(settings.observability.error_lines_per_minute, sensor_status),
    ],
    resources=resources(settings),
)
