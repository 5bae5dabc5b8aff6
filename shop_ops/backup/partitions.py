"""Backup partitions are dates: partition D holds the backup taken on day D+1 (Dagster's convention for daily jobs).

A backup always holds the database as it is now. Launching an older partition (by hand or as a
backfill) would store today's data under an old date and make the catalog lie about what each
day's backup holds, so it is refused with the reason.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


class StalePartition(ValueError):
    """A backup was launched for a date whose data is gone; the message says which partition to launch."""


def newest_complete_day(now: datetime) -> date:
    """The day before `now` (UTC): the newest day that is over, so the newest backup partition."""
    return now.astimezone(UTC).date() - timedelta(days=1)


def check_backup_partition(partition_key: str, now: datetime) -> date:
    """The partition's date, if a backup taken `now` may be stored under it; StalePartition otherwise."""
    try:
        day = date.fromisoformat(partition_key)
    except ValueError:
        raise StalePartition(f"backup partition {partition_key!r} is not a date (YYYY-MM-DD)") from None
    newest = newest_complete_day(now)
    if day < newest:
        raise StalePartition(
            f"partition {day} refused: a backup taken now holds the data of {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC, "
            f"not of {day}; storing it under {day} would misdate it. Launch the newest partition, {newest}, "
            "or restore-test an existing backup of that day instead (restore_test alone)"
        )
    if day > newest:
        raise StalePartition(f"partition {day} refused: that day is not over yet (the newest is {newest})")
    return day
