"""Blue/green releases of one local environment: the steps of `flow.deploy` / `flow.rollback` over two slots.

- place: the idle slot beside the one the nginx router serves (refused while the router is down);
- migrate: shop-migrate in a one-off container of the release's backend image, expand-only while
  the previous release serves (`schema.migrate_environment`);
- roll out: start the idle slot's containers, probe them over HTTP until ready (never ready:
  removed, no traffic), switch the router (confirmed by the router itself);
- revert after a failed verification: switch back at once, the failed containers removed;
- retire: the old slot's containers stop (drained within their stop timeout);
- rollback: the previous release's containers started again in the idle slot unless they still
  run there, then one switch; refused across a contracting migration (`schema.rollback_blocker`).

One deploy per environment: a PostgreSQL advisory lock in the environment's own database
(`flow.deploy_lock`), whatever launched the run. Plain functions over the local pieces
(`DockerEngine`, `RegistryClient`, the nginx `Router`, the `ReleaseLedger`); no Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from shop_ops.release import apps
from shop_ops.release.flow import DeployRefused, Log, Placement, Release, StepFailed, deploy_lock
from shop_ops.release.images import pinned_release_images, registry_auth
from shop_ops.release.schema import migrate_environment, rollback_blocker
from shop_ops.resources.containers import DockerEngine
from shop_ops.resources.ledger import LedgerEntry, ReleaseLedger
from shop_ops.resources.postgres import DatabaseError, DatabaseTarget
from shop_ops.resources.registry import RegistryClient
from shop_ops.resources.router import SLOTS, Router, Upstreams

FAILED_STOP_TIMEOUT = 2  # containers that never served (or were switched away from at once) need no drain


def _other(slot: str) -> str:
    return "green" if slot == "blue" else "blue"


@dataclass
class BlueGreen:
    """The release steps for one local environment's two slots behind its router (a `flow.Strategy`)."""

    engine: DockerEngine
    registry: RegistryClient
    router: Router
    app_env: apps.AppEnvironment
    slots: Mapping[str, Upstreams]  # "blue"/"green" -> that slot's ports
    database: DatabaseTarget  # the environment's database: the advisory lock is taken there
    ledger: ReleaseLedger
    backend_repository: str = "shop/backend"
    frontend_repository: str = "shop/frontend"
    ready_timeout: float = 90
    log: Log = field(default=lambda _line: None)

    def lock(self, environment: str) -> AbstractContextManager[None]:
        return deploy_lock(self.database, environment)

    def place(self, environment: str) -> Placement:
        if self.app_env.name != environment:
            raise DeployRefused(f"deploy of {environment} was given the dependencies of {self.app_env.name}")
        if not self.router.running():
            raise DeployRefused(f"the {environment} router is not running: start it with `shop-ops local up`")
        serving = self.router.serving()
        if serving is None or serving.slot not in SLOTS:
            raise DeployRefused(f"the {environment} router serves no slot: start it with `shop-ops local up`")
        idle = _other(serving.slot)
        return Placement(label="slot", ledger_slot=idle, target=idle, previous=serving.slot)

    def images(self, backend_digest: str, frontend_digest: str) -> dict[str, str]:
        return pinned_release_images(
            self.registry, self.backend_repository, self.frontend_repository, backend_digest, frontend_digest
        )

    def migrate(self, environment: str, release: Release, images: dict[str, str], place: Placement) -> dict[str, Any]:
        self.log(f"{environment}: migrating with {images['backend']}")
        change = migrate_environment(
            self.engine, environment, images["backend"], release.backend_digest, self.app_env.database_url,
            self.app_env.password_file, self.ledger, registry_auth=registry_auth(self.registry),
            insecure_registry=self.registry.insecure, log=self.log,
        )  # fmt: skip
        return change.metadata()

    def roll_out(self, environment: str, images: dict[str, str], place: Placement, steps: dict[str, float]) -> str:
        slot = place.target
        self.log(f"{environment}: starting {images['backend']} in the {slot} slot")
        self._start_ready(slot, images, steps)
        started = time.monotonic()
        try:
            self.router.switch(self.slots[slot])
        except Exception as exc:  # noqa: BLE001
            self.router.switch(self.slots[place.previous])
            self._remove_slot(slot, FAILED_STOP_TIMEOUT)
            raise StepFailed(f"the router did not switch to {slot}: {exc}") from None
        steps["switch"] = round(time.monotonic() - started, 2)
        return self.router.url

    def revert(self, place: Placement, steps: dict[str, float]) -> str:
        self.router.switch(self.slots[place.previous])
        self._remove_slot(place.target, FAILED_STOP_TIMEOUT)
        return ""

    def check_rollback(self, environment: str, target: LedgerEntry, images: dict[str, str], place: Placement) -> None:
        try:
            db_revision = self.database.current_revision()
        except DatabaseError as exc:
            raise DeployRefused(f"cannot read the {environment} schema revision: {exc}") from None
        blocker = rollback_blocker(self.ledger, environment, target, db_revision)
        if blocker is not None:
            raise DeployRefused(f"rollback of {environment} to {target.version} refused: {blocker}")

    def restore(self, environment: str, images: dict[str, str], place: Placement, steps: dict[str, float]) -> float:
        if not self._slot_runs(place.target, images):
            self._start_ready(place.target, images, steps)
        started = time.monotonic()
        self.router.switch(self.slots[place.target])
        steps["switch"] = round(time.monotonic() - started, 3)
        return steps["switch"]

    def retire(self, place: Placement, steps: dict[str, float]) -> None:
        started = time.monotonic()
        self._remove_slot(place.previous)
        steps["retire"] = round(time.monotonic() - started, 2)

    # ------------------------------------------------------------------ containers
    def _names(self, slot: str) -> list[str]:
        return [apps.service_name(self.app_env, slot, role) for role in ("backend", "frontend")]

    def _remove_slot(self, slot: str, timeout: int = apps.STOP_TIMEOUT) -> None:
        for name in self._names(slot):
            self.engine.stop_service(name, timeout=timeout)

    def _start_ready(self, slot: str, images: dict[str, str], steps: dict[str, float]) -> None:
        """Pull (pinned), start `slot`'s containers, poll them over HTTP until ready; StepFailed (removed) if not."""
        ports = self.slots[slot]
        try:
            started = time.monotonic()
            auth = registry_auth(self.registry)
            for ref in images.values():
                self.engine.ensure_image(ref, auth=auth, insecure=self.registry.insecure)
            apps.start_slot(self.engine, self.app_env, slot, images, ports.backend_port, ports.frontend_port)
            steps["start"] = round(time.monotonic() - started, 2)
            started = time.monotonic()
            apps.wait_ready(
                self.engine,
                self._names(slot),
                [
                    f"http://127.0.0.1:{ports.backend_port}/readyz",
                    f"http://127.0.0.1:{ports.frontend_port}/nginx-health",
                    f"http://127.0.0.1:{ports.frontend_port}/",
                ],
                timeout=self.ready_timeout,
            )
            steps["ready"] = round(time.monotonic() - started, 2)
        except Exception as exc:  # noqa: BLE001 - never ready: removed, the serving slot untouched
            self._remove_slot(slot, FAILED_STOP_TIMEOUT)
            raise StepFailed(f"the {slot} slot did not become ready: {exc}") from None

    def slot_images(self, slot: str) -> dict[str, str] | None:
        """The images `slot`'s two containers run ({"backend": ..., "frontend": ...}); None unless both run."""
        running = {
            c.name: c.image
            for c in self.engine.list_services(labels=self.app_env.labels(**{apps.LABEL_SLOT: slot}))
            if c.status == "running"
        }
        names = self._names(slot)
        if not all(name in running for name in names):
            return None
        return {role: running[name] for role, name in zip(("backend", "frontend"), names, strict=True)}

    def _slot_runs(self, slot: str, images: dict[str, str]) -> bool:
        """Whether `slot`'s two containers are running from exactly these pinned images."""
        running = {
            c.name: c.image
            for c in self.engine.list_services(labels=self.app_env.labels(**{apps.LABEL_SLOT: slot}))
            if c.status == "running"
        }
        wanted = dict(zip(self._names(slot), (images["backend"], images["frontend"]), strict=True))
        return all(running.get(name) == image for name, image in wanted.items())
