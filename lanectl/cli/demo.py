"""`lanectl demo`: the daemon on the built-in simulated lane (HIL rig)."""

from __future__ import annotations

import argparse


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    demo = sub.add_parser("demo", help="run the daemon on the built-in simulated lane (HIL rig)")
    demo.add_argument("--scenario", default="demo", help="scenario name in hil/scenarios or a YAML path")
    demo.add_argument("--baud", type=int, default=9600, help="emulate RS-485 line speed (0: off)")
    demo.add_argument("--keep", metavar="DIR", help="keep the demo's config and database in DIR")
    demo.add_argument("--log-level", default="WARNING", help="daemon log level shown beside the demo output")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from lanectl.demo import run_demo
    return run_demo(scenario=args.scenario, baud=args.baud or None, keep=args.keep, log_level=args.log_level)
