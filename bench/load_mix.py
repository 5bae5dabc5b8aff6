"""Benchmark the local staging router: the realistic mix's highest rate, and cached reads against static nginx.

Needs the local environment (`make run`). In one run:
1. The realistic mix (loadtests/mix.js, load profile, storefront included) through the staging
   router, climbing arrival rates (doubling, then bisecting), `--duration` per step; a step passes
   when p95 < `--p95-ms` (100) and errors < 1%. Stock is topped up before each step.
2. Cached catalog reads through the router (the edge cache: the search pages of the mix's
   vocabulary) against the same nginx binary serving a static file of the same size, both closed
   loop with the same VUs: the ratio is router req/s over static req/s.

    .venv/bin/python bench/load_mix.py [--duration 10] [--p95-ms 100] [--start-rate 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shop_ops.perf.profiles import MIX_SCRIPT, LoadProfile  # noqa: E402
from shop_ops.resources.k6 import K6Summary, run_k6  # noqa: E402
from shop_ops.resources.router import nginx_binary  # noqa: E402
from shop_ops.resources.shop_admin import ShopAdmin  # noqa: E402
from shop_ops.services.processes import free_port, wait_for_http  # noqa: E402
from shop_ops.settings import get_settings  # noqa: E402

READS = ROOT / "loadtests" / "read_urls.js"
TERMS = ("lamp", "oak", "kettle", "steel", "chair", "cotton", "mug", "bamboo", "desk", "glass", "clock", "wool")


def mix_step(url: str, rate: float, duration: float, p95_ms: float, admin: ShopAdmin) -> tuple[K6Summary, bool]:
    admin.restock(1000)
    profile = LoadProfile(name="load", rate=rate, duration_s=duration, p95_ms=p95_ms)
    summary = run_k6(MIX_SCRIPT, profile.k6_env(url), timeout_s=profile.timeout_s)
    ok = summary.p95_ms < p95_ms and summary.error_rate < 0.01 and summary.requests > 0
    print(
        f"  mix {rate:6.0f} it/s -> {summary.req_per_s:7.0f} req/s  p95 {summary.p95_ms:7.1f} ms  "
        f"errors {summary.error_rate:.2%}  {'ok' if ok else 'over'}",
        flush=True,
    )
    return summary, ok


def climb(url: str, start: float, duration: float, p95_ms: float, admin: ShopAdmin) -> tuple[float, K6Summary | None]:
    best, low, high, rate = None, 0.0, None, start
    while high is None and rate <= 8000:
        summary, ok = mix_step(url, rate, duration, p95_ms, admin)
        if ok:
            best, low, rate = summary, rate, rate * 2
        else:
            high = rate
    for _ in range(3):
        if high is None or high - low < 50:
            break
        mid = (low + high) / 2
        summary, ok = mix_step(url, mid, duration, p95_ms, admin)
        if ok:
            best, low = summary, mid
        else:
            high = mid
    return low, best


def reads(urls: list[str], vus: int, duration: float) -> K6Summary:
    env = {"URLS": ",".join(urls), "VUS": str(vus), "DURATION": f"{duration:g}s"}
    return run_k6(READS, env, timeout_s=duration + 60)


def static_nginx(folder: Path, body: bytes) -> tuple[subprocess.Popen[bytes], str]:
    """The router's nginx binary, one worker as the router, serving `body` as a static file on a free port."""
    (folder / "www").mkdir(parents=True)
    (folder / "www" / "page.json").write_bytes(body)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    keepalive_timeout 65s;
    client_body_temp_path {folder}/tmp;
    proxy_temp_path {folder}/tmp;
    fastcgi_temp_path {folder}/tmp;
    uwsgi_temp_path {folder}/tmp;
    scgi_temp_path {folder}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {folder}/www; default_type application/json; }}
    }}
}}
"""
    )
    process = subprocess.Popen([nginx_binary(), "-p", str(folder), "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait_for_http(f"http://127.0.0.1:{port}/page.json", 10, process, folder / "error.log")
    return process, f"http://127.0.0.1:{port}/page.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per mix step")
    parser.add_argument("--p95-ms", type=float, default=100)
    parser.add_argument("--start-rate", type=float, default=200, help="first mix step, iterations/s")
    parser.add_argument("--vus", type=int, default=64, help="closed-loop VUs for the read comparison")
    parser.add_argument("--read-seconds", type=float, default=10)
    args = parser.parse_args()

    settings = get_settings()
    url = f"http://127.0.0.1:{settings.local_environments()['staging'].router_port}"
    try:
        httpx.get(f"{url}/router-health", timeout=3).raise_for_status()
    except httpx.HTTPError:
        sys.exit(f"the staging router at {url} does not answer: start the local environment (make run)")
    admin = ShopAdmin(url, settings.admin_token_file("staging").read_text().strip())

    # World-readable temp folder: nginx's workers (nobody) read the static file.
    folder = Path(tempfile.mkdtemp(prefix="shop-bench-static-"))
    folder.chmod(0o755)
    static = None
    try:
        search_urls = [f"{url}/api/products?q={term}&page=1&limit=20" for term in TERMS]
        body = httpx.get(search_urls[0], timeout=10).content
        static, static_url = static_nginx(folder, body)
        reads(search_urls, args.vus, 3)  # warm-up: the edge cache and the backend's caches
        cached = reads(search_urls, args.vus, args.read_seconds)
        plain = reads([static_url], args.vus, args.read_seconds)
        hit = httpx.get(search_urls[0], timeout=10).headers.get("x-cache", "-")

        mix_step(url, 100, 3, args.p95_ms, admin)  # warm-up
        best_rate, best = climb(url, args.start_rate, args.duration, args.p95_ms, admin)
        admin.restock(1000)

        print()
        print(
            f"staging router, {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, "
            f"k6 on the same machine; mix steps {args.duration:g} s, reads {args.read_seconds:g} s at {args.vus} VUs"
        )
        print("| measure | req/s | p95 ms | errors | note |")
        print("| --- | ---: | ---: | ---: | --- |")
        if best is None:
            print(f"| realistic mix | below {args.start_rate:g} it/s | - | - | p95 < {args.p95_ms:g} ms not held |")
        else:
            print(
                f"| realistic mix, highest rate at p95 < {args.p95_ms:g} ms | {best.req_per_s:.0f} | "
                f"{best.p95_ms:.1f} | {best.error_rate:.2%} | {best_rate:.0f} iterations/s |"
            )
        print(
            f"| cached catalog reads via router | {cached.req_per_s:.0f} | {cached.p95_ms:.1f} | "
            f"{cached.error_rate:.2%} | X-Cache: {hit}; {len(body)} B |"
        )
        print(f"| same nginx, static file | {plain.req_per_s:.0f} | {plain.p95_ms:.1f} | {plain.error_rate:.2%} | |")
        print(f"| **cached reads / static** | **{cached.req_per_s / plain.req_per_s:.2f}x** | | | goal >= 0.5x |")
        print(json.dumps({"mix_req_per_s": best.req_per_s if best else 0, "ratio": cached.req_per_s / plain.req_per_s}))
        return 0
    finally:
        if static is not None:
            static.terminate()
            static.wait(timeout=15)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
