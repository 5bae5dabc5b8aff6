"""Host-side preparation of the image build contexts: backend wheels (pip wheel) and the storefront bundle (npm).

The same steps as scripts/build-images.sh (build_wheels, frontend_bundle), with the same
outputs (app/.build/wheels, frontend/dist), logs (.build/logs) and lock (.build/.build-images.lock,
so the script and the pipeline never write the wheel folder at once). Differences: wheels are
rebuilt only when the app's sources or the image's Python changed (a stamp), and the image's
Python version is asked through the Docker API instead of the podman CLI.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shop_ops.resources.containers import DockerEngine
from shop_ops.settings import ROOT

BUILD_DIR = ROOT / ".build"
LOG_DIR = BUILD_DIR / "logs"
# What build-images.sh leaves out of the copy it builds wheels from.
_EXCLUDED = {".build", "build", "__pycache__", "Dockerfile", ".dockerignore"}
Log = Callable[[str], None]


class PrepareError(RuntimeError):
    """A build context could not be prepared; the message points at the log."""


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


def _sources(app: Path) -> list[Path]:
    files = []
    for path in sorted(app.rglob("*")):
        rel = path.relative_to(app)
        if path.is_file() and not any(p in _EXCLUDED or p.endswith(".egg-info") for p in rel.parts):
            files.append(path)
    return files


def sources_digest(app: Path, python_version: str) -> str:
    digest = hashlib.sha256(python_version.encode())
    for path in _sources(app):
        digest.update(str(path.relative_to(app)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def image_python_version(engine: DockerEngine, base_image: str) -> str:
    """The Python version inside the base image (wheel markers depend on it)."""
    result = engine.run_once(
        base_image, ["-c", "import platform; print(platform.python_version())"], entrypoint=["python3"], timeout=60
    )
    if not result.ok:
        raise PrepareError(f"cannot run python3 in {base_image}: {result.logs.strip()[-500:]}")
    return result.stdout.strip()


def host_python_for(version: str) -> str:
    """A host interpreter of the image's exact Python version (else the same minor), with pip."""
    minor = version.rsplit(".", 1)[0]
    candidates = [os.environ.get("WHEEL_PYTHON", ""), "/usr/bin/python3", f"python{minor}", "python3"]
    found: list[tuple[str, str]] = []
    for candidate in filter(None, candidates):
        exe = shutil.which(candidate)
        if not exe:
            continue
        result = subprocess.run(
            [exe, "-c", "import platform, pip; print(platform.python_version())"], capture_output=True, text=True
        )
        if result.returncode == 0:
            found.append((exe, result.stdout.strip()))
    for exe, v in found:
        if v == version:
            return exe
    for exe, v in found:
        if v.rsplit(".", 1)[0] == minor:
            return exe
    raise PrepareError(
        f"no host python {minor} with pip to build wheels for the image's python {version} (set WHEEL_PYTHON)"
    )


def prepare_backend(engine: DockerEngine, base_image: str, app: Path = ROOT / "app", log: Log = print) -> Path:
    """app/.build/wheels with the shop and pip wheels for the image's Python; returns the build context (app/)."""
    version = image_python_version(engine, base_image)
    wheels = app / ".build" / "wheels"
    stamp = app / ".build" / "wheels.stamp"
    digest = sources_digest(app, version)
    if stamp.exists() and stamp.read_text() == digest + _listing(wheels):
        log(f"backend wheels are up to date for python {version}")
        return app
    python = host_python_for(version)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="backend-src-", dir=BUILD_DIR) as tmp:
        # Build from a copy so setuptools' build/ and egg-info never land in app/.
        src, out = Path(tmp) / "src", Path(tmp) / "wheels"
        for path in _sources(app):
            target = src / path.relative_to(app)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        log(f"pip wheel ./app with {python} (python {version})")
        with open(LOG_DIR / "wheels.log", "w") as fh:
            result = subprocess.run(
                [python, "-m", "pip", "wheel", "--disable-pip-version-check", "--wheel-dir", str(out), str(src), "pip"],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        if result.returncode != 0:
            raise PrepareError(f"pip wheel failed (log: {LOG_DIR / 'wheels.log'})")
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out), wheels)
    stamp.write_text(digest + _listing(wheels))
    log(f"{len(list(wheels.glob('*.whl')))} wheels in {wheels.relative_to(ROOT)}")
    return app


def _listing(wheels: Path) -> str:
    return "".join(f"\n{p.name} {p.stat().st_size}" for p in sorted(wheels.glob("*.whl")))


def _bundle_stale(fe: Path) -> str | None:
    index = fe / "dist" / "index.html"
    if not index.exists():
        return "frontend/dist is missing"
    built = index.stat().st_mtime
    inputs = [
        fe / "index.html",
        fe / "package.json",
        fe / "package-lock.json",
        *fe.glob("vite.config.*"),
        *fe.glob("tsconfig*.json"),
    ]
    for folder in (fe / "src", fe / "public"):
        inputs.extend(p for p in folder.rglob("*") if p.is_file())
    for path in inputs:
        if path.exists() and path.stat().st_mtime > built:
            return f"{path.relative_to(ROOT)} is newer than frontend/dist"
    return None


def prepare_frontend(fe: Path = ROOT / "frontend", log: Log = print) -> Path:
    """frontend/dist built by npm when missing or older than its sources; returns the build context (frontend/)."""
    stale = _bundle_stale(fe)
    if stale is None:
        log("frontend bundle: frontend/dist is up to date")
        return fe
    npm = shutil.which("npm")
    if npm is None:
        raise PrepareError(f"npm is not installed ({stale})")
    log(f"frontend bundle: {stale}; building")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    lock = fe / "package-lock.json"
    marker = fe / "node_modules" / ".package-lock.json"
    steps = []
    if not marker.exists() or (lock.exists() and lock.stat().st_mtime > marker.stat().st_mtime):
        steps.append(("npm-ci", [npm, "ci", "--no-audit", "--no-fund"]))
    steps.append(("npm-build", [npm, "run", "build"]))
    for name, cmd in steps:
        with open(LOG_DIR / f"{name}.log", "w") as fh:
            if subprocess.run(cmd, cwd=fe, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                raise PrepareError(f"{' '.join(cmd[1:])} failed (log: {LOG_DIR / (name + '.log')})")
    if not (fe / "dist" / "index.html").exists():
        raise PrepareError("npm run build produced no frontend/dist/index.html")
    return fe
