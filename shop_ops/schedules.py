"""The schedules of the code location: nightly backups, DR drills, k6 runs, cost reports, budgets, SLOs, slow queries.

Jobs are named, not imported: schedules, sensors and jobs are sibling rooms (`make lint`).
`definitions.py` builds them with the default status of its profile (running locally).
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from shop_ops.backup.partitions import newest_complete_day


def build_schedules(default_status: dg.DefaultScheduleStatus) -> list[dg.ScheduleDefinition]:
    def utc_schedule(name: str, cron: str, description: str, **target: object) -> dg.ScheduleDefinition:
        """A schedule of `target` (job_name= or target=) on `cron` in UTC, with the profile's default status."""
        return dg.ScheduleDefinition(
            name=name, cron_schedule=cron, execution_timezone="UTC", default_status=default_status,
            description=description, **target,
        )  # fmt: skip

    @dg.schedule(
        name="nightly_backup_schedule",
        job_name="nightly_backup",
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        default_status=default_status,
        description="02:00 UTC: back up and restore-test the newest complete day (on day D, partition D-1).",
    )
    def nightly_backup_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = newest_complete_day(context.scheduled_execution_time)
        return dg.RunRequest(run_key=f"nightly-backup-{day}", partition_key=day.isoformat())

    # Sundays 04:00 UTC, after that night's backup and restore test.
    weekly_dr_drill_schedule = utc_schedule(
        "weekly_dr_drill_schedule",
        "0 4 * * 0",
        job_name="dr_drill",
        description="Sundays 04:00 UTC: point-in-time recovery drill of each environment (RTO, RPO).",
    )

    @dg.schedule(
        name="nightly_perf_schedule",
        job_name="perf_regression",
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        default_status=default_status,
        description="03:00 UTC, after the backups: the night's k6 run per environment, checked against its baseline.",
    )
    def nightly_perf_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC).date().isoformat()
        return dg.RunRequest(run_key=f"nightly-perf-{day}", partition_key=day)

    @dg.schedule(
        name="monthly_cost_schedule",
        job_name="cost_report",
        cron_schedule="0 6 1 * *",
        execution_timezone="UTC",
        default_status=default_status,
        description="The 1st, 06:00 UTC: the cost report of the month that just ended.",
    )
    def monthly_cost_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        month = previous_month(_day(context))
        return dg.RunRequest(run_key=f"monthly-cost-{month}", partition_key=month.isoformat())

    @dg.schedule(
        name="daily_budget_schedule",
        job_name="cost_report",
        cron_schedule="0 7 * * *",
        execution_timezone="UTC",
        default_status=default_status,
        description="07:00 UTC: the month so far against the budgets, so an overrun is seen mid-month.",
    )
    def daily_budget_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = _day(context)
        return dg.RunRequest(run_key=f"daily-budget-{day}", partition_key=day.replace(day=1).isoformat())

    # 06:30 UTC: yesterday's day is complete; the report covers the last `observability.slo_days` days.
    daily_slo_schedule = utc_schedule(
        "daily_slo_schedule",
        "30 6 * * *",
        target=dg.AssetSelection.assets("slo_report"),
        description="06:30 UTC: the SLO report (availability, p95, error budgets per environment and day).",
    )

    # 06:45 UTC: each environment's top statements by total time (pg_stat_statements), one picture a day.
    daily_slow_queries_schedule = utc_schedule(
        "daily_slow_queries_schedule",
        "45 6 * * *",
        target=dg.AssetSelection.groups("database") & dg.AssetSelection.key_substring("slow_queries"),
        description="06:45 UTC: each environment's top statements by total execution time (slow_queries).",
    )

    # 05:30 UTC, before the working day: certificates renewed (and scanned) with weeks to spare.
    daily_certificate_schedule = utc_schedule(
        "daily_certificate_schedule",
        "30 5 * * *",
        job_name="renew_certificates",
        description="05:30 UTC: renew certificates with fewer than tls.renew_before_days left, reload, scan with sslyze.",
    )

    # 05:45 UTC: checkov, hadolint and the dependency audits, one picture a day.
    daily_security_scan_schedule = utc_schedule(
        "daily_security_scan_schedule",
        "45 5 * * *",
        job_name="security_scans",
        description="05:45 UTC: checkov (Terraform), hadolint (Dockerfiles), pip-audit and npm audit (dependencies).",
    )

    # 06:00 UTC: the audit trail, after the night's releases, backups and scans.
    daily_audit_schedule = utc_schedule(
        "daily_audit_schedule",
        "0 6 * * *",
        job_name="audit_trail",
        description="06:00 UTC: the audit trail (runs, launchers, approvals, secrets read by name); older rows pruned.",
    )

    # Sundays 01:30 UTC: registry housekeeping, before the nightly backup and away from the weekly drill. The
    # registry is read-only (pushes refused) for the seconds its garbage collection takes.
    weekly_registry_retention_schedule = utc_schedule(
        "weekly_registry_retention_schedule",
        "30 1 * * 0",
        job_name="registry_retention",
        description="Sundays 01:30 UTC: keep what serves, recent releases and the last builds; delete and collect the rest.",
    )

    return [
        weekly_registry_retention_schedule,
        nightly_backup_schedule,
        weekly_dr_drill_schedule,
        nightly_perf_schedule,
        monthly_cost_schedule,
        daily_budget_schedule,
        daily_slo_schedule,
        daily_slow_queries_schedule,
        daily_certificate_schedule,
        daily_security_scan_schedule,
        daily_audit_schedule,
    ]


def _day(context: dg.ScheduleEvaluationContext) -> date:
    return (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC).date()


def previous_month(day: date) -> date:
    """The first day of the month before `day`'s."""
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)
