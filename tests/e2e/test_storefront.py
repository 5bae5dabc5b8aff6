"""End to end: the built storefront in headless Chromium against the real backend.

nginx runs the storefront image's own config (frontend/nginx/, rendered by its entrypoint)
on the host, serving frontend/dist and proxying /api/ to a real `shop-serve`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop_ops.services.processes import PostgresCluster, free_port, wait_for_http
from tests.support import ShopServer

pytestmark = pytest.mark.services  # nginx and headless Chromium, besides the shop server

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"


def render_storefront_nginx(run_dir: Path, port: int, backend_url: str) -> Path:
    """The image's nginx config, rendered by its entrypoint, with the image paths pointed at the repo."""
    env = {
        "PATH": os.environ["PATH"],
        "LISTEN_PORT": str(port),
        "LISTEN_HOST": "127.0.0.1",
        "BACKEND_URL": backend_url,
        "NGINX_RUN_DIR": str(run_dir),
        "NGINX_TEMPLATE": str(FRONTEND / "nginx" / "nginx.conf.template"),
        "NGINX_WORKER_PROCESSES": "1",
    }
    subprocess.run(["sh", str(FRONTEND / "nginx" / "entrypoint.sh"), "true"], env=env, check=True)
    conf = run_dir / "nginx.conf"
    text = conf.read_text().replace("/srv/storefront", str(FRONTEND / "dist"))
    conf.write_text(text.replace("/etc/shop-nginx/", str(FRONTEND / "nginx") + "/"))
    return conf


@pytest.fixture
def storefront(server: ShopServer) -> Iterator[str]:
    if not (FRONTEND / "dist" / "index.html").exists():
        pytest.fail("frontend/dist is missing: build the storefront first (cd frontend && npm run build)")
    run_dir = Path(tempfile.mkdtemp(prefix="shop-e2e-nginx-"))
    port = free_port()
    conf = render_storefront_nginx(run_dir, port, server.url)
    for path in [run_dir, *run_dir.iterdir()]:
        path.chmod(0o777)  # nginx workers run as an unprivileged user when started as root
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
    assert shown["order_number"].startswith("SO-")
    order_id = int(shown["order_number"].removeprefix("SO-"))
    row = postgres.psql(
        f"SELECT o.email, o.synthetic, ol.name FROM orders o JOIN order_lines ol ON ol.order_id = o.id "
        f"WHERE o.id = {order_id}",
        db,
    )
    assert row == f"e2e@example.com|f|{shown['product']}"
    assert (tmp_path / "3-order.png").stat().st_size > 1000
