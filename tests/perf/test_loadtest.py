"""One load test's flow without a shop: where it may point, the order of restock, run and purge, and its errors.

The parts are tested for real elsewhere (k6 against the shop in test_profiles.py, the admin API in
test_shop_admin.py, container sampling in test_usage.py, the whole flow through Dagster in
tests/ops/test_localenv.py); here the collaborators record calls so the flow's order and its refusals show.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shop_ops.perf.loadtest import LoadTester, LoadTestError, check_target, durations, run_load_test
from shop_ops.perf.profiles import LoadProfile
from shop_ops.perf.usage import usage_frame
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.k6 import K6Error, K6Resource, K6Summary, parse_samples
from shop_ops.resources.shop_admin import ShopAdminResource

PROFILE = LoadProfile(name="load", rate=10, duration_s=2, storefront=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8081", "http://[::1]:8081/", "https://127.0.0.2"])
def test_loopback_targets_pass(url: str) -> None:
    check_target(url, loopback_only=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://shop.example.com", "not on 127.0.0.1"),
        ("http://10.0.0.5:8081", "not on 127.0.0.1"),
        ("ftp://127.0.0.1", "not an http(s) URL"),
        ("127.0.0.1:8081", "not an http(s) URL"),
    ],
)
def test_other_targets_are_refused_in_the_local_profile(url: str, message: str) -> None:
    with pytest.raises(LoadTestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_target(url, loopback_only=True)


def test_remote_targets_are_allowed_elsewhere() -> None:
    check_target("https://staging.shop.example.com", loopback_only=False)


class Calls(list):
    pass


class FakeAdmin:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def restock(self, min_stock: int) -> int:
        self.calls.append(("restock", min_stock))
        return 3

    def purge_synthetic_orders(self, older_than_seconds: int) -> int:
        self.calls.append(("purge", older_than_seconds))
        return 7


class FakeSampler:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def __enter__(self) -> FakeSampler:
        self.calls.append(("sampling", "start"))
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append(("sampling", "stop"))

    def frame(self) -> pd.DataFrame:
        return usage_frame([])


POINT = (
    '{"metric":"http_req_duration","type":"Point","data":{"time":"2026-11-30T03:00:0NUMBER.000Z","value":VALUE,'
    '"tags":{"name":"search","scenario":"browse","method":"GET","status":"200","expected_response":"true"}}}'
)
SAMPLE_LINES = "\n".join(POINT.replace("NUMBER", str(n)).replace("VALUE", str(n + 1)) for n in range(5))


class FakeK6:
    def __init__(self, calls: Calls, tmp: Path, error: Exception | None = None, exit_code: int = 0) -> None:
        self.calls, self.tmp, self.error, self.exit_code = calls, tmp, error, exit_code

    def run(self, script: Path, env: dict[str, str], timeout_s: float = 120, *, samples: bool = False) -> K6Summary:
        self.calls.append(("k6", env["PROFILE"], env["BASE_URL"]))
        if self.error:
            raise self.error
        path = self.tmp / "samples.jsonl"
        path.write_text(SAMPLE_LINES + "\n")
        return K6Summary(
            p95_ms=5, error_rate=0, requests=5, req_per_s=1, samples=parse_samples(path), exit_code=self.exit_code,
            stderr_tail="setup() threw: no product with stock >= 50" if self.exit_code == 107 else "",
        )  # fmt: skip


def test_stock_is_topped_up_before_and_after_the_run_never_during(tmp_path: Path) -> None:
    calls = Calls()
    run = run_load_test(
        "staging", "http://127.0.0.1:9", PROFILE, k6=FakeK6(calls, tmp_path), admin=FakeAdmin(calls),
        sampler=lambda: FakeSampler(calls), min_stock=500, purge_older_than_s=3600, log=lambda _: None,
    )  # fmt: skip
    assert calls == [
        ("restock", 500), ("sampling", "start"), ("k6", "load", "http://127.0.0.1:9"), ("sampling", "stop"),
        ("restock", 500), ("purge", 3600),
    ]  # fmt: skip
    assert (run.restocked_before, run.restocked_after, run.purged_orders) == (3, 3, 7)
    assert durations(run.requests) == {"search": [1.0, 2.0, 3.0, 4.0, 5.0]}
    metadata = run.metadata()
    assert metadata["requests"] == 5 and metadata["synthetic_orders_purged"] == 7 and metadata["passed"] is True


def test_k6_failing_to_run_is_a_load_test_error_and_nothing_is_purged(tmp_path: Path) -> None:
    calls = Calls()
    with pytest.raises(LoadTestError, match="k6 could not load-test staging: no summary"):
        run_load_test(
            "staging", "http://127.0.0.1:9", PROFILE, k6=FakeK6(calls, tmp_path, K6Error("no summary")),
            admin=FakeAdmin(calls), sampler=lambda: FakeSampler(calls), min_stock=500, purge_older_than_s=0,
            log=lambda _: None,
        )  # fmt: skip
    assert ("purge", 0) not in calls and calls[-1] == ("sampling", "stop")


def test_a_missing_admin_token_file_names_the_variable(tmp_path: Path) -> None:
    tester = LoadTester(
        k6=K6Resource(), containers=ContainersResource(docker_host="unix:///nonexistent"),
        shop_admin=ShopAdminResource(token_files={"staging": str(tmp_path / "missing"), "production": ""}),
    )  # fmt: skip
    with pytest.raises(LoadTestError, match="cannot read staging's admin token file"):
        tester.run("staging", "http://127.0.0.1:9", [], PROFILE, log=lambda _: None)
    with pytest.raises(LoadTestError, match="SHOP_OPS_PRODUCTION_ADMIN_TOKEN_FILE"):
        tester.run("production", "http://127.0.0.1:9", [], PROFILE, log=lambda _: None)
    with pytest.raises(LoadTestError, match=r"not on 127\.0\.0\.1"):
        tester.run("staging", "http://shop.example.com", [], PROFILE, log=lambda _: None)


@pytest.mark.parametrize(("exit_code", "outcome"), [(99, "result"), (107, "error")])
def test_a_crossed_threshold_is_a_result_any_other_exit_an_error(tmp_path: Path, exit_code: int, outcome: str) -> None:
    calls = Calls()

    def run():
        return run_load_test(
            "staging", "http://127.0.0.1:9", PROFILE, k6=FakeK6(calls, tmp_path, exit_code=exit_code),
            admin=FakeAdmin(calls), sampler=lambda: FakeSampler(calls), min_stock=500, purge_older_than_s=0,
            log=lambda _: None,
        )  # fmt: skip

    if outcome == "result":
        assert run().summary.passed is False
    else:
        with pytest.raises(LoadTestError, match=r"exit 107\): setup\(\) threw: no product with stock"):
            run()
