"""The local environment as a whole: `up` (idempotent, rolled back on failure), `down` and `status`.

Everything lives under `Settings.state_path`:

    postgres/<env>/data, postgres/<env>/pgbackrest    one PostgreSQL 15 cluster per environment, archiving
                                                       its WAL into its encrypted pgBackRest repository
                                                       (`postgres` may link elsewhere: see `place_postgres`)
    <postgres>/../secrets/backup.key                   the backup key (0600, PostgreSQL's OS user): beside the
                                                       PostgreSQL folders, never inside a repository or store
    secrets/<env>-db-password                          the `shop` role's password (0640, group 10001): migrations, the
                                                       seed and the pipeline's own sessions
    secrets/<env>-db-login                             which login role the serving backends use (shop_a or shop_b)
    secrets/<env>-db-<role>-password                   that role's password (0640, group 10001); the other is locked
    secrets/<env>-admin-token                          the shop's admin bearer token (0640, group 10001)
    secrets/<env>-payment-webhook-secret               the payment callback's signing secret (0640, group 10001)
    stack/heartbeat-<env>.pid, logs/heartbeat-<env>.log   the heartbeat writer DR drills check (ops.heartbeat)
    postgres/<env>/pgbouncer, postgres/<env>/replica   PgBouncer for the shop's backends, a streaming replica
    redis/<env>/                                       the cache, the cart store, its replica and Sentinel
    secrets/<env>-redis-password                       the Redis user `shop`'s password (0640, group 10001)
    secrets/<env>-redis-admin-password, <env>-replication-password   Redis `admin`, PostgreSQL `replicator` (0600)
    registry/  routers/<env>/  dagster/                the other services (pid files, logs)
    apps/<env>.json                                    the images each environment's slot runs
    stack/docker-api.json                              present when `up` started the Docker API
    podman/                                            podman's storage and API socket

`SHOP_OPS_DOCKER_STATE` may name another state folder whose podman storage (and API) to use,
e.g. the repository's `.state` from tests, so images are not rebuilt per temp folder; a Docker
API that `up` did not start, or that serves another folder's storage, is never stopped by `down`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from shop_ops.localenv.central_logs import CentralLogs
from shop_ops.localenv.dagster_dev import DagsterDev
from shop_ops.localenv.data_tier import DataTier
from shop_ops.localenv.docker_api import DockerApi
from shop_ops.localenv.heartbeat import Heartbeat
from shop_ops.localenv.monitoring import Monitoring
from shop_ops.localenv.tls import LocalTls
from shop_ops.observability import queries
from shop_ops.release import apps
from shop_ops.resources.ledger import LedgerEntry, ReleaseLedger, open_ledger
from shop_ops.resources.router import Router, Upstreams
from shop_ops.services.files import ensure_secret_file
from shop_ops.services.processes import (
    PostgresCluster,
    ServiceError,
    pg_user_can_enter,
    pid_alive,
    port_holder,
    port_is_open,
    read_pid,
)
from shop_ops.services.registry import RegistryServer
from shop_ops.settings import ROOT, LocalEnvironment, Settings

if TYPE_CHECKING:  # imports dagster: only when containers are touched, so `status` stays quick
    from shop_ops.backup.physical import PgBackRest
    from shop_ops.resources.containers import DockerEngine

CONTAINER_UID = apps.CONTAINER_UID
# Where PostgreSQL's folders go when the OS user it runs as cannot reach the state folder (see place_postgres).
PG_HOME = Path("/var/lib/shop-ops")
SEED_PRODUCTS = 2000
NO_RELEASE_NOTE = (
    "no release record exists yet: `up` started the current build directly in each environment's blue slot; "
    "releases go through release_staging (started by registry_push_sensor when a new version is pushed) "
    "and promote_production from the Dagster UI"
)

Say = Callable[[str], None]


class Progress:
    """Progress lines on a stream: `starting redis on 127.0.0.1:6390 ... ok 0.2s`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.stream.write(f"{what} ... ")
        self.stream.flush()
        started = time.monotonic()
        try:
            yield
        except BaseException:
            self(f"FAILED {time.monotonic() - started:.1f}s")
            raise
        self(f"ok {time.monotonic() - started:.1f}s")


class PortConflict(ServiceError):
    """Ports this stack needs are held by other processes."""


@dataclass
class _Rollback:
    """Undo actions of what this `up` started, run in reverse order on failure."""

    actions: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def add(self, what: str, undo: Callable[[], None]) -> None:
        self.actions.append((what, undo))

    def run(self, say: Say) -> None:  # undo in reverse
        for what, undo in reversed(self.actions):
            try:
                undo()
                say(f"  rolled back: {what}")
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest
                say(f"  could not roll back {what}: {exc}")
        self.actions.clear()


def image_tag() -> str:
    """`<version>-<short sha>` as scripts/build-images.sh tags the images."""
    version = (ROOT / "VERSION").read_text().strip()
    result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    sha = result.stdout.strip() if result.returncode == 0 else "unknown"
    return f"{version}-{sha}"


class LocalStack:
    """The services of the local profile, found and controlled through the state folder."""

    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.say = progress or Progress()
        self._step = self.say.step
        self.state = settings.state_path
        self.environments: dict[str, LocalEnvironment] = settings.local_environments()
        self.docker_state = settings.docker_state_path
        self.stack_id = apps.stack_id(self.state)
        self.docker = DockerApi(self.docker_state)
        self.postgres = self._clusters()
        self.heartbeats = {
            name: Heartbeat(
                name,
                self.state / "stack" / f"heartbeat-{name}.pid",
                self.state / "logs" / f"heartbeat-{name}.log",
                env.postgres_port,
                self.password_file(name),
                settings.backups.heartbeat_seconds,
            )
            for name, env in self.environments.items()
        }
        self.data = DataTier(settings, self.postgres, CONTAINER_UID)
        self.registry = RegistryServer(self.state / "registry", settings.registry.port)
        # As the pipeline's resource describes them (a certificate install rewrites their nginx.conf from it):
        # the internal listener, the public HTTPS/HTTP listeners, the shared ACME challenge port, the rate limit.
        from shop_ops.definitions import router_resource  # the one description of the routers

        routers = router_resource(settings)
        self.routers: dict[str, Router] = {name: routers.router(name) for name in self.environments}
        self.tls = LocalTls(settings)
        self.dagster = DagsterDev(self.state / "dagster", settings.dagster.port)
        self.monitoring = self._monitoring()
        self.central_logs = self._central_logs()

    # ------------------------------------------------------------------ paths and names
    def _clusters(self) -> dict[str, PostgresCluster]:
        # The real folder, not the link: PostgreSQL's own user may not be able to pass the state folder.
        return {
            name: PostgresCluster(
                datadir=self.settings.postgres_folder(name) / "data",
                port=env.postgres_port,
                tcp_auth="scram-sha-256",
            )
            for name, env in self.environments.items()
        }

    def _monitoring(self) -> Monitoring:
        # Built again when `place_postgres` moves the clusters' folders: PgBouncer's stats password follows them.
        return Monitoring(
            self.settings,
            {name: router.status_url for name, router in self.routers.items()},
            {name: self.dsn(name) for name in self.environments},
            self.data,
        )

    def _central_logs(self) -> CentralLogs:
        # Built again when `place_postgres` moves the clusters' folders: its paths follow them.
        return CentralLogs(self.settings, self.postgres, self.routers, list(self.data.log_sources()), self.dagster)

    def password_file(self, env: str) -> Path:
        return self.settings.database_password_file(env)

    def admin_token_file(self, env: str) -> Path:
        return self.settings.admin_token_file(env)

    @property
    def docker_marker(self) -> Path:
        return self.state / "stack" / "docker-api.json"

    def apps_record(self, env: str) -> Path:
        return self.state / "apps" / f"{env}.json"

    def app_env(self, name: str) -> apps.AppEnvironment:
        """The shop's containers of environment `name`, wired as the release target wires them."""
        from shop_ops.definitions import shop_wiring  # imports dagster: not for `status`

        env = self.environments[name]
        return shop_wiring(self.settings, name).app_environment(
            stack=self.stack_id, name=name,
            database_url=f"postgresql+asyncpg://shop@127.0.0.1:{env.postgres_port}/{env.database}",
            password_file=self.password_file(name), admin_token_file=self.admin_token_file(name),
            log_folder=self.settings.container_logs_dir(),
            payment_webhook_secret_file=self.settings.payment_webhook_secret_file(name),
        )  # fmt: skip

    def dsn(self, name: str) -> str:
        env = self.environments[name]
        return f"postgresql://shop@127.0.0.1:{env.postgres_port}/{env.database}"

    def engine(self) -> DockerEngine:
        from shop_ops.resources.containers import DockerEngine

        return DockerEngine(self.docker.docker_host)

    def registry_running(self) -> bool:
        pid = read_pid(self.registry.pidfile)
        return pid is not None and pid_alive(pid, "docker-registry")

    # ------------------------------------------------------------------ up
    def up(self) -> None:
        """Start whatever is not running; on any failure undo what this call started, then raise."""
        started = time.monotonic()
        self._prepare_folders()
        rollback = _Rollback()
        try:
            self._up_docker_api(rollback)
            self._check_ports()
            self.data.ensure_secrets()
            for name in self.environments:
                self._up_postgres(name, rollback)
                self._up_heartbeat(name, rollback)
                self.data.up_database(name, self._step, self.say, rollback.add)
                self.data.up_redis(name, self._step, self.say, rollback.add)
            self._up_registry(rollback)
            images = self._ensure_images()
            for name in self.environments:
                self._up_apps(name, images, rollback)
            self.tls.up_ca(self._step, self.say, rollback.add)
            for name in self.environments:
                self._up_router(name, rollback)
            self.tls.up_certificates(self._step, self.say)
            self.monitoring.up(self._step, self.say, rollback.add)
            self.central_logs.up(self._step, self.say, rollback.add)
            # Last: its sensors (on from the start) may launch release runs, which need the environments up.
            dagster_launched = self._launch_dagster(rollback)
            if dagster_launched:
                with self._step(f"waiting for dagster dev on {self.dagster.url}"):
                    self.dagster.wait()
        except BaseException:
            if rollback.actions:
                self.say("rolling back what this `up` started:")
                rollback.run(self.say)
            raise
        self.say(f"local environment up in {time.monotonic() - started:.1f}s")

    def _prepare_folders(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(self.state.stat().st_mode | 0o711)
        for name in ("secrets", "stack", "apps", "logs"):
            (self.state / name).mkdir(exist_ok=True)
        (self.state / "secrets").chmod(0o711)
        self.place_postgres()
        self._ensure_backup_key()

    def place_postgres(self) -> None:
        """Make `<state>/postgres` a folder that PostgreSQL's OS user can reach, or a link to one.

        As root, PostgreSQL runs as the `postgres` user (it refuses to run as root), and a
        checkout inside a folder only root can enter (root's home is mode 700 on Debian) is
        closed to that user. Then the clusters' folders go to a folder of this state's own under
        PG_HOME (persistent, root's; others may pass through it but not list it) and
        `<state>/postgres` links there. Not /tmp or /var/tmp: their periodic clean-up deletes
        files nobody touched for a while, which breaks a database. Not by opening the user's own
        folders to others (chmod o+x, ACLs): a change to their home they did not ask for.
        """
        link = self.state / "postgres"
        if link.is_symlink():
            return  # placed by an earlier `up`
        if pg_user_can_enter(self.state):
            link.mkdir(exist_ok=True)
            link.chmod(link.stat().st_mode | 0o711)
            return
        if link.is_dir() and any(cluster.running() for cluster in self.postgres.values()):
            return  # a cluster started before the folders above closed: leave it where it runs
        PG_HOME.mkdir(parents=True, exist_ok=True)
        PG_HOME.chmod(0o711)
        home = Path(tempfile.mkdtemp(prefix=f"{self.stack_id}-", dir=PG_HOME))
        home.chmod(0o711)
        (home / "STATE").write_text(f"the PostgreSQL folders of the shop-ops state folder {self.state}\n")
        if link.is_dir():  # what an `up` from before this placement left there (no cluster could start)
            shutil.move(link, home / "postgres")
        else:
            (home / "postgres").mkdir(mode=0o711)
        link.symlink_to(home / "postgres")
        self.postgres = self._clusters()
        self.data = DataTier(self.settings, self.postgres, CONTAINER_UID)
        self.monitoring = self._monitoring()
        self.central_logs = self._central_logs()
        self.say(
            f"postgres data in {home / 'postgres'} (linked from {link}): the postgres OS user cannot enter "
            f"{self.state}; delete that folder too when you delete this state"
        )

    def _up_docker_api(self, rollback: _Rollback) -> None:
        # podman reads registries.conf per request: the insecure entry goes in before any push.
        self.docker.allow_insecure_registry(self.registry.address)
        if self.docker.answers():
            self.say(f"docker api {self.docker.docker_host} ... already running")
            return
        with self._step(f"starting the docker api (podman system service) on {self.docker.docker_host}"):
            self.docker.start()
        if self.docker_state == self.state:
            self.docker_marker.write_text(json.dumps({"started_by": "shop-ops local up", "at": time.time()}))
            rollback.add("docker api", self._stop_docker_api)
        else:
            rollback.add("docker api", self.docker.stop)

    def port_plan(self) -> list[tuple[int, str, Callable[[], bool]]]:
        """(port, service, is-it-ours-and-running) for every port the stack listens on."""
        plan: list[tuple[int, str, Callable[[], bool]]] = [
            (self.settings.dagster.port, "dagster", self.dagster.running),
            (self.settings.registry.port, "registry", self.registry_running),
        ]
        plan += self.monitoring.ports() + self.central_logs.ports() + self.data.ports() + list(self.tls.ports())
        # Every router binds the one ACME challenge port (reuseport): it is ours while any of them runs.
        plan.append(
            (
                self.settings.tls.challenge_port,
                "ACME challenges (routers)",
                lambda: any(r.running() for r in self.routers.values()),
            )
        )
        ours_ports = self._container_ports()
        for name, env in self.environments.items():
            plan.append((env.postgres_port, f"postgres ({name})", self.postgres[name].running))
            plan.append((env.router_port, f"router ({name})", self.routers[name].running))
            plan.append((env.https_port, f"router ({name}, HTTPS)", self.routers[name].running))
            plan.append((env.http_port, f"router ({name}, HTTP redirect)", self.routers[name].running))
            for slot, ports in env.slots.items():
                for role, port in (("backend", ports.backend_port), ("frontend", ports.frontend_port)):
                    plan.append((port, f"{role} {slot} slot ({name})", lambda p=port: p in ours_ports))
        return plan

    def _container_ports(self) -> set[int]:
        if not self.docker.answers():
            return set()
        return {
            int(c.labels[apps.LABEL_PORT])
            for c in apps.stack_containers(self.engine(), self.stack_id)
            if c.status == "running" and apps.LABEL_PORT in c.labels
        }

    def _check_ports(self) -> None:
        for name, router in self.routers.items():
            reaped = router.reap_leftovers()
            if reaped:
                self.say(f"{name} router: killed nginx processes left by a crash (pids {reaped})")
        conflicts = []
        for port, service, ours in self.port_plan():
            if port_is_open(port) and not ours():
                holder = port_holder(port)
                conflicts.append(f"port {port} ({service}) is held by {holder or 'another process'}")
        if conflicts:
            raise PortConflict(
                "; ".join(conflicts)
                + f". Stop that process or choose another port in {os.environ.get('SHOP_OPS_CONFIG') or 'config/local.yaml'}."
            )

    def _launch_dagster(self, rollback: _Rollback) -> bool:
        if self.dagster.running():
            self.say(f"dagster dev on {self.dagster.url} ... already running")
            return False
        self.dagster.env = {
            "DOCKER_HOST": self.docker.docker_host,
            "SHOP_OPS_STATE": str(self.state),  # definitions.py finds the password files under it
            # Notifications link to runs in this UI, unless the operator names another address for it.
            "SHOP_OPS_UI_URL": os.environ.get("SHOP_OPS_UI_URL") or self.dagster.url,
            **{k: v for k, v in self.docker.podman_env().items() if k.startswith("CONTAINERS_")},
        }
        with self._step(f"launching dagster dev on {self.dagster.url} (DAGSTER_HOME {self.dagster.home})"):
            source = self.dagster.launch()
        self.say(f"  instance config from {source}")
        rollback.add("dagster dev", self.dagster.stop)
        return True

    def _up_postgres(self, name: str, rollback: _Rollback) -> None:
        cluster = self.postgres[name]
        pgbackrest = self.pgbackrest(name)
        if cluster.running():
            self.say(f"postgres ({name}) on 127.0.0.1:{cluster.port} ... already running")
        else:
            with self._step(f"starting postgres ({name}) on 127.0.0.1:{cluster.port}"):
                (cluster.datadir / "postmaster.pid").unlink(missing_ok=True)  # not running: stale
                cluster.extra_conf = {
                    **pgbackrest.postgres_settings(self.settings.backups.archive_timeout_seconds),
                    **queries.postgres_conf(self.settings.data.slow_query_ms),
                    "max_connections": str(self.settings.data.max_connections),
                }
                cluster.init()
                cluster.start()
            rollback.add(f"postgres ({name})", cluster.stop)
        self._ensure_archiving(name, pgbackrest)
        self._ensure_shop_role(name)
        if queries.enable(cluster, self.environments[name].database, self.settings.data.slow_query_ms):
            self.say(f"postgres ({name}) restarted to load pg_stat_statements")

    def pgbackrest(self, name: str) -> PgBackRest:
        """The pgBackRest stanza of an environment's cluster: repository in `postgres/<env>/pgbackrest`."""
        from shop_ops.backup.physical import PgBackRest  # imports dagster: not for `status`

        return PgBackRest.for_cluster(
            self.postgres[name], stanza=name, base=self.settings.postgres_folder(name) / "pgbackrest",
            key_file=self.settings.backup_key_file(), process_max=self.settings.backups.process_max,
        )  # fmt: skip

    def _ensure_backup_key(self) -> None:
        """The backup key (dumps' AES-256-GCM key, pgBackRest's cipher pass): made once, readable by PostgreSQL's user."""
        from shop_ops.backup.physical import new_key_file

        path = self.settings.backup_key_file()
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o711)
        key_id = new_key_file(path)
        self.say(f"backup key {key_id} written to {path}: keep a copy elsewhere, backups cannot be read without it")

    def _ensure_archiving(self, name: str, pgbackrest: PgBackRest) -> None:
        """WAL goes to the environment's pgBackRest repository (the stanza made once; older clusters switched over)."""
        cluster = self.postgres[name]
        pgbackrest.write_config()
        if pgbackrest.apply_settings(cluster, self.settings.backups.archive_timeout_seconds):
            self.say(f"postgres ({name}) restarted to archive WAL through pgBackRest")
        if not (pgbackrest.repo / "backup" / name / "backup.info").exists():
            with self._step(f"creating the pgBackRest stanza {name} (encrypted repository {pgbackrest.repo})"):
                pgbackrest.stanza_create()

    def _ensure_shop_role(self, name: str) -> None:
        """The `shop` role (password from its file, made once) owning the environment's database,
        and the shop's admin token (made once too; its backend containers mount both files)."""
        cluster = self.postgres[name]
        env = self.environments[name]
        path = self.password_file(name)
        _ensure_secret_file(path)
        _ensure_secret_file(self.admin_token_file(name))
        _ensure_secret_file(self.settings.payment_webhook_secret_file(name))
        # As a SCRAM verifier, in a session that logs no statement: never in a log or pg_stat_statements.
        cluster.set_role_password("shop", path.read_text().strip())
        # Timeouts and plan_cache_mode on the role: they hold through PgBouncer, which passes no startup settings.
        cluster.set_role_defaults("shop", self.settings.data.shop_role_defaults())
        cluster.create_database(env.database, owner="shop")
        from shop_ops.definitions import shop_wiring  # imports dagster: not for `status`

        logins = shop_wiring(self.settings, name).database_logins
        assert logins is not None
        logins.logins(name).ensure()  # shop_a/shop_b IN ROLE shop; the serving one logs in (rotate_database_password)

    def _up_heartbeat(self, name: str, rollback: _Rollback) -> None:
        """The writer of `ops.heartbeat` (one row every few seconds), which DR drills check their recovery point on."""
        heartbeat = self.heartbeats[name]
        if heartbeat.running():
            return
        with self._step(f"starting the {name} heartbeat (every {heartbeat.interval:g}s into ops.heartbeat)"):
            heartbeat.start()
        rollback.add(f"{name} heartbeat", heartbeat.stop)

    def _up_registry(self, rollback: _Rollback) -> None:
        if self.registry_running():
            self.say(f"registry on {self.registry.url} ... already running")
            return
        self.registry.pidfile.unlink(missing_ok=True)
        with self._step(f"starting the registry on {self.registry.url}"):
            self.registry.start()
        rollback.add("registry", self.registry.stop)

    def _ensure_images(self) -> dict[str, str]:
        tag = image_tag()
        wanted = {"backend": f"localhost/shop-backend:{tag}", "frontend": f"localhost/shop-frontend:{tag}"}
        engine = self.engine()
        if all(engine.image_exists(ref) for ref in wanted.values()):
            self.say(f"images {', '.join(wanted.values())} ... present")
            return wanted
        log = self.state / "logs" / "build-images.log"
        with self._step(f"building images {tag} (scripts/build-images.sh, log {log})"):
            env = {**os.environ, "SHOP_OPS_STATE": str(self.docker_state)}
            with open(log, "wb") as fh:
                code = subprocess.run(
                    ["bash", str(ROOT / "scripts" / "build-images.sh")], env=env, stdin=subprocess.DEVNULL,
                    stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                ).returncode  # fmt: skip
            if code != 0:
                tail = log.read_text(errors="replace")[-1500:]
                raise ServiceError(f"scripts/build-images.sh failed (exit {code}); log {log}:\n{tail}")
        return wanted

    @cached_property
    def ledger(self) -> ReleaseLedger:
        """The release ledger the settings name (opened once per LocalStack)."""
        return open_ledger(self.settings.ledger, self.settings.state_path)

    def _up_apps(self, name: str, current: dict[str, str], rollback: _Rollback) -> None:
        env = self.environments[name]
        app_env = self.app_env(name)
        slot = (self.routers[name].serving() or Upstreams("blue", 0, 0)).slot
        ports = env.slots[slot]  # type: ignore[index]
        engine = self.engine()
        release = self.ledger.serving(name)  # None before its first release
        names = [apps.service_name(app_env, slot, role) for role in ("backend", "frontend")]
        running = {c.name for c in apps.stack_containers(engine, self.stack_id) if c.status == "running"}
        if all(n in running for n in names):
            self.say(f"{name}: {slot} slot on ports {ports.backend_port}/{ports.frontend_port} ... already running")
            return
        if release is not None:
            # What the pipeline released serves again, by digest; its schema is the pipeline's to change.
            with self._step(f"{name}: pulling release {release.version} ({release.release_id}), which serves it"):
                images = self._pull_release(release, engine)
        else:
            images = self._recorded_images(name, slot, engine) or current
            with self._step(f"{name}: migrating the database ({images['backend']}, one-off)"):
                out = apps.run_once(engine, images["backend"], ["shop-migrate"], app_env)
            revisions = _last_json(out)
            if revisions.get("revision_before") is None:
                with self._step(f"{name}: seeding the catalog ({SEED_PRODUCTS} products, one-off)"):
                    apps.run_once(engine, images["backend"], ["shop-seed", "--products", str(SEED_PRODUCTS)], app_env)

        def remove_slot() -> None:
            for container_name in names:
                engine.stop_service(container_name, timeout=apps.STOP_TIMEOUT)

        with self._step(
            f"{name}: starting the {slot} slot (backend :{ports.backend_port}, storefront :{ports.frontend_port})"
        ):
            rollback.add(f"{name} {slot} slot containers", remove_slot)
            apps.start_slot(engine, app_env, slot, images, ports.backend_port, ports.frontend_port)
            apps.wait_ready(
                engine,
                names,
                [
                    f"http://127.0.0.1:{ports.backend_port}/readyz",
                    f"http://127.0.0.1:{ports.frontend_port}/nginx-health",
                ],
            )
        record = self._read_record(name)
        record[slot] = images
        self.apps_record(name).write_text(json.dumps(record, indent=2))

    def _pull_release(self, release: LedgerEntry, engine: DockerEngine) -> dict[str, str]:
        """The release's two images pinned by digest in the local registry, pulled when the engine lacks them."""
        from shop_ops.release.images import pinned_release_images, registry_auth
        from shop_ops.resources.registry import RegistryClient

        registry = RegistryClient(self.registry.url, self.registry.credentials_file)
        repositories = self.settings.images
        images = pinned_release_images(
            registry, repositories.backend_repository, repositories.frontend_repository,
            release.backend_digest, release.frontend_digest,
        )  # fmt: skip
        auth = registry_auth(registry)
        for ref in images.values():
            engine.ensure_image(ref, auth=auth, insecure=registry.insecure)
        return images

    def release_note(self) -> str:
        """What serves each environment per the release ledger, or how releases start when none has one."""
        serving = {name: self.ledger.serving(name) for name in self.environments}
        if not any(serving.values()):
            return NO_RELEASE_NOTE
        return "; ".join(
            f"{name} serves release {entry.version} ({entry.release_id})"
            if entry
            else f"{name} serves the build `up` started (no release yet)"
            for name, entry in serving.items()
        )

    def _read_record(self, name: str) -> dict[str, Any]:
        try:
            return json.loads(self.apps_record(name).read_text())
        except (OSError, ValueError):
            return {}

    def _recorded_images(self, name: str, slot: str, engine: DockerEngine) -> dict[str, str] | None:
        images = self._read_record(name).get(slot)
        if images and all(engine.image_exists(ref) for ref in images.values()):
            return images
        return None

    def _up_router(self, name: str, rollback: _Rollback) -> None:
        router = self.routers[name]
        env = self.environments[name]
        slot = (router.serving() or Upstreams("blue", 0, 0)).slot
        ports = env.slots[slot]  # type: ignore[index]
        target = Upstreams(slot, ports.backend_port, ports.frontend_port)
        if router.running() and router.serving() == target:
            self.say(f"{name} router on {router.url} ({slot}) ... already running")
            return
        was_running = router.running()
        with self._step(f"starting the {name} router on {router.url} -> {slot} slot"):
            router.start(target)
        if not was_running:
            rollback.add(f"{name} router", router.stop)

    # ------------------------------------------------------------------ down
    def down(self) -> None:
        """Stop what the stack started (by pid files and container labels), nothing else."""
        for name, router in self.routers.items():
            self._stop(f"{name} router", router.running, router.stop)
        self.tls.down(self._stop)
        self._stop("dagster dev", lambda: bool(read_pid(self.dagster.pidfile)), self.dagster.stop)
        self.monitoring.down(self._stop)
        self.central_logs.down(self._stop)
        self._down_containers()
        self._stop("registry", self.registry_running, self.registry.stop, cleanup=self.registry.pidfile)
        self.data.down(self._stop)
        for name, heartbeat in self.heartbeats.items():
            self._stop(f"{name} heartbeat", heartbeat.running, heartbeat.stop, cleanup=heartbeat.pidfile)
        for name, cluster in self.postgres.items():
            self._stop(f"postgres ({name})", cluster.running, cluster.stop)
        if self.docker_marker.exists():
            self._stop("docker api (podman system service)", lambda: True, self._stop_docker_api)
        elif self.docker.answers():
            self.say(f"docker api {self.docker.docker_host} ... left running (not started by `shop-ops local up`)")

    def _stop(
        self, what: str, running: Callable[[], bool], stop: Callable[[], None], cleanup: Path | None = None
    ) -> None:
        if not running():
            if cleanup is not None:
                cleanup.unlink(missing_ok=True)
            self.say(f"{what} ... not running")
            return
        with self._step(f"stopping {what}"):
            stop()

    def _down_containers(self) -> None:
        started_here = False
        if not self.docker.answers():
            if not any((self.state / "apps").glob("*.json")):
                return
            # podman's containers outlive its API service: start it to find and stop them.
            self.docker.start()
            started_here = True
        engine = self.engine()
        if not apps.stack_containers(engine, self.stack_id):
            self.say("app containers ... none")
        else:
            with self._step("stopping app containers"):
                names = apps.remove_stack_containers(engine, self.stack_id)
            self.say(f"  removed {', '.join(sorted(names))}")
        if started_here and not self.docker_marker.exists():
            self.docker.stop()

    def _stop_docker_api(self) -> None:
        self.docker.stop()
        self.docker_marker.unlink(missing_ok=True)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Every service with its address and whether it answers now (probed, not assumed)."""
        postgres: dict[str, Any] = {}
        for name, cluster in self.postgres.items():
            postgres[name] = {
                "dsn": self.dsn(name),
                "up": cluster.ready(),
                "password_file": str(self.password_file(name)),
                "pgbackrest": str(self.settings.postgres_folder(name) / "pgbackrest"),
                "data": str(cluster.datadir),
                "heartbeat": self.heartbeats[name].running(),
            }
        result: dict[str, Any] = {
            "postgres": {"up": all(p["up"] for p in postgres.values()), **postgres},
            "registry": {
                "url": self.registry.url,
                "up": self.registry.answers(),
                "credentials_file": str(self.registry.credentials_file),
            },
            "docker_api": {
                "url": self.docker.docker_host,
                "up": self.docker.answers(),
                "engine": "docker" if self.docker.existing_docker() else "podman",
                "started_by_up": self.docker_marker.exists(),
            },
        }
        result["backups"] = {
            "key_file": str(self.settings.backup_key_file()),
            "folder": str(self.settings.backup_folder()),
        }
        result.update(self.data.status())
        result.update(self.tls.status())
        for name in self.environments:
            result[name] = self._environment_status(name)
        result.update(self.monitoring.status())
        result.update(self.central_logs.status())
        result["dagster"] = {
            "url": self.dagster.url,
            "up": self.dagster.answers(),
            "dagster_home": str(self.dagster.home),
        }
        return result

    def _environment_status(self, name: str) -> dict[str, Any]:
        router = self.routers[name]
        serving = router.serving()
        entry: dict[str, Any] = {
            "url": router.url,
            "up": False,
            "slot": serving.slot if serving else None,
            "api_url": f"{router.url}/api/",
            "https_url": self.tls.https_url(name),
            "certificate": self.tls.certificate(name),
            "admin_token_file": str(self.admin_token_file(name)),
        }
        if serving:
            entry["backend_url"] = f"http://127.0.0.1:{serving.backend_port}"
            entry["frontend_url"] = f"http://127.0.0.1:{serving.frontend_port}"
        try:
            with httpx.Client(base_url=router.url, timeout=3) as http:
                ready = http.get("/readyz")
                home = http.get("/")
                entry["up"] = ready.status_code == 200 and home.status_code == 200
                entry["answering_slot"] = home.headers.get("x-shop-slot")
                if entry["up"]:
                    entry["version"] = http.get("/version").json().get("version")
        except (httpx.TransportError, ValueError):
            pass
        return entry

    def urls(self) -> list[tuple[str, str]]:
        """(what, where) for the closing lines of `up`."""
        lines = [("Dagster UI", self.dagster.url)]
        for name, router in self.routers.items():
            lines.append((f"{name} shop", f"{router.url}/  (API {router.url}/api/)"))
        for name in self.environments:
            lines.append((f"{name} database", f"{self.dsn(name)}  (password in {self.password_file(name)})"))
        for name in self.environments:
            lines.append(
                (
                    f"{name} redis",
                    f"{self.settings.redis_url(name)} (cache; carts through Sentinel "
                    f"{self.settings.carts_sentinel(name)[0]}, password in {self.settings.redis_password_file(name)})",
                )
            )
        lines += self.tls.urls()
        lines.append(("registry", f"{self.registry.url}  (credentials in {self.registry.credentials_file})"))
        lines.append(("docker api", self.docker.docker_host))
        lines += self.monitoring.urls() + self.central_logs.urls()
        return lines


def _ensure_secret_file(path: Path) -> None:
    """A random secret in `path` unless it has one, readable by the shop's containers (group CONTAINER_UID)."""
    ensure_secret_file(path, group=CONTAINER_UID)


def _last_json(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def tool_problems() -> list[str]:
    """Programs the local environment needs that are not installed."""
    needed = {
        "nginx": "nginx-light",
        "redis-server": "redis-server",
        "redis-sentinel": "redis-sentinel",
        "pgbouncer": "pgbouncer",
        "pebble": "pebble",
        "pebble-challtestsrv": "pebble",
        "docker-registry": "docker-registry",
        "htpasswd": "apache2-utils",
        "podman": "podman",
    }
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in needed.items() if not _which(tool)]
    if not Path("/usr/lib/postgresql/15/bin/pg_ctl").exists() and not shutil.which("pg_ctl"):
        missing.append("PostgreSQL 15 (apt-get install postgresql-15)")
    return missing


def _which(tool: str) -> bool:
    return bool(shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())
