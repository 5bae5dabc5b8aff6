"""Rotates an environment's database password: a new password on the idle one of two login roles, the serving release restarted onto it, the other locked.

AWS's "alternating users" scheme (a PostgreSQL role has one password, so two roles take turns):

    lock (the environment's deploy lock: no release runs meanwhile)
    -> the idle login role gets a new random password (LOGIN; PgBouncer's auth file synced)
    -> the serving release restarts onto it, slot by slot (locally: blue/green with the same
       images, probed ready, router switched and confirmed, the old slot drained)
    -> the previous login role is locked (NOLOGIN, no password, its sessions terminated)
    -> the ledger records environment, from-role, to-role, times, the run id; never a value.

If the new password cannot be set or the restart fails, nothing is switched: the new role is
locked again, the old one keeps serving unlocked, and `RotationFailed` names the cause. The target supplies the steps
(`LoginRotationSteps`, shop_ops/services/db_logins.py; blue/green: release/login_rollout.py);
this module is the order and the fault handling, written once. Plain functions; no Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shop_ops.resources.ledger import ReleaseLedger
from shop_ops.services.db_logins import LoginRotationSteps

Log = Callable[[str], None]


class RotationFailed(RuntimeError):
    """The rotation started but the release never served with the new login role; the old one still serves."""


@dataclass
class RotationResult:
    """One rotation: which login role took over, seconds per step, the sessions of the old role ended."""

    environment: str
    from_role: str
    to_role: str
    run_id: str | None
    details: dict[str, str] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    terminated_sessions: int = 0
    total_seconds: float = 0.0

    def metadata(self) -> dict[str, Any]:
        """Flat values for Dagster metadata (numbers as numbers); names of roles only, never a password."""
        return {
            "environment": self.environment,
            "from_role": self.from_role,
            "to_role": self.to_role,
            **self.details,
            **{f"{name}_seconds": seconds for name, seconds in self.steps.items()},
            "terminated_sessions": self.terminated_sessions,
            "total_seconds": self.total_seconds,
        }


def rotate(
    steps: LoginRotationSteps, ledger: ReleaseLedger, *, run_id: str | None = None, log: Log = lambda _line: None
) -> RotationResult:
    """Rotate `steps.environment`'s database login under its deploy lock; the result, or RotationFailed.

    A refusal of the lock (a release runs) propagates unchanged: nothing was touched.
    """
    environment = steps.environment
    with steps.lock():
        began, started_at = time.monotonic(), time.time()
        from_role, to_role = steps.serving_login(), steps.idle_login()
        result = RotationResult(environment, from_role, to_role, run_id)
        log(f"{environment}: rotating the database login from {from_role} to {to_role} (new password for {to_role})")
        try:
            moment = time.monotonic()
            steps.issue(to_role)
            result.steps["issue"] = round(time.monotonic() - moment, 3)
            result.details = steps.restart_on(to_role, result.steps)
        except Exception as exc:  # noqa: BLE001 - any failure: back to the old role, which never stopped serving
            reason = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            note = ""
            try:
                steps.withdraw(to_role)
            except Exception as undo:  # noqa: BLE001 - say so, keep the first cause
                note = f"; locking {to_role} again failed too ({undo}): lock it by hand"
            ledger.record_rotation(
                environment, from_role, to_role, "failed", started_at=started_at, reason=reason + note,
                run_id=run_id, steps=result.steps,
            )  # fmt: skip
            raise RotationFailed(
                f"{environment}: the rotation from {from_role} to {to_role} failed, nothing was switched and "
                f"{from_role} still serves: {reason}{note}"
            ) from None
        moment = time.monotonic()
        result.terminated_sessions = steps.retire_login(from_role)
        result.steps["lock_previous"] = round(time.monotonic() - moment, 3)
        result.total_seconds = round(time.monotonic() - began, 3)
        ledger.record_rotation(
            environment, from_role, to_role, "rotated", started_at=started_at,
            reason=f"{to_role} serves, {from_role} locked", run_id=run_id, steps=result.steps,
        )  # fmt: skip
        log(
            f"{environment}: {to_role} serves, {from_role} locked ({result.terminated_sessions} sessions ended, "
            f"{result.total_seconds}s)"
        )
        return result
