"""`shop-serve`: validate settings, then run the app under granian with N workers."""

from __future__ import annotations

import os
import sys
import tempfile

from shop.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"shop-serve: {exc}", file=sys.stderr)
        return 2
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shop-metrics-")
    args = [
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
        "--loop",
        "uvloop",
        "--no-ws",
        "--log-level",
        "warning" if settings.log_level == "info" else settings.log_level,
        "--respawn-failed-workers",
        "shop.main:app_factory",
    ]
    granian = os.path.join(os.path.dirname(sys.executable), "granian")
    os.execv(granian, args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
