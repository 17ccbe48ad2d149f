"""`lanectl check-config DIR`: exit 0 with a one-line summary, or 1 listing every problem (file: key: reason)."""

from __future__ import annotations

import argparse
import sys

from lanectl.config import ConfigError, load_config


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    check = sub.add_parser("check-config", help="validate a configuration directory (exit 0 or name the problem)")
    check.add_argument("directory", metavar="DIR")
    check.set_defaults(func=cmd_check_config)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.directory)
    except ConfigError as exc:
        print(f"lanectl: {len(exc.problems)} problem(s) in {args.directory}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    from lanectl.adapters.operator_identity import OperatorConfigError, resolve_operators
    try:  # the unix names of `operators:` must exist on this machine (the daemon refuses to start otherwise)
        resolve_operators(config.site.operators)
    except OperatorConfigError as exc:
        print(f"lanectl: {len(exc.problems)} problem(s) in {args.directory}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {config.directory / 'site.yaml'}: {problem}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}")
    lanes = ", ".join(f"{lane.id} ({lane.direction})" for lane in config.lanes)
    print(f"ok: park {config.site.park_id}, {len(config.lanes)} lane(s): {lanes}; database {config.site.database}")
    return 0
