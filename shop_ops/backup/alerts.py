"""Backup alerts: which checks turned bad (or good again) since the last evaluation, as one message.

No Dagster here: `backup_freshness_sensor` reads the latest result of each backup check (the
freshness checks, the WAL archive's continuity) and passes them in; the state it keeps between
ticks is the `states` mapping (check name -> "passed" | "failed"). A check that stays failed is
announced once when it fails and again once a day while it stays so, not every hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

REMIND_EVERY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class CheckState:
    """The latest result of one check: passed or not, why, and when it was evaluated (epoch seconds)."""

    name: str
    passed: bool
    description: str
    evaluated_at: float


@dataclass(frozen=True)
class BackupAlert:
    subject: str
    text: str


def evaluate(
    results: list[CheckState], previous: Mapping[str, dict], now: float, ui_url: str | None = None
) -> tuple[BackupAlert | None, dict[str, dict]]:
    """The alert to send now (or None) and the new state to keep (check name -> {passed, alerted_at})."""
    state: dict[str, dict] = {}
    failing, recovered = [], []
    for result in sorted(results, key=lambda r: r.name):
        before = previous.get(result.name, {})
        alerted_at = before.get("alerted_at")
        if not result.passed:
            due = before.get("passed", True) or alerted_at is None or now - alerted_at >= REMIND_EVERY_SECONDS
            if due:
                failing.append(result)
                alerted_at = now
        elif before.get("passed") is False:
            recovered.append(result)
            alerted_at = None
        state[result.name] = {"passed": result.passed, "alerted_at": alerted_at}
    if not failing and not recovered:
        return None, state
    lines = [f"FAILING {r.name}: {r.description}" for r in failing]
    lines += [f"ok again {r.name}: {r.description}" for r in recovered]
    if ui_url:
        lines.append(f"{ui_url.rstrip('/')}/asset-groups/backups")
    subject = (
        f"[shop-ops] backups: {len(failing)} check(s) failing" if failing else "[shop-ops] backups: checks ok again"
    )
    return BackupAlert(subject, "\n".join(lines)), state
