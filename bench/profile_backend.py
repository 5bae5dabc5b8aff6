"""Profile the shop backend under the realistic mix: k6's latencies, and where the server's CPU goes (py-spy).

Starts its own PostgreSQL 15, Redis and `shop-serve` (2 workers, an admin token, access log on as
deployed) on free ports under a temp folder, seeds 10,000 products, restocks through the admin
API, warms up, then runs loadtests/mix.js (load profile, no storefront, p95 threshold 1000 ms) at
`--rate` iterations/s for `--duration` seconds while `py-spy record --subprocesses --gil --format raw`
samples granian's processes (--gil: the thread holding the GIL, i.e. Python at work; without it
py-spy counts granian's waiting threads as busy here, 3x the CPU the server used). Prints:
  (a) k6's req/s and p50/p95/p99, in all and per endpoint (from k6's raw samples);
  (b) CPU seconds of the server, PostgreSQL, Redis, k6 and py-spy over the run (/proc), and the
      server's and PostgreSQL's CPU per request;
  (c) where the samples go by layer (Redis client, PostgreSQL access, access log, metrics,
      FastAPI's parameter solving, ...), then the top functions by own and by cumulative share and
      own time by package, aggregated from py-spy's collapsed stacks.
`--no-profile` runs the same without py-spy (for before/after numbers: py-spy's sampling costs
CPU on the same cores). `--output DIR` keeps the collapsed stacks (`profile.txt`: speedscope.app
and flamegraph.pl read it), k6's per-endpoint table and the server log.

    .venv/bin/python bench/profile_backend.py [--rate 300] [--duration 30] [--output DIR] [--no-profile]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.seeded import seeded_shop, serve  # noqa: E402
from shop_ops.perf.profiles import MIX_SCRIPT, LoadProfile  # noqa: E402
from shop_ops.resources.k6 import K6Summary, run_k6  # noqa: E402
from shop_ops.resources.shop_admin import ShopAdmin  # noqa: E402

ADMIN_TOKEN = "bench-admin-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_SCAFFOLDING = re.compile(r"\(granian/server/[^)]*\)$")
NATIVE_THREAD = "[no Python frame: granian's Rust threads]"
EVENT_LOOP = "[the worker's event loop: uvloop and granian native code, no Python frame above]"
# Each sample goes to the first layer whose test matches its stack (frames joined by ";").
LAYERS: list[tuple[str, Callable[[str], bool]]] = [
    ("Redis client (redis-py: commands, pool, parsing, socket writes)", lambda s: "(redis/" in s),
    ("PostgreSQL access (SQLAlchemy + asyncpg: pool, statements, BEGIN/ROLLBACK)",
     lambda s: "(sqlalchemy/" in s or "(asyncpg/" in s),
    ("access log (logging + JsonFormatter, a line per request)", lambda s: "Logger.info (logging" in s),
    ("Prometheus counters and histograms (multiprocess files)", lambda s: "(prometheus_client/" in s),
    ("FastAPI's native OpenTelemetry check (per request)",
     lambda s: "NativeTelemetry" in s or "(fastapi/telemetry/_api" in s),
    ("FastAPI parameters and dependencies (solve_dependencies)", lambda s: "solve_dependencies (" in s),
    ("request body read and JSON parse", lambda s: "Request.body (" in s or "Request.json (" in s),
    ("sending the response (Response.__call__ into granian)", lambda s: "Response.__call__ (" in s),
    ("shop code in the endpoints not above (orjson, caches, carts)", lambda s: "run_endpoint_function (" in s),
    ("event loop and granian native code", lambda s: s.startswith("[")),
    ("Starlette/FastAPI/granian plumbing: middleware stack, routing, exception wrappers, asyncio", lambda s: True),
]  # fmt: skip


# --- CPU accounting from /proc -------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from `state` on (the name may hold spaces)


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """User + system CPU of `root`'s tree, with the children its processes already reaped."""
    total = 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is not None:  # utime stime cutime cstime are fields 14-17 of stat; here 11-14
            total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- collapsed stacks ----------------------------------------------------------------------------


def parse_collapsed(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw output: (frames root first, line numbers dropped, count) per line.

    The process frames and granian's scaffolding (up to its `server/` frame that runs the worker's
    event loop) are cut off, so cumulative shares start at the request; a sample with no Python
    frame left is one of the two pseudo-frames NATIVE_THREAD and EVENT_LOOP.
    """
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for frame in stack.split(";"):
            if frame.startswith(("process ", "thread ")):
                continue
            match = _FRAME.match(frame)
            frames.append(f"{match['func']} ({match['file']})" if match else frame)
        if not frames:
            frames = [NATIVE_THREAD]
        else:
            cut = max((i for i, f in enumerate(frames) if _SCAFFOLDING.search(f)), default=-1)
            frames = frames[cut + 1 :] or [EVENT_LOOP]
        stacks.append((frames, int(count)))
    return stacks


def package(frame: str) -> str:
    """The package a frame's file belongs to: `fastapi`, `shop`, `asyncio`, ... (py-spy shortens paths)."""
    match = _FRAME.match(frame)
    file = match["file"] if match else frame
    head = file.split("/", 1)[0]
    return head.removesuffix(".py") if head else file


def aggregate(stacks: list[tuple[list[str], int]]) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    """(own samples per function, cumulative samples per function, own samples per package, total)."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        total += count
        own[frames[-1]] += count
        by_package[package(frames[-1])] += count
        for frame in set(frames):  # a recursive function counts once per sample
            cumulative[frame] += count
    return own, cumulative, by_package, total


def layers(stacks: list[tuple[list[str], int]]) -> Counter[str]:
    """Samples per LAYERS entry."""
    out: Counter[str] = Counter()
    for frames, count in stacks:
        joined = ";".join(frames)
        out[next(name for name, test in LAYERS if test(joined))] += count
    return out


def print_profile(path: Path, top: int, cpu_s: float, rate: int, requests: int) -> None:
    stacks = parse_collapsed(path)
    own, cumulative, by_package, total = aggregate(stacks)
    if not total:
        print("py-spy recorded no samples")
        return
    seen_s = total / rate
    print(
        f"\npy-spy: {total} samples at {rate}/s = {seen_s:.1f} s sampled; the server used {cpu_s:.1f} s of CPU "
        f"({seen_s / cpu_s:.0%}; with --gil the rest is granian's Rust threads without the GIL and the kernel)"
    )
    print("\nwhere the samples go, by layer (each sample counted once, in the first layer that matches)")
    print("| layer | % of samples | us per request |")
    print("| --- | ---: | ---: |")
    for name, count in sorted(layers(stacks).items(), key=lambda item: -item[1]):
        print(f"| {name} | {count / total:5.1%} | {count / rate / max(requests, 1) * 1e6:.0f} |")
    for title, counter in (("own time (the function itself)", own), ("cumulative (with its callees)", cumulative)):
        print(f"\ntop {top} functions by {title}, % of samples")
        print("| % | samples | function (file) |")
        print("| ---: | ---: | --- |")
        for frame, count in counter.most_common(top):
            print(f"| {count / total:5.1%} | {count} | {frame} |")
    print("\nown time by package, % of samples")
    print("| % | package |")
    print("| ---: | --- |")
    for name, count in by_package.most_common(20):
        print(f"| {count / total:5.1%} | {name} |")


# --- the run -------------------------------------------------------------------------------------


def print_k6(summary: K6Summary) -> None:
    samples = summary.samples
    assert samples is not None
    table = samples.endpoints
    table = table[~table["scenario"].isin(["setup", "teardown"])]
    durations = np.array([v for values in samples.durations().values() for v in values])
    p50, p95, p99 = np.quantile(durations, [0.5, 0.95, 0.99]) if len(durations) else (float("nan"),) * 3

    print(
        f"\nk6: {summary.req_per_s:.0f} req/s, {summary.requests} requests, errors {summary.error_rate:.2%}, "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, "
        f"checks {samples.checks_pass_rate:.2%}, thresholds {'held' if summary.passed else 'crossed'}"
    )
    print("| scenario | endpoint | requests | req/s | p50 ms | p95 ms | p99 ms | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in table.itertuples():
        print(
            f"| {row.scenario} | {row.endpoint} | {row.requests} | {row.rps:.0f} | {row.p50_ms:.1f} | "
            f"{row.p95_ms:.1f} | {row.p99_ms:.1f} | {row.error_rate:.2%} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300, help="iterations/s of the mix (about 2.1 requests each)")
    parser.add_argument("--duration", type=float, default=30, help="seconds of the measured run")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of the mix at a tenth of the rate first")
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread py-spy thinks active, not only the one holding the GIL (overcounts here)",
    )
    parser.add_argument("--no-profile", action="store_true", help="no py-spy: k6 and CPU numbers only")
    parser.add_argument("--output", type=Path, help="keep profile.txt, endpoints.csv and shop.log here")
    args = parser.parse_args()
    py_spy = Path(sys.executable).parent / "py-spy"
    if not args.no_profile and not py_spy.exists():
        sys.exit("py-spy not found beside Python: install the dev dependencies (pip install -e '.[dev]')")

    server = None
    with seeded_shop("shop-bench-profile-", args.products) as shop:
        base, pg, rs = shop.base, shop.postgres, shop.redis
        try:
            server, shop_url = serve(shop, args.workers, SHOP_ADMIN_TOKEN=ADMIN_TOKEN)
            restocked = ShopAdmin(shop_url, ADMIN_TOKEN).restock(1000)

            warmup = LoadProfile(name="load", rate=max(1.0, args.rate / 10), duration_s=args.warmup, storefront=False)
            run_k6(MIX_SCRIPT, warmup.k6_env(shop_url), timeout_s=warmup.timeout_s)
            profile = LoadProfile(name="load", rate=args.rate, duration_s=args.duration, p95_ms=1000, storefront=False)

            pg_pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
            assert rs.process is not None
            spy = None
            if not args.no_profile:
                cmd = [str(py_spy), "record", "--pid", str(server.pid), "--subprocesses", "--format", "raw"]
                cmd += [] if args.all_threads else ["--gil"]
                cmd += ["--rate", str(args.sample_rate), "--output", str(base / "profile.txt")]
                spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(base / "py-spy.log", "wb"))
                time.sleep(1)  # py-spy attaches to the workers
            before = {
                "server": cpu_seconds(server.pid),
                "postgres": cpu_seconds(pg_pid),
                "redis": cpu_seconds(rs.process.pid),
                "k6": children_cpu(),
            }
            started = time.monotonic()
            summary = run_k6(MIX_SCRIPT, profile.k6_env(shop_url), timeout_s=profile.timeout_s, samples=True)
            wall = time.monotonic() - started
            used = {
                "server": cpu_seconds(server.pid) - before["server"],
                "postgres": cpu_seconds(pg_pid) - before["postgres"],
                "redis": cpu_seconds(rs.process.pid) - before["redis"],
                "k6": children_cpu() - before["k6"],
            }
            if spy is not None:
                spy_before = children_cpu()
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                spy.wait(timeout=60)
                used["py-spy"] = children_cpu() - spy_before  # its whole life, ~1 s longer than the run

            print(
                f"\nshop backend under the mix, {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
                f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {args.workers} granian workers, "
                f"{args.products} products ({restocked} restocked); k6 on the same machine: {args.rate:g} it/s "
                f"for {args.duration:g} s (k6 wall {wall:.1f} s); py-spy {'off' if spy is None else 'on'}"
            )
            print_k6(summary)
            print("\nCPU seconds over the run: " + ", ".join(f"{name} {s:.1f}" for name, s in used.items()))
            if summary.requests:
                print(
                    f"server CPU per request: {used['server'] / summary.requests * 1000:.2f} ms; "
                    f"PostgreSQL {used['postgres'] / summary.requests * 1000:.2f} ms"
                )
            if spy is not None:
                print_profile(base / "profile.txt", args.top, used["server"], args.sample_rate, summary.requests)
            if args.output:
                args.output.mkdir(parents=True, exist_ok=True)
                for name in ("profile.txt", "shop.log", "py-spy.log"):
                    if (base / name).exists():
                        shutil.copy(base / name, args.output / name)
                assert summary.samples is not None
                summary.samples.endpoints.to_csv(args.output / "endpoints.csv", index=False)
            return 0
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
