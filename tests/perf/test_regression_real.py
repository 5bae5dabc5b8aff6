"""The regression check on real k6 runs: a release made 30 ms slower on search fails it, an unchanged rerun passes.

Two backend containers side by side against the same database and Redis: the built release, and
a thin layer over it (tests/perf/slow_search: a module, imported at start by a .pth file, that
delays every catalog search by 30 ms). The realistic mix (load profile, no storefront) runs against the release (the
baseline), the slow layer, then the release again; each run is compared with the baseline exactly
as `<env>/nightly_load_test` does (perf.loadtest.compare_frames). bench/perf_regression.py repeats
this five times and records the detection rate.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shop_ops.localenv.docker_api import DockerApi
from shop_ops.perf.loadtest import compare_frames
from shop_ops.perf.profiles import MIX_SCRIPT, LoadProfile
from shop_ops.perf.shop_admin import ShopAdmin
from shop_ops.resources.containers import DockerEngine
from shop_ops.resources.k6 import run_k6
from shop_ops.services.processes import RedisServer, free_port
from tests.perf.slow_search import SLOW_TAG, build_slow_layer

# 360 iterations: every endpoint gets the 30 samples the check needs (checkout, 10%, gets 36).
PROFILE = LoadProfile(name="load", rate=60, duration_s=6, storefront=False)


@pytest.fixture(scope="module")
def backends(
    built: dict, docker_api: DockerApi, shop_db: str, redis_server: RedisServer, admin_token: str
) -> Iterator[dict[str, str]]:
    """{"release": url, "slow": url}: both images running on the host network, same database and Redis."""
    engine = DockerEngine(docker_api.docker_host)
    release = next(image["ref"] for image in built["images"] if image["name"] == "backend")
    images = {"release": release, "slow": build_slow_layer(engine, release)}
    urls, names = {}, []
    try:
        for role, image in images.items():
            port = free_port()
            name = f"shop-ops-test-perf-{role}-{port}"
            env = {
                "SHOP_DATABASE_URL": shop_db, "SHOP_REDIS_URL": redis_server.url(6), "SHOP_HOST": "127.0.0.1",
                "SHOP_PORT": str(port), "SHOP_WORKERS": "1", "SHOP_ADMIN_TOKEN": admin_token, "SHOP_ACCESS_LOG": "false",
            }  # fmt: skip
            engine.start_service(name, image, env=env, stop_timeout=5, replace=True)
            names.append(name)
            urls[role] = f"http://127.0.0.1:{port}"
        engine.wait_answering(names, [f"{url}/readyz" for url in urls.values()])
        yield urls
    finally:
        for name in names:
            engine.stop_service(name, timeout=5)
        engine.remove_image(SLOW_TAG)
        engine.close()


def test_a_30ms_slower_search_fails_and_an_unchanged_rerun_passes(backends: dict[str, str], admin_token: str) -> None:
    ShopAdmin(backends["release"], admin_token).restock(1000)  # checkouts take stock: never run dry mid-run

    def run(url: str):
        summary = run_k6(MIX_SCRIPT, PROFILE.k6_env(url), timeout_s=PROFILE.timeout_s, samples=True)
        assert summary.samples is not None and summary.error_rate == 0, summary
        return summary.samples.requests

    baseline = run(backends["release"])
    slow = compare_frames(baseline, run(backends["slow"]))
    rerun = compare_frames(baseline, run(backends["release"]))

    assert not slow.passed, slow.summary()
    failed = {c.name for c in slow.failures}
    assert {"search", "products"} <= failed, slow.markdown()  # both read through Catalog.search
    assert "cart" not in " ".join(failed) and "checkout" not in failed, slow.markdown()  # the rest is unchanged
    assert slow["search"].effect_ms > 25, slow.markdown()
    assert rerun.passed, rerun.markdown()
