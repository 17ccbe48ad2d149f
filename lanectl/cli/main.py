"""The `lanectl` parser, assembled from the command modules, and `main` (exit code of the command)."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from lanectl import __version__
from lanectl.cli import actions, check_config, console_user, demo, fee, install, remote, restore, run, sign, views


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lanectl", description="Edge lane controller for parking lots.")
    p.add_argument("--version", action="version", version=f"lanectl {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")
    run.add_parser(sub)
    demo.add_parser(sub)
    check_config.add_parser(sub)
    views.add_records(sub)
    views.add_outbox(sub)
    views.add_status(sub)
    actions.add_open(sub)
    views.add_balance(sub)
    actions.add_topup(sub)
    actions.add_booth(sub)
    fee.add_parser(sub)
    sign.add_parser(sub)
    remote.add_parser(sub)
    install.add_parser(sub)
    restore.add_parser(sub)
    console_user.add_parser(sub)
    return p


if __name__ == "__main__":
    raise SystemExit(main())
