"""`lanectl demo`: a thin launcher for the demo, which lives with the rig it drives (`python -m hil.demo`).

The product never imports `hil` (a test walks the imports): the demo runs as its own process with the same
flags, and its exit code is this command's. Without the rig installed (a product-only install) it says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

DEMO_MODULE = "hil.demo"


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    demo = sub.add_parser("demo", help="run the daemon on the built-in simulated lane (HIL rig)")
    demo.add_argument("--scenario", default="demo", help="scenario name in hil/scenarios or a YAML path")
    demo.add_argument("--baud", type=int, default=9600, help="emulate RS-485 line speed (0: off)")
    demo.add_argument("--keep", metavar="DIR", help="keep the demo's config and database in DIR")
    demo.add_argument("--log-level", default="WARNING", help="daemon log level shown beside the demo output")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if importlib.util.find_spec(DEMO_MODULE.split(".")[0]) is None:  # finds the package without importing it
        print("lanectl demo: the simulated lane (package `hil`) is not installed here; run the demo from a "
              "source checkout: scripts/demo", file=sys.stderr)
        return 2
    argv = ["--scenario", args.scenario, "--baud", str(args.baud), "--log-level", args.log_level]
    if args.keep:
        argv += ["--keep", args.keep]
    with subprocess.Popen([sys.executable, "-m", DEMO_MODULE, *argv]) as child:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # the demo got the same Ctrl-C (one process group): let it clean up and stop
                continue
