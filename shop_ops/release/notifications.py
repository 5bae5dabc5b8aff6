"""Deployment notifications: the release events people are told about, and each one's message as plain text.

The vocabulary (`KINDS`), one message per event:
- `started`: a deploy passed its guards and has its ledger row (`deploying`);
- `verified`: staging serves the release, verified; `promoted`: the same on production (with its approver);
- `rolled_back`: automatically, after a failed verification (or a roll-out that moved traffic and
  went back): the attempt's row ends `rolled_back`; or by the `rollback` job: a new row of kind
  `rollback` serves the previous release and the release it replaced is marked `rolled_back`;
- `refused`: a guard said no (DeployRefused): nothing changed and the ledger has no row;
- `failed`: the attempt ended without the release serving and without traffic having moved (a failed
  migration, a slot never ready, a rollback that did not serve): the row ends `failed`.

The release flow (`flow.py`) emits each event once, at the moment the ledger says so, through a
`Notify` callback; the message carries the ledger row's id, so messages and `ReleaseLedger.history()`
agree. `ReleaseNotices` is that callback over a sender (the notifier's `send`): it never raises, a
failing channel is one redacted warning and the release goes on. A run whose failing step was already
announced (refused, rolled back, failed) gets the run tag `release_notice_tag(step)`, and
`run_failure_alert_sensor` does not announce that failure a second time (`already_announced`).
No Dagster here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from shop_ops.release.alerts import Alert, truncate_error
from shop_ops.services.redaction import redact

KINDS = ("started", "verified", "promoted", "rolled_back", "refused", "failed")
ACTIONS = ("deploy", "rollback")
PRODUCTION = "production"
# Run tag prefix: `<prefix><step key>` = the kind of the release notice that announced that step's failure.
NOTICE_TAG_PREFIX = "shop-ops/release-notice/"


@dataclass(frozen=True)
class ReleaseEvent:
    """One release event: which (`kind`), of what (`action`: deploy | rollback), and the ledger row's facts.

    `version` and the digests are the ledger row's (for a `rollback` action: the release put back);
    `release_id` is that row ("" for a refusal: nothing was recorded); `previous_*` the release that
    served before (for a `rollback` action: the one rolled back from). `verification` holds the
    verifier's numbers (k6 p95, error rate, requests), `reason` why it ended so.
    """

    kind: str
    action: str
    environment: str
    version: str
    backend_digest: str = ""
    frontend_digest: str = ""
    release_id: str = ""
    approved_by: str | None = None
    previous_version: str | None = None
    previous_release_id: str | None = None
    verification: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown release event {self.kind!r}: one of {', '.join(KINDS)}")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown release action {self.action!r}: one of {', '.join(ACTIONS)}")

    @property
    def ends_in_failure(self) -> bool:
        """Whether the step that emitted it then fails (the run's failure is this event)."""
        return self.kind in ("refused", "failed") or (self.kind == "rolled_back" and self.action == "deploy")


Notify = Callable[[ReleaseEvent], None]


def _number(value: float) -> str:
    return f"{value:.6g}"


def _release(version: str | None, release_id: str | None) -> str:
    return f"{version or '?'} ({release_id})" if release_id else version or "-"


def build_release_notice(event: ReleaseEvent, run_url: str, secrets: Iterable[str | None] = ()) -> Alert:
    """The subject and text of one release event: environment, version, digests, ledger row, numbers, run link.

    The text is `Name: value` lines, then a blank line and the reason (redacted, bounded) when there is one.
    """
    secrets = tuple(secrets)
    where = f"{event.environment} {event.version}"
    previous = _release(event.previous_version, event.previous_release_id)
    if event.kind == "rolled_back" and event.action == "rollback":
        title = f"release rolled back: {event.environment} back on {event.version}"
        title += f" (from {event.previous_version})" if event.previous_version else ""
    elif event.kind == "rolled_back":
        title = f"release rolled back: {where}" + (
            f", back on {event.previous_version}" if event.previous_version else ""
        )
    elif event.kind == "refused" and event.action == "rollback":
        title = f"rollback refused: {event.environment}"
    elif event.kind == "failed" and event.action == "rollback":
        title = f"rollback failed: {event.environment} to {event.version}"
    else:
        title = f"release {event.kind}: {where}"
    if event.kind == "promoted" and event.approved_by:
        title += f" (approved by {event.approved_by})"
    lines = [
        f"Event: {event.kind}",
        f"Action: {event.action}",
        f"Environment: {event.environment}",
        f"Version: {event.version or '-'}",
        f"Backend digest: {event.backend_digest or '-'}",
        f"Frontend digest: {event.frontend_digest or '-'}",
        f"Release id: {event.release_id or '- (refused before anything changed: no ledger row)'}",
    ]
    if event.environment == PRODUCTION and event.action == "deploy":
        lines.append(f"Approved by: {event.approved_by or '- (none given)'}")
    if event.previous_release_id or event.previous_version:
        label = "Rolled back from" if event.action == "rollback" else "Serving before"
        lines.append(f"{label}: {previous}")
    if event.verification:
        numbers = ", ".join(f"{name}={_number(value)}" for name, value in event.verification.items())
        lines.append(f"Verification: {numbers}")
    lines.append(f"Run: {run_url}")
    if event.reason:
        lines += ["", "Reason:", truncate_error(redact(event.reason, secrets))]
    return Alert(subject=redact(f"[shop-ops] {title}", secrets), text=redact("\n".join(lines), secrets))


class ReleaseNotices:
    """The `Notify` one run hands the release flow: each event as one message through `send`; never raises.

    `send(subject, text)` returns the channels that got it (the notifier's `send`: none configured is
    an empty list). A sender that raises costs one redacted warning through `warn`; the release goes
    on. `announced` lists the events that reached at least one channel.
    """

    def __init__(
        self,
        send: Callable[[str, str], list[str]],
        run_url: str,
        warn: Callable[[str], None],
        secrets: Iterable[str | None] = (),
    ) -> None:
        self.send = send
        self.run_url = run_url
        self.warn = warn
        self.secrets = tuple(secrets)
        self.announced: list[ReleaseEvent] = []

    def __call__(self, event: ReleaseEvent) -> None:
        try:
            notice = build_release_notice(event, self.run_url, self.secrets)
            channels = self.send(notice.subject, notice.text)
        except Exception as exc:  # noqa: BLE001 - a notification never fails or hides the release
            error = redact(f"{type(exc).__name__}: {exc}", self.secrets)
            self.warn(
                f"release notice '{event.kind}' for {event.environment} {event.version} not sent ({error}); "
                "the release goes on: check the notifier's settings (SHOP_OPS_SLACK_*, SHOP_OPS_SMTP_*)"
            )
            return
        if channels:
            self.announced.append(event)

    def announced_failure(self) -> ReleaseEvent | None:
        """The announced event that the step's failure is (refused, failed, rolled back by a deploy), if any."""
        return next((event for event in reversed(self.announced) if event.ends_in_failure), None)


def release_notice_tag(step_key: str) -> str:
    """The run tag that says step `step_key`'s failure was announced by a release notice."""
    return f"{NOTICE_TAG_PREFIX}{step_key}"


def already_announced(run_tags: Mapping[str, str], failed_steps: Iterable[str]) -> bool:
    """Whether every failed step of a run was announced by a release notice (so a failed-run alert would repeat it).

    False when no step failed (the run itself died: nobody announced that) or any failed step has no tag.
    """
    steps = list(failed_steps)
    return bool(steps) and all(release_notice_tag(step) in run_tags for step in steps)
