"""Command line: `lanectl run | demo | check-config | records | outbox | open | status`.

Entry points only parse input and hand it on (to the app, the config loader or the control client)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import datetime
from typing import Any, Optional, Sequence

from lanectl import __version__
from lanectl.config import ConfigError, load_config
from lanectl.startup import EX_CONFIG, EX_SOFTWARE, EX_USAGE, StartupError

DEFAULT_SOCKET = "/run/lanectl/control.sock"


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

    run = sub.add_parser("run", help="run the daemon for real hardware")
    run.add_argument("--config", required=True, metavar="DIR", help="directory with site.yaml and lanes/")
    run.add_argument("--log-level", default=os.environ.get("LANECTL_LOG_LEVEL", "INFO"),
                     help="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case); a bad one exits 64")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="run the daemon on the built-in simulated lane (HIL rig)")
    demo.add_argument("--scenario", default="demo", help="scenario name in hil/scenarios or a YAML path")
    demo.add_argument("--baud", type=int, default=9600, help="emulate RS-485 line speed (0: off)")
    demo.add_argument("--keep", metavar="DIR", help="keep the demo's config and database in DIR")
    demo.add_argument("--log-level", default="WARNING", help="daemon log level shown beside the demo output")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check-config", help="validate a configuration directory (exit 0 or name the problem)")
    check.add_argument("directory", metavar="DIR")
    check.set_defaults(func=cmd_check_config)

    for name, helptext, func in (("records", "list entries and exits", cmd_records),
                                 ("outbox", "show what waits to upload", cmd_outbox),
                                 ("status", "show the lanes of the running daemon", cmd_status),
                                 ("open", "ask the running daemon to raise a barrier (audited)", cmd_open),
                                 ("balance", "show stored-value balances and their ledger", cmd_balance),
                                 ("topup", "credit a stored-value balance (audited)", cmd_topup)):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--socket", help=f"control socket (default: from --config, else {DEFAULT_SOCKET})")
        sp.add_argument("--config", metavar="DIR", help="read the control socket path from this configuration")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(func=func)
        if name == "records":
            sp.add_argument("--plate")
            sp.add_argument("--lane")
            sp.add_argument("--since", type=_when, help='"2026-11-22 08:00" or ISO 8601')
            sp.add_argument("--until", type=_when)
            sp.add_argument("--limit", type=int, default=50)
        elif name == "outbox":
            sp.add_argument("--limit", type=int, default=50)
        elif name == "open":
            sp.add_argument("--lane", required=True)
            sp.add_argument("--reason", required=True, help="why (e.g. cash, fault, emergency)")
            sp.add_argument("--operator", help="your operator name; default: the name the daemon knows for your "
                            "unix user (with site operators configured, a different name is refused)")
            sp.add_argument("--amount", type=int, metavar="FEN", help="cash taken, in fen (less or more than "
                            "the car owes is recorded as short / over)")
        elif name == "balance":
            sp.add_argument("--plate")
            sp.add_argument("--limit", type=int, default=20, help="ledger moves to show")
        elif name == "topup":
            sp.add_argument("--plate", required=True)
            sp.add_argument("--amount", type=int, required=True, metavar="FEN", help="amount credited, in fen")
            sp.add_argument("--operator", help="who takes the money; default: your operator name")
            sp.add_argument("--reason", required=True, help="e.g. cash, wechat transfer")

    from lanectl import commands_fee, commands_sign  # each command with its own helpers
    commands_fee.add_parser(sub)
    commands_sign.add_parser(sub)
    return p


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("/", "-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date/time: {text!r} (use 2026-11-22 08:00[:00])") from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # our adapter logs faults once, with context


# --- daemon -----------------------------------------------------------------------------------------------------
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon. A start that fails ends with ONE line on stderr (and in the log) naming the thing and
    the reason, and a sysexits code (lanectl/startup.py, systemd/README.md); only a bug prints a traceback."""
    level = str(args.log_level).strip().upper()
    if level not in LOG_LEVELS:
        source = "--log-level" + (" (or LANECTL_LOG_LEVEL)" if os.environ.get("LANECTL_LOG_LEVEL") else "")
        return _startup_failed(StartupError(source, f"{args.log_level!r} is not a log level; use one of "
                                            f"{', '.join(LOG_LEVELS)} (any case)", EX_USAGE), logged=False)
    setup_logging(level)
    try:
        config = load_config(args.config)
        from lanectl.app import run_daemon
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


def cmd_demo(args: argparse.Namespace) -> int:
    from lanectl.demo import run_demo
    return run_demo(scenario=args.scenario, baud=args.baud or None, keep=args.keep, log_level=args.log_level)


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


# --- control socket clients -------------------------------------------------------------------------------------
def _socket(args: argparse.Namespace) -> str:
    if args.socket:
        return args.socket
    if args.config:
        try:
            return str(load_config(args.config, credentials=False).site.control.socket)
        except ConfigError as exc:
            raise SystemExit(f"lanectl: configuration is invalid:\n{exc}")
    return os.environ.get("LANECTL_CONTROL__SOCKET", DEFAULT_SOCKET)


def _call(args: argparse.Namespace, method: str, **kwargs: Any) -> Any:
    from lanectl.adapters.control_client import ControlClient, ControlClientError
    client = ControlClient(_socket(args))
    try:
        return client.call_sync(method, **kwargs)
    except ControlClientError as exc:
        print(f"lanectl: {exc}", file=sys.stderr)
        raise SystemExit(1)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def cmd_records(args: argparse.Namespace) -> int:
    rows = _call(args, "records", plate=args.plate, lane=args.lane, since=args.since, until=args.until,
                 limit=args.limit)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no records")
        return 0
    print(f"{'time':19}  {'lane':8} {'kind':7} {'plate':10} {'status':17} {'class':10} {'due':>7} {'paid':>7} "
          f"{'short/over':>11}  {'operator':16} record")
    for r in rows:
        print(f"{r['at'][:19].replace('T', ' '):19}  {r['lane_id']:8} {r['kind']:7} {r['plate'] or '-':10} "
              f"{r['status']:17} {r['vehicle_class']:10} {_yuan(r['due_fen']):>7} {_yuan(r['paid_fen']):>7} "
              f"{_short_over(r):>11}  {_who(r.get('operator', ''), r.get('operator_uid')) or '-':16} "
              f"{r['record_id']}")
    return 0


def _short_over(r: dict[str, Any]) -> str:
    """A released car's takings against what it owed: "short 4.00", "over 1.00" or "-"."""
    if r.get("short_fen"):
        return f"short {_yuan(r['short_fen'])}"
    if r.get("over_fen"):
        return f"over {_yuan(r['over_fen'])}"
    return "-"


def _who(name: str, uid: Optional[int]) -> str:
    """An operator as records show them: name and, when the kernel told it, the unix uid."""
    return f"{name} (uid {uid})" if uid is not None else name


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _signed_yuan(fen: int) -> str:
    return ("-" if fen < 0 else "+") + _yuan(abs(fen))


def cmd_outbox(args: argparse.Namespace) -> int:
    data = _call(args, "outbox", limit=args.limit)
    if args.json:
        _print_json(data)
        return 0
    counts = data.get("counts", {})
    if not counts:
        print("outbox empty (no upload destinations configured, or nothing recorded yet)")
    for key, n in sorted(counts.items()):
        print(f"{key:30} {n}")
    for dest, st in (data.get("destinations") or {}).items():
        if st.get("failing_since"):
            print(f"{dest}: failing since {st.get('failing_since')}: {st['last_error']}")
    for item in data.get("pending", []):
        print(f"  #{item['id']} {item['destination']} {item['key']} attempts={item['attempts']} "
              f"next={item['next_at'][:19]} {item['last_error']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    data = _call(args, "status")
    if args.json:
        _print_json(data)
        return 0
    print(f"park {data['park_id']}")
    for lane_id, st in data["lanes"].items():
        faults = "; ".join(f"{name}: {st[key]}" for name, key in (
            ("barrier", "barrier_fault"), ("plate reader", "plate_reader_fault"), ("scanner", "scanner_fault"))
            if st.get(key))
        waiting = st.get("waiting")
        extra = f" waiting: {waiting['plate']} owes {_yuan(waiting['due_fen'])}" if waiting else ""
        lines = st.get("plate_lines")
        counted = f"  plates read {lines['read']}, skipped {lines['skipped']}" if lines else ""
        print(f"  {lane_id:10} {st['direction']:5} {st['phase']:17}{extra}{counted}"
              f"{'  FAULT: ' + faults if faults else ''}")
        released = st.get("last_release")
        if released:
            counts = st.get("releases") or {}
            print(f"    last release {released['at'][:19].replace('T', ' ')} by "
                  f"{_who(released['operator'], released.get('operator_uid'))}: {released['reason']}"
                  f"{', paid ' + _yuan(released['paid_fen']) if 'paid_fen' in released else ''}"
                  f"{'' if _short_over(released) == '-' else ', ' + _short_over(released)} "
                  f"(record {released['record_id']}); since start {counts.get('count', 0)} release(s): "
                  f"{counts.get('short', 0)} short ({_yuan(counts.get('short_fen', 0))} in all), "
                  f"{counts.get('over', 0)} over ({_yuan(counts.get('over_fen', 0))} in all)")
    storage = data.get("storage")
    if storage and not storage.get("ok", True):
        queued = storage.get("queued_audit_rows", 0)
        dropped = storage.get("dropped_audit_rows", 0)
        print(f"  STORAGE FAULT since {storage.get('since', '?')}: {storage.get('reason', '')} "
              f"(database {storage.get('path', '?')}; {storage.get('refused', 0)} write(s) refused, "
              f"{queued} barrier audit row(s) waiting in memory{f', {dropped} dropped' if dropped else ''})")
    links = data.get("image_links")
    if links:
        print(f"  picture links at {links['public_url']}: served {links.get('served', 0)}, "
              f"refused {links.get('refused', 0)}")
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    if args.amount is not None and args.amount < 0:
        print("lanectl: --amount must be a non-negative number of fen", file=sys.stderr)
        return 2
    data = _call(args, "open_barrier", lane=args.lane, operator=args.operator, reason=args.reason,
                 amount_fen=args.amount)
    # the release is decided and recorded whether or not the barrier took the command: say who and the money
    recorded = (f"record {data['record_id']} released by {_who(data.get('operator', ''), data.get('operator_uid'))}"
                f"{'' if _short_over(data) == '-' else ', cash ' + _short_over(data)}") if data.get("record_id") else ""
    if args.json:
        _print_json(data)
    elif data.get("opened"):
        print(f"lane {data['lane']}: OPEN delivered to the barrier ({recorded}, action {data['action_id']})")
    else:
        print(f"lane {data['lane']}: not opened: {data.get('message') or data.get('phase')}"
              f"{f' ({recorded})' if recorded else ''}")
    return 0 if data.get("opened") else 1


def cmd_balance(args: argparse.Namespace) -> int:
    data = _call(args, "balances", plate=args.plate, limit=args.limit)
    if args.json:
        _print_json(data)
        return 0
    if not data["balances"]:
        print("no stored-value balance" + (f" for {args.plate}" if args.plate else ""))
    for plate, fen in sorted(data["balances"].items()):
        print(f"{plate:10} {_yuan(fen):>9} 元")
    for m in data["moves"]:
        print(f"  {m['at'][:19].replace('T', ' ')}  {m['plate']:10} {m['kind']:8} {_signed_yuan(m['delta_fen']):>9}  "
              f"{m['record_id'] or m['reference']}")
    return 0


def cmd_topup(args: argparse.Namespace) -> int:
    if args.amount <= 0:
        print("lanectl: --amount must be a positive number of fen", file=sys.stderr)
        return 2
    data = _call(args, "topup", plate=args.plate, amount_fen=args.amount, operator=args.operator,
                 reason=args.reason)
    if args.json:
        _print_json(data)
    else:
        by = _who(data.get("operator", ""), data.get("operator_uid"))
        print(f"{data['plate']}: +{_yuan(data['amount_fen'])} 元, balance {_yuan(data['balance_fen'])} 元"
              f"{f' (by {by})' if by else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
