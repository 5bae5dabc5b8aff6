"""Benchmark the latency regression check's detection rate on real k6 runs (not a test).

Starts its own PostgreSQL 15 and Redis on free ports under a temp folder (seeded catalog), and
two backend containers from the built release image (`make images` first) on the host network:
the release, and a thin layer over it that delays every catalog search by 30 ms
(tests/perf/slow_search). Each trial runs the realistic mix (load profile, no storefront) against
the release (the baseline), the slow layer, then the release again, and applies the check as
`<env>/nightly_load_test` does. Prints a table: was the slow layer caught, did the rerun pass.

    .venv/bin/python bench/perf_regression.py [--trials 5] [--rate 60] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.seeded import seeded_shop  # noqa: E402
from shop_ops.localenv.docker_api import DockerApi  # noqa: E402
from shop_ops.perf.loadtest import compare_frames  # noqa: E402
from shop_ops.perf.profiles import MIX_SCRIPT, LoadProfile  # noqa: E402
from shop_ops.resources.containers import DockerEngine  # noqa: E402
from shop_ops.resources.k6 import run_k6  # noqa: E402
from shop_ops.resources.shop_admin import ShopAdmin  # noqa: E402
from shop_ops.services.processes import free_port  # noqa: E402
from tests.perf.slow_search import SLOW_TAG, build_slow_layer  # noqa: E402

ADMIN_TOKEN = "bench-admin-token"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rate", type=float, default=60, help="iterations/s of the mix")
    parser.add_argument("--duration", type=float, default=10, help="seconds per run")
    parser.add_argument("--products", type=int, default=10_000)
    args = parser.parse_args()
    images_json = ROOT / ".build" / "images.json"
    if not images_json.exists():
        sys.exit("no built images: run `make images` first")
    release = next(i["ref"] for i in json.loads(images_json.read_text())["images"] if i["name"] == "backend")
    profile = LoadProfile(name="load", rate=args.rate, duration_s=args.duration, storefront=False)

    api = DockerApi(ROOT / ".state")
    api_was_running = api.answers()
    engine, names = None, []
    with seeded_shop("shop-bench-perf-", args.products) as shop:
        try:
            url, rs = shop.url, shop.redis
            api.start()
            engine = DockerEngine(api.docker_host)
            urls = {}
            for role, image in (("release", release), ("slow", build_slow_layer(engine, release))):
                port = free_port()
                names.append(f"shop-bench-perf-{role}-{port}")
                env = {
                    "SHOP_DATABASE_URL": url, "SHOP_REDIS_URL": rs.url(0), "SHOP_HOST": "127.0.0.1",
                    "SHOP_PORT": str(port), "SHOP_WORKERS": "1", "SHOP_ADMIN_TOKEN": ADMIN_TOKEN, "SHOP_ACCESS_LOG": "false",
                }  # fmt: skip
                engine.start_service(names[-1], image, env=env, stop_timeout=5, replace=True)
                urls[role] = f"http://127.0.0.1:{port}"
            engine.wait_answering(names, [f"{u}/readyz" for u in urls.values()])
            admin = ShopAdmin(urls["release"], ADMIN_TOKEN)

            def run(role: str):
                admin.restock(1000)
                summary = run_k6(MIX_SCRIPT, profile.k6_env(urls[role]), timeout_s=profile.timeout_s, samples=True)
                assert summary.samples is not None
                return summary.samples.requests

            run("release")  # warm-up: caches, connection pools
            rows = []
            for trial in range(1, args.trials + 1):
                baseline = run("release")
                slow = compare_frames(baseline, run("slow"))
                rerun = compare_frames(baseline, run("release"))
                search, worst = slow["search"], max(rerun.comparisons, key=lambda c: c.effect_ms or 0)
                rows.append((trial, not slow.passed, search.effect_ms, search.p_value, rerun.passed, worst))
                print(
                    f"  trial {trial}: slow {'caught' if not slow.passed else 'MISSED'} (search p95 "
                    f"{search.effect_ms:+.1f} ms), rerun {'passed' if rerun.passed else 'FALSE ALARM'}",
                    flush=True,
                )
            caught = sum(r[1] for r in rows)
            passed = sum(r[4] for r in rows)
            print()
            print(
                f"regression check, {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, mix at "
                f"{args.rate:g} it/s for {args.duration:g} s per run, k6 on the same machine"
            )
            print(
                "| trial | +30 ms search caught | search Δp95 ms | Mann-Whitney p | rerun passed | rerun's largest Δp95 |"
            )
            print("| ---: | :---: | ---: | ---: | :---: | --- |")
            for trial, hit, effect, p, ok, worst in rows:
                print(
                    f"| {trial} | {'yes' if hit else 'no'} | {effect:+.1f} | {p:.2g} | {'yes' if ok else 'no'} | "
                    f"{worst.name} {worst.effect_ms or 0:+.1f} ms |"
                )
            print(f"| **detection** | **{caught} of {len(rows)}** | | | **{passed} of {len(rows)}** | |")
            return 0 if caught == passed == len(rows) else 1
        finally:
            if engine is not None:
                for name in names:
                    engine.stop_service(name, timeout=5)
                engine.remove_image(SLOW_TAG)
                engine.close()
            if not api_was_running:
                api.stop()


if __name__ == "__main__":
    sys.exit(main())
