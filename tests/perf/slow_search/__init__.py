"""A thin layer over the backend image that makes every catalog search 30 ms slower: a real latency regression.

`slow_search.py` (the delay) and `slow_search.pth` (one line that imports it) go into the image's
site-packages; Python's `site` runs the .pth at start in every worker. Not a `sitecustomize`:
Debian's Python ships its own in /usr/lib/python3.11, found first. Used by
tests/perf/test_regression_real.py and bench/perf_regression.py.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from shop_ops.resources.containers import DockerEngine

LAYER = Path(__file__).parent
SLOW_TAG = "localhost/shop-backend:slow-search-test"


def build_slow_layer(engine: DockerEngine, release_image: str, tag: str = SLOW_TAG) -> str:
    """`release_image` plus the 30 ms search delay, as one thin layer; its tag."""
    with tempfile.TemporaryDirectory(prefix="shop-ops-slow-layer-") as context:
        for name in ("slow_search.py", "slow_search.pth"):
            shutil.copy(LAYER / name, Path(context) / name)
        (Path(context) / "Dockerfile").write_text(
            f"FROM {release_image}\nCOPY slow_search.py slow_search.pth /opt/venv/lib/python3.11/site-packages/\n"
        )
        engine.build(Path(context), tag)
    return tag
