"""The release strategy as one Dagster resource, `release_target`: blue/green slots locally, an ECS service on aws.

Both offer the same `deploy` and `rollback`; `definitions.py` picks the implementation by profile,
and assets, ops and sensors never ask which. Each builds its `flow.Strategy` for one environment
from its fields (other resources and plain configuration) and runs the one flow in `flow.py`.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import partial
from pathlib import Path
from typing import Protocol

import dagster as dg
from pydantic import Field

from shop_ops.release import apps
from shop_ops.release.bluegreen import BlueGreen
from shop_ops.release.ecs_release import EcsService
from shop_ops.release.ecs_rotation import EcsLogins
from shop_ops.release.flow import (
    DeployRefused,
    Log,
    Release,
    ReleaseResult,
    Strategy,
    announced_refusal,
    deploy,
    refused_event,
    rollback,
)
from shop_ops.release.login_rollout import BlueGreenLogins
from shop_ops.release.notifications import Notify
from shop_ops.release.verify import VERIFY_SCRIPT, verify_environment
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.containers import ContainersResource, ServiceContainer
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.postgres import PostgresResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.resources.router import SLOTS, RouterResource
from shop_ops.services.db_logins import DatabaseLogins, LoginFiles, LoginRotationSteps
from shop_ops.services.pgbouncer import PgBouncer
from shop_ops.services.processes import PostgresCluster


class DatabaseLoginsConfig(dg.Config):
    """Where one local environment's two alternating login roles are kept and administered
    (shop_ops/services/db_logins.py): their files, the cluster's superuser socket, PgBouncer's auth file."""

    secrets_dir: str = Field(description="the state's secrets/: <env>-db-login and <env>-db-<role>-password")
    cluster_datadir: str = Field(description="the primary's data folder (its superuser's unix socket is inside)")
    cluster_port: int
    tcp_auth: str = "scram-sha-256"
    replica_datadir: str = Field(default="", description="a streaming replica's data folder; empty: none")
    replica_port: int = 0
    pgbouncer_folder: str = Field(default="", description="PgBouncer's folder (auth file, pid file); empty: none")
    pgbouncer_port: int = 0
    database: str = "shop"
    container_gid: int | None = Field(default=10001, description="the group the shop's containers read secrets as")
    role_defaults: dict[str, str] = Field(default_factory=dict, description="DataSettings.shop_role_defaults()")

    def files(self, environment: str) -> LoginFiles:
        return LoginFiles(Path(self.secrets_dir), environment)

    def logins(self, environment: str) -> DatabaseLogins:
        cluster = PostgresCluster(datadir=Path(self.cluster_datadir), port=self.cluster_port, tcp_auth=self.tcp_auth)
        replica = (
            PostgresCluster(datadir=Path(self.replica_datadir), port=self.replica_port, tcp_auth=self.tcp_auth)
            if self.replica_datadir
            else None
        )
        bouncer = (
            PgBouncer(Path(self.pgbouncer_folder), self.pgbouncer_port, self.cluster_port, self.database)
            if self.pgbouncer_folder
            else None
        )
        return DatabaseLogins(
            cluster=cluster, files=self.files(environment), role_defaults=self.role_defaults, pgbouncer=bouncer,
            replica=replica, container_gid=self.container_gid,
        )  # fmt: skip


class ShopWiring(dg.Config):
    """What one local environment's shop connects to besides its database target; no secrets, only files."""

    redis_url: str = Field(description="the cache, with its user and no password")
    redis_password_file: str = Field(default="", description="the Redis user's password (cache, carts, Sentinel)")
    carts_sentinels: str = Field(default="", description="host:port,... of the cart store's Sentinels; empty: none")
    carts_sentinel_service: str = ""
    pooled_database_url: str = Field(default="", description="the database through PgBouncer; empty: direct")
    replica_database_url: str = Field(default="", description="a streaming replica for reporting reads; empty: none")
    database_pool_size: int = 10
    redis_max_connections: int = 50
    redis_timeout_seconds: float = 1.0
    database_timeout_seconds: float = 2.0
    database_logins: DatabaseLoginsConfig | None = Field(
        default=None, description="the alternating login roles the serving backends use; None: the database role"
    )
    # Hardening (SecuritySettings): each container's bounds (0: unbounded), the backend's request-body limit
    # (0: the backend's default, 1 MiB) and the browser origins its CORS answers allow (empty: none).
    container_memory_mb: int = 512
    container_cpus: float = 1.0
    max_request_bytes: int = 0
    cors_origins: list[str] = []  # noqa: RUF012 (a pydantic field: copied per instance)

    def serving_login(self, name: str) -> tuple[str, Path] | None:
        """(login role, its password file) the serving backends of `name` use now, read from the secrets
        state at call time (a rotation changes it); None: they log in as the database role."""
        return self.database_logins.files(name).serving_login() if self.database_logins else None

    def app_environment(
        self, *, stack: str, name: str, database_url: str, password_file: Path, admin_token_file: Path,
        log_folder: Path | None, login: str | None = None, payment_webhook_secret_file: Path | None = None,
    ) -> apps.AppEnvironment:  # fmt: skip
        """The shop's containers of environment `name` wired to these services; serving backends log in as
        `login` (one of the alternating login roles), else as the one that serves now."""
        serving = self.serving_login(name)
        if login is not None:
            if self.database_logins is None:
                raise DeployRefused(f"{name} has no alternating login roles configured (shop wiring database_logins)")
            serving = (login, self.database_logins.files(name).password_file(login))
        return apps.AppEnvironment(
            serving_login=serving[0] if serving else None, serving_password_file=serving[1] if serving else None,
            stack=stack, name=name, database_url=database_url, password_file=password_file,
            redis_url=self.redis_url, admin_token_file=admin_token_file, log_folder=log_folder,
            pooled_database_url=self.pooled_database_url or None,
            replica_database_url=self.replica_database_url or None,
            redis_password_file=Path(self.redis_password_file) if self.redis_password_file else None,
            carts_sentinels=self.carts_sentinels or None, carts_sentinel_service=self.carts_sentinel_service or None,
            database_pool_size=self.database_pool_size, redis_max_connections=self.redis_max_connections,
            redis_timeout_seconds=self.redis_timeout_seconds, database_timeout_seconds=self.database_timeout_seconds,
            memory_mb=self.container_memory_mb or None, cpus=self.container_cpus or None,
            max_request_bytes=self.max_request_bytes or None, cors_origins=tuple(self.cors_origins),
            payment_webhook_secret_file=payment_webhook_secret_file,
        )  # fmt: skip


class SecretReader(Protocol):
    """What a deploy reads the release's secrets through: the `secrets` resource (shop_ops/security/secrets.py),
    which records each read by name for the audit trail; its errors name the secret and the fix."""

    def get(self, name: str) -> str: ...

    def database_credentials(self, environment: str) -> tuple[str, str]: ...


class ReleaseTarget(dg.ConfigurableResource):
    """Where releases go: `deploy` a release to an environment, `rollback` an environment; verified with k6."""

    registry: RegistryResource
    ledger: LedgerResource
    k6: K6Resource
    verify_script: str = Field(default=str(VERIFY_SCRIPT), description="loadtests/verify.js (the run image has a copy)")

    @abstractmethod
    def strategy(self, environment: str, log: Log) -> Strategy:
        """The steps of one environment's releases."""

    @abstractmethod
    def url(self, environment: str) -> str:
        """The base URL the environment's users reach (its router locally, its public URL on aws)."""

    def serving_backend_image(self, environment: str) -> str | None:
        """The backend image that serves `environment` now (a backup's restore test starts it); None if unknown."""
        return None

    def serving_containers(self, environment: str) -> list[str]:
        """The names of the running containers that serve `environment` (load tests sample their CPU and
        memory); empty where the Docker API does not run them (ECS)."""
        return []

    def running_images(self, environment: str) -> list[str]:
        """Every image reference `environment`'s containers run or may restart (both slots, stopped ones too):
        registry housekeeping keeps them. DeployRefused where this target cannot tell (nothing is deleted then)."""
        raise DeployRefused(f"{type(self).__name__} cannot list the images {environment} runs: not built")

    def serving_release(self, environment: str) -> str:
        """The ledger's release serving `environment`, as `version (release id)`, or why there is none."""
        entry = self.ledger.open().serving(environment)
        return f"{entry.version} ({entry.release_id})" if entry else "none yet (the build `shop-ops local up` started)"

    def deploy(
        self, environment: str, release: Release, approved_by: str | None, log: Log, notify: Notify | None = None,
        secrets: SecretReader | None = None,
    ) -> ReleaseResult:  # fmt: skip
        """`flow.deploy` with this target's steps and the smoke + k6 verifier; `notify` hears its release events
        (a refusal to build the steps, e.g. an unknown environment, included). Given `secrets`, the secrets the
        release is given are read through it after the guards (`check_secrets`)."""
        verify = partial(verify_environment, k6=self.k6, script=Path(self.verify_script))
        with announced_refusal(
            notify, lambda why: refused_event("deploy", environment, why, release, approved_by), log
        ):
            strategy = self.strategy(environment, log)
        preflight = partial(self.check_secrets, environment, release, secrets) if secrets is not None else None
        return deploy(
            environment, release, strategy, verify=verify, approved_by=approved_by, notify=notify, preflight=preflight
        )

    def release_secrets(self, environment: str) -> list[str]:
        """The names (in the `secrets` resource) of the secrets besides the database's that a release of
        `environment` is given; none here."""
        return []

    def check_secrets(self, environment: str, release: Release, secrets: SecretReader) -> None:
        """Read the database secret and every other secret a release of `environment` is given through `secrets`,
        before anything changes: each read is recorded by name (the audit trail), and a missing, unreadable or
        placeholder secret refuses the deploy (DeployRefused naming the secret and the fix)."""
        try:
            secrets.database_credentials(environment)
            for name in self.release_secrets(environment):
                secrets.get(name)
        except (RuntimeError, ValueError) as exc:  # SecretsError, PlaceholderSecretError: they name secret and fix
            raise DeployRefused(f"{environment} deploy of {release.version} refused: {exc}") from None

    def rollback(self, environment: str, reason: str, log: Log, notify: Notify | None = None) -> ReleaseResult:
        """`flow.rollback` with this target's steps; `notify` hears its release event."""
        with announced_refusal(notify, lambda why: refused_event("rollback", environment, why), log):
            strategy = self.strategy(environment, log)
        return rollback(environment, strategy, reason=reason, notify=notify)

    def login_rotation(self, environment: str, log: Log) -> LoginRotationSteps:
        """The steps of a database password rotation on `environment` (security.rotation.rotate runs them)."""
        raise DeployRefused(f"{type(self).__name__} cannot rotate {environment}'s database login: not built")


class BlueGreenTarget(ReleaseTarget):
    """Local profile: two slots of app containers per environment behind its nginx router."""

    containers: ContainersResource
    router: RouterResource
    postgres: PostgresResource
    stack: str = Field(description="the label that marks the local environment's containers (apps.stack_id)")
    shops: dict[str, ShopWiring] = Field(description="environment -> what its shop connects to (no passwords)")
    admin_token_files: dict[str, str] = Field(
        description="environment -> the file with its shop's admin token, mounted read-only into the backends"
    )
    payment_webhook_secret_files: dict[str, str] = Field(
        default_factory=dict,
        description="environment -> the file with its shop's payment webhook secret, mounted read-only into the "
        "backends (none: the shop answers payment callbacks 503)",
    )
    ready_timeout_seconds: float = 90
    container_logs_dir: str = Field(
        default="", description="where the containers write their logs for the central log collector; empty: nowhere"
    )

    def url(self, environment: str) -> str:
        return self.router.router(environment).url

    def release_secrets(self, environment: str) -> list[str]:
        """What its backends mount besides the database password: the admin token, the payment webhook secret
        (when configured), the serving login role's password and the Redis password, by the names the `secrets`
        resource has for them (files of its folder; definitions.secrets_resource maps the first two to the
        same files as `admin_token_files`, `payment_webhook_secret_files`)."""
        names = [f"{environment}-admin-token"]
        if self.payment_webhook_secret_files.get(environment):
            names.append(f"{environment}-payment-webhook-secret")
        wiring = self.shops.get(environment)
        if wiring is not None:
            serving = wiring.serving_login(environment)
            names += [serving[1].name] if serving else []
            names += [Path(wiring.redis_password_file).name] if wiring.redis_password_file else []
        return names

    def _serving(self, environment: str, **labels: str) -> list[ServiceContainer]:
        """The running containers of the slot the router serves (with `labels` too)."""
        serving = self.router.router(environment).serving()
        if serving is None:
            return []
        labels = {apps.LABEL_STACK: self.stack, apps.LABEL_ENVIRONMENT: environment, apps.LABEL_SLOT: serving.slot,
                  **labels}  # fmt: skip
        return [c for c in self.containers.engine().list_services(labels=labels) if c.status == "running"]

    def serving_backend_image(self, environment: str) -> str | None:
        """The image of the backend container in the slot the router serves (a release's pinned ref, or `up`'s build)."""
        running = self._serving(environment, **{apps.LABEL_ROLE: "backend"})
        return running[0].image if running else None

    def serving_containers(self, environment: str) -> list[str]:
        return sorted(c.name for c in self._serving(environment))

    def running_images(self, environment: str) -> list[str]:
        labels = {apps.LABEL_STACK: self.stack, apps.LABEL_ENVIRONMENT: environment}
        containers = self.containers.engine().list_services(labels=labels, include_stopped=True)
        return sorted({c.image for c in containers})

    def strategy(self, environment: str, log: Log, login: str | None = None) -> BlueGreen:
        """`environment`'s blue/green steps; slots it starts log in as `login` (else the serving login role)."""
        if environment not in self.shops:
            raise DeployRefused(f"unknown environment {environment!r}: use one of {', '.join(self.shops)}")
        database = self.postgres.target(environment)
        if not database.password_file:
            raise DeployRefused(f"no database password file is configured for {environment}")
        admin_token_file = self.admin_token_files.get(environment)
        if not admin_token_file:
            raise DeployRefused(f"no admin token file is configured for {environment}")
        webhook_secret = self.payment_webhook_secret_files.get(environment)  # none: callbacks answer 503
        app_env = self.shops[environment].app_environment(
            stack=self.stack, name=environment, database_url=database.url(),
            password_file=Path(database.password_file), admin_token_file=Path(admin_token_file),
            log_folder=Path(self.container_logs_dir) if self.container_logs_dir else None, login=login,
            payment_webhook_secret_file=Path(webhook_secret) if webhook_secret else None,
        )  # fmt: skip
        return BlueGreen(
            engine=self.containers.engine(), registry=self.registry.client(), router=self.router.router(environment),
            app_env=app_env, slots={slot: self.router.slot_ports(environment, slot) for slot in SLOTS},
            database=database, ledger=self.ledger.open(), backend_repository=self.registry.backend_repository,
            frontend_repository=self.registry.frontend_repository, ready_timeout=self.ready_timeout_seconds, log=log,
        )  # fmt: skip

    def login_rotation(self, environment: str, log: Log) -> BlueGreenLogins:
        wiring = self.shops.get(environment)
        if wiring is None:
            raise DeployRefused(f"unknown environment {environment!r}: use one of {', '.join(self.shops)}")
        if wiring.database_logins is None:
            raise DeployRefused(
                f"{environment} has no alternating login roles configured: give its shop wiring database_logins "
                "(definitions.shop_wiring) and run `shop-ops local up`, which makes the roles"
            )
        return BlueGreenLogins(
            environment=environment, logins=wiring.database_logins.logins(environment),
            strategy_for=lambda role: self.strategy(environment, log, login=role), log=log,
        )  # fmt: skip


class EcsTarget(ReleaseTarget):
    """aws profile: one ECS service per environment, verified through its public URL."""

    aws: AwsResource
    cluster: str
    services: dict[str, str] = Field(description="environment -> its ECS service")
    urls: dict[str, str] = Field(description="environment -> its public URL")
    deploy_timeout_seconds: float = 600
    migrate_timeout_seconds: float = 900
    poll_seconds: float = 10
    database_secrets: dict[str, str] = Field(
        default_factory=dict, description="environment -> its app database secret's ARN (rotate_database_password)"
    )
    rotation_timeout_seconds: float = 300

    def url(self, environment: str) -> str:
        if environment not in self.urls:
            raise DeployRefused(f"unknown environment {environment!r}: use one of {', '.join(self.urls)}")
        return self.urls[environment]

    def running_images(self, environment: str) -> list[str]:
        """The images of every task definition the environment's service deploys now (primary and, mid-rollout,
        the others)."""
        if environment not in self.services:
            raise DeployRefused(f"unknown environment {environment!r}: use one of {', '.join(self.services)}")
        ecs = self.aws.ecs()
        found = ecs.describe_services(cluster=self.cluster, services=[self.services[environment]]).get("services")
        if not found:
            raise DeployRefused(f"ECS service {self.services[environment]} not found in cluster {self.cluster}")
        images = set()
        for deployment in found[0].get("deployments") or []:
            definition = ecs.describe_task_definition(taskDefinition=deployment["taskDefinition"])["taskDefinition"]
            images.update(c["image"] for c in definition.get("containerDefinitions") or [])
        if not images:
            raise DeployRefused(f"ECS service {self.services[environment]} shows no deployment with images")
        return sorted(images)

    def strategy(self, environment: str, log: Log) -> EcsService:
        if environment not in self.services:
            raise DeployRefused(f"unknown environment {environment!r}: use one of {', '.join(self.services)}")
        return EcsService(
            ecs=self.aws.ecs(), cluster=self.cluster, service=self.services[environment], url=self.urls[environment],
            registry=self.registry.client(), ledger=self.ledger.open(), backend_repository=self.registry.backend_repository,
            frontend_repository=self.registry.frontend_repository, deploy_timeout_s=self.deploy_timeout_seconds,
            migrate_timeout_s=self.migrate_timeout_seconds, poll_s=self.poll_seconds, log=log,
        )  # fmt: skip

    def login_rotation(self, environment: str, log: Log) -> EcsLogins:
        """Secrets Manager's alternating-users rotation of the app secret, then a new deployment of the service."""
        strategy = self.strategy(environment, log)
        if environment not in self.database_secrets:
            raise DeployRefused(
                f"no app database secret for {environment}: set environments.{environment}.database_secret_arn"
            )
        return EcsLogins(
            environment=environment, secrets=self.aws.client("secretsmanager"), secret_id=self.database_secrets[environment],
            ecs=strategy.ecs, cluster=self.cluster, service=strategy.service, url=strategy.url,
            lock=lambda: strategy.lock(environment), rotation_timeout_s=self.rotation_timeout_seconds,
            deploy_timeout_s=self.deploy_timeout_seconds, poll_s=self.poll_seconds, log=log,
        )  # fmt: skip
