"""`lanectl run`: the daemon for real hardware. A start that fails ends with ONE line on stderr (and in the
log) naming the thing and the reason, and a sysexits code (lanectl/startup.py, systemd/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from lanectl.adapters import log_format
from lanectl.config import ConfigError, load_config
from lanectl.startup import EX_CONFIG, EX_SOFTWARE, EX_USAGE, StartupError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    run = sub.add_parser("run", help="run the daemon for real hardware")
    run.add_argument("--config", required=True, metavar="DIR", help="directory with site.yaml and lanes/")
    run.add_argument("--log-level", default=os.environ.get("LANECTL_LOG_LEVEL", "INFO"),
                     help="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case); a bad one exits 64")
    run.add_argument("--log-format", default=os.environ.get("LANECTL_LOG_FORMAT", "text"),
                     help="text (lot time with offset; no time under journald, which stamps lines itself) or json "
                          "(one object per line: time, level, logger, message and a decision's fields)")
    run.set_defaults(func=cmd_run)


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(log_format.formatter(fmt, stream=sys.stdout))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # our adapter logs faults once, with context


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon; only a bug prints a traceback."""
    level = str(args.log_level).strip().upper()
    if level not in LOG_LEVELS:
        source = "--log-level" + (" (or LANECTL_LOG_LEVEL)" if os.environ.get("LANECTL_LOG_LEVEL") else "")
        return _startup_failed(StartupError(source, f"{args.log_level!r} is not a log level; use one of "
                                            f"{', '.join(LOG_LEVELS)} (any case)", EX_USAGE), logged=False)
    fmt = str(args.log_format).strip().lower()
    if fmt not in log_format.FORMATS:
        source = "--log-format" + (" (or LANECTL_LOG_FORMAT)" if os.environ.get("LANECTL_LOG_FORMAT") else "")
        return _startup_failed(StartupError(source, f"{args.log_format!r} is not a log format; use text or json",
                                            EX_USAGE), logged=False)
    setup_logging(level, fmt)
    try:
        config = load_config(args.config)
        log_format.use_zone(config.site.tz)
        from lanectl.bootstrap import run_daemon
        asyncio.run(run_daemon(config))
    except ConfigError as exc:
        problems = "; ".join(exc.problems)
        more = f" ({len(exc.problems)} problems; `lanectl check-config {args.config}` lists them)" \
            if len(exc.problems) > 1 else ""
        return _startup_failed(StartupError(f"configuration {args.config}", f"invalid: {problems}{more}",
                                            EX_CONFIG))
    except StartupError as exc:
        return _startup_failed(exc)
    except KeyboardInterrupt:
        raise
    except Exception:
        logging.getLogger("lanectl").exception("lanectl stopped on an unexpected error (a bug; please report it)")
        print("lanectl: stopped on an unexpected error (a bug); the traceback is in the log", file=sys.stderr)
        return EX_SOFTWARE
    return 0


def _startup_failed(exc: StartupError, *, logged: bool = True) -> int:
    line = f"lanectl: {exc.line()}"
    # Under systemd stdout (the log) and stderr are the same journal stream: write the line once.
    if logged and not _same_stream(sys.stdout, sys.stderr):
        logging.getLogger("lanectl").error("cannot start: %s", exc.line())
    sys.stdout.flush()
    print(line, file=sys.stderr)
    return exc.exit_code


def _same_stream(a: Any, b: Any) -> bool:
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
