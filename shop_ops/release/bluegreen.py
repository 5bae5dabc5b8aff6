"""Blue/green deploys of one environment: guards, migrate, start idle slot, probe, switch, verify, roll back.

Plain functions over the local pieces (`DockerEngine`, `RegistryClient`, the nginx `Router`, the
`ReleaseLedger`, the environment's PostgreSQL database); no Dagster. The guards live inside
`deploy` and `rollback` themselves (DESIGN.md, release rules): production needs `approved_by`
and digests verified on staging, and a PostgreSQL advisory lock on the environment's database
keeps two deploy-type operations on one environment from overlapping, whatever launched them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from shop_ops.localstack import apps
from shop_ops.localstack.router import SLOTS, Router, Upstreams
from shop_ops.release.images import pinned_release_images, registry_auth
from shop_ops.release.ledger import LedgerEntry, ReleaseLedger
from shop_ops.release.schema import migrate_environment, rollback_blocker
from shop_ops.resources.containers import DockerEngine
from shop_ops.resources.postgres import DatabaseError, DatabaseTarget
from shop_ops.resources.registry import RegistryClient

# pg_try_advisory_lock key for "a deploy-type operation runs on this environment" (each environment
# has its own database, so one fixed key is per environment). ASCII of "shopdepl".
DEPLOY_LOCK_KEY = 0x73686F706465706C
PRODUCTION = "production"
STAGING = "staging"


class DeployRefused(RuntimeError):
    """A guard refused the deploy before anything changed; the message says which and why."""


class DeployFailed(RuntimeError):
    """The deploy started but did not end with the release serving; `result` has the numbers."""

    def __init__(self, message: str, result: DeployResult) -> None:
        super().__init__(message)
        self.result = result


class Verification(Protocol):
    """What a verifier returns (shop_ops.release.verify.Verification fits)."""

    @property
    def passed(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    def numbers(self) -> dict[str, float]: ...  # measurements for the metadata, e.g. k6 p95 and error rate


Verifier = Callable[[str], Verification]  # base URL of the environment's router -> verdict


@dataclass(frozen=True)
class Release:
    """A version and the registry manifest digests of its two images."""

    version: str
    backend_digest: str
    frontend_digest: str


@dataclass
class DeployDeps:
    """Everything one environment's deploy touches."""

    engine: DockerEngine
    registry: RegistryClient
    router: Router
    app_env: apps.AppEnvironment
    slots: Mapping[str, Upstreams]  # "blue"/"green" -> that slot's ports
    database: DatabaseTarget  # the environment's database: the advisory lock is taken there
    ledger: ReleaseLedger
    backend_repository: str = "shop/backend"
    frontend_repository: str = "shop/frontend"
    ready_timeout: float = 90
    log: Callable[[str], None] = field(default=lambda _line: None)


@dataclass
class DeployResult:
    """The outcome and its numbers (seconds per step: migrate, start, ready, switch, verify)."""

    environment: str
    release_id: str
    version: str
    slot: str
    previous_slot: str | None
    previous_release_id: str | None
    backend_digest: str = ""
    frontend_digest: str = ""
    previous_version: str | None = None
    status: str = "deploying"
    reason: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    rollback_seconds: float | None = None
    total_seconds: float = 0.0
    schema: dict[str, Any] = field(default_factory=dict)  # the migration run (SchemaChange.metadata)
    verification: dict[str, float] = field(default_factory=dict)  # the verifier's numbers (k6 p95, error rate)

    def metadata(self) -> dict[str, Any]:
        """Flat values (numbers as numbers) for asset metadata."""
        values: dict[str, Any] = {
            "environment": self.environment,
            "release_id": self.release_id,
            "version": self.version,
            "backend_digest": self.backend_digest,
            "frontend_digest": self.frontend_digest,
            "slot": self.slot,
            "previous_version": self.previous_version or "",
            "previous_release_id": self.previous_release_id or "",
            "status": self.status,
            "total_seconds": self.total_seconds,
        }
        values.update({f"{name}_seconds": seconds for name, seconds in self.steps.items()})
        values.update({f"schema_{key}": value for key, value in self.schema.items()})
        values.update(self.verification)
        if self.rollback_seconds is not None:
            values["rollback_seconds"] = self.rollback_seconds
        return values


# ---------------------------------------------------------------------------------------------- guards
def check_guards(environment: str, release: Release, ledger: ReleaseLedger, approved_by: str | None) -> None:
    """Refuse (DeployRefused) a malformed release, or production without approval or staging verification."""
    for role, digest in (("backend", release.backend_digest), ("frontend", release.frontend_digest)):
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise DeployRefused(f"{role} digest {digest!r} is not a sha256 manifest digest")
    if environment != PRODUCTION:
        return
    if not (approved_by or "").strip():
        raise DeployRefused(
            f"production deploy of {release.version} refused: approved_by is required (who approved it)"
        )
    if not ledger.is_verified(STAGING, release.backend_digest, release.frontend_digest):
        raise DeployRefused(
            f"production deploy of {release.version} refused: backend {release.backend_digest} with frontend "
            f"{release.frontend_digest} has not been verified on staging"
        )


@contextmanager
def deploy_lock(database: DatabaseTarget, environment: str) -> Iterator[None]:
    """Hold the environment's deploy lock (session advisory lock) or raise DeployRefused at once."""
    try:
        conn = database.connect()
    except DatabaseError as exc:
        raise DeployRefused(f"cannot take the {environment} deploy lock: {exc}") from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (DEPLOY_LOCK_KEY,))
            (acquired,) = cur.fetchone()
        if not acquired:
            raise DeployRefused(
                f"another deploy, promote or rollback of {environment} is running (it holds advisory lock "
                f"{DEPLOY_LOCK_KEY} on {database.describe()}); wait for it to finish"
            )
        try:
            yield
        finally:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (DEPLOY_LOCK_KEY,))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- helpers
def _images(deps: DeployDeps, backend_digest: str, frontend_digest: str) -> dict[str, str]:
    return pinned_release_images(
        deps.registry, deps.backend_repository, deps.frontend_repository, backend_digest, frontend_digest
    )


def _names(deps: DeployDeps, slot: str) -> list[str]:
    return [apps.service_name(deps.app_env, slot, role) for role in ("backend", "frontend")]


FAILED_STOP_TIMEOUT = 2  # containers that never served (or were switched away from at once) need no drain


def _remove_slot(deps: DeployDeps, slot: str, timeout: int = apps.STOP_TIMEOUT) -> None:
    for name in _names(deps, slot):
        deps.engine.stop_service(name, timeout=timeout)


def _start_and_probe(deps: DeployDeps, slot: str, images: dict[str, str], steps: dict[str, float]) -> None:
    """Pull (pinned), start `slot`'s containers and poll them over HTTP until ready; ContainerError if not."""
    ports = deps.slots[slot]
    auth = registry_auth(deps.registry)
    started = time.monotonic()
    for ref in images.values():
        deps.engine.ensure_image(ref, auth=auth, insecure=deps.registry.insecure)
    apps.start_slot(deps.engine, deps.app_env, slot, images, ports.backend_port, ports.frontend_port)
    steps["start"] = round(time.monotonic() - started, 2)
    started = time.monotonic()
    apps.wait_ready(
        deps.engine,
        _names(deps, slot),
        [
            f"http://127.0.0.1:{ports.backend_port}/readyz",
            f"http://127.0.0.1:{ports.frontend_port}/nginx-health",
            f"http://127.0.0.1:{ports.frontend_port}/",
        ],
        timeout=deps.ready_timeout,
    )
    steps["ready"] = round(time.monotonic() - started, 2)


def _serving_upstreams(deps: DeployDeps, environment: str) -> Upstreams:
    if deps.app_env.name != environment:
        raise DeployRefused(f"deploy of {environment} was given the dependencies of {deps.app_env.name}")
    if not deps.router.running():
        raise DeployRefused(f"the {environment} router is not running: start it with `shop-ops local up`")
    serving = deps.router.serving()
    if serving is None or serving.slot not in SLOTS:
        raise DeployRefused(f"the {environment} router serves no slot: start it with `shop-ops local up`")
    return serving


def _record_attempt(
    deps: DeployDeps,
    environment: str,
    release: Release | LedgerEntry,
    slot: str,
    previous_slot: str,
    previous: LedgerEntry | None,
    *,
    kind: str = "deploy",
    approved_by: str | None = None,
) -> DeployResult:
    """A ledger row in `deploying` for putting `release` in `slot` (after `previous`), and its DeployResult."""
    previous_id = previous.release_id if previous else None
    release_id = deps.ledger.start(
        environment, release.version, release.backend_digest, release.frontend_digest, slot,
        approved_by=approved_by, previous_release_id=previous_id, kind=kind,
    )  # fmt: skip
    return DeployResult(
        environment=environment, release_id=release_id, version=release.version, slot=slot,
        previous_slot=previous_slot, previous_release_id=previous_id, backend_digest=release.backend_digest,
        frontend_digest=release.frontend_digest, previous_version=previous.version if previous else None,
    )  # fmt: skip


def _other(slot: str) -> str:
    return "green" if slot == "blue" else "blue"


# ---------------------------------------------------------------------------------------------- deploy
def deploy(
    environment: str,
    release: Release,
    deps: DeployDeps,
    *,
    verify: Verifier,
    approved_by: str | None = None,
) -> DeployResult:
    """Put `release` on `environment` blue/green; the verified DeployResult, or DeployRefused / DeployFailed.

    migrate (one-off container of the pinned backend image) -> start the idle slot -> probe until
    ready (never ready: removed, no traffic) -> switch the router -> `verify(router URL)` (failed:
    switch back at once, failed containers removed) -> stop the old slot, previous release `replaced`.
    """
    check_guards(environment, release, deps.ledger, approved_by)
    with deploy_lock(deps.database, environment):
        return _deploy_locked(environment, release, deps, verify, approved_by)


def _deploy_locked(
    environment: str, release: Release, deps: DeployDeps, verify: Verifier, approved_by: str | None
) -> DeployResult:
    began = time.monotonic()
    old = _serving_upstreams(deps, environment)
    slot = _other(old.slot)
    previous = deps.ledger.serving(environment)
    result = _record_attempt(deps, environment, release, slot, old.slot, previous, approved_by=approved_by)
    release_id, steps = result.release_id, result.steps
    images = _images(deps, release.backend_digest, release.frontend_digest)

    def fail(status: str, reason: str) -> DeployFailed:
        result.status, result.reason = status, reason
        result.total_seconds = round(time.monotonic() - began, 2)
        deps.ledger.finish(release_id, status, reason=reason, steps=steps, measures=result.verification)
        deps.log(f"{environment}: {release.version} {status}: {reason}")
        return DeployFailed(f"{environment} deploy of {release.version} {status.replace('_', ' ')}: {reason}", result)

    # 1. migrate, from the release's own image; expand-only while the previous release serves
    deps.log(f"{environment}: migrating with {images['backend']}")
    started = time.monotonic()
    try:
        change = migrate_environment(
            deps.engine, environment, images["backend"], release.backend_digest, deps.app_env.database_url,
            deps.app_env.password_file, deps.ledger, registry_auth=registry_auth(deps.registry),
            insecure_registry=deps.registry.insecure, log=deps.log,
        )  # fmt: skip
        result.schema = change.metadata()
    except Exception as exc:  # noqa: BLE001 - any failure ends the attempt with its reason
        steps["migrate"] = round(time.monotonic() - started, 2)
        raise fail("failed", f"migration failed: {exc}") from None
    steps["migrate"] = round(time.monotonic() - started, 2)

    # 2-3. start beside the serving slot and probe; never ready: removed, serving slot untouched
    deps.log(f"{environment}: starting {release.version} in the {slot} slot")
    try:
        _start_and_probe(deps, slot, images, steps)
    except Exception as exc:  # noqa: BLE001
        _remove_slot(deps, slot, FAILED_STOP_TIMEOUT)
        raise fail("failed", f"the {slot} slot did not become ready: {exc}") from None

    # 4. switch
    target = deps.slots[slot]
    started = time.monotonic()
    try:
        deps.router.switch(target)
    except Exception as exc:  # noqa: BLE001
        deps.router.switch(old)
        _remove_slot(deps, slot, FAILED_STOP_TIMEOUT)
        raise fail("failed", f"the router did not switch to {slot}: {exc}") from None
    steps["switch"] = round(time.monotonic() - started, 2)

    # 5. verify through the router; failure: switch back at once
    started = time.monotonic()
    try:
        verdict = verify(deps.router.url)
        passed, reason = bool(verdict.passed), str(verdict.reason)
        result.verification = dict(verdict.numbers())
    except Exception as exc:  # noqa: BLE001 - a crashing verifier is a failed verification
        passed, reason = False, f"the verifier raised {type(exc).__name__}: {exc}"
    steps["verify"] = round(time.monotonic() - started, 2)
    if not passed:
        failed_at = time.monotonic()
        deps.router.switch(old)
        result.rollback_seconds = round(time.monotonic() - failed_at, 3)
        _remove_slot(deps, slot, FAILED_STOP_TIMEOUT)
        raise fail("rolled_back", f"verification failed: {reason}")

    # 6. success: the old slot goes, the previous release is the rollback target
    started = time.monotonic()
    _remove_slot(deps, old.slot)
    steps["retire"] = round(time.monotonic() - started, 2)
    if previous is not None:
        deps.ledger.mark(previous.release_id, "replaced")
    result.status, result.reason = "verified", reason
    result.total_seconds = round(time.monotonic() - began, 2)
    deps.ledger.finish(release_id, "verified", reason=reason, steps=steps, measures=result.verification)
    deps.log(f"{environment}: {release.version} serves from the {slot} slot ({result.total_seconds}s)")
    return result


# ---------------------------------------------------------------------------------------------- rollback
def rollback(environment: str, deps: DeployDeps, *, reason: str = "rollback requested") -> DeployResult:
    """Put `environment` back on its previous verified release (in one switch if its containers still run).

    Otherwise its containers are first started from its digests in the idle slot and probed.
    The release that served is marked `rolled_back`; the rollback is a new `verified` ledger row.
    """
    with deploy_lock(deps.database, environment):
        began = time.monotonic()
        old = _serving_upstreams(deps, environment)
        current = deps.ledger.serving(environment)
        target = deps.ledger.previous_verified(environment)
        if target is None:
            raise DeployRefused(f"{environment} has no previous verified release to roll back to")
        try:
            db_revision = deps.database.current_revision()
        except DatabaseError as exc:
            raise DeployRefused(f"cannot read the {environment} schema revision: {exc}") from None
        blocker = rollback_blocker(deps.ledger, environment, target, db_revision)
        if blocker is not None:
            raise DeployRefused(f"rollback of {environment} to {target.version} refused: {blocker}")
        slot = _other(old.slot)
        images = _images(deps, target.backend_digest, target.frontend_digest)
        result = _record_attempt(deps, environment, target, slot, old.slot, current, kind="rollback")
        release_id = result.release_id
        if not _slot_runs(deps, slot, images):
            try:
                _start_and_probe(deps, slot, images, result.steps)
            except Exception as exc:  # noqa: BLE001
                _remove_slot(deps, slot, FAILED_STOP_TIMEOUT)
                result.status, result.reason = "failed", f"the {slot} slot did not become ready: {exc}"
                deps.ledger.finish(release_id, "failed", reason=result.reason, steps=result.steps)
                raise DeployFailed(
                    f"{environment} rollback to {target.version} failed: {result.reason}", result
                ) from None
        started = time.monotonic()
        deps.router.switch(deps.slots[slot])
        result.rollback_seconds = result.steps["switch"] = round(time.monotonic() - started, 3)
        _remove_slot(deps, old.slot)
        if current is not None:
            deps.ledger.mark(current.release_id, "rolled_back", reason=reason)
        result.status, result.reason = "verified", f"{reason}: back on {target.version} ({target.release_id})"
        result.total_seconds = round(time.monotonic() - began, 2)
        deps.ledger.finish(release_id, "verified", reason=result.reason, steps=result.steps)
        return result


def _slot_runs(deps: DeployDeps, slot: str, images: dict[str, str]) -> bool:
    """Whether `slot`'s two containers are running from exactly these pinned images."""
    running = {
        c.name: c.image
        for c in deps.engine.list_services(labels=deps.app_env.labels(**{apps.LABEL_SLOT: slot}))
        if c.status == "running"
    }
    wanted = dict(zip(_names(deps, slot), (images["backend"], images["frontend"]), strict=True))
    return all(running.get(name) == image for name, image in wanted.items())
