"""Backup rules without services: which partition a backup may carry, when the freshness sensor alerts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shop_ops.backup.alerts import REMIND_EVERY_SECONDS, CheckState, evaluate
from shop_ops.backup.partitions import StalePartition, check_backup_partition, newest_complete_day


def test_a_backup_is_dated_by_the_newest_complete_day() -> None:
    now = datetime(2026, 11, 30, 2, 0, 5, tzinfo=UTC)
    assert newest_complete_day(now) == date(2026, 11, 29)
    assert check_backup_partition("2026-11-29", now) == date(2026, 11, 29)
    with pytest.raises(StalePartition, match=r"partition 2026-11-20 refused.*Launch the newest partition, 2026-11-29"):
        check_backup_partition("2026-11-20", now)
    with pytest.raises(StalePartition, match="not over yet"):
        check_backup_partition("2026-11-30", now)
    with pytest.raises(StalePartition, match="not a date"):
        check_backup_partition("staging", now)
    # Late in the day the same partition is still the newest; a minute after midnight it is not.
    assert check_backup_partition("2026-11-29", now + timedelta(hours=21)) == date(2026, 11, 29)
    with pytest.raises(StalePartition):
        check_backup_partition("2026-11-29", datetime(2026, 12, 1, 0, 1, tzinfo=UTC))


def _state(name: str, passed: bool) -> CheckState:
    return CheckState(name, passed, "why" if not passed else "fine", 0.0)


def test_freshness_alerts_once_then_daily_then_when_ok_again() -> None:
    t0 = 1_000_000.0
    alert, state = evaluate([_state("staging/database_backup:fresh", True)], {}, t0)
    assert alert is None  # nothing was failing: nothing to say

    alert, state = evaluate([_state("staging/database_backup:fresh", False)], state, t0 + 3600, "http://ui")
    assert alert is not None and "1 check(s) failing" in alert.subject
    assert "FAILING staging/database_backup:fresh: why" in alert.text and "http://ui/asset-groups/backups" in alert.text

    alert, state = evaluate([_state("staging/database_backup:fresh", False)], state, t0 + 7200)
    assert alert is None  # still failing, already said an hour ago

    alert, state = evaluate([_state("staging/database_backup:fresh", False)], state, t0 + 3600 + REMIND_EVERY_SECONDS)
    assert alert is not None  # a daily reminder while it stays failed

    alert, state = evaluate([_state("staging/database_backup:fresh", True)], state, t0 + 2 * REMIND_EVERY_SECONDS)
    assert alert is not None and "ok again" in alert.subject and "ok again staging/database_backup:fresh" in alert.text
