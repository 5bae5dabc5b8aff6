"""The code location loads as Dagster sees it: one Definitions, stable names, blocking image checks."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import dagster as dg
import pytest

from shop_ops.settings import ROOT


def test_definitions_names_and_blocking_checks():
    from shop_ops.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "backend_image", "backend_release_tag", "frontend_image", "frontend_release_tag",
        "staging/database_schema", "production/database_schema", "environment_health",
        "staging/deployment", "production/deployment", "deployment_history",
        "staging/database_backup", "production/database_backup", "staging/restore_test", "production/restore_test",
        "pipeline_state_backup", "staging/dr_drill", "production/dr_drill",
        "staging/load_test_baseline", "production/load_test_baseline", "staging/nightly_load_test",
        "production/nightly_load_test", "capacity_report", "cost_estimate", "actual_spend", "cost_report",
        "terraform_scan", "slo_report", "staging/slow_queries", "production/slow_queries",
        "staging/certificates", "production/certificates", "staging/tls_scan", "production/tls_scan",
        "dockerfile_scan", "dependency_audit", "api_docs", "audit_log",
    }  # fmt: skip
    checks = graph.asset_check_keys
    assert {(c.asset_key.to_user_string(), c.name) for c in checks} >= {
        ("backend_image", "size_budget"), ("backend_image", "non_root"),
        ("backend_image", "healthcheck"), ("backend_image", "no_hadolint_errors"),
        ("frontend_image", "size_budget"),
    }  # fmt: skip
    blocking = {(c.asset_key.to_user_string(), c.name) for c in checks if graph.get_check_spec(c).blocking}
    assert {
        (c.asset_key.to_user_string(), c.name) for c in checks if c.asset_key.to_user_string().endswith("_image")
    } <= blocking
    assert {
        ("staging/restore_test", "restored_matches_backup"),
        ("pipeline_state_backup", "restored_state_matches"),
    } <= blocking
    # Backups: Dagster's freshness checks on each backup asset and the WAL archive check; the alerting sensor.
    names = {(c.asset_key.to_user_string(), c.name) for c in checks}
    for key in ("staging/database_backup", "production/restore_test", "pipeline_state_backup"):
        assert (key, "freshness_check") in names, sorted(names)
    assert ("production/database_backup", "wal_archive_continuous") in names
    assert defs.resolve_sensor_def("backup_freshness_sensor").minimum_interval_seconds == 3600
    assert {s.name for s in defs.schedules} >= {
        "nightly_backup_schedule", "weekly_dr_drill_schedule", "nightly_perf_schedule"
    }  # fmt: skip
    assert graph.get(dg.AssetKey(["staging", "database_backup"])).parent_keys == {
        dg.AssetKey(["staging", "deployment"])
    }
    assert graph.get(dg.AssetKey(["staging", "restore_test"])).group_name == "backups"
    assert defs.resolve_job_def("build_images").name == "build_images"
    # API docs: judged between the backend build and its release tag; a blocking breaking-change check.
    assert graph.get(dg.AssetKey("api_docs")).parent_keys == {dg.AssetKey("backend_image")}
    assert graph.get(dg.AssetKey("api_docs")).group_name == "docs"
    assert dg.AssetKey("api_docs") in graph.get(dg.AssetKey("backend_release_tag")).parent_keys
    assert {("api_docs", "no_breaking_changes"), ("api_docs", "valid_openapi")} <= blocking
    for job in ("build_images", "check_pushed_build"):
        assert dg.AssetKey("api_docs") in defs.resolve_job_def(job).asset_layer.executable_asset_keys
    assert {"containers", "registry", "postgres", "ledger", "notifier", "release_target", "backup_target"} <= set(
        defs.resources or {}
    )
    assert type(defs.resources["backup_target"]).__name__ == "LocalBackupTarget"
    assert type(defs.resources["release_target"]).__name__ == "BlueGreenTarget"  # the local profile's strategy
    # The lineage reads images -> migrations -> deployments (dependencies, not loaded values).
    assert graph.get(dg.AssetKey(["staging", "deployment"])).parent_keys == {
        dg.AssetKey("backend_release_tag"), dg.AssetKey("frontend_release_tag"),
        dg.AssetKey(["staging", "database_schema"]),
    }  # fmt: skip
    assert graph.get(dg.AssetKey(["staging", "deployment"])).group_name == "deployments"
    assert defs.resolve_job_def("check_environment_health").name == "check_environment_health"
    sensor = defs.resolve_sensor_def("run_failure_alert_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # local profile: on from the start
    assert graph.get(dg.AssetKey(["staging", "database_schema"])).group_name == "database"
    # Performance: a baseline per release hangs from the deployment; the nightly run is checked against it.
    assert ("staging/nightly_load_test", "no_latency_regression") in blocking
    # Security: certificates renewed daily with a blocking expiry check, sslyze after each renewal, daily scans.
    assert {("staging/certificates", "not_expiring"), ("production/tls_scan", "tls_compliant")} <= blocking
    assert graph.get(dg.AssetKey(["staging", "tls_scan"])).parent_keys == {dg.AssetKey(["staging", "certificates"])}
    assert {graph.get(dg.AssetKey(key)).group_name for key in ("terraform_scan", "dockerfile_scan")} == {"security"}
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["daily_certificate_schedule"].job_name == "renew_certificates"
    assert schedules["daily_security_scan_schedule"].job_name == "security_scans"
    # The audit trail: its own daily job, launchable from the UI, in the security group.
    assert schedules["daily_audit_schedule"].job_name == "audit_trail"
    assert graph.get(dg.AssetKey("audit_log")).group_name == "security"
    assert ("audit_log", "production_deploys_approved") in {(c.asset_key.to_user_string(), c.name) for c in checks}
    assert type(defs.resources["certificate_authority"]).__name__ == "CertificateAuthorityResource"
    assert graph.get(dg.AssetKey(["production", "load_test_baseline"])).parent_keys == {
        dg.AssetKey(["production", "deployment"])
    }
    nightly = graph.get(dg.AssetKey(["staging", "nightly_load_test"]))
    assert (
        nightly.parent_keys == {dg.AssetKey(["staging", "load_test_baseline"])} and nightly.group_name == "performance"
    )
    assert defs.resolve_job_def("release_staging").asset_layer.executable_asset_keys >= {
        dg.AssetKey(["staging", "deployment"]), dg.AssetKey(["staging", "load_test_baseline"])
    }  # fmt: skip
    assert defs.resolve_job_def("perf_regression").partitions_def is not None
    assert type(defs.resources["load_tester"]).__name__ == "LoadTester"
    # Costs: the job materializes the group by month; the budget check blocks; locally no bill is read.
    cost_job = defs.resolve_job_def("cost_report")
    assert cost_job.asset_layer.executable_asset_keys >= {
        dg.AssetKey("cost_estimate"), dg.AssetKey("actual_spend"), dg.AssetKey("cost_report")
    }  # fmt: skip
    assert cost_job.partitions_def is not None and cost_job.partitions_def.get_partition_keys()[0] == "2026-01-01"
    assert ("cost_report", "within_budget") in blocking
    assert {
        g for k in ("cost_estimate", "actual_spend", "cost_report") if (g := graph.get(dg.AssetKey(k)).group_name)
    } == {"costs"}
    assert graph.get(dg.AssetKey("terraform_scan")).group_name == "security"
    assert {s.name for s in defs.schedules} >= {"monthly_cost_schedule", "daily_budget_schedule"}
    # Observability: the SLO report in its group, daily, reading the local environment's Prometheus.
    assert graph.get(dg.AssetKey("slo_report")).group_name == "observability"
    assert ("slo_report", "availability_budget_left") in names and (
        "slo_report",
        "availability_budget_left",
    ) not in blocking
    assert defs.resolve_schedule_def("daily_slo_schedule").cron_schedule == "30 6 * * *"
    # Query insight: each environment's top statements, in the database group, daily.
    slow = {dg.AssetKey([env, "slow_queries"]) for env in ("staging", "production")}
    assert {graph.get(key).group_name for key in slow} == {"database"}
    schedule = defs.resolve_schedule_def("daily_slow_queries_schedule")
    assert schedule.cron_schedule == "45 6 * * *"
    assert defs.resolve_job_def(schedule.job_name).asset_layer.selected_asset_keys == slow
    assert defs.resources["service_levels"].prometheus_url == "http://127.0.0.1:9090"
    assert defs.resolve_sensor_def("pipeline_metrics_sensor").minimum_interval_seconds == 60
    assert defs.resolve_sensor_def("log_alert_sensor").minimum_interval_seconds == 60
    error_log = defs.resources["error_log"]
    assert error_log.store == "postgres" and "passfile=" in error_log.dsn and error_log.retention_days == 14
    assert type(defs.resources["spend"]).__name__ == "NoSpend"
    # Registry housekeeping: an op job run weekly, the settings' numbers as its defaults; the local registry's folder.
    assert defs.resolve_schedule_def("weekly_registry_retention_schedule").job_name == "registry_retention"
    retention = defs.resolve_job_def("registry_retention").run_config["ops"]["apply_retention"]["config"]
    assert (retention["keep_releases"], retention["keep_builds"], retention["prune_local_images"]) == (5, 10, True)
    assert str(defs.resources["registry"].local_folder).endswith("/registry")


def test_workspace_validates_with_the_dagster_cli():
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful for code location shop_ops" in result.stderr + result.stdout


def test_nightly_backup_schedule_takes_the_newest_complete_day():
    from datetime import UTC, datetime

    from shop_ops.definitions import defs

    schedule = defs.resolve_schedule_def("nightly_backup_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING  # local profile: on from the start
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 12, 1, 2, 0, tzinfo=UTC), repository_def=defs.get_repository_def()
    )
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-30" and request.run_key == "nightly-backup-2026-11-30"
    assert defs.resolve_schedule_def("weekly_dr_drill_schedule").cron_schedule == "0 4 * * 0"


def test_nightly_perf_schedule_runs_the_day_it_fires():
    from datetime import UTC, datetime

    from shop_ops.definitions import defs

    schedule = defs.resolve_schedule_def("nightly_perf_schedule")
    assert schedule.job_name == "perf_regression" and schedule.cron_schedule == "0 3 * * *"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 12, 1, 3, 0, tzinfo=UTC), repository_def=defs.get_repository_def()
    )
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-12-01" and request.run_key == "nightly-perf-2026-12-01"


@pytest.mark.parametrize(
    ("name", "fires", "month"),
    [
        ("monthly_cost_schedule", datetime(2027, 1, 1, 6, 0, tzinfo=UTC), "2026-12-01"),  # the month that ended
        ("daily_budget_schedule", datetime(2026, 11, 30, 7, 0, tzinfo=UTC), "2026-11-01"),  # the month so far
        ("daily_budget_schedule", datetime(2026, 12, 1, 7, 0, tzinfo=UTC), "2026-12-01"),
    ],
)
def test_cost_schedules_pick_the_month(name: str, fires: datetime, month: str):
    from shop_ops.definitions import defs

    schedule = defs.resolve_schedule_def(name)
    assert schedule.job_name == "cost_report"
    context = dg.build_schedule_context(scheduled_execution_time=fires, repository_def=defs.get_repository_def())
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == month
