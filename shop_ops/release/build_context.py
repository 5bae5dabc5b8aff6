"""Host-side preparation of the image build contexts, by scripts/build-images.sh --prepare-only.

One way of preparing builds: the script builds the backend wheels (`pip wheel` with the
host Python that matches the image's, into app/.build/wheels) and the storefront bundle
(`npm ci && npm run build` when frontend/dist is stale), logging under .build/logs. The
pipeline holds the script's lock (.build/.build-images.lock) around prepare + build, so a
terminal build and a pipeline build never write the same folders at once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shop_ops.settings import ROOT

BUILD_DIR = ROOT / ".build"
SCRIPT = ROOT / "scripts" / "build-images.sh"
Log = Callable[[str], None]


class PrepareError(RuntimeError):
    """A build context could not be prepared; the message carries the script's last lines."""


@contextmanager
def build_lock() -> Iterator[None]:
    """build-images.sh's lock: one build per clone at a time (wheel dir, logs and tags are shared)."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / ".build-images.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare(target: str, base_image: str, log: Log = print) -> None:
    """Run the script's host-side steps for `target` (backend or frontend), under the held lock."""
    env = {**os.environ, "SHOP_OPS_BUILD_LOCK_HELD": "1"}
    env["BACKEND_BASE_IMAGE" if target == "backend" else "FRONTEND_BASE_IMAGE"] = base_image
    process = subprocess.Popen(
        [str(SCRIPT), "--prepare-only", target],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        log(line.rstrip())
        tail = [*tail[-19:], line.rstrip()]
    if process.wait() != 0:
        raise PrepareError(f"{SCRIPT.name} --prepare-only {target} failed:\n" + "\n".join(tail))


def prepare_backend(base_image: str, app: Path = ROOT / "app", log: Log = print) -> Path:
    """Wheels for the backend image in app/.build/wheels; returns the build context."""
    prepare("backend", base_image, log)
    return app


def prepare_frontend(base_image: str, fe: Path = ROOT / "frontend", log: Log = print) -> Path:
    """A current frontend/dist; returns the build context."""
    prepare("frontend", base_image, log)
    return fe
