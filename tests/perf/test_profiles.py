"""The load profiles of the realistic mix: LoadProfile alone, mix.js's options as k6 reads them, then each
profile run for a few seconds at low rates against the real test shop (PostgreSQL, Redis, no storefront).
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest

from shop_ops.perf.capacity import plateau_table
from shop_ops.perf.profiles import (
    FLOW_ENDPOINTS,
    FLOW_SHARES,
    MIX_SCRIPT,
    TIMEOUT_SLACK_S,
    LoadProfile,
    ProfileName,
    spike_window,
    stages,
    stress_plateaus,
)
from shop_ops.resources.k6 import K6Summary, default_binary, run_k6
from shop_ops.services.processes import PostgresCluster
from tests.support import ShopServer

# ---- LoadProfile, without services ----------------------------------------------------------------


def test_defaults_env_and_peak_rates():
    load = LoadProfile("load", rate=40, duration_s=60)
    assert load.k6_env("http://127.0.0.1:8000/") == {
        "BASE_URL": "http://127.0.0.1:8000",
        "PROFILE": "load",
        "RATE": "40",
        "DURATION": "60s",
        "MAX_RATE": "400",
        "STEPS": "10",
        "SPIKE_FACTOR": "10",
        "P95_MS": "200",
        "ABORT_DELAY": "10s",
        "MAX_VUS": "600",
        "MIN_STOCK": "50",
        "STOREFRONT": "1",
        "EMAIL": "loadtest@shop-ops.invalid",
    }
    assert load.peak_rate == 40 and load.timeout_s == 60 + TIMEOUT_SLACK_S
    bare = LoadProfile("soak", rate=2.5, duration_s=1.5, storefront=False, p95_ms=0.001, abort_delay_s=0.25)
    env = bare.k6_env("https://shop.example")
    assert (env["PROFILE"], env["RATE"], env["DURATION"], env["STOREFRONT"]) == ("soak", "2.5", "1500ms", "0")
    assert (env["P95_MS"], env["ABORT_DELAY"]) == ("0.001", "250ms")
    assert LoadProfile("stress", rate=50, duration_s=300, max_rate=1500).peak_rate == 1500
    assert LoadProfile("stress", rate=50, duration_s=300).peak_rate == 500  # max_rate: 10 x rate
    assert LoadProfile("spike", rate=10, duration_s=60, spike_factor=5).peak_rate == 50
    assert MIX_SCRIPT.is_file() and MIX_SCRIPT.name == "mix.js"
    assert sum(FLOW_SHARES.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "burst"}, "profile name must be one of load, stress, spike, soak, got 'burst'"),
        ({"rate": 0}, "rate must be a number above 0, got 0"),
        ({"rate": float("nan")}, "rate must be a number above 0"),
        ({"rate": True}, "rate must be a number above 0"),
        ({"duration_s": 0.5}, "duration_s must be at least 1 (seconds), got 0.5"),
        ({"p95_ms": -1}, "p95_ms must be a number above 0"),
        ({"steps": 1}, "steps must be a whole number of at least 2, got 1"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"max_vus": 3}, "max_vus must be a whole number of at least 6"),
        ({"min_stock": 0}, "min_stock must be a whole number of at least 1"),
        ({"abort_delay_s": -1}, "abort_delay_s must be 0 or more"),
        ({"max_rate": -5}, "max_rate must be a number above 0"),
        ({"email": "nobody"}, "email must be an address like loadtest@shop-ops.invalid, got 'nobody'"),
        ({"name": "stress", "max_rate": 10}, r"a stress profile's max_rate \(10\) must be above its rate \(10\)"),
        ({"name": "stress", "duration_s": 5}, "a stress stage must last at least 1 s: duration_s 5 over 10 steps"),
        ({"name": "spike", "duration_s": 2.9}, "a spike profile needs duration_s of at least 3"),
        ({"name": "spike", "spike_factor": 1}, "a spike profile's spike_factor must be above 1, got 1"),
    ],
)
def test_invalid_profiles_are_refused_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message if message.startswith("a ") else re.escape(message)):
        LoadProfile(**{"name": "load", "rate": 10, "duration_s": 60, **kwargs})


def test_env_refuses_a_base_url_without_scheme():
    with pytest.raises(
        ValueError, match=re.escape("base_url must be an http:// or https:// URL, got '127.0.0.1:8000'")
    ):
        LoadProfile("load", rate=10, duration_s=60).k6_env("127.0.0.1:8000")


def test_stress_plateaus_and_spike_window():
    # capacity_report's defaults: 50 -> 1500 in 10 stages of 30 s, each reached by a 1 s ramp.
    plateaus = stress_plateaus(LoadProfile("stress", rate=50, duration_s=300, max_rate=1500, steps=10))
    assert len(plateaus) == 10
    assert plateaus[0] == (0.0, 30.0, 50.0)
    assert plateaus[1] == pytest.approx((31.0, 60.0, 50 + 1450 / 9))
    assert plateaus[-1] == (271.0, 300.0, 1500.0)
    # Short stages ramp for a tenth of theirs; a remainder of milliseconds is left out.
    assert stress_plateaus(LoadProfile("stress", rate=10, duration_s=4, max_rate=40, steps=2)) == [
        (0.0, 2.0, 10.0),
        (2.2, 4.0, 40.0),
    ]
    assert stress_plateaus(LoadProfile("stress", rate=1, duration_s=10.001, steps=3))[-1] == (6.999, 9.999, 10.0)
    spike = LoadProfile("spike", rate=10, duration_s=4, spike_factor=5)
    assert spike_window(spike) == (1.466, 2.666)
    assert [(s.start_s, s.end_s, s.to_rate) for s in stages(spike)] == [
        (0.0, 1.333, 10),
        (1.333, 1.466, 50),
        (1.466, 2.666, 50),
        (2.666, 2.799, 10),
        (2.799, 4.0, 10),
    ]
    assert stages(LoadProfile("soak", rate=3, duration_s=3600)) == [(0.0, 3600.0, 3, 3)]
    with pytest.raises(ValueError, match="plateaus are those of a stress profile, not of 'spike'"):
        stress_plateaus(spike)
    with pytest.raises(ValueError, match="not of 'load'"):
        spike_window(LoadProfile("load", rate=10, duration_s=60))


# ---- mix.js's options as k6 reads them (`k6 inspect`: runs no iteration, calls no shop) ---------------

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def _seconds(go_duration: str) -> float:
    return sum(float(n) * _UNIT_S[unit] for n, unit in _GO_DURATION.findall(go_duration))


def _inspect(profile: LoadProfile) -> dict:
    env = [arg for key, value in profile.k6_env("http://127.0.0.1:9").items() for arg in ("-e", f"{key}={value}")]
    result = subprocess.run(
        [default_binary(), "inspect", *env, str(MIX_SCRIPT)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "profile",
    [
        LoadProfile("stress", rate=50, duration_s=300, max_rate=1500, steps=10),
        LoadProfile("stress", rate=10, duration_s=4, max_rate=40, steps=2),
        LoadProfile("spike", rate=10, duration_s=4, spike_factor=5),
        LoadProfile("spike", rate=20, duration_s=61.5),
    ],
    ids=["stress-300s", "stress-4s", "spike-4s", "spike-61.5s"],
)
def test_mix_js_lays_out_the_stages_python_computes(profile):
    options = _inspect(profile)
    assert options["tags"] == {"profile": profile.name}
    assert set(options["scenarios"]) == set(FLOW_SHARES)
    expected = stages(profile)
    for name, share in FLOW_SHARES.items():
        scenario = options["scenarios"][name]
        assert scenario["executor"] == "ramping-arrival-rate" and scenario["exec"] == name
        per_s = {"1s": 1, "1m0s": 60}[scenario["timeUnit"]]
        assert scenario["startRate"] == max(1, round(profile.rate * share * per_s))
        ends = [sum(_seconds(s["duration"]) for s in scenario["stages"][: i + 1]) for i in range(len(expected))]
        assert ends == pytest.approx([s.end_s for s in expected])
        assert [s["target"] for s in scenario["stages"]] == [max(1, round(s.to_rate * share * per_s)) for s in expected]
        assert 2 <= scenario["preAllocatedVUs"] <= scenario["maxVUs"]
    assert sum(s["maxVUs"] for s in options["scenarios"].values()) <= profile.max_vus
    thresholds = options["thresholds"]
    if profile.name == "stress":
        assert thresholds["http_req_duration"] == [
            {"threshold": "p(95)<200", "abortOnFail": True, "delayAbortEval": "10s"}
        ]
    else:
        assert thresholds == {
            "http_req_duration": ["p(95)<200"],
            "http_req_failed": ["rate<0.01"],
            "checks": ["rate>0.99"],
        }


def test_mix_js_load_profile_rates_per_second_or_per_minute():
    whole = _inspect(LoadProfile("load", rate=20, duration_s=4))["scenarios"]
    assert {n: (s["executor"], s["rate"], s["timeUnit"], s["duration"]) for n, s in whole.items()} == {
        "browse": ("constant-arrival-rate", 14, "1s", "4s"),
        "cart": ("constant-arrival-rate", 4, "1s", "4s"),
        "checkout": ("constant-arrival-rate", 2, "1s", "4s"),
    }
    # 5 iterations/s: browse 3.5/s and checkout 0.5/s are k6's whole iterations per minute.
    fractional = _inspect(LoadProfile("soak", rate=5, duration_s=3600))["scenarios"]
    assert {n: (s["rate"], s["timeUnit"]) for n, s in fractional.items()} == {
        "browse": (210, "1m0s"),
        "cart": (1, "1s"),
        "checkout": (30, "1m0s"),
    }


# ---- each profile for a few seconds against the real shop ------------------------------------------


def _stock(postgres: PostgresCluster, db: str) -> dict[int, int]:
    rows = postgres.psql("SELECT id, stock FROM products ORDER BY id", db).splitlines()
    return {int(i): int(s) for i, s in (row.split("|") for row in rows)}


@pytest.fixture(scope="module")
def shop(server: ShopServer, postgres: PostgresCluster, shop_db: str, admin_token: str) -> Iterator[ShopServer]:
    """The test shop; the stock the runs' checkouts take is put back afterwards (admin API)."""
    db = shop_db.rsplit("/", 1)[1]
    before = _stock(postgres, db)
    yield server
    after = _stock(postgres, db)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10) as c:
        for product_id, stock in before.items():
            if after.get(product_id) != stock:
                c.patch(f"/api/admin/products/{product_id}", json={"stock": stock}).raise_for_status()


def _profile(name: ProfileName, **kwargs: float) -> LoadProfile:
    """A short run against the bare backend, its orders under an address of their own; p95 generous (shared cores)."""
    email = f"loadtest-{name}-{uuid.uuid4().hex[:8]}@shop-ops.invalid"
    return LoadProfile(name, storefront=False, p95_ms=kwargs.pop("p95_ms", 1000), email=email, **kwargs)


def _run(shop: ShopServer, profile: LoadProfile) -> K6Summary:
    return run_k6(MIX_SCRIPT, profile.k6_env(shop.url), timeout_s=profile.timeout_s, samples=True)


def _offsets(requests: pd.DataFrame) -> pd.DataFrame:
    """The scenarios' requests with `offset_s`, seconds after the first of them (where the stages start)."""
    frame = requests[requests["scenario"].isin(list(FLOW_SHARES))].copy()
    frame["offset_s"] = (frame["time"] - frame["time"].min()).dt.total_seconds()
    return frame


def _assert_whole_mix(summary: K6Summary, profile: LoadProfile, postgres: PostgresCluster, db: str) -> pd.DataFrame:
    """The run held its thresholds, made every flow's every request, and placed synthetic orders; its requests."""
    assert summary.passed, (summary.thresholds, summary.stderr_tail)
    samples = summary.samples
    assert samples is not None and not samples.sampled
    endpoints = samples.endpoints
    assert samples.total_requests == int(endpoints["requests"].sum()) == summary.requests  # k6's http_reqs
    seen = set(zip(endpoints["scenario"], endpoints["endpoint"], strict=True))
    expected = {(flow, name) for flow, names in FLOW_ENDPOINTS.items() for name in names if name != "homepage"}
    assert seen == expected | {("setup", "GET /api/products")}
    assert (endpoints["error_rate"] == 0).all()
    assert samples.checks_pass_rate > 0.99 and summary.thresholds["checks rate>0.99"]
    assert summary.thresholds["http_req_failed rate<0.01"]
    requests = samples.requests
    placed = int(((requests["endpoint"] == "checkout") & (requests["status"] == "201")).sum())
    orders = postgres.psql(
        f"SELECT count(*), count(*) FILTER (WHERE synthetic) FROM orders WHERE email = '{profile.email}'", db
    )
    assert placed > 0 and orders == f"{placed}|{placed}"  # every checkout an order, every order synthetic
    return _offsets(requests)


def _iterations(frame: pd.DataFrame, flow: str) -> pd.DataFrame:
    """One request per iteration of `flow`: browse's page views, the other flows' create_cart."""
    first = {"browse": ["products", "search", "product"], "cart": ["create_cart"], "checkout": ["create_cart"]}
    return frame[(frame["scenario"] == flow) & frame["endpoint"].isin(first[flow])]


def test_load_profile_runs_the_whole_mix_at_its_rate(shop, postgres, shop_db):
    profile = _profile("load", rate=20, duration_s=4)
    frame = _assert_whole_mix(_run(shop, profile), profile, postgres, shop_db.rsplit("/", 1)[1])
    for flow, share in FLOW_SHARES.items():  # constant-arrival-rate: the flows' shares of 20/s for 4 s
        assert abs(len(_iterations(frame, flow)) - 20 * share * 4) <= 1, flow


def test_soak_profile_holds_its_rate(shop, postgres, shop_db):
    profile = _profile("soak", rate=20, duration_s=3)
    frame = _assert_whole_mix(_run(shop, profile), profile, postgres, shop_db.rsplit("/", 1)[1])
    assert abs(len(_iterations(frame, "browse")) - 20 * 0.7 * 3) <= 1


def test_stress_profile_climbs_in_stages(shop, postgres, shop_db):
    profile = _profile("stress", rate=10, max_rate=40, steps=2, duration_s=4)
    frame = _assert_whole_mix(_run(shop, profile), profile, postgres, shop_db.rsplit("/", 1)[1])
    plateaus = stress_plateaus(profile)
    browse = _iterations(frame, "browse")["offset_s"]
    rates = [((browse >= start) & (browse < end)).sum() / (end - start) for start, end, _ in plateaus]
    assert rates[0] == pytest.approx(7, abs=1.5) and rates[1] == pytest.approx(28, rel=0.25)  # 70% of 10/s, 40/s
    # What capacity_report judges: per flow and plateau, the target rate and whether it held.
    table = plateau_table(frame, plateaus, FLOW_SHARES, profile.p95_ms)
    assert len(table) == 6 and table["held"].all()
    assert table.set_index(["scenario", "stage"])["target_rate"].to_dict() == pytest.approx(
        {("browse", 1): 7, ("browse", 2): 28, ("cart", 1): 2, ("cart", 2): 8, ("checkout", 1): 1, ("checkout", 2): 4}
    )


def test_spike_profile_jumps_and_falls_back(shop, postgres, shop_db):
    profile = _profile("spike", rate=10, spike_factor=5, duration_s=4)
    frame = _assert_whole_mix(_run(shop, profile), profile, postgres, shop_db.rsplit("/", 1)[1])
    start, end = spike_window(profile)
    offsets = frame["offset_s"]
    before = (offsets < stages(profile)[0].end_s).sum() / stages(profile)[0].end_s
    during = ((offsets >= start) & (offsets < end)).sum() / (end - start)
    after = (offsets >= stages(profile)[-1].start_s).sum() / (4 - stages(profile)[-1].start_s)
    assert during > 3 * before and during > 3 * after, (before, during, after)
    per_second = offsets.astype(int).value_counts()
    assert per_second.idxmax() in (1, 2) and per_second.max() > 2 * per_second[0]


def test_broken_threshold_stops_a_stress_run_as_a_result(shop):
    # p95 under a microsecond cannot hold: evaluated from 1 s on, the run stops long before its 6 s.
    profile = _profile("stress", rate=10, max_rate=20, steps=3, duration_s=6, p95_ms=0.001, abort_delay_s=1)
    summary = _run(shop, profile)
    assert summary.passed is False and summary.exit_code == 99
    assert summary.failed_thresholds == ["http_req_duration p(95)<0.001"]
    assert summary.thresholds["http_req_failed rate<0.01"] and summary.thresholds["checks rate>0.99"]
    assert summary.samples is not None and summary.samples.total_requests == summary.requests > 0
    assert _offsets(summary.samples.requests)["offset_s"].max() < 4


def test_too_little_stock_stops_in_setup_and_says_to_restock(shop):
    summary = _run(shop, _profile("load", rate=5, duration_s=2, min_stock=1_000_000))
    assert summary.exit_code == 107 and not summary.passed  # k6: setup() threw
    assert "have stock >= 1000000, 1 needed: restock them (PATCH /api/admin/products/{id}" in summary.stderr_tail
    assert summary.samples is not None and set(summary.samples.endpoints["scenario"]) == {"setup"}
