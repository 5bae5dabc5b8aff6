"""Profiles and environments (local, aws), read from config/<profile>.yaml and validated at load.

`SHOP_OPS_PROFILE` picks the profile (default `local`), `SHOP_OPS_CONFIG` another YAML file,
`SHOP_OPS_STATE` the state folder. Secrets are never read from these files.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("staging", "production")
Port = Annotated[int, Field(ge=1024, le=65535)]


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotPorts(_Strict):
    backend_port: Port
    frontend_port: Port


class RedisPorts(_Strict):
    """An environment's Redis servers: a cache that may evict, a cart store that never does (with a
    replica), and the Sentinel that fails the cart store over to its replica."""

    cache_port: Port
    carts_port: Port
    carts_replica_port: Port
    sentinel_port: Port


class LocalEnvironment(_Strict):
    """One environment on this machine: its own PostgreSQL cluster (PgBouncer in front, an optional
    streaming replica), its own Redis servers, router and slots."""

    postgres_port: Port
    # PgBouncer in front of the cluster: the backend's connections go through it.
    pgbouncer_port: Port
    # A streaming replica of the cluster for reporting reads (none: the environment has no replica).
    replica_port: Port | None = None
    database: str = "shop"
    redis: RedisPorts
    router_port: Port
    # The router's public listeners: HTTPS (the environment's URL, https://<env>.<tls.domain>:https_port)
    # and plain HTTP, which redirects to it (router_port stays the internal listener; docs/security.md).
    https_port: Port
    http_port: Port
    slots: dict[Literal["blue", "green"], SlotPorts]

    @model_validator(mode="after")
    def _both_slots(self) -> LocalEnvironment:
        if set(self.slots) != {"blue", "green"}:
            raise ValueError("slots must name both blue and green")
        return self


class AwsEnvironment(_Strict):
    ecs_service: str
    database_secret_arn: str
    url: str
    # The environment's RDS instance (nightly snapshots, restore tests on a temporary copy).
    db_instance: str | None = None


class ImageSettings(_Strict):
    backend_repository: str = "shop/backend"
    frontend_repository: str = "shop/frontend"
    backend_budget_mb: float = Field(default=500, gt=0)
    frontend_budget_mb: float = Field(default=100, gt=0)
    # registry_retention keeps the ledger's last keep_releases releases and the last keep_builds builds per repository.
    keep_releases: int = Field(default=5, ge=1)
    keep_builds: int = Field(default=10, ge=0)


class DagsterSettings(_Strict):
    port: Port = 3000


class RegistrySettings(_Strict):
    port: Port = 5055


class DataSettings(_Strict):
    """The data tier: Redis memory and failover, PgBouncer, the shop role's limits, slow queries (issue 13;
    docs/data-tier.md)."""

    # The cache evicts least recently used keys at this size; the cart store refuses writes (noeviction).
    cache_maxmemory_mb: int = Field(default=64, ge=1)
    carts_maxmemory_mb: int = Field(default=256, ge=1)
    # Sentinel: the cart store's primary is down after this long without an answer; a failover may take this long.
    sentinel_down_after_ms: int = Field(default=5000, ge=100)
    sentinel_failover_timeout_ms: int = Field(default=60000, ge=1000)
    # PgBouncer: transaction pooling, this many server connections per database and user, this many clients.
    pgbouncer_pool_size: int = Field(default=20, ge=1, le=1000)
    pgbouncer_max_client_conn: int = Field(default=1000, ge=1, le=100_000)
    # PostgreSQL's own connection limit (local clusters).
    max_connections: int = Field(default=100, ge=10, le=10_000)
    # The backend's pools, per worker: SQLAlchemy's (and as much overflow again) and Redis's blocking pool.
    database_pool_size: int = Field(default=10, ge=1, le=200)
    redis_max_connections: int = Field(default=50, ge=1, le=10_000)
    # The backend's own bounds on a hung dependency: Redis (connect, each command, a pooled connection) and
    # PostgreSQL (connect, a pooled connection, each statement: half of it, as cancelling takes as long again).
    redis_timeout_ms: int = Field(default=1000, ge=50)
    database_timeout_ms: int = Field(default=2000, ge=100)
    # The shop role's limits: a statement, or a transaction left idle, is cut off after this long.
    statement_timeout_ms: int = Field(default=5000, ge=100)
    idle_in_transaction_timeout_ms: int = Field(default=10000, ge=100)
    # Statements slower than this are logged (the central log store keeps them); pg_stat_statements counts all.
    slow_query_ms: int = Field(default=200, ge=0)
    # slow_queries: the top statements by total execution time, this many per environment.
    slow_queries_top: int = Field(default=20, ge=1, le=1000)

    @model_validator(mode="after")
    def _pool_fits(self) -> DataSettings:
        if self.pgbouncer_pool_size > self.max_connections - 10:
            raise ValueError(
                f"pgbouncer_pool_size {self.pgbouncer_pool_size} leaves fewer than 10 of max_connections "
                f"{self.max_connections} for migrations, backups, exporters and the replica; lower it or raise max_connections"
            )
        return self

    def shop_role_defaults(self) -> dict[str, str]:
        """The shop role's session settings, set on the role (`ALTER ROLE ... SET`): PgBouncer passes no
        startup parameters, and a pooled session keeps what its role says."""
        return {
            "statement_timeout": f"{self.statement_timeout_ms}ms",
            "idle_in_transaction_session_timeout": f"{self.idle_in_transaction_timeout_ms}ms",
            # Custom plans: trigram search uses its index with prepared statements (1.8x, DESIGN.md).
            "plan_cache_mode": "force_custom_plan",
            # asyncpg turns JIT off for its type introspection with a session SET, which through transaction
            # pooling lands on another server connection: without this every new client connection's lookup
            # was JIT-compiled (the mix collapsed to a fifth through PgBouncer; bench/README.md).
            "jit": "off",
        }


class BackupSettings(_Strict):
    """Nightly backups, restore tests and DR drills (issue 9; docs/runbooks/restore.md)."""

    # The logical dumps' store: this folder (local profile; relative to the state folder), or
    # S3 (aws profile: aws.backups_bucket, copied to aws.backups_copy_bucket in aws.dr_region).
    folder: Path = Path("backups")
    # The backup key (64 hex characters: the dumps' AES-256-GCM key and pgBackRest's cipher
    # pass). Default: secrets/backup.key beside the PostgreSQL folders (see Settings.backup_key_file),
    # never inside a repository or store. SHOP_OPS_BACKUP_KEY_FILE overrides it.
    key_file: Path | None = None
    retention_daily: int = Field(default=30, ge=1)
    retention_monthly: int = Field(default=12, ge=0)
    # PostgreSQL switches WAL segments at least this often, so the archive (and RPO) lags by at most this.
    archive_timeout_seconds: int = Field(default=20, ge=1, le=300)
    # Alert when the newest verified backup is older than this (backup_freshness_sensor).
    max_age_hours: float = Field(default=26, gt=0)
    # The local environment's heartbeat (ops.heartbeat, one row per interval) that DR drills check.
    heartbeat_seconds: float = Field(default=2, gt=0)
    # pgBackRest: parallel processes for backup and restore.
    process_max: int = Field(default=2, ge=1, le=16)


class PerformanceSettings(_Strict):
    """Load tests: release baselines, nightly regression checks, capacity (issue 10; docs/performance.md).

    Rates are iterations per second of the realistic mix (loadtests/mix.js: 70% browse and search,
    20% cart, 10% checkout); an iteration is one to five requests.
    """

    # Release baselines and nightly runs: the `load` profile at this rate for this long.
    rate: float = Field(default=40, gt=0, le=5000)
    duration_seconds: float = Field(default=60, ge=1, le=3600)
    # capacity_report: the `stress` profile, from stress_start_rate up to stress_max_rate in steps.
    stress_start_rate: float = Field(default=50, gt=0, le=20000)
    stress_max_rate: float = Field(default=1500, gt=0, le=20000)
    stress_steps: int = Field(default=10, ge=2, le=100)
    stress_duration_seconds: float = Field(default=300, ge=2, le=7200)
    # The thresholds every profile runs with, and the breaking point's definition.
    p95_ms: float = Field(default=200, gt=0)
    # Before and after every run each product is restocked to at least this (never during a run:
    # a product change empties every cached search page).
    min_stock: int = Field(default=1000, ge=1)
    # Synthetic orders (load and smoke tests) older than this are deleted after each run.
    synthetic_order_max_age_hours: float = Field(default=24, ge=0)
    # The shop containers' CPU and memory are sampled this often while k6 runs.
    usage_interval_seconds: float = Field(default=1.0, gt=0)
    # The environments' URLs serve the storefront at `/` (the mix's homepage loads it); false for an API-only URL.
    storefront: bool = True
    # The routers' shared cache of anonymous catalog reads (seconds; 0 turns it off).
    edge_cache_seconds: float = Field(default=1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _stress_range(self) -> PerformanceSettings:
        if self.stress_max_rate <= self.stress_start_rate:
            raise ValueError("stress_max_rate must be above stress_start_rate")
        if self.stress_duration_seconds < self.stress_steps:
            raise ValueError("stress_duration_seconds must give each of the stress_steps at least 1 s")
        return self


class CostSettings(_Strict):
    """Cost reports and the daily budget check (issue 11; docs/costs.md)."""

    # Monthly budgets in USD, checked against the month's forecast: an Environment tag (staging,
    # production, shared) or `account` (everything the Project tag covers, untagged included). The
    # same amounts as the AWS Budgets of infra/terraform (a test keeps them equal).
    budgets_usd: dict[str, Annotated[float, Field(gt=0)]] = {"staging": 300, "production": 1200, "account": 1500}
    # The committed price table under infra/pricing/ (hand-entered from AWS's public price list).
    price_table: str = "aws-eu-central-1.csv"
    # The Project tag the infrastructure carries: Cost Explorer counts only what has it.
    project_tag: str = "shop"

    @model_validator(mode="after")
    def _budget_names(self) -> CostSettings:
        known = {*ENVIRONMENTS, "shared", "account"}
        unknown = sorted(set(self.budgets_usd) - known)
        if unknown:
            raise ValueError(f"budgets_usd names {', '.join(unknown)}; budgets are for {', '.join(sorted(known))}")
        return self


# The exporters of each local environment, in port order after the node exporter's.
EXPORTER_KINDS = (
    "postgres", "router", "pgbouncer", "postgres-replica", "redis-cache", "redis-carts", "redis-carts-replica",
    "sentinel",
)  # fmt: skip


class ObservabilitySettings(_Strict):
    """Metrics, alerts and central logs (issue 12; docs/observability.md).

    Local profile: `shop-ops local up` starts Prometheus, Alertmanager, the Pushgateway and the
    exporters on these ports (127.0.0.1). The exporters take consecutive ports from
    `exporters_first_port`: node, then per environment (in the order of `environments`) its
    EXPORTER_KINDS: PostgreSQL, router (nginx), PgBouncer, the replica's PostgreSQL, the Redis cache,
    cart store and its replica, and Sentinel (17 ports for two environments).
    aws profile: `prometheus_url` names the Prometheus the SLO report reads and `pushgateway_url`
    the Pushgateway the pipeline's own figures go to (none: they are not pushed).
    """

    prometheus_port: Port = 9090
    alertmanager_port: Port = 9093
    pushgateway_port: Port = 9091
    exporters_first_port: Port = 9110
    # The central log store (local profile): a PostgreSQL cluster of its own, database `logs`.
    logs_postgres_port: Port = 55434
    prometheus_url: str | None = None
    pushgateway_url: str | None = None
    scrape_interval_seconds: float = Field(default=15, gt=0, le=300)
    evaluation_interval_seconds: float = Field(default=15, gt=0, le=300)
    # Kept explicitly: Prometheus's TSDB, the central log store.
    retention_days: int = Field(default=15, ge=1, le=3650)
    log_retention_days: int = Field(default=14, ge=1, le=3650)
    # The SLOs of infra/prometheus/rules/shop-slo.yml (a test keeps them equal).
    availability_objective: float = Field(default=0.995, gt=0, lt=1)
    latency_objective_ms: float = Field(default=200, gt=0)
    latency_objective_ratio: float = Field(default=0.95, gt=0, lt=1)
    # slo_report: this many days back, today included.
    slo_days: int = Field(default=7, ge=1, le=90)
    # log_alert_sensor: an error spike is more than this many error lines in a minute (and five
    # times the previous hour's rate); a new kind is one not seen in the previous 7 days.
    error_lines_per_minute: int = Field(default=20, ge=1)

    def exporter_ports(self, environments: list[str]) -> dict[str, int]:
        """The exporters' ports by name: node, then `<kind>-<env>` for each kind of EXPORTER_KINDS per environment
        (an environment without a replica leaves its postgres-replica port unused)."""
        names = ["node"] + [f"{kind}-{env}" for env in environments for kind in EXPORTER_KINDS]
        return {name: self.exporters_first_port + i for i, name in enumerate(names)}


class TlsSettings(_Strict):
    """Certificates of the environments' routers (issue 14; docs/security.md).

    Local profile: Pebble (Let's Encrypt's test ACME server) on `acme_port`, its DNS (pebble-challtestsrv)
    on `dns_port` resolving every `<env>.<domain>` to 127.0.0.1, HTTP-01 challenges answered by the
    routers on the one `challenge_port`. aws profile: the ALB's ACM certificate (Terraform).
    """

    domain: str = "shop.test"  # an environment's name is <env>.<domain>
    acme_port: Port = 14014
    acme_management_port: Port = 14015
    dns_port: Port = 8053
    challenge_port: Port = 5002
    validity_days: int = Field(default=90, ge=1, le=366)
    renew_before_days: int = Field(default=30, ge=1)
    # certificates' blocking check: fewer days left than this fails it
    expiry_check_days: int = Field(default=21, ge=1)
    hsts_max_age_seconds: int = Field(default=63072000, ge=0)

    @model_validator(mode="after")
    def _order(self) -> TlsSettings:
        if not self.expiry_check_days < self.renew_before_days < self.validity_days:
            raise ValueError(
                "tls: expiry_check_days < renew_before_days < validity_days must hold "
                f"(got {self.expiry_check_days}, {self.renew_before_days}, {self.validity_days})"
            )
        return self

    def hostname(self, environment: str) -> str:
        return f"{environment}.{self.domain}"


class SecuritySettings(_Strict):
    """Hardening knobs (issue 14; docs/security.md): the routers' API rate limit, the shop's body limit and CORS;
    the audit trail's retention."""

    # Per client address on the API (nginx limit_req): a steady rate and a burst served without delay.
    api_rate_per_second: int = Field(default=20, ge=1)
    api_burst: int = Field(default=40, ge=0)
    # Operational clients (the pipeline's verification, load tests, probes) are never limited.
    rate_limit_allow: list[str] = ["127.0.0.1"]
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    cors_origins: list[str] = []
    # Shop containers: limits beside the read-only root, dropped capabilities and no-new-privileges.
    container_memory_mb: int = Field(default=512, ge=64)
    container_cpus: float = Field(default=1.0, gt=0)
    # The audit trail (audit_log): rows older than this are left out, older secret access records deleted.
    audit_retention_days: int = Field(default=90, ge=1)


class AwsSettings(_Strict):
    region: str
    ecs_cluster: str
    ecr_registry: str
    backups_bucket: str
    # A second copy of every backup: this bucket, in the disaster-recovery region (RDS snapshots are copied there too).
    backups_copy_bucket: str | None = None
    dr_region: str | None = None
    # Restore tests of RDS snapshots: a temporary instance of this class, in this subnet group / security groups.
    restore_instance_class: str = "db.t4g.micro"
    restore_subnet_group: str | None = None
    restore_security_groups: list[str] = []
    dr_kms_key_id: str | None = None
    # ECS releases: wait for a service to be steady (deploy and rollback), for the migration task to stop.
    deploy_timeout_seconds: float = Field(default=600, gt=0)
    migrate_timeout_seconds: float = Field(default=900, gt=0)
    poll_seconds: float = Field(default=10, gt=0)


class Settings(_Strict):
    """The whole profile."""

    profile: Literal["local", "aws"]
    state_dir: Path = Path(".state")
    # Where the release ledger lives: SQLite in state_dir (one machine), or the PostgreSQL database of
    # Dagster's own storage (DAGSTER_PG_* variables), shared by run workers on other machines.
    ledger: Literal["state_dir", "dagster_postgres"] = "state_dir"
    images: ImageSettings = ImageSettings()
    dagster: DagsterSettings = DagsterSettings()
    registry: RegistrySettings = RegistrySettings()
    data: DataSettings = DataSettings()
    aws: AwsSettings | None = None
    backups: BackupSettings = BackupSettings()
    performance: PerformanceSettings = PerformanceSettings()
    costs: CostSettings = CostSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    tls: TlsSettings = TlsSettings()
    security: SecuritySettings = SecuritySettings()
    environments: dict[str, LocalEnvironment | AwsEnvironment]

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if set(self.environments) != set(ENVIRONMENTS):
            raise ValueError(
                f"environments must be exactly {', '.join(ENVIRONMENTS)}, got {', '.join(self.environments)}"
            )
        kind = LocalEnvironment if self.profile == "local" else AwsEnvironment
        for name, env in self.environments.items():
            if not isinstance(env, kind):
                raise ValueError(f"environments.{name} does not fit the {self.profile} profile")
        if self.profile == "aws" and self.aws is None:
            raise ValueError(
                "the aws profile needs an aws: section (region, ecs_cluster, ecr_registry, backups_bucket)"
            )
        if self.profile == "local":
            self._check_ports()
        return self

    def _check_ports(self) -> None:
        seen: dict[int, str] = {}

        def claim(port: int, field: str) -> None:
            if port in seen:
                raise ValueError(f"{field} uses port {port}, already used by {seen[port]}; pick another")
            seen[port] = field

        claim(self.dagster.port, "dagster.port")
        claim(self.registry.port, "registry.port")
        obs = self.observability
        claim(obs.prometheus_port, "observability.prometheus_port")
        claim(obs.alertmanager_port, "observability.alertmanager_port")
        claim(obs.pushgateway_port, "observability.pushgateway_port")
        claim(obs.logs_postgres_port, "observability.logs_postgres_port")
        for name, port in obs.exporter_ports(list(self.environments)).items():
            claim(port, f"observability.exporters_first_port (+{port - obs.exporters_first_port}: {name} exporter)")
        tls = self.tls
        claim(tls.acme_port, "tls.acme_port")
        claim(tls.acme_management_port, "tls.acme_management_port")
        claim(tls.dns_port, "tls.dns_port")
        claim(tls.challenge_port, "tls.challenge_port")
        for name, env in self.local_environments().items():
            claim(env.postgres_port, f"environments.{name}.postgres_port")
            claim(env.pgbouncer_port, f"environments.{name}.pgbouncer_port")
            if env.replica_port is not None:
                claim(env.replica_port, f"environments.{name}.replica_port")
            for field, port in env.redis.model_dump().items():
                claim(port, f"environments.{name}.redis.{field}")
            claim(env.router_port, f"environments.{name}.router_port")
            claim(env.https_port, f"environments.{name}.https_port")
            claim(env.http_port, f"environments.{name}.http_port")
            for slot, ports in env.slots.items():
                claim(ports.backend_port, f"environments.{name}.slots.{slot}.backend_port")
                claim(ports.frontend_port, f"environments.{name}.slots.{slot}.frontend_port")

    def local_environments(self) -> dict[str, LocalEnvironment]:
        """The environments of the local profile (an error in the aws profile)."""
        if self.profile != "local":
            raise SettingsError(f"the {self.profile} profile has no local environments")
        return {name: env for name, env in self.environments.items() if isinstance(env, LocalEnvironment)}

    def aws_environments(self) -> dict[str, AwsEnvironment]:
        """The environments of the aws profile (an error in the local profile)."""
        if self.profile != "aws":
            raise SettingsError(f"the {self.profile} profile has no aws environments")
        return {name: env for name, env in self.environments.items() if isinstance(env, AwsEnvironment)}

    def logs_dsn(self) -> str:
        """The local log store as its reader sees it (SELECT and DELETE); the password in a pgpass file, not here."""
        passfile = self.state_path / "secrets" / "logs-reader.pgpass"
        return (
            f"postgresql://shop_logs_reader@127.0.0.1:{self.observability.logs_postgres_port}/logs"
            f"?passfile={quote(str(passfile))}"
        )

    def container_logs_dir(self) -> Path:
        """Where the shop's containers write their logs (local profile), read by the central log collector."""
        return self.state_path / "logs" / "containers"

    def metrics_targets_dir(self) -> Path:
        """Prometheus's discovery files of the shop's backends (local profile), rewritten by every router switch."""
        return self.state_path / "prometheus" / "targets"

    def database_password_file(self, environment: str) -> Path:
        """Where `shop-ops local up` keeps the password of the `shop` role of an environment's database."""
        return self.state_path / "secrets" / f"{environment}-db-password"

    def tls_folder(self) -> Path:
        """The routers' certificates and keys (`<env>/`), the ACME account, and `roots.pem`: every root that signed
        a live certificate (Pebble makes a new root at each start), the bundle clients trust."""
        return self.state_path / "tls"

    def admin_token_file(self, environment: str) -> Path:
        """The admin bearer token of an environment's shop: SHOP_OPS_<ENV>_ADMIN_TOKEN_FILE, else
        `secrets/<env>-admin-token`, where `shop-ops local up` makes it (its backend containers mount it)."""
        override = os.environ.get(f"SHOP_OPS_{environment.upper()}_ADMIN_TOKEN_FILE")
        return Path(override) if override else self.state_path / "secrets" / f"{environment}-admin-token"

    def payment_webhook_secret_file(self, environment: str) -> Path:
        """The payment provider's webhook signing secret of an environment's shop:
        SHOP_OPS_<ENV>_PAYMENT_WEBHOOK_SECRET_FILE, else `secrets/<env>-payment-webhook-secret`, where
        `shop-ops local up` makes a random one (its backend containers mount it as SHOP_PAYMENT_WEBHOOK_SECRET_FILE)."""
        override = os.environ.get(f"SHOP_OPS_{environment.upper()}_PAYMENT_WEBHOOK_SECRET_FILE")
        return Path(override) if override else self.state_path / "secrets" / f"{environment}-payment-webhook-secret"

    def backup_key_file(self) -> Path:
        """The backup key: SHOP_OPS_BACKUP_KEY_FILE, `backups.key_file`, else `secrets/backup.key` beside
        the PostgreSQL folders (where PostgreSQL's OS user can read it: its WAL archiving encrypts too)."""
        override = os.environ.get("SHOP_OPS_BACKUP_KEY_FILE")
        if override:
            return Path(override)
        if self.backups.key_file is not None:
            return (
                self.backups.key_file
                if self.backups.key_file.is_absolute()
                else self.state_path / self.backups.key_file
            )
        return (self.state_path / "postgres").resolve().parent / "secrets" / "backup.key"

    def postgres_folder(self, environment: str) -> Path:
        """A local environment's PostgreSQL folders: `data/` (the cluster) and `pgbackrest/` (its backup repository).

        Under `<state>/postgres`, resolved: that may link elsewhere, where PostgreSQL's OS user can
        reach it (`shop-ops local up` places it; see localenv/stack.py).
        """
        return (self.state_path / "postgres").resolve() / environment

    def backup_folder(self) -> Path:
        """The local backup store's folder."""
        folder = self.backups.folder
        return folder if folder.is_absolute() else self.state_path / folder

    def redis_url(self, environment: str) -> str:
        """The URL (user `shop`, no password) of a local environment's Redis cache."""
        return f"redis://shop@127.0.0.1:{self.local_environments()[environment].redis.cache_port}/0"

    def carts_sentinel(self, environment: str) -> tuple[str, str]:
        """(Sentinel address host:port, the monitored service's name) of a local environment's cart store."""
        return f"127.0.0.1:{self.local_environments()[environment].redis.sentinel_port}", f"shop-carts-{environment}"

    def redis_password_file(self, environment: str) -> Path:
        """The password of the Redis user `shop` of an environment (cache, cart store and Sentinel)."""
        return self.state_path / "secrets" / f"{environment}-redis-password"

    def redis_admin_password_file(self, environment: str) -> Path:
        """The password of the Redis user `admin` of an environment (replication, Sentinel, backups, exporters)."""
        return self.state_path / "secrets" / f"{environment}-redis-admin-password"

    @property
    def loadtests_path(self) -> Path:
        """The k6 scripts (release verification, load tests): SHOP_OPS_LOADTESTS (the run image's copy), else the checkout's."""
        return _checkout_or_override("SHOP_OPS_LOADTESTS", ROOT / "loadtests")

    @property
    def infra_path(self) -> Path:
        """infra/ (Terraform, price tables): SHOP_OPS_INFRA (the run image's copy), else the checkout's."""
        return _checkout_or_override("SHOP_OPS_INFRA", ROOT / "infra")

    @property
    def checkov_path(self) -> Path:
        """checkov, in a virtualenv of its own: SHOP_OPS_CHECKOV (the run image's), else `make install`'s .venv-checkov."""
        return _checkout_or_override("SHOP_OPS_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov")

    @property
    def sslyze_path(self) -> Path:
        """sslyze's own virtualenv: SHOP_OPS_SSLYZE (the run image's /opt/sslyze), else `make install`'s .venv-sslyze."""
        return _checkout_or_override("SHOP_OPS_SSLYZE", ROOT / ".venv-sslyze")

    @property
    def docker_state_path(self) -> Path:
        """Whose podman storage and API to use: SHOP_OPS_DOCKER_STATE (e.g. the repository's, from tests) or ours."""
        override = os.environ.get("SHOP_OPS_DOCKER_STATE")
        return Path(override).resolve() if override else self.state_path

    @property
    def state_path(self) -> Path:
        override = os.environ.get("SHOP_OPS_STATE")
        path = Path(override) if override else self.state_dir
        return path if path.is_absolute() else ROOT / path


def _checkout_or_override(variable: str, in_checkout: Path) -> Path:
    """A path the run image moves elsewhere: the environment variable's value when set, else the checkout's."""
    override = os.environ.get(variable)
    return Path(override) if override else in_checkout


def config_path(profile: str | None = None) -> Path:
    """The YAML file of the profile (or SHOP_OPS_CONFIG)."""
    explicit = os.environ.get("SHOP_OPS_CONFIG")
    if explicit:
        return Path(explicit)
    profile = profile or os.environ.get("SHOP_OPS_PROFILE", "local")
    if profile not in ("local", "aws"):
        raise SettingsError(f"SHOP_OPS_PROFILE={profile!r} is not a profile: use local or aws")
    return ROOT / "config" / f"{profile}.yaml"


def _describe(err: dict) -> str:
    parts = [str(p) for p in err["loc"]]
    location = ".".join(p for p in parts if "[" not in p and p not in ("LocalEnvironment", "AwsEnvironment"))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{location} is missing: add it"
    if err["type"] == "extra_forbidden":
        return f"{location} is not a known setting: remove it or fix its spelling"
    return f"{location}: {message}" if location else message


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate a profile file; SettingsError names the file and field on any problem."""
    path = path or config_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError(
            f"{path}: no such settings file; set SHOP_OPS_PROFILE=local|aws or SHOP_OPS_CONFIG"
        ) from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping of settings at the top level")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # In a union (local | aws environment), report the error of the branch the profile asks for.
        profile = raw.get("profile")
        wanted = "LocalEnvironment" if profile == "local" else "AwsEnvironment"
        relevant = [e for e in errors if any(wanted in str(p) for p in e["loc"])] or errors
        raise SettingsError(f"{path}: {_describe(relevant[0])}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, validated once."""
    return load_settings()
