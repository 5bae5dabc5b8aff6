"""The schedules of the code location: nightly backups and weekly DR drills (k6 runs and cost reports bring theirs).

Jobs are named, not imported: schedules, sensors and jobs are sibling rooms (`make lint`).
"""

import dagster as dg

from shop_ops.backup.partitions import newest_complete_day


@dg.schedule(
    name="nightly_backup_schedule",
    job_name="nightly_backup",
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    description="02:00 UTC: back up and restore-test the newest complete day (on day D, partition D-1).",
)
def nightly_backup_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = newest_complete_day(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"nightly-backup-{day}", partition_key=day.isoformat())


# Sundays 04:00 UTC, after that night's backup and restore test.
weekly_dr_drill_schedule = dg.ScheduleDefinition(
    name="weekly_dr_drill_schedule",
    job_name="dr_drill",
    cron_schedule="0 4 * * 0",
    execution_timezone="UTC",
    description="Sundays 04:00 UTC: point-in-time recovery drill of each environment (RTO, RPO).",
)

SCHEDULES: list[dg.ScheduleDefinition] = [nightly_backup_schedule, weekly_dr_drill_schedule]
