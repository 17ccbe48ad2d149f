"""`lanectl open | topup`: audited operator actions, asked of the running daemon through its control socket.
The daemon decides and records them (who, why, the money); these commands only ask and show the answer."""

from __future__ import annotations

import argparse
import sys

from lanectl.cli.control import add_client_parser, call, print_json, short_over, who, yuan


def add_open(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sp = add_client_parser(sub, "open", "ask the running daemon to raise a barrier (audited)", cmd_open)
    sp.add_argument("--lane", required=True)
    sp.add_argument("--reason", required=True, help="why (e.g. cash, fault, emergency)")
    sp.add_argument("--operator", help="your operator name; default: the name the daemon knows for your "
                    "unix user (with site operators configured, a different name is refused)")
    sp.add_argument("--amount", type=int, metavar="FEN", help="cash taken, in fen (less or more than "
                    "the car owes is recorded as short / over)")


def add_topup(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sp = add_client_parser(sub, "topup", "credit a stored-value balance (audited)", cmd_topup)
    sp.add_argument("--plate", required=True)
    sp.add_argument("--amount", type=int, required=True, metavar="FEN", help="amount credited, in fen")
    sp.add_argument("--operator", help="who takes the money; default: your operator name")
    sp.add_argument("--reason", required=True, help="e.g. cash, wechat transfer")


def cmd_open(args: argparse.Namespace) -> int:
    if args.amount is not None and args.amount < 0:
        print("lanectl: --amount must be a non-negative number of fen", file=sys.stderr)
        return 2
    data = call(args, "open_barrier", lane=args.lane, operator=args.operator, reason=args.reason,
                amount_fen=args.amount)
    # the release is decided and recorded whether or not the barrier took the command: say who and the money
    recorded = (f"record {data['record_id']} released by {who(data.get('operator', ''), data.get('operator_uid'))}"
                f"{'' if short_over(data) == '-' else ', cash ' + short_over(data)}") if data.get("record_id") else ""
    if args.json:
        print_json(data)
    elif data.get("opened"):
        print(f"lane {data['lane']}: OPEN delivered to the barrier ({recorded}, action {data['action_id']})")
    else:
        print(f"lane {data['lane']}: not opened: {data.get('message') or data.get('phase')}"
              f"{f' ({recorded})' if recorded else ''}")
    return 0 if data.get("opened") else 1


def cmd_topup(args: argparse.Namespace) -> int:
    if args.amount <= 0:
        print("lanectl: --amount must be a positive number of fen", file=sys.stderr)
        return 2
    data = call(args, "topup", plate=args.plate, amount_fen=args.amount, operator=args.operator,
                reason=args.reason)
    if args.json:
        print_json(data)
    else:
        by = who(data.get("operator", ""), data.get("operator_uid"))
        print(f"{data['plate']}: +{yuan(data['amount_fen'])} 元, balance {yuan(data['balance_fen'])} 元"
              f"{f' (by {by})' if by else ''}")
    return 0
