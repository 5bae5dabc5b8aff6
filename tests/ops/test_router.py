"""The nginx router alone: start on a slot, switch under steady traffic without failed requests, stop;
its edge cache of catalog reads (hits, collapsing, expiry, never a visitor's private answer)."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from shop_ops.resources.router import WORKER_USER, Router, Upstreams
from shop_ops.services.processes import ServiceError, free_port, pids_using

pytestmark = pytest.mark.services  # the `router` fixture starts nginx itself


class _Upstream(ThreadingHTTPServer):
    """A fake slot service: answers `<body> <path>`, counts requests per path and numbers every answer."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, body: str) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.body = body
        self.hits: Counter[str] = Counter()
        self.served = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    """`X-Upstream-Count` numbers each answer (a cached one repeats it); like the shop's backend it echoes
    `X-Request-Id`. Paths with `slow` take 0.3 s; `/api/products/7` sets a cookie; `/api/products/8`
    says `Cache-Control: no-store`."""

    protocol_version = "HTTP/1.1"
    server: _Upstream

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits[self.path] += 1
            self.server.served += 1
            count = self.server.served
        if "slow" in self.path:
            time.sleep(0.3)
        data = f"{self.server.body} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Upstream-Count", str(count))
        self.send_header("X-Request-Id", self.headers.get("X-Request-Id", "none"))
        if self.path == "/api/products/7":
            self.send_header("Set-Cookie", f"session=s{count}; Path=/")
        if self.path == "/api/products/8":
            self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()

    def log_message(self, *args: object) -> None:
        pass


def _server(body: str) -> _Upstream:
    server = _Upstream(body)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def upstreams() -> Iterator[dict[str, _Upstream]]:
    servers = {name: _server(name) for name in ("blue-api", "blue-web", "green-api", "green-web")}
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def slots(upstreams: dict[str, _Upstream]) -> dict[str, Upstreams]:
    return {
        slot: Upstreams(slot, upstreams[f"{slot}-api"].server_port, upstreams[f"{slot}-web"].server_port)
        for slot in ("blue", "green")
    }


@pytest.fixture
def router() -> Iterator[Router]:
    folder = Path(tempfile.mkdtemp(prefix="shop-ops-test-router-"))
    r = Router("staging", folder, free_port())
    yield r
    r.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_routes_and_switch_without_failed_requests(router: Router, slots: dict[str, Upstreams]) -> None:
    router.start(slots["blue"])
    assert router.serving() == slots["blue"]
    assert httpx.get(f"{router.url}/").text == "blue-web /"
    assert httpx.get(f"{router.url}/api/products").text == "blue-api /api/products"
    for path in ("/healthz", "/readyz", "/version"):
        assert httpx.get(f"{router.url}{path}").text == f"blue-api {path}"

    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def get(client: httpx.Client) -> httpx.Response:
        # A reload closes the old workers' idle keep-alive connections; a request sent on one at that
        # instant gets no answer at all. HTTP clients retry an idempotent request then (browsers, Go's
        # net/http under k6); httpx does not, so this client does it once, as they do. A second
        # failure, or any answer that is not 200, counts.
        try:
            return client.get("/api/products")
        except httpx.RemoteProtocolError:
            return client.get("/api/products")

    def traffic() -> None:  # ~100 req/s per thread, through one keep-alive client
        with httpx.Client(base_url=router.url, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = get(client)
                    if response.status_code != 200:
                        failures.append(str(response.status_code))
                    seen.add(response.text.split()[0])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                time.sleep(0.01)

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for slot in ("green", "blue", "green"):
            time.sleep(0.5)
            router.switch(slots[slot])
            assert router.slot_answering() == slot
    finally:
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert seen == {"blue-api", "green-api"}
    assert router.serving() == slots["green"]
    assert httpx.get(f"{router.url}/").text == "green-web /"
    # The slot is part of the cache key: a cached catalog answer comes from the slot its header names.
    answer = httpx.get(f"{router.url}/api/products")
    assert answer.text == "green-api /api/products" and answer.headers["x-shop-slot"] == "green"


def test_start_reuses_and_stop_leaves_nothing(router: Router, slots: dict[str, Upstreams]) -> None:
    router.start(slots["blue"])
    pid = router.pidfile.read_text()
    router.start(slots["green"])  # running: a switch, not a second nginx
    assert router.pidfile.read_text() == pid and router.slot_answering() == "green"
    assert router.cache_folder.is_dir()
    router.stop()
    assert not router.answers() and pids_using(router.folder, "nginx") == []
    assert not router.cache_folder.exists()


def _get(router: Router, path: str, **headers: str) -> httpx.Response:
    """One visitor's request: a fresh client, so no cookie jar carries one answer's cookie to the next."""
    return httpx.get(f"{router.url}{path}", headers=headers, timeout=10)


def _count(response: httpx.Response) -> str:
    return response.headers["x-upstream-count"]


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_catalog_reads_are_kept_about_a_second(
    router: Router, upstreams: dict[str, _Upstream], slots: dict[str, Upstreams]
) -> None:
    router.start(slots["blue"])
    api = upstreams["blue-api"]
    first = _get(router, "/api/products?q=lamp")
    second = _get(router, "/api/products?q=lamp")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.text == "blue-api /api/products?q=lamp" and _count(second) == _count(first)
    assert second.headers["x-shop-slot"] == "blue"
    assert httpx.head(f"{router.url}/api/products?q=lamp").headers["x-cache"] == "HIT"
    assert api.hits["/api/products?q=lamp"] == 1
    assert _get(router, "/api/products?q=desk").headers["x-cache"] == "MISS"  # the query is part of the key
    for path in ("/api/products/3", "/api/categories"):
        assert [_get(router, path).headers["x-cache"] for _ in range(2)] == ["MISS", "HIT"]
        assert api.hits[path] == 1

    time.sleep(2.5)  # lifetime 1 s (nginx: 1-2 s)
    later = _get(router, "/api/products?q=lamp")
    # Expired: fetched again, either before answering (EXPIRED) or answered stale while a background
    # request refreshes it (STALE); then the next answers carry the new upstream answer.
    assert later.headers["x-cache"] in {"EXPIRED", "STALE", "MISS"}
    _wait_for(lambda: api.hits["/api/products?q=lamp"] == 2)
    _wait_for(lambda: _count(_get(router, "/api/products?q=lamp")) != _count(first))


def test_concurrent_misses_reach_the_backend_once(
    router: Router, upstreams: dict[str, _Upstream], slots: dict[str, Upstreams]
) -> None:
    router.start(slots["blue"])
    path = "/api/products?q=slow-cold"  # the fake backend takes 0.3 s
    start = threading.Barrier(20)

    def visit(_: int) -> httpx.Response:
        start.wait()
        return _get(router, path)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(visit, range(20)))
    assert all(answer.status_code == 200 and answer.text == f"blue-api {path}" for answer in answers)
    assert 1 <= upstreams["blue-api"].hits[path] <= 2  # collapsed (2: a lock timeout on a loaded machine)


def test_no_visitor_gets_another_visitors_answer(
    router: Router, upstreams: dict[str, _Upstream], slots: dict[str, Upstreams]
) -> None:
    router.start(slots["blue"])
    api, web = upstreams["blue-api"], upstreams["blue-web"]
    # Private and operational paths are never cached: every request is the backend's own fresh answer.
    private = ["/api/carts/A", "/api/carts/B", "/api/carts/A/items", "/api/orders/1", "/api/admin/products/1"]
    for path in [*private, "/healthz", "/readyz", "/version", "/api/products/abc", "/"]:
        answers = [_get(router, path) for _ in range(2)]
        assert len({_count(answer) for answer in answers}) == 2, path
        assert all("x-cache" not in answer.headers for answer in answers), path
    assert api.hits["/api/carts/A"] == 2 and api.hits["/api/carts/B"] == 2 and web.hits["/"] == 2
    for path in ("/api/checkout", "/api/carts", "/api/products"):  # writes: never cached
        answers = [httpx.post(f"{router.url}{path}", json={"cart": "A"}) for _ in range(2)]
        assert len({_count(answer) for answer in answers}) == 2, path
        assert all(answer.headers.get("x-cache") in {None, "MISS", "BYPASS"} for answer in answers), path

    # Credentials or cookies: the visitor's own answer (BYPASS), neither served from nor put in the cache.
    for name, value in (("Authorization", "Bearer visitor-a"), ("Cookie", "session=visitor-a")):
        path = f"/api/products?q={name}"
        mine = _get(router, path, **{name: value})
        assert mine.headers["x-cache"] == "BYPASS"
        anonymous = [_get(router, path) for _ in range(2)]
        assert [answer.headers["x-cache"] for answer in anonymous] == ["MISS", "HIT"]  # not stored by `mine`
        assert _count(anonymous[0]) != _count(mine)
        again = _get(router, path, **{name: value})
        assert again.headers["x-cache"] == "BYPASS" and _count(again) not in {_count(mine), _count(anonymous[0])}

    # An answer that sets a cookie (or says no-store) is never stored: each visitor gets its own.
    for path in ("/api/products/7", "/api/products/8"):
        visitor_a, visitor_b = _get(router, path), _get(router, path)
        assert _count(visitor_a) != _count(visitor_b), path
        assert "HIT" not in {visitor_a.headers["x-cache"], visitor_b.headers["x-cache"]}, path
        if path == "/api/products/7":
            assert visitor_a.cookies["session"] != visitor_b.cookies["session"]
    assert api.hits["/api/products/7"] == 2 and api.hits["/api/products/8"] == 2

    # A visitor's X-Request-Id is not stored for the next visitor to receive.
    planted = _get(router, "/api/products?q=rid", **{"X-Request-Id": "visitor-a-was-here"})
    served = _get(router, "/api/products?q=rid")
    assert served.headers["x-cache"] == "HIT"
    assert "visitor-a-was-here" not in {planted.headers["x-request-id"], served.headers["x-request-id"]}


def test_cache_in_a_checkout_only_root_can_enter(root_only_checkout: Path, slots: dict[str, Upstreams]) -> None:
    router = Router("staging", root_only_checkout / "routers" / "staging", free_port())
    # Something already at the cache folder's (predictable) name is not adopted: replaced, target untouched.
    decoy = Path(tempfile.mkdtemp(prefix="shop-ops-test-decoy-"))
    router.cache_folder.parent.mkdir(parents=True, exist_ok=True)
    router.cache_folder.symlink_to(decoy)
    try:
        router.start(slots["blue"])
        assert [_get(router, "/api/products/5").headers["x-cache"] for _ in range(2)] == ["MISS", "HIT"]
        info = router.cache_folder.lstat()
        assert router.cache_folder.is_dir() and not router.cache_folder.is_symlink()
        assert info.st_mode & 0o777 == 0o700 and list(decoy.iterdir()) == []
        if os.geteuid() == 0:
            assert info.st_uid == pwd.getpwnam(WORKER_USER).pw_uid  # handed to the workers, who wrote the entry
        assert any(files for _, _, files in os.walk(router.cache_folder))
    finally:
        router.stop()
        shutil.rmtree(decoy, ignore_errors=True)
    assert not router.cache_folder.exists() and not router.cache_folder.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's nginx hands its workers to another user")
def test_a_cache_folder_the_workers_cannot_reach_is_refused(
    root_only_checkout: Path, slots: dict[str, Upstreams], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(root_only_checkout))  # as TMPDIR would
    router = Router("staging", root_only_checkout / "routers" / "staging", free_port())
    try:
        with pytest.raises(ServiceError, match="TMPDIR"):
            router.start(slots["blue"])
        assert not router.running() and not router.cache_folder.exists()
    finally:
        router.stop()


def test_cache_lifetime_zero_turns_it_off(upstreams: dict[str, _Upstream], slots: dict[str, Upstreams]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="shop-ops-test-router-"))
    router = Router("staging", folder, free_port(), cache_lifetime=0)
    try:
        router.start(slots["blue"])
        answers = [_get(router, "/api/products?q=lamp") for _ in range(2)]
        assert all("x-cache" not in answer.headers for answer in answers)
        assert upstreams["blue-api"].hits["/api/products?q=lamp"] == 2
        assert not router.cache_folder.exists()
    finally:
        router.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_each_router_has_its_own_cache_folder() -> None:
    folders = {Router("staging", Path(f"/srv/{stack}/routers/staging"), 1).cache_folder for stack in ("a", "b")}
    assert len(folders) == 2
    with pytest.raises(ValueError):
        Router("staging", Path("/srv/a"), 1, cache_lifetime=-1)
