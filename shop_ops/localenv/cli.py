"""`shop-ops local up | down | status [--json]`: the local environment from the command line."""

from __future__ import annotations

import json
import sys

from shop_ops.localenv.stack import LocalStack, PortConflict, Progress, tool_problems
from shop_ops.services.processes import ServiceError
from shop_ops.settings import SettingsError, load_settings


def run(action: str, as_json: bool = False) -> int:
    """Exit code: 0 ok, 1 a service failed (rolled back), 2 settings/ports/tools, 3 status: something down."""
    try:
        stack = LocalStack(load_settings(), Progress(sys.stdout))
    except SettingsError as exc:
        print(f"shop-ops: {exc}", file=sys.stderr)
        return 2
    if action == "up":
        return _up(stack)
    if action == "down":
        stack.down()
        print("local environment stopped")
        return 0
    if action == "status":
        return _status(stack, as_json)
    print(f"shop-ops local: unknown action {action!r}", file=sys.stderr)
    return 2


def _up(stack: LocalStack) -> int:
    missing = tool_problems()
    if missing:
        print("shop-ops local up: missing programs: " + "; ".join(missing), file=sys.stderr)
        print("run scripts/install.sh (or make run)", file=sys.stderr)
        return 2
    from shop_ops.resources.containers import ContainerError

    try:
        stack.up()
    except PortConflict as exc:
        print(f"shop-ops local up: {exc}", file=sys.stderr)
        return 2
    except (ServiceError, ContainerError, OSError) as exc:
        print(f"shop-ops local up: {exc}", file=sys.stderr)
        print("nothing this run started is left running; fix the above and run it again", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("shop-ops local up: interrupted; what this run started was stopped", file=sys.stderr)
        return 130
    print()
    print(f"note: {stack.release_note()}")
    print()
    width = max(len(what) for what, _ in stack.urls())
    for what, where in stack.urls():
        print(f"  {what:<{width}}  {where}")
    return 0


def _status(stack: LocalStack, as_json: bool) -> int:
    status = stack.status()
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        for line in human_status(status):
            print(line)
    # Services have "up"; other entries (backups: where the key and the dumps are) are information.
    return 0 if all(entry.get("up") for entry in status.values() if "up" in entry) else 3


# Status groups with one entry per environment, and how their rows are named.
GROUP_LABELS = {"postgres": "postgres", "pgbouncer": "pgbouncer", "replica": "postgres replica", "redis": "redis"}


def human_status(status: dict) -> list[str]:
    """One line per service: name, up/DOWN, address, details."""
    rows: list[tuple[str, str, str]] = []
    for key, entry in status.items():
        if key in ("postgres", "exporters", "pgbouncer", "replica", "redis"):
            for name, item in entry.items():
                if isinstance(item, dict):
                    label = f"{name} exporter" if key == "exporters" else f"{GROUP_LABELS[key]} ({name})"
                    rows.append((label, _updown(item), item.get("dsn") or item.get("url", "")))
            continue
        if "up" not in entry:
            rows.append((key.replace("_", " "), "-", "  ".join(f"{k}: {v}" for k, v in entry.items())))
            continue
        where = entry.get("url", "")
        if key == "registry":
            where += f"  credentials: {entry['credentials_file']}"
        elif key == "prometheus" and "targets" in entry:
            down = entry.get("targets_down") or []
            where += f"  targets: {entry['targets']}, down: {', '.join(down) or 'none'}"
        elif key == "logs":
            where = f"{entry['store']}  (rsyslog pid {entry['collector_pid'] or '-'}, {entry['inputs']} inputs)"
        elif "slot" in entry:
            where += f"  slot: {entry['slot'] or '-'}"
            if entry.get("version"):
                where += f"  version: {entry['version']}"
            if entry.get("https_url"):
                days = (entry.get("certificate") or {}).get("days_to_expiry")
                where += f"  {entry['https_url']} (certificate: {f'{days} days left' if days is not None else 'none'})"
        rows.append((key.replace("_", " "), _updown(entry), where))
    width = max(len(name) for name, _, _ in rows)
    return [f"{name:<{width}}  {state:<4}  {where}" for name, state, where in rows]


def _updown(entry: dict) -> str:
    return "up" if entry.get("up") else "DOWN"
