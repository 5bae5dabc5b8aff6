"""The jobs people launch from the UI and sensors request: builds, releases, rollback, health checks, backups, costs,
certificates, scans, the audit trail and the database password's rotation."""

import dagster as dg

from shop_ops.assets.backups import GROUP as BACKUPS
from shop_ops.assets.costs import GROUP as COSTS
from shop_ops.assets.deployments import rollback_environment, rollback_run_config
from shop_ops.assets.docs import GROUP as DOCS
from shop_ops.assets.images import pushed_build_config
from shop_ops.assets.rotation import rotate_database_login, rotation_run_config
from shop_ops.settings import ENVIRONMENTS

build_images = dg.define_asset_job(
    "build_images",
    selection=dg.AssetSelection.groups("images", DOCS),
    description=(
        "Build and push both images, document the backend's API (api_docs); release them (<version> tag) when "
        "their blocking checks pass."
    ),
)

check_pushed_build = dg.define_asset_job(
    "check_pushed_build",
    selection=dg.AssetSelection.groups("images", DOCS),
    # Launch with run config {"pushed_tag": "<version>-<sha>"} and the run tag images/pushed_tag (pushed_build_launch).
    config=pushed_build_config,
    description=(
        "The images' blocking checks and api_docs on a build CI already pushed (run config pushed_tag: "
        "<version>-<sha>); release tag when they pass, none when one fails."
    ),
)

release_staging = dg.define_asset_job(
    "release_staging",
    selection=dg.AssetSelection.assets(["staging", "deployment"], ["staging", "load_test_baseline"]),
    tags={"environment": "staging"},
    description="Deploy a release (version + image digests) to staging: migrate, roll out, verify; then its k6 baseline.",
)

promote_production = dg.define_asset_job(
    "promote_production",
    selection=dg.AssetSelection.assets(["production", "deployment"], ["production", "load_test_baseline"]),
    tags={"environment": "production"},
    description=(
        "The same release to production; needs approved_by and digests verified on staging. Then its k6 baseline."
    ),
)


@dg.job(
    name="rollback",
    config=rollback_run_config,
    description="Put an environment (the partition) back on its previous verified release.",
)
def rollback() -> None:
    rollback_environment()


check_environment_health = dg.define_asset_job(
    "check_environment_health",
    selection=dg.AssetSelection.assets("environment_health"),
    description="Probe every environment's readiness endpoint and record up/down.",
)

DR_DRILLS = dg.AssetSelection.groups(BACKUPS) & dg.AssetSelection.key_substring("dr_drill")

nightly_backup = dg.define_asset_job(
    "nightly_backup",
    selection=dg.AssetSelection.groups(BACKUPS) - DR_DRILLS,
    description=(
        "Back up every environment's database (pgBackRest + encrypted pg_dump with fingerprints) and the "
        "pipeline's own state for the day (the partition: yesterday), then restore-test each backup."
    ),
)

dr_drill = dg.define_asset_job(
    "dr_drill",
    selection=DR_DRILLS,
    description="Point-in-time recovery of each environment into a scratch cluster, proven and timed (RTO, RPO).",
)

perf_regression = dg.define_asset_job(
    "perf_regression",
    selection=dg.AssetSelection.assets(*([environment, "nightly_load_test"] for environment in ENVIRONMENTS)),
    # Daily partitions (PERF_PARTITIONS), inferred from the assets. One environment after the other:
    # two load tests at once would measure each other.
    executor_def=dg.in_process_executor,
    description=(
        "k6's realistic mix against each environment (today's partition), compared per endpoint with the "
        "environment's release baseline; a regression fails the blocking check and alerts."
    ),
)

cost_report = dg.define_asset_job(
    "cost_report",
    selection=dg.AssetSelection.groups(COSTS),
    # Monthly partitions (COST_PARTITIONS): the month so far (daily_budget_schedule) or the month before
    # (monthly_cost_schedule); the estimate has none and is priced again each run.
    description=(
        "Price infra/terraform/, read the month's actual spend, and report estimate against actual, the forecast "
        "against the budgets (blocking check within_budget, notifier), right-sizing and USD per 1,000 orders."
    ),
)

renew_certificates = dg.define_asset_job(
    "renew_certificates",
    selection=dg.AssetSelection.assets(
        *([environment, asset] for environment in ENVIRONMENTS for asset in ("certificates", "tls_scan"))
    ),
    description=(
        "Each environment's certificate renewed when fewer than tls.renew_before_days are left (ACME: Pebble locally; "
        "ACM's on aws is read), the router reloaded gracefully, then sslyze against the HTTPS endpoint."
    ),
)

security_scans = dg.define_asset_job(
    "security_scans",
    selection=dg.AssetSelection.assets("terraform_scan", "dockerfile_scan", "dependency_audit"),
    description=(
        "checkov over infra/terraform/, hadolint over the Dockerfiles, pip-audit and npm audit over the dependencies "
        '("not checked" with the reason where the advisory data cannot be reached).'
    ),
)

audit_trail = dg.define_asset_job(
    "audit_trail",
    selection=dg.AssetSelection.assets("audit_log"),
    description=(
        "The audit trail: who launched which job with what configuration, the release ledger's approvals and the "
        "secrets read (by name) per run; fails its check when a production deploy has no recorded approver."
    ),
)


@dg.job(
    name="rotate_database_password",
    config=rotation_run_config,
    description=(
        "New password on the idle one of two login roles of an environment's database (the partition), "
        "rolled out slot by slot, the other locked."
    ),
)
def rotate_database_password() -> None:
    rotate_database_login()


JOBS = [
    build_images,
    check_pushed_build,
    release_staging,
    promote_production,
    rollback,
    check_environment_health,
    nightly_backup,
    dr_drill,
    perf_regression,
    cost_report,
    renew_certificates,
    security_scans,
    audit_trail,
    rotate_database_password,
]
