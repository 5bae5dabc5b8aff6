"""The nginx router alone: start on a slot, switch under steady traffic without failed requests, stop."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from shop_ops.resources.router import Router, Upstreams
from shop_ops.services.processes import free_port, pids_using

pytestmark = pytest.mark.services  # the `router` fixture starts nginx itself


def _server(body: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            data = f"{body} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def slots() -> Iterator[dict[str, Upstreams]]:
    servers = {name: _server(name) for name in ("blue-api", "blue-web", "green-api", "green-web")}
    yield {
        slot: Upstreams(slot, servers[f"{slot}-api"].server_port, servers[f"{slot}-web"].server_port)
        for slot in ("blue", "green")
    }
    for server in servers.values():
        server.shutdown()


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


def test_start_reuses_and_stop_leaves_nothing(router: Router, slots: dict[str, Upstreams]) -> None:
    router.start(slots["blue"])
    pid = router.pidfile.read_text()
    router.start(slots["green"])  # running: a switch, not a second nginx
    assert router.pidfile.read_text() == pid and router.slot_answering() == "green"
    router.stop()
    assert not router.answers() and pids_using(router.folder, "nginx") == []
