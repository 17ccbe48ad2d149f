"""`lanectl fee`: what would this car owe — operators check a tariff before the lot opens."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Optional
from zoneinfo import ZoneInfo


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("fee", help="compute the fee of a stay with the configured tariffs")
    p.add_argument("--config", required=True, metavar="DIR")
    p.add_argument("--plate", required=True)
    p.add_argument("--color", default="blue", help="plate colour (blue, yellow, green, ...)")
    p.add_argument("--enter", required=True, metavar="TIME", help='"2026-11-22 08:00:00" (lot time zone)')
    p.add_argument("--leave", required=True, metavar="TIME")
    p.add_argument("--class", dest="vehicle_class", choices=("temporary", "stored_value"),
                   help="charge the whole stay with this class's tariff, ignoring cards and lists")
    p.add_argument("--paid", type=int, default=0, metavar="FEN", help="already paid ahead, in fen")
    p.add_argument("--paid-at", metavar="TIME", help="when it was paid ahead")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _time(text: str, tz: ZoneInfo, flag: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.strip().replace("/", "-"))
    except ValueError:
        raise ValueError(f"{flag}: not a date/time: {text!r} (use \"2026-11-22 08:00:00\")") from None
    return t.replace(tzinfo=tz) if t.tzinfo is None else t


def run(args: argparse.Namespace) -> int:
    """Exit 0 with the fee; 1 for a configuration that does not load; 2 with one line for bad input."""
    from lanectl.config import ConfigError, load_config
    from lanectl.core.plates import normalize_plate
    from lanectl.core.tariff import TariffError
    from lanectl.cli.fee_report import fee_to_json, fee_to_text, quote_for_cli

    try:
        config = load_config(args.config, credentials=False)  # a fee needs prices, never keys
    except ConfigError as exc:
        print(f"lanectl: configuration is invalid:\n{exc}", file=sys.stderr)
        return 1
    try:
        enter, leave, paid_at = _stay(args, config.site.tz)
        fee = quote_for_cli(config.site.tariffs, config.site.vehicles, normalize_plate(args.plate), args.color,
                            args.vehicle_class, enter, leave, args.paid, paid_at)
    except (TariffError, ValueError) as exc:
        print(f"lanectl fee: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(fee_to_json(fee), ensure_ascii=False))
    else:
        print(fee_to_text(fee))
    return 0


def _stay(args: argparse.Namespace, tz: ZoneInfo) -> tuple[datetime, datetime, Optional[datetime]]:
    """The stay the flags describe, or ValueError with the one line to print."""
    from lanectl.core.plates import normalize_color
    enter, leave = _time(args.enter, tz, "--enter"), _time(args.leave, tz, "--leave")
    paid_at = _time(args.paid_at, tz, "--paid-at") if args.paid_at else None
    if leave < enter:
        raise ValueError(f"--leave {args.leave} is before --enter {args.enter}")
    if normalize_color(args.color) is None:
        raise ValueError(f"--color: unknown plate colour {args.color!r} (blue, yellow, green, white, black, "
                         "yellow-green, or the Chinese name)")
    if args.paid < 0:
        raise ValueError("--paid must not be negative")
    if args.paid and paid_at is None:
        raise ValueError("--paid needs --paid-at (the grace after paying ahead counts from then)")
    if paid_at is not None and not enter <= paid_at <= leave:
        raise ValueError(f"--paid-at {args.paid_at} is outside the stay (between --enter and --leave)")
    return enter, leave, paid_at
