"""What HTTPS costs at the routers: k6 against one nginx router's plain listener and its HTTPS listener, same run.

Starts its own PostgreSQL 15 and Redis (bench/seeded.py: migrated, catalog seeded), one `shop-serve`
(granian, `--workers`), Pebble with its DNS (shop_ops/services/pebble.py), and one nginx Router
(shop_ops/resources/router.py, as `shop-ops local up` writes it: one worker, edge cache 1 s, the
API's rate limit with 127.0.0.1 allow-listed) whose public listeners get a real certificate through
the ACME flow (`ensure_certificate`: HTTP-01 on the shared challenge port, ECDSA P-256, Mozilla
intermediate). Both slots point at the one backend.

Then, for each `--rates` step and each endpoint, each configuration in turn (the order rotated per
step, so machine noise spreads) runs bench/tls.js for `--duration` seconds:

- `http`: the router's internal plain listener (`router_port`), HTTP/1.1, connections kept: the baseline;
- `https h2`: the HTTPS listener as k6 reaches it by default (ALPN picks HTTP/2), trusting the run's
  trust bundle (SSL_CERT_FILE) and resolving the name through k6's `hosts` (K6_CONFIG);
- `https h1`: the same over HTTP/1.1 (GODEBUG=http2client=0): TLS alone, no protocol change.

Endpoints: `/api/products/1` (edge-cached by nginx: nginx, not Python, does the work) and `/healthz`
(never cached: through to the backend). Then at `--handshake-rate` every request on a new connection
(k6's noConnectionReuse), plain and HTTPS over HTTP/1.1: the handshake's cost. The server keeps a
session cache, but k6 (Go's crypto/tls without a client session cache) never offers a session to
resume: every HTTPS connection is a full handshake, a first visit's cost, not a returning one's.
Each k6 run checks that every answer was 200 and used the expected protocol (`proto` column).

    .venv/bin/python bench/tls.py [--rates 500,1500,3000] [--duration 10] [--handshake-rate 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.seeded import seeded_shop, serve  # noqa: E402
from shop_ops.resources.k6 import K6Summary, run_k6  # noqa: E402
from shop_ops.resources.router import PublicListeners, Router, Upstreams, certificate_files, nginx_binary  # noqa: E402
from shop_ops.security.acme import AcmeClient  # noqa: E402
from shop_ops.security.certificates import ACCOUNT_KEY, TRUST_BUNDLE, ensure_certificate  # noqa: E402
from shop_ops.services.pebble import Pebble  # noqa: E402
from shop_ops.services.processes import free_port  # noqa: E402

SCRIPT = ROOT / "bench" / "tls.js"
HOSTNAME = "bench.shop.test"
ENDPOINTS = {"catalog, edge-cached": "/api/products/1", "healthz, to the backend": "/healthz"}
CONFIGS = ("http", "https h2", "https h1")
MAX_RATE, MAX_DURATION = 4000, 15  # the shared 2-core machine's bounds for one k6 run


@dataclass(frozen=True)
class Run:
    """One k6 run: its summary, plus what bench/tls.js's handleSummary adds (connect and TLS handshake times)."""

    summary: K6Summary
    with_connect_p95_ms: float  # p95 of connecting + TLS handshake + request (k6's duration leaves the first two out)
    tls_handshaking_avg_ms: float  # over every request, kept connections included
    dropped: int  # iterations k6 could not start: the asked rate was not reached

    @property
    def proto(self) -> str:
        held = self.summary.thresholds.get("proto_expected rate==1")
        return "ok" if held else ("-" if held is None else "NO")

    def line(self) -> str:
        s = self.summary
        return (
            f"{s.req_per_s:7.0f} req/s  p95 {s.p95_ms:7.1f} ms (with connect {self.with_connect_p95_ms:7.1f})  "
            f"failed {s.error_rate:.2%}  dropped {self.dropped}  proto {self.proto}"
        )


def k6(base_url: str, path: str, rate: float, seconds: float, extra: dict[str, str]) -> Run:
    with tempfile.TemporaryDirectory(prefix="shop-bench-tls-k6-") as tmp:
        out = Path(tmp) / "extra.json"
        env = {
            "BASE_URL": base_url,
            "TARGET_PATH": path,
            "RATE": str(int(rate)),
            "DURATION": f"{seconds:g}s",
            "P95_MS": "1000",
            "EXTRA_OUT": str(out),
            **extra,
        }
        summary = run_k6(SCRIPT, env, timeout_s=seconds + 60)
        more = json.loads(out.read_text()) if out.exists() else {}
    return Run(
        summary,
        float(more.get("with_connect_p95_ms") or "nan"),
        float(more.get("tls_handshaking_avg_ms") or 0.0),
        int(more.get("dropped_iterations") or 0),
    )


def ratio(value: float, ref: float) -> str:
    return f"{value / ref:.2f}x" if ref > 0 else "n/a"


def versions() -> str:
    text = subprocess.run([nginx_binary(), "-V"], capture_output=True, text=True, timeout=10).stderr
    nginx = next((line.split("/", 1)[1] for line in text.splitlines() if line.startswith("nginx version")), "?")
    ssl = next((line.split("with ", 1)[1] for line in text.splitlines() if line.startswith("built with")), "?")
    k6v = subprocess.run([str(ROOT / ".venv" / "bin" / "k6"), "version"], capture_output=True, text=True).stdout
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    return f"nginx {nginx} ({ssl}), {k6v.split(' (')[0].strip()}, Debian {debian}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,1500,3000", help="requests/s asked of k6 (constant arrival rate)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per k6 run")
    parser.add_argument("--handshake-rate", type=float, default=500, help="req/s of the new-connection runs (0: skip)")
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    if not 0 < args.duration <= MAX_DURATION or any(not 0 < r <= MAX_RATE for r in [*rates, args.handshake_rate or 1]):
        parser.error(f"keep each run within {MAX_DURATION} s and {MAX_RATE} req/s (a shared 2-core machine)")
    # Stopped with SIGTERM (a background run ignores SIGINT): still stop the servers and remove the folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    load_before = os.getloadavg()

    with seeded_shop("shop-bench-tls-", args.products) as shop:
        base = shop.base
        challenge_port = free_port()
        pebble = Pebble(base / "pebble", free_port(), free_port(), free_port(), challenge_port)
        tls = base / "tls"
        certificate, key = certificate_files(tls, "bench")
        public = PublicListeners(
            HOSTNAME, free_port(), free_port(), challenge_port, base / "challenges", certificate, key
        )  # fmt: skip
        router = Router("bench", base / "router", free_port(), public=public)
        server = None
        try:
            server, backend_url = serve(shop, args.workers)
            backend_port = int(backend_url.rsplit(":", 1)[1])
            pebble.start()
            router.start(Upstreams("blue", backend_port, backend_port))
            acme = AcmeClient(
                directory_url=pebble.directory_url,
                api_ca_file=pebble.api_ca_file,
                root_url=f"{pebble.management_url}/roots/0",
                account_key_file=tls / ACCOUNT_KEY,
                challenge_port=challenge_port,
            )
            outcome = ensure_certificate("bench", HOSTNAME, acme, router, tls, renew_before_days=30)
            bundle = tls / TRUST_BUNDLE
            hosts = base / "k6-hosts.json"
            hosts.write_text(json.dumps({"hosts": {HOSTNAME: "127.0.0.1"}}))
            https_url = f"https://{HOSTNAME}:{public.https_port}"
            tls_env = {"SSL_CERT_FILE": str(bundle), "K6_CONFIG": str(hosts)}
            configs: dict[str, tuple[str, dict[str, str]]] = {
                "http": (router.url, {"EXPECT_PROTO": "HTTP/1.1"}),
                "https h2": (https_url, {**tls_env, "EXPECT_PROTO": "HTTP/2.0"}),
                "https h1": (https_url, {**tls_env, "GODEBUG": "http2client=0", "EXPECT_PROTO": "HTTP/1.1"}),
            }
            catalog = f"{router.url}{ENDPOINTS['catalog, edge-cached']}"
            httpx.get(catalog)  # fills the edge cache; the next answer must come from it
            cached = httpx.get(catalog).headers.get("x-cache")
            print(
                f"certificate: {', '.join(outcome.status.sans)} from {outcome.status.issuer}, serial "
                f"{outcome.status.serial}; router {router.url} (plain), {https_url} (TLS); backend {backend_url}, "
                f"{args.workers} workers; /api/products/1 X-Cache {cached}",
                flush=True,
            )
            for path in ENDPOINTS.values():  # warm-up: connections, caches, JIT of nothing
                for name in CONFIGS:
                    k6(configs[name][0], path, 100, 2, configs[name][1])

            runs: dict[tuple[str, float, str], Run] = {}
            for step, rate in enumerate(rates):
                for endpoint, path in ENDPOINTS.items():
                    order = CONFIGS[step % len(CONFIGS) :] + CONFIGS[: step % len(CONFIGS)]
                    for name in order:
                        url, env = configs[name]
                        run = runs[(endpoint, rate, name)] = k6(url, path, rate, args.duration, env)
                        print(f"  {endpoint:<24} {rate:5.0f}/s  {name:<8} {run.line()}", flush=True)
            handshakes: dict[tuple[str, str], Run] = {}
            if args.handshake_rate:
                for endpoint, path in ENDPOINTS.items():
                    for name in ("http", "https h1"):
                        url, env = configs[name]
                        run = handshakes[(endpoint, name)] = k6(
                            url, path, args.handshake_rate, args.duration, {**env, "NO_REUSE": "1"}
                        )
                        print(
                            f"  {endpoint:<24} {args.handshake_rate:5.0f}/s  {name:<8} new conn. {run.line()}",
                            flush=True,
                        )
        finally:
            router.stop()
            pebble.stop()
            if server is not None:
                server.terminate()
                server.wait(timeout=15)

    load_after = os.getloadavg()
    print()
    print(
        f"tls, {time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.node()}, {os.cpu_count()} cores, {versions()}; "
        f"k6 on the same machine, {args.duration:g} s per run; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {time.monotonic() - started:.0f} s in all"
    )
    for endpoint, path in ENDPOINTS.items():
        print()
        print(f"`{path}` ({endpoint})")
        print()
        print("| rate asked | listener | req/s | p95 ms | failed | dropped | proto | req/s vs http | p95 vs http |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
        for rate in rates:
            ref = runs[(endpoint, rate, "http")].summary
            for name in CONFIGS:
                run = runs[(endpoint, rate, name)]
                s = run.summary
                print(
                    f"| {rate:g} | {name} | {s.req_per_s:.0f} | {s.p95_ms:.1f} | {s.error_rate:.2%} | {run.dropped} | "
                    f"{run.proto} | {ratio(s.req_per_s, ref.req_per_s)} | {ratio(s.p95_ms, ref.p95_ms)} |"
                )
    if handshakes:
        print()
        print(
            f"A new connection for every request, {args.handshake_rate:g} req/s asked (HTTP/1.1 both; p95 with connect "
            "and handshake: k6's request duration leaves them out; every TLS handshake a full one)"
        )
        print()
        print(
            "| endpoint | listener | req/s | p95 ms, with connect | TLS handshake ms, mean | failed | dropped | proto "
            "| req/s vs http | p95 vs http |"
        )
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
        for endpoint, path in ENDPOINTS.items():
            ref = handshakes[(endpoint, "http")]
            for name in ("http", "https h1"):
                run = handshakes[(endpoint, name)]
                s = run.summary
                print(
                    f"| `{path}` | {name} | {s.req_per_s:.0f} | {run.with_connect_p95_ms:.1f} | "
                    f"{run.tls_handshaking_avg_ms:.2f} | {s.error_rate:.2%} | {run.dropped} | {run.proto} | "
                    f"{ratio(s.req_per_s, ref.summary.req_per_s)} | "
                    f"{ratio(run.with_connect_p95_ms, ref.with_connect_p95_ms)} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
