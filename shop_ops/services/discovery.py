"""Prometheus file-based discovery of the shop's backends: one JSON file per environment, replaced whole.

The routers write it on every blue/green switch (resources/router.py), so Prometheus scrapes the
slot that serves and never a stopped one; observability/prometheus.py points a `file_sd_configs`
entry at `shop-*.json` in the same folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from shop_ops.services.files import fsync_dir

SLOTS = ("blue", "green")
SHOP_TARGETS_GLOB = "shop-*.json"
ADDRESS = re.compile(r"^[^\s/:]+:[0-9]{1,5}$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def shop_targets_file(folder: Path, environment: str) -> Path:
    """The discovery file of `environment`'s backends in `folder` (matched by the config's `shop-*.json`)."""
    if not _NAME.match(environment):
        raise ValueError(f"environment {environment!r} is not a plain name (lower case letters, digits, - and _)")
    return folder / f"shop-{environment}.json"


def write_shop_targets(folder: Path, environment: str, targets: Sequence[tuple[str, str]]) -> Path:
    """Write `environment`'s discovery file: one entry per (slot, "127.0.0.1:PORT") pair, labelled environment and slot.

    Written to a hidden temp name (not matched by `shop-*.json`), flushed, then renamed over the
    file, so Prometheus reads the old list or the new one, never half a file. An empty `targets`
    is allowed (no backend serves) and makes ShopTargetMissing fire.
    """
    path = shop_targets_file(folder, environment)
    entries = []
    for slot, address in targets:
        if slot not in SLOTS:
            raise ValueError(f"slot {slot!r} of {environment} is not one of {', '.join(SLOTS)}")
        if not ADDRESS.match(address):
            raise ValueError(f"target {address!r} of {environment} is not host:port")
        entries.append({"targets": [address], "labels": {"environment": environment, "slot": slot}})
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{path.name}.{os.getpid()}.tmp"
    with open(partial, "w") as fh:
        json.dump(entries, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)
    fsync_dir(folder)
    return path
