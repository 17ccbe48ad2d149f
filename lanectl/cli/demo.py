"""`lanectl demo`: a thin launcher for the demo, which lives with the rig it drives (`python -m hil.demo`).

The product never imports `hil` (a test walks the imports): the demo runs as its own process with the same
flags, and its exit code is this command's. Without the rig installed (a product-only install) it says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

DEMO_MODULE = "hil.demo"


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    demo = sub.add_parser("demo", help="run the daemon on the built-in simulated lane (HIL rig)")
    demo.add_argument("--scenario", default="demo", help="scenario name in hil/scenarios or a YAML path")
    demo.add_argument("--baud", type=int, default=9600, help="emulate RS-485 line speed (0: off)")
    demo.add_argument("--keep", metavar="DIR", help="keep the demo's config and database in DIR")
    demo.add_argument("--log-level", default="WARNING", help="daemon log level shown beside the demo output")
    demo.add_argument("--booth-via", choices=("socket", "console", "person"), default="socket",
                      help="who takes the scenario's booth steps: the control socket, the console's HTTP API, or "
                           "a person in the console (the demo waits)")
    demo.add_argument("--booth-cases", action="store_true", help="play only the scenario's booth cases")
    demo.add_argument("--serve", action="store_true", help="keep the daemon and the console up after the scenario")
    demo.add_argument("--console-listen", metavar="HOST:PORT", default="",
                      help="where the console (the LAN face) listens; default 127.0.0.1 on a free port")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    env = None
    if importlib.util.find_spec(DEMO_MODULE.split(".")[0]) is None:  # finds the package without importing it
        root = checkout()
        if root is None:
            print("lanectl demo: the simulated lane (package `hil`) is not installed here: the wheel carries only "
                  "lanectl; run the demo from a source checkout: scripts/demo", file=sys.stderr)
            return 2
        # an editable install from a checkout: hil sits beside lanectl but is not a package of the wheel
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH")))))
    argv = ["--scenario", args.scenario, "--baud", str(args.baud), "--log-level", args.log_level]
    if args.keep:
        argv += ["--keep", args.keep]
    argv += ["--booth-via", args.booth_via] + (["--serve"] if args.serve else []) + \
        (["--booth-cases"] if args.booth_cases else [])
    if args.console_listen:
        argv += ["--console-listen", args.console_listen]
    with subprocess.Popen([sys.executable, "-m", DEMO_MODULE, *argv], env=env) as child:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # the demo got the same Ctrl-C (one process group): let it clean up and stop
                continue


def checkout() -> Optional[Path]:
    """The source checkout this lanectl runs from (editable install), when it has the rig beside it."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "hil" / "demo.py").is_file() else None
