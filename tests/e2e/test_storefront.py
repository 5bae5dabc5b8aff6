"""End to end: the built storefront in headless Chromium against the real backend.

nginx runs the storefront image's own config (frontend/nginx/, rendered by its entrypoint)
on the host, serving a copy of frontend/dist and proxying /api/ to a real `shop-serve`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from shop_ops.services.processes import PostgresCluster, free_port, wait_for_http
from tests.support import ShopServer

pytestmark = pytest.mark.services  # nginx and headless Chromium, besides the shop server

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_storefront_nginx(frontend: Path, run_dir: Path, port: int, backend_url: str) -> Path:
    """The image's files laid out in `run_dir` as its Dockerfile copies them, and its nginx config rendered there.

    Copied, not served from the checkout: run by root, nginx's workers run as `nobody`, who cannot
    read a checkout inside a folder only root may enter (root's home is mode 700). In the image,
    too, nginx serves its own copy (`COPY dist/ /srv/storefront/`).
    """
    site, etc = run_dir / "srv" / "storefront", run_dir / "etc" / "shop-nginx"
    shutil.copytree(frontend / "dist", site)
    shutil.copytree(frontend / "nginx", etc)
    for path in [run_dir, *run_dir.rglob("*")]:  # readable by the workers, whatever the checkout's modes
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {
        "PATH": os.environ["PATH"],
        "LISTEN_PORT": str(port),
        "LISTEN_HOST": "127.0.0.1",
        "BACKEND_URL": backend_url,
        "NGINX_RUN_DIR": str(run_dir),
        "NGINX_TEMPLATE": str(etc / "nginx.conf.template"),
        "NGINX_WORKER_PROCESSES": "1",
    }
    subprocess.run(["sh", str(etc / "entrypoint.sh"), "true"], env=env, check=True)
    conf = run_dir / "nginx.conf"
    text = conf.read_text().replace("/srv/storefront", _quoted(site))
    conf.write_text(re.sub(r"/etc/shop-nginx/([^;\s]+)", lambda m: _quoted(etc / m.group(1)), text))
    return conf


@contextmanager
def serve_storefront(frontend: Path, backend_url: str) -> Iterator[str]:
    """nginx with the storefront image's config on a free port, serving `frontend`/dist; yields its URL."""
    run_dir = Path(tempfile.mkdtemp(prefix="shop-e2e-nginx-"))
    port = free_port()
    conf = render_storefront_nginx(frontend, run_dir, port, backend_url)
    nginx = subprocess.Popen(
        ["nginx", "-e", str(run_dir / "error.log"), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/nginx-health", 10, nginx, run_dir / "error.log")
        yield url
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def storefront(server: ShopServer) -> Iterator[str]:
    if not (FRONTEND / "dist" / "index.html").exists():
        pytest.fail("frontend/dist is missing: build the storefront first (cd frontend && npm run build)")
    with serve_storefront(FRONTEND, server.url) as url:
        yield url


def test_storefront_of_a_checkout_only_root_can_enter(root_only_checkout: Path):
    """A checkout where a newcomer may clone (in root's mode-700 home, a space in its path) is served whole."""
    if not (FRONTEND / "dist" / "index.html").exists():
        pytest.fail("frontend/dist is missing: build the storefront first (cd frontend && npm run build)")
    frontend = root_only_checkout / "frontend"
    for part in ("dist", "nginx"):
        shutil.copytree(FRONTEND / part, frontend / part)
    script = next((frontend / "dist" / "assets").glob("*.js"))
    with serve_storefront(frontend, "http://127.0.0.1:9") as url:
        home = httpx.get(f"{url}/", timeout=10)
        asset = httpx.get(f"{url}/assets/{script.name}", timeout=10)
    assert home.status_code == 200 and home.text == (frontend / "dist" / "index.html").read_text()
    assert asset.status_code == 200 and asset.content == script.read_bytes()


def test_shopper_searches_adds_to_cart_checks_out_and_sees_order_number(
    storefront: str, postgres: PostgresCluster, shop_db: str, tmp_path: Path
):
    db = shop_db.rsplit("/", 1)[1]
    postgres.psql("UPDATE products SET stock = greatest(stock, 5) WHERE name ILIKE '%lamp%'", db)
    result = subprocess.run(
        ["node", str(FRONTEND / "e2e" / "checkout.mjs"), storefront, str(tmp_path)],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    # The whole journey ran under the storefront's Content-Security-Policy without a refusal.
    assert shown["csp_violations"] == []
    assert shown["order_number"].startswith("SO-")
    order_id = int(shown["order_number"].removeprefix("SO-"))
    row = postgres.psql(
        f"SELECT o.email, o.synthetic, ol.name FROM orders o JOIN order_lines ol ON ol.order_id = o.id "
        f"WHERE o.id = {order_id}",
        db,
    )
    assert row == f"e2e@example.com|f|{shown['product']}"
    assert (tmp_path / "3-order.png").stat().st_size > 1000


CSP_DIRECTIVES = {  # what the built app needs (dist/index.html: no inline script or style) and no more
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
}


def test_storefront_sends_csp_and_permissions_policy_beside_its_headers():
    """Every static answer (app shell, SPA route, hashed asset) carries the CSP and the Permissions-Policy."""
    if not (FRONTEND / "dist" / "index.html").exists():
        pytest.fail("frontend/dist is missing: build the storefront first (cd frontend && npm run build)")
    script = next((FRONTEND / "dist" / "assets").glob("*.js"))
    # No inline script or style in the shell: 'self' alone lets the app run (the journey test proves it in Chromium).
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=", (FRONTEND / "dist" / "index.html").read_text())
    with serve_storefront(FRONTEND, "http://127.0.0.1:9") as url:
        answers = [httpx.get(f"{url}{path}", timeout=10) for path in ("/", "/cart", f"/assets/{script.name}")]
    for answer in answers:
        assert answer.status_code == 200, answer.url
        csp = dict(d.strip().split(" ", 1) for d in answer.headers["content-security-policy"].split(";"))
        assert {k: csp.get(k) for k in CSP_DIRECTIVES} == CSP_DIRECTIVES, (answer.url, csp)
        policy = answer.headers["permissions-policy"]
        assert all(f"{feature}=()" in policy for feature in ("camera", "geolocation", "microphone", "payment"))
        assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["x-frame-options"] == "DENY"
