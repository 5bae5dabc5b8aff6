"""Failed-run alerts as plain text: what failed, where, why (redacted, truncated) and the link to the run.

No Dagster here: the sensor collects a `RunFailure` from the event log and `build_failure_alert` turns it
into a subject and a body. Every string that leaves goes through `redact`, which removes known secrets
(the webhook URL, the SMTP password) and anything that looks like a credential.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The one redactor (known secrets of this process, credential-shaped text) lives with the process helpers.
from shop_ops.services.redaction import MASK, redact

__all__ = ["MASK", "Alert", "RunFailure", "StepFailure", "build_failure_alert", "redact", "truncate_error"]

MAX_ERROR_LINES = 8
MAX_LINE_CHARS = 300
MAX_ERROR_CHARS = 1500


def truncate_error(text: str, max_lines: int = MAX_ERROR_LINES, max_chars: int = MAX_ERROR_CHARS) -> str:
    """The first lines of an error message, each line and the whole bounded, saying when something was cut."""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    kept = [line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…" for line in lines[:max_lines]]
    out = "\n".join(kept)
    if len(out) > max_chars:
        out = out[: max_chars - 1] + "…"
    if len(lines) > max_lines:
        out += f"\n… ({len(lines) - max_lines} more lines in the run's logs)"
    return out or "(no error message)"


@dataclass(frozen=True)
class StepFailure:
    step_key: str
    error: str


@dataclass(frozen=True)
class RunFailure:
    """What the alert says about one failed run; `run_error` when no step failed (e.g. the run worker died)."""

    run_id: str
    job_name: str
    environment: str | None = None
    steps: tuple[StepFailure, ...] = ()
    run_error: str | None = None


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str


def build_failure_alert(failure: RunFailure, ui_url: str, secrets: Iterable[str | None] = ()) -> Alert:
    """One message for one failed run: job, environment, failed steps with their errors, link to the run."""
    secrets = tuple(secrets)
    environment = failure.environment or "-"
    step_keys = ", ".join(step.step_key for step in failure.steps) or "-"
    subject = f"[shop-ops] run failed: {failure.job_name} ({environment})"
    lines = [
        f"Job: {failure.job_name}",
        f"Environment: {environment}",
        f"Failed step(s): {step_keys}",
        f"Run: {ui_url.rstrip('/')}/runs/{failure.run_id}",
    ]
    errors = [(step.step_key, step.error) for step in failure.steps]
    if not errors and failure.run_error:
        errors = [("run", failure.run_error)]
    for where, error in errors[:5]:
        # redact before cutting, so a cut never leaves half a secret behind
        lines += ["", f"Error in {where}:", truncate_error(redact(error, secrets))]
    if len(errors) > 5:
        lines.append(f"\n… and {len(errors) - 5} more failed steps")
    text = "\n".join(lines)
    return Alert(subject=redact(subject, secrets), text=redact(text, secrets))
