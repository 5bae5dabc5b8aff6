"""A database login rotation's steps on one local environment: the serving release restarted slot by slot onto the new login role.

The rotation flow (shop_ops/security/rotation.py) asks for these steps; they reuse blue/green's
own (`BlueGreen.place`, `roll_out`, `retire`): the idle slot starts from the images the serving
slot runs, logging in as the new role, is probed until ready, the router switches (confirmed),
the old slot drains and stops. The login roles themselves: shop_ops/services/db_logins.py.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from shop_ops.release.bluegreen import BlueGreen
from shop_ops.release.flow import Log, StepFailed
from shop_ops.services.db_logins import DatabaseLogins


@dataclass
class BlueGreenLogins:
    """`LoginRotationSteps` over an environment's two slots; `strategy_for(role)`: its BlueGreen whose new
    slots log in as `role`."""

    environment: str
    logins: DatabaseLogins
    strategy_for: Callable[[str], BlueGreen]
    log: Log = field(default=lambda _line: None)

    def lock(self) -> AbstractContextManager[None]:
        return self.strategy_for(self.serving_login()).lock(self.environment)

    def serving_login(self) -> str:
        return self.logins.files.serving() or self.logins.ensure()

    def idle_login(self) -> str:
        return self.logins.files.other(self.serving_login())

    def issue(self, role: str) -> None:
        self.logins.issue_password(role)

    def restart_on(self, role: str, steps: dict[str, float]) -> dict[str, str]:
        blue_green = self.strategy_for(role)
        place = blue_green.place(self.environment)
        images = blue_green.slot_images(place.previous)
        if images is None:
            raise StepFailed(
                f"the {place.previous} slot the {self.environment} router serves does not run both containers: "
                "start them with `shop-ops local up` (or deploy a release), then rotate"
            )
        self.log(f"{self.environment}: restarting {images['backend']} in the {place.target} slot as {role}")
        blue_green.roll_out(self.environment, images, place, steps)
        self.logins.files.record_serving(role)  # the router serves the new slot: it logs in as `role`
        try:
            blue_green.retire(place, steps)
        except Exception as exc:  # noqa: BLE001 - switched: the rotation stands, the old slot gets no traffic
            self.log(
                f"{self.environment}: the {place.previous} slot did not stop ({exc}); it serves no traffic and loses "
                "its database login now: `shop-ops local down` / `up` removes it"
            )
        return {"slot": place.target, "previous_slot": place.previous, "backend_image": images["backend"]}

    def withdraw(self, role: str) -> None:
        self.logins.lock(role)

    def retire_login(self, role: str) -> int:
        return self.logins.lock(role)
