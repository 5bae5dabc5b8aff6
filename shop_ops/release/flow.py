"""The release vocabulary and the one attempt flow (deploy, rollback) that every release strategy follows.

A strategy (`bluegreen.BlueGreen` locally, `ecs_release.EcsService` on aws) supplies only its own
steps: its lock, where the attempt goes, the migration, the roll-out, the way back, the retirement
of what served before. The flow around them is written once here: guards, the ledger row, timing,
verification through the environment's URL, and what happens on each failure. The guards live in
`deploy` itself (DESIGN.md, release rules), so whatever launched it cannot get around them. So do the
deployment notifications: given a `notify` callback, the flow emits each release event
(`notifications.KINDS`: started, verified, promoted, rolled back, refused, failed) once, right after
the ledger records it, with the row's id; a callback that raises costs a logged line, never the release.
Plain functions; no Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from shop_ops.release.notifications import Notify, ReleaseEvent
from shop_ops.resources.ledger import LedgerEntry, ReleaseLedger
from shop_ops.resources.postgres import DatabaseError, DatabaseTarget
from shop_ops.services.redaction import redact

PRODUCTION = "production"
STAGING = "staging"
# pg_try_advisory_lock key for "a deploy-type operation runs on this environment" (each environment
# has its own database, so one fixed key is per environment). ASCII of "shopdepl".
DEPLOY_LOCK_KEY = 0x73686F706465706C


class DeployRefused(RuntimeError):
    """A guard refused the deploy or rollback before anything changed; the message says which and why."""


class DeployFailed(RuntimeError):
    """The attempt started (ledger row written) but did not end with the release serving; `result` has the numbers."""

    def __init__(self, message: str, result: ReleaseResult) -> None:
        super().__init__(message)
        self.result = result


class StepFailed(RuntimeError):
    """A strategy step failed; the message is the reason as people read it, `status` how the attempt ends."""

    def __init__(self, reason: str, status: str = "failed") -> None:
        super().__init__(reason)
        self.status = status  # failed: never got traffic | rolled_back: got traffic, is back on the previous release


class Verification(Protocol):
    """What a verifier returns (shop_ops.release.verify.Verification fits)."""

    @property
    def passed(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    def numbers(self) -> dict[str, float]: ...  # measurements for the metadata, e.g. k6 p95 and error rate


Verifier = Callable[[str], Verification]  # base URL of the environment -> verdict
Log = Callable[[str], None]


@dataclass(frozen=True)
class Release:
    """A version and the registry manifest digests of its two images."""

    version: str
    backend_digest: str
    frontend_digest: str


@dataclass
class Placement:
    """Where an attempt puts a release (a slot, a task definition) and where the environment was before.

    `label` names the kind of place in metadata ("slot", "task_definition"); `ledger_slot` is what the
    ledger's `slot` column records; `details` holds a strategy's other facts (e.g. the migration task).
    """

    label: str
    ledger_slot: str
    release_id: str = ""  # the attempt's ledger row, once the flow has written it
    target: str = ""
    previous: str = ""
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class ReleaseResult:
    """One deploy or rollback: its ledger row, where it runs, seconds per step, the verifier's numbers."""

    environment: str
    release_id: str
    kind: str  # deploy | rollback
    version: str
    placement: Placement
    previous_release_id: str | None = None
    backend_digest: str = ""
    frontend_digest: str = ""
    previous_version: str | None = None
    status: str = "deploying"
    reason: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    rollback_seconds: float | None = None  # from the decision to go back to the previous release serving again
    total_seconds: float = 0.0
    schema: dict[str, Any] = field(default_factory=dict)  # the migration run (SchemaChange.metadata)
    verification: dict[str, float] = field(default_factory=dict)  # the verifier's numbers (k6 p95, error rate)

    @property
    def slot(self) -> str:
        return self.placement.ledger_slot

    def metadata(self) -> dict[str, Any]:
        """Flat values (numbers as numbers) for asset metadata; no secrets in any of them."""
        label = self.placement.label
        values: dict[str, Any] = {
            "environment": self.environment,
            "release_id": self.release_id,
            "kind": self.kind,
            "version": self.version,
            "backend_digest": self.backend_digest,
            "frontend_digest": self.frontend_digest,
            label: self.placement.target,
            f"previous_{label}": self.placement.previous,
            "previous_version": self.previous_version or "",
            "previous_release_id": self.previous_release_id or "",
            "status": self.status,
            "total_seconds": self.total_seconds,
        }
        values.update(self.placement.details)
        values.update({f"{name}_seconds": seconds for name, seconds in self.steps.items()})
        values.update({f"schema_{key}": value for key, value in self.schema.items()})
        values.update(self.verification)
        if self.rollback_seconds is not None:
            values["rollback_seconds"] = self.rollback_seconds
        return values


class Strategy(Protocol):
    """The steps one way of releasing supplies (blue/green slots, an ECS service); the flow does the rest."""

    ledger: ReleaseLedger
    log: Log

    def lock(self, environment: str) -> AbstractContextManager[None]:
        """Hold the environment's deploy lock, or raise DeployRefused at once."""
        ...

    def place(self, environment: str) -> Placement:
        """Where an attempt on `environment` goes; DeployRefused when the environment cannot take one."""
        ...

    def images(self, backend_digest: str, frontend_digest: str) -> dict[str, str]:
        """{"backend": ..., "frontend": ...} references pinned by digest."""
        ...

    def migrate(self, environment: str, release: Release, images: dict[str, str], place: Placement) -> dict[str, Any]:
        """Migrate the schema from the release's own image (expand-only); the run's metadata."""
        ...

    def roll_out(self, environment: str, images: dict[str, str], place: Placement, steps: dict[str, float]) -> str:
        """Make the release take the environment's traffic; the URL to verify it through."""
        ...

    def revert(self, place: Placement, steps: dict[str, float]) -> str:
        """After a failed verification: the environment back on what served before; a note on how that went."""
        ...

    def check_rollback(self, environment: str, target: LedgerEntry, images: dict[str, str], place: Placement) -> None:
        """DeployRefused when the environment cannot go back to `target` (before anything changes)."""
        ...

    def restore(self, environment: str, images: dict[str, str], place: Placement, steps: dict[str, float]) -> float:
        """Put the previous release's images back in service (StepFailed when they do not serve).

        Returns the seconds the traffic itself took to move back (a switch, a service update), not the
        preparation before it (starting containers again).
        """
        ...

    def retire(self, place: Placement, steps: dict[str, float]) -> None:
        """What served before goes (the new release serves and is kept)."""
        ...


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
    """Hold the environment's deploy lock (session advisory lock in its database) or raise DeployRefused at once."""
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


# ---------------------------------------------------------------------------------------------- notifications
def _announce(notify: Notify | None, event: ReleaseEvent, log: Log) -> None:
    """Hand `event` to `notify`; whatever it raises is one logged line, and the release goes on."""
    if notify is None:
        return
    try:
        notify(event)
    except Exception as exc:  # noqa: BLE001 - a notification never fails or hides the release
        log(f"warning: release notice '{event.kind}' not sent: {redact(f'{type(exc).__name__}: {exc}')}")


def _event(kind: str, result: ReleaseResult, approved_by: str | None = None) -> ReleaseEvent:
    """The event `kind` of the attempt `result` (its ledger row's facts and the verifier's numbers)."""
    return ReleaseEvent(
        kind=kind, action=result.kind, environment=result.environment, version=result.version,
        backend_digest=result.backend_digest, frontend_digest=result.frontend_digest, release_id=result.release_id,
        approved_by=approved_by, previous_version=result.previous_version,
        previous_release_id=result.previous_release_id, verification=dict(result.verification), reason=result.reason,
    )  # fmt: skip


def refused_event(
    action: str, environment: str, reason: str, release: Release | LedgerEntry | None = None,
    approved_by: str | None = None,
) -> ReleaseEvent:  # fmt: skip
    """A `refused` event: nothing changed, no ledger row; the release when it is known."""
    return ReleaseEvent(
        kind="refused", action=action, environment=environment, version=release.version if release else "",
        backend_digest=release.backend_digest if release else "",
        frontend_digest=release.frontend_digest if release else "", approved_by=approved_by, reason=reason,
    )  # fmt: skip


@contextmanager
def announced_refusal(notify: Notify | None, event: Callable[[str], ReleaseEvent], log: Log) -> Iterator[None]:
    """A DeployRefused raised in the block is announced (`event(reason)`, a `refused` event) and raised on.

    Only around what comes before the attempt's ledger row: a refusal means nothing changed.
    """
    try:
        yield
    except DeployRefused as exc:
        _announce(notify, event(str(exc)), log)
        raise


# ---------------------------------------------------------------------------------------------- the flow
def _seconds(since: float) -> float:
    return round(time.monotonic() - since, 3)


def _record(
    strategy: Strategy,
    environment: str,
    release: Release | LedgerEntry,
    place: Placement,
    previous: LedgerEntry | None,
    *,
    kind: str,
    approved_by: str | None = None,
) -> ReleaseResult:
    """A ledger row in `deploying` for putting `release` at `place` (after `previous`), and its ReleaseResult."""
    previous_id = previous.release_id if previous else None
    release_id = strategy.ledger.start(
        environment, release.version, release.backend_digest, release.frontend_digest, place.ledger_slot,
        approved_by=approved_by, previous_release_id=previous_id, kind=kind,
    )  # fmt: skip
    place.release_id = release_id
    return ReleaseResult(
        environment=environment, release_id=release_id, kind=kind, version=release.version, placement=place,
        previous_release_id=previous_id, backend_digest=release.backend_digest,
        frontend_digest=release.frontend_digest, previous_version=previous.version if previous else None,
    )  # fmt: skip


def _verdict(verify: Verifier, url: str, result: ReleaseResult) -> tuple[bool, str]:
    try:
        verdict = verify(url)
        result.verification = dict(verdict.numbers())
        return bool(verdict.passed), str(verdict.reason)
    except Exception as exc:  # noqa: BLE001 - a crashing verifier is a failed verification
        return False, f"the verifier raised {type(exc).__name__}: {exc}"


def deploy(
    environment: str,
    release: Release,
    strategy: Strategy,
    *,
    verify: Verifier,
    approved_by: str | None = None,
    notify: Notify | None = None,
    preflight: Callable[[], None] | None = None,
) -> ReleaseResult:
    """Put `release` on `environment`; the verified ReleaseResult, or DeployRefused / DeployFailed.

    guards -> lock -> ledger row -> migrate (from the release's image, expand-only) -> roll out ->
    verify through the environment's URL (failed: back to what served, `rolled_back`) -> retire what
    served before, previous release `replaced`. DeployRefused: nothing changed, no ledger row.
    DeployFailed: the ledger row ends `failed` or `rolled_back` with the reason.
    `notify` hears `refused`, or `started` and then one of `verified` (staging) / `promoted`
    (production), `rolled_back`, `failed`. `preflight` runs right after the guards, before the lock (the
    target's read of the secrets the release is given); its DeployRefused refuses like a guard's.
    """
    log = strategy.log
    with ExitStack() as held:
        with announced_refusal(
            notify, lambda why: refused_event("deploy", environment, why, release, approved_by), log
        ):
            check_guards(environment, release, strategy.ledger, approved_by)
            if preflight is not None:
                preflight()
            held.enter_context(strategy.lock(environment))
            began = time.monotonic()
            place = strategy.place(environment)
        previous = strategy.ledger.serving(environment)
        result = _record(strategy, environment, release, place, previous, kind="deploy", approved_by=approved_by)
        steps = result.steps
        _announce(notify, _event("started", result, approved_by), log)

        def fail(status: str, reason: str) -> DeployFailed:
            result.status, result.reason = status, reason
            result.total_seconds = _seconds(began)
            strategy.ledger.finish(result.release_id, status, reason=reason, steps=steps, measures=result.verification)
            strategy.log(f"{environment}: {release.version} {status}: {reason}")
            _announce(notify, _event("rolled_back" if status == "rolled_back" else "failed", result, approved_by), log)
            return DeployFailed(
                f"{environment} deploy of {release.version} {status.replace('_', ' ')}: {reason}", result
            )

        images = strategy.images(release.backend_digest, release.frontend_digest)
        started = time.monotonic()
        try:
            result.schema = strategy.migrate(environment, release, images, place)
        except StepFailed as exc:
            raise fail(exc.status, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - any failure ends the attempt with its reason
            raise fail("failed", f"migration failed: {exc}") from None
        finally:
            steps["migrate"] = _seconds(started)

        try:
            url = strategy.roll_out(environment, images, place, steps)
        except StepFailed as exc:
            raise fail(exc.status, str(exc)) from None
        except Exception as exc:  # noqa: BLE001
            raise fail("failed", f"roll-out failed: {type(exc).__name__}: {exc}") from None

        strategy.log(f"{environment}: verifying {release.version} through {url}")
        started = time.monotonic()
        passed, reason = _verdict(verify, url, result)
        steps["verify"] = _seconds(started)
        if not passed:
            failed_at = time.monotonic()
            note = strategy.revert(place, steps)
            result.rollback_seconds = _seconds(failed_at)
            raise fail("rolled_back", f"verification failed: {reason}{note}")

        strategy.retire(place, steps)
        if previous is not None:
            strategy.ledger.mark(previous.release_id, "replaced")
        result.status, result.reason = "verified", reason or f"verified through {url}"
        result.total_seconds = _seconds(began)
        strategy.ledger.finish(
            result.release_id, "verified", reason=result.reason, steps=steps, measures=result.verification
        )
        strategy.log(f"{environment}: {release.version} serves from {place.target} ({result.total_seconds}s)")
        _announce(notify, _event("promoted" if environment == PRODUCTION else "verified", result, approved_by), log)
        return result


def rollback(
    environment: str, strategy: Strategy, *, reason: str = "rollback requested", notify: Notify | None = None
) -> ReleaseResult:
    """Put `environment` back on its previous verified release; the release that served is marked `rolled_back`.

    DeployRefused (nothing changed) when there is none, or the strategy says the environment cannot go
    back to it (a contracting migration since, no task definition that runs it). The rollback is a
    new ledger row: `verified` once the previous release serves, `failed` (DeployFailed) if not.
    `notify` hears one of `refused`, `rolled_back` (the new row, back on the previous release), `failed`.
    """
    log = strategy.log
    target: LedgerEntry | None = None
    with ExitStack() as held:
        with announced_refusal(notify, lambda why: refused_event("rollback", environment, why, target), log):
            held.enter_context(strategy.lock(environment))
            began = time.monotonic()
            place = strategy.place(environment)
            current = strategy.ledger.serving(environment)
            target = strategy.ledger.previous_verified(environment)
            if target is None:
                raise DeployRefused(f"{environment} has no previous verified release to roll back to")
            images = strategy.images(target.backend_digest, target.frontend_digest)
            strategy.check_rollback(environment, target, images, place)
        result = _record(strategy, environment, target, place, current, kind="rollback")
        strategy.log(f"{environment}: rolling back to {target.version} ({place.target})")
        try:
            result.rollback_seconds = strategy.restore(environment, images, place, result.steps)
        except Exception as exc:  # noqa: BLE001 - the attempt must still end in the ledger
            result.status, result.reason = "failed", str(exc)
            result.total_seconds = _seconds(began)
            strategy.ledger.finish(result.release_id, "failed", reason=result.reason, steps=result.steps)
            _announce(notify, _event("failed", result), log)
            raise DeployFailed(f"{environment} rollback to {target.version} failed: {result.reason}", result) from None
        strategy.retire(place, result.steps)
        if current is not None:
            strategy.ledger.mark(current.release_id, "rolled_back", reason=reason)
        result.status = "verified"
        result.reason = f"{reason}: back on {target.version} ({target.release_id}), {place.target}"
        result.total_seconds = _seconds(began)
        strategy.ledger.finish(result.release_id, "verified", reason=result.reason, steps=result.steps)
        _announce(notify, _event("rolled_back", result), log)
        return result
