"""`lanectl open | topup | refuse | correct | admit`: audited operator actions, asked of the running daemon
through its control socket. The daemon decides and records them (who, why, the money); these commands only ask
and show the answer."""

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


# --- the booth's other actions (the daemon's lane decides; service/booth.py) -----------------------------------
def add_booth(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`lanectl refuse LANE --reason`, `lanectl correct LANE PLATE`, `lanectl admit LANE --reason [--plate]`."""
    helps = {"refuse": "turn away the car waiting at a lane (audited; the barrier stays down)",
             "correct": "give the right plate for the car waiting at a lane (re-matched against the cars inside)",
             "admit": "let in the car held at an entry lane: plate-less, unreadable or refused (audited)"}
    for action, helptext in helps.items():
        sp = add_client_parser(sub, action, helptext, cmd_booth)
        sp.set_defaults(action=action)
        sp.add_argument("lane")
        if action == "correct":
            sp.add_argument("plate", help="the car's plate as it really is")
        else:
            sp.add_argument("--reason", required=True, help="why (recorded with your name)")
        if action == "admit":
            sp.add_argument("--plate", help="the car's plate, if it has one the camera misread")
        sp.add_argument("--record", metavar="RECORD_ID", help="the car you mean (as `lanectl status` shows it): "
                        "if it has gone since, nothing is done")
        sp.add_argument("--operator", help="your operator name; default: the name the daemon knows for you")


def cmd_booth(args: argparse.Namespace) -> int:
    data = call(args, "booth_action", action=args.action, lane=args.lane, operator=args.operator,
                reason=getattr(args, "reason", None), plate=getattr(args, "plate", None), record_id=args.record)
    if args.json:
        print_json(data)
        return 0 if data.get("done") else 1
    by = who(data.get("operator", ""), data.get("operator_uid"))
    done_on = f" (record {data['record_id']}, by {by})" if data.get("record_id") and data.get("done") else ""
    print(f"lane {data['lane']}: {data['outcome']}: {data['message']}{done_on}")
    for c in data.get("candidates", []):
        print(f"  {c['plate']}  entered {c['entered_at']} at {c['lane_id']}")
    if data.get("due_fen") and data.get("outcome") == "corrected":
        print(f"  owes {yuan(data['due_fen'])} 元")
    return 0 if data.get("done") else 1
