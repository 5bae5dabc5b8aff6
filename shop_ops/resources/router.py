"""The nginx router of each local environment as a Dagster resource: which slot serves, and switching it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from shop_ops.localstack.router import SLOTS, Router, Upstreams
from shop_ops.settings import LocalEnvironment, Settings, get_settings


class RouterError(RuntimeError):
    """No router for that environment or slot, or the switch did not take."""


class RouterResource(dg.ConfigurableResource):
    """Points an environment's router at a slot (upstream file rewritten, `nginx -s reload`, confirmed).

    `state_dir` is where `shop-ops local up` keeps the routers (empty: the settings' state folder).
    """

    state_dir: str = ""

    def _settings(self) -> Settings:
        return get_settings()

    def _environment(self, environment: str) -> LocalEnvironment:
        environments = self._settings().local_environments()
        if environment not in environments:
            raise RouterError(f"no router for environment {environment!r} (known: {', '.join(environments)})")
        return environments[environment]

    def router(self, environment: str) -> Router:
        env = self._environment(environment)
        state = Path(self.state_dir) if self.state_dir else self._settings().state_path
        return Router(environment, state / "routers" / environment, env.router_port)

    def url(self, environment: str) -> str:
        return self.router(environment).url

    def slot_ports(self, environment: str, slot: str) -> Upstreams:
        """The ports `slot` of `environment` listens on (from settings)."""
        if slot not in SLOTS:
            raise RouterError(f"unknown slot {slot!r}: use blue or green")
        ports = self._environment(environment).slots[slot]  # type: ignore[index]
        return Upstreams(slot, ports.backend_port, ports.frontend_port)

    def serving_slot(self, environment: str) -> str | None:
        """The slot the router's upstream file points at (None before the first switch)."""
        serving = self.router(environment).serving()
        return serving.slot if serving else None

    def idle_slot(self, environment: str) -> str:
        """The slot that does not serve traffic (blue before the first switch)."""
        serving = self.serving_slot(environment)
        return "green" if serving == "blue" else "blue"

    def answering_slot(self, environment: str) -> str | None:
        """The slot the running router says it serves (X-Shop-Slot), None if it does not answer."""
        return self.router(environment).slot_answering()

    def switch(self, environment: str, slot: str) -> Upstreams:
        """Send `environment`'s traffic to `slot`; returns where it points once the router confirms."""
        target = self.slot_ports(environment, slot)
        router = self.router(environment)
        if not router.running():
            raise RouterError(f"the {environment} router is not running: start it with `shop-ops local up`")
        router.switch(target)
        return target
