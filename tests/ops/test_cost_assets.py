"""The costs group in Dagster: the real Terraform's estimate, Cost Explorer on moto, orders from the real shop.

Cost Explorer tracks nothing in moto: the test queues the answers moto gives
(`/moto-api/static/ce/cost-and-usage-results`, taken in order by requests with new parameters),
so they are this test's input, not a measurement. The orders are real: placed through the
shop's API and moved into the reported month in its database (synthetic ones too, which must
not count). The load-test usage is a recorded materialization of `staging/load_test_baseline`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest
import requests

from shop_ops.assets.costs import BUDGET_CHECK, UNMEASURED, actual_spend, cost_estimate, cost_report
from shop_ops.cost.actual import CostExplorerSpend, NoSpend, SpendError
from shop_ops.cost.estimate import TerraformCosts
from shop_ops.cost.report import Budgets
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.ledger import LedgerResource
from shop_ops.resources.notifier import NotifierResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.resources.shop_admin import ShopAdminResource
from shop_ops.services.processes import PostgresCluster
from tests.shop.test_admin_api import place_order
from tests.shop.test_checkout_api import db_name
from tests.support import FixedTarget, ShopServer, cost_explorer_page

ROOT = Path(__file__).resolve().parents[2]
OCTOBER = "2026-10-01"
# October's bill as moto will answer it, in two pages: (day, Environment tag, Component tag, USD).
PAGE_1 = [("2026-10-01", "staging", "database", 40.0), ("2026-10-01", "production", "database", 90.0)]
PAGE_2 = [("2026-10-02", "staging", "database", 41.5), ("2026-10-02", "", "", 3.5)]
BILLED = sum(usd for *_, usd in PAGE_1 + PAGE_2)


@pytest.fixture(scope="module")
def october_bill(moto_server) -> None:
    """Queue October's two pages in moto (the first request gets page 1, the one with its token page 2)."""
    results = {"results": [cost_explorer_page(PAGE_1, "page-2"), cost_explorer_page(PAGE_2)]}
    requests.post(
        f"{moto_server.url}/moto-api/static/ce/cost-and-usage-results", json=results, timeout=10
    ).raise_for_status()


@pytest.fixture
def october_orders(server: ShopServer, postgres: PostgresCluster, shop_db: str) -> dict[str, int]:
    """Four real and two synthetic orders placed through the API, moved into October 2026."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        orders = [place_order(client, synthetic=False) for _ in range(4)] + [
            place_order(client, synthetic=True) for _ in range(2)
        ]
    ids = ", ".join(str(order["id"]) for order in orders)
    postgres.psql(f"UPDATE orders SET created_at = '2026-10-20 12:00:00+00' WHERE id IN ({ids})", db_name(shop_db))
    return {"real": 4, "synthetic": 2}


def resources(server: ShopServer, admin_token: str, tmp_path: Path, spend, budgets: dict, webhook_url: str) -> dict:
    token_file = tmp_path / "admin-token"
    token_file.write_text(admin_token)
    target = FixedTarget(
        target_url=server.url, registry=RegistryResource(url="http://127.0.0.1:9"),
        ledger=LedgerResource(state_dir=str(tmp_path)), k6=K6Resource(),
    )  # fmt: skip
    return {
        "terraform_costs": TerraformCosts(
            terraform_dir=str(ROOT / "infra" / "terraform"),
            price_table=str(ROOT / "infra" / "pricing" / "aws-eu-central-1.csv"),
        ),
        "spend": spend,
        "budgets": Budgets(usd=budgets),
        "shop_admin": ShopAdminResource(token_files={"staging": str(token_file), "production": str(token_file)}),
        "release_target": target,
        "notifier": NotifierResource(slack_webhook_url=webhook_url),
    }


def test_cost_explorer_pages_are_read_to_the_end(aws: AwsResource, october_bill) -> None:
    result = CostExplorerSpend(aws=aws).daily_spend(date(2026, 10, 1), date(2026, 11, 1))
    assert result.measured
    frame = result.frame
    assert len(frame) == 4 and frame["usd"].sum() == pytest.approx(BILLED)
    assert set(frame["environment"]) == {"staging", "production", "untagged"}
    assert frame["date"].min() == pd.Timestamp("2026-10-01") and frame["date"].max() == pd.Timestamp("2026-10-02")


def test_cost_explorer_without_credentials_or_endpoint_says_why(monkeypatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    aws = AwsResource(region="eu-central-1", endpoint_url="http://127.0.0.1:9", max_attempts=1)
    result = CostExplorerSpend(aws=aws).daily_spend(date(2026, 10, 1), date(2026, 11, 1))
    assert not result.measured and "no AWS credentials" in result.reason and result.frame.empty
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(SpendError, match="Cost Explorer could not be reached"):
        CostExplorerSpend(aws=aws).daily_spend(date(2026, 10, 1), date(2026, 11, 1))


def test_cost_report_joins_estimate_actual_usage_and_orders_and_checks_the_budget(
    aws: AwsResource, october_bill, october_orders, server: ShopServer, admin_token: str, webhook, tmp_path: Path
) -> None:
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    # What a load test of staging recorded: its containers' peak at 40 req/s.
    usage = {"cpu_p95_percent": 30.0, "memory_max_mb": 300.0, "req_per_s": 40.0}
    instance.report_runless_asset_event(dg.AssetMaterialization(["staging", "load_test_baseline"], metadata=usage))
    assets = [cost_estimate, actual_spend, cost_report]
    roomy = {"staging": 5000.0, "production": 5000.0, "account": 10000.0}

    defs = dg.Definitions(
        assets=assets,
        resources=resources(server, admin_token, tmp_path, CostExplorerSpend(aws=aws), roomy, webhook.url),
    )
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(partition_key=OCTOBER, instance=instance)
    assert result.success
    assert webhook.received == []

    # What analysts do (README): load the tables by name.
    lines = defs.load_asset_value("cost_estimate", instance=instance)
    report = defs.load_asset_value("cost_report", partition_key=OCTOBER, instance=instance)
    estimate_total = lines["monthly_usd"].sum()
    assert estimate_total > 1000  # staging + production + shared, from the real HCL
    variance = report["variance"].set_index(["environment", "component"])
    assert variance.loc[("staging", "database"), "actual_to_date_usd"] == pytest.approx(81.5)
    assert variance.loc[("untagged", "untagged"), "actual_to_date_usd"] == pytest.approx(3.5)
    assert variance["estimate_to_date_usd"].sum() == pytest.approx(estimate_total)  # October is over: all of it
    orders = report["orders"].set_index("environment")
    assert orders.loc["production", "orders"] == october_orders["real"]
    assert orders.loc["production", "synthetic_orders"] == october_orders["synthetic"]
    sizing = report["rightsizing"].set_index("environment")
    assert sizing.loc["staging", "cpu_utilization"] == pytest.approx(30 / 50)  # 0.5 vCPU task (HCL)
    assert sizing.loc["staging", "suggestion"].startswith("right-sized (at 40 req/s, staging/load_test_baseline")
    assert sizing.loc["production", "suggestion"].startswith("no container usage measured")

    metadata = result.asset_materializations_for_node("report_costs")[0].metadata
    assert metadata["cost_basis"].value == "actual spend"
    assert metadata["usd_per_1000_orders"].value == pytest.approx(1000 * BILLED / october_orders["real"])
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == BUDGET_CHECK and check.passed

    # A staging budget below October's forecast: the blocking check fails the run and the notifier says
    # by how much and where.
    tight = {**roomy, "staging": 50.0}
    defs = dg.Definitions(
        assets=assets,
        resources=resources(server, admin_token, tmp_path, CostExplorerSpend(aws=aws), tight, webhook.url),
    )
    failed = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key=OCTOBER, instance=instance, raise_on_error=False
    )
    assert not failed.success
    (check,) = failed.get_asset_check_evaluations()
    assert not check.passed
    (message,) = webhook.received
    staging_forecast = 81.5 + 0.0  # October is over: the forecast is what was billed
    assert f"staging: forecast {staging_forecast:,.2f} USD is {staging_forecast - 50:,.2f} USD" in message["text"]
    assert "staging/database" in message["text"] and "/runs/" in message["text"]


def test_without_a_bill_the_report_stands_on_the_estimate(
    server: ShopServer, admin_token: str, webhook, tmp_path: Path
) -> None:
    reason = "the local profile runs nothing on AWS"
    roomy = {"staging": 5000.0, "production": 5000.0, "account": 10000.0}
    defs = dg.Definitions(
        assets=[cost_estimate, actual_spend, cost_report],
        resources=resources(server, admin_token, tmp_path, NoSpend(reason=reason), roomy, webhook.url),
    )
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key="2026-09-01", instance=instance
    )
    assert result.success
    spend = result.output_for_node("actual_spend")
    assert spend.empty and spend.attrs[UNMEASURED] == reason
    metadata = result.asset_materializations_for_node("report_costs")[0].metadata
    assert metadata["cost_basis"].value == f"estimate ({reason})"
    assert metadata["usd_per_1000_orders"].value == "no orders yet"  # September 2026 has none
    assert metadata["cost_to_date_usd"].value == pytest.approx(metadata["estimate_month_usd"].value)
