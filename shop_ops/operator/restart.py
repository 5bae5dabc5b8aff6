"""`shop-ops restart ENV shop|router`: restart what serves an environment without a failed request.

- `shop`: the backend and storefront containers run together as one blue/green slot, so they restart
  together, with blue/green's own steps (shop_ops/release/bluegreen.py), as the database password
  rotation restarts them (release/login_rollout.py): under the environment's deploy lock, the images the
  serving slot runs start in the idle slot, are probed until ready, the router switches (confirmed by the
  router), then the old slot drains within its stop timeout and stops. Never ready: removed, the serving
  slot untouched. Not a release: the ledger and the images stay as they are.
- `router`: nginx rewrites its configuration from the pipeline's description, checks it and reloads
  gracefully (`nginx -s reload`: old workers finish their requests).
"""

from __future__ import annotations

import time
from typing import Any

from shop_ops.operator.dagster_api import CommandFailed
from shop_ops.release.bluegreen import BlueGreen
from shop_ops.release.flow import DeployRefused, StepFailed
from shop_ops.resources.router import Router
from shop_ops.services.processes import ServiceError

SERVICES = ("shop", "router")


def restart_shop(environment: str, slots: BlueGreen) -> dict[str, Any]:
    """The serving slot's images again in the idle slot, then one switch; what moved where and how long it took."""
    started = time.monotonic()
    steps: dict[str, float] = {}
    try:
        with slots.lock(environment):
            place = slots.place(environment)
            images = slots.slot_images(place.previous)
            if images is None:
                raise CommandFailed(
                    f"the {place.previous} slot the {environment} router serves does not run both containers: "
                    "start them with `shop-ops local up` (or deploy a release)"
                )
            slots.roll_out(environment, images, place, steps)
            slots.log(f"{environment}: the router serves {place.target}; stopping the {place.previous} slot")
            try:
                slots.retire(place, steps)
            except Exception as exc:  # noqa: BLE001 - switched: the restart stands, the old slot gets no traffic
                raise CommandFailed(
                    f"the {environment} shop restarted in the {place.target} slot, but the {place.previous} slot did "
                    f"not stop ({' '.join(str(exc).split())}): it serves no traffic; `shop-ops restart {environment} "
                    "shop` again, or `shop-ops local down` / `up`, removes it"
                ) from None
    except (DeployRefused, StepFailed) as exc:
        raise CommandFailed(f"restart of the {environment} shop: {exc}") from None
    return {
        "environment": environment, "service": "shop", "slot": place.target, "previous_slot": place.previous,
        "images": images, "steps_seconds": steps, "total_seconds": round(time.monotonic() - started, 2),
    }  # fmt: skip


def reload_router(environment: str, router: Router) -> dict[str, Any]:
    """A graceful reload of the environment's nginx router; CommandFailed when it is not running or refuses."""
    if not router.running():
        raise CommandFailed(f"the {environment} router is not running: start it with `shop-ops local up`")
    started = time.monotonic()
    try:
        router.reload()
    except ServiceError as exc:
        raise CommandFailed(f"the {environment} router did not reload: {' '.join(str(exc).split())}") from None
    serving = router.serving()
    return {
        "environment": environment, "service": "router", "url": router.url,
        "slot": serving.slot if serving else None, "total_seconds": round(time.monotonic() - started, 2),
    }  # fmt: skip
