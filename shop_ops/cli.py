"""The `shop-ops` command line: `shop-ops local up | down | status [--json]` and the operator commands
(`jobs`, `deploy`, `migrate`, `health`, `rollback`, `backup`, `renew-certs`, `db`, `cache`, `restart`, `logs`,
`github`: shop_ops/operator/cli.py; docs/operations.md)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="shop-ops",
        description="Operate the shop: the local environment, its Dagster jobs and its services (docs/operations.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="the local environment (every service on 127.0.0.1)")
    local.add_argument("action", choices=["up", "down", "status"])
    local.add_argument("--json", action="store_true", help="status: one JSON object keyed by service")
    from shop_ops.operator import cli as operator_cli

    operator_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command != "local":
        return operator_cli.run(args)
    from shop_ops.localenv import cli as local_cli

    return local_cli.run(args.action, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
