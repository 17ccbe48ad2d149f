"""`lanectl records | outbox | status | balance`: read the running daemon through its control socket."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from lanectl.cli.control import add_client_parser, call, print_json, short_over, signed_yuan, who, yuan


def add_records(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sp = add_client_parser(sub, "records", "list entries and exits", cmd_records)
    sp.add_argument("--plate")
    sp.add_argument("--lane")
    sp.add_argument("--since", type=_when, help='"2026-11-22 08:00" or ISO 8601')
    sp.add_argument("--until", type=_when)
    sp.add_argument("--limit", type=int, default=50)


def add_outbox(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sp = add_client_parser(sub, "outbox", "show what waits to upload", cmd_outbox)
    sp.add_argument("--limit", type=int, default=50)


def add_status(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    add_client_parser(sub, "status", "show the lanes of the running daemon", cmd_status)


def add_balance(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sp = add_client_parser(sub, "balance", "show stored-value balances and their ledger", cmd_balance)
    sp.add_argument("--plate")
    sp.add_argument("--limit", type=int, default=20, help="ledger moves to show")


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("/", "-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date/time: {text!r} (use 2026-11-22 08:00[:00])") from None


def cmd_records(args: argparse.Namespace) -> int:
    rows = call(args, "records", plate=args.plate, lane=args.lane, since=args.since, until=args.until,
                limit=args.limit)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no records")
        return 0
    print(f"{'time':19}  {'lane':8} {'kind':7} {'plate':10} {'status':17} {'class':10} {'due':>7} {'paid':>7} "
          f"{'short/over':>11}  {'operator':16} record")
    for r in rows:
        print(f"{r['at'][:19].replace('T', ' '):19}  {r['lane_id']:8} {r['kind']:7} {r['plate'] or '-':10} "
              f"{r['status']:17} {r['vehicle_class']:10} {yuan(r['due_fen']):>7} {yuan(r['paid_fen']):>7} "
              f"{short_over(r):>11}  {who(r.get('operator', ''), r.get('operator_uid')) or '-':16} "
              f"{r['record_id']}")
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    data = call(args, "outbox", limit=args.limit)
    if args.json:
        print_json(data)
        return 0
    counts = data.get("counts", {})
    if not counts:
        print("outbox empty (no upload destinations configured, or nothing recorded yet)")
    for key, n in sorted(counts.items()):
        print(f"{key:30} {n}")
    for dest, st in (data.get("destinations") or {}).items():
        if st.get("failing_since"):
            print(f"{dest}: failing since {_stamp(st.get('failing_since'))}: {st['last_error']}")
    for item in data.get("pending", []):
        print(f"  #{item['id']} {item['destination']} {item['key']} attempts={item['attempts']} "
              f"next={_stamp(item['next_at'])} {item['last_error']}")
    return 0


def _stamp(value: object) -> str:
    """An ISO time as the daemon sent it (lot time), shown with its offset so no time reads as another zone's."""
    try:
        return datetime.fromisoformat(str(value)).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return str(value)


def _for_the_booth(lane_id: str, st: dict[str, Any]) -> list[str]:
    """What waits for an operator at this lane: an entry car held for the booth, the cars a misread plate may be."""
    lines = []
    held = st.get("held")
    if held:
        lines.append(f"    held for the booth: {held.get('plate') or '(no plate)'} ({held.get('reason', '')}): "
                     f"lanectl admit {lane_id} --reason ... | lanectl refuse {lane_id} --reason ...")
    candidates = (st.get("car") or {}).get("candidates") or []
    if candidates:
        lines.append(f"    read {st['car'].get('read_plate') or st['car'].get('plate')}, no stay found; may be: "
                     f"{', '.join(c['plate'] for c in candidates)}: lanectl correct {lane_id} PLATE")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    data = call(args, "status")
    if args.json:
        print_json(data)
        return 0
    print(f"park {data['park_id']}")
    for lane_id, st in data["lanes"].items():
        faults = "; ".join(f"{name}: {st[key]}" for name, key in (
            ("barrier", "barrier_fault"), ("plate reader", "plate_reader_fault"), ("scanner", "scanner_fault"))
            if st.get(key))
        waiting = st.get("waiting")
        extra = f" waiting: {waiting['plate']} owes {yuan(waiting['due_fen'])}" if waiting else ""
        lines = st.get("plate_lines")
        counted = f"  plates read {lines['read']}, skipped {lines['skipped']}" if lines else ""
        print(f"  {lane_id:10} {st['direction']:5} {st['phase']:17}{extra}{counted}"
              f"{'  FAULT: ' + faults if faults else ''}")
        for line in _for_the_booth(lane_id, st):
            print(line)
        refused = _refused(st)
        if refused:
            print(f"    refused since start: {refused}")
        released = st.get("last_release")
        if released:
            counts = st.get("releases") or {}
            print(f"    last release {released['at'][:19].replace('T', ' ')} by "
                  f"{who(released['operator'], released.get('operator_uid'))}: {released['reason']}"
                  f"{', paid ' + yuan(released['paid_fen']) if 'paid_fen' in released else ''}"
                  f"{'' if short_over(released) == '-' else ', ' + short_over(released)} "
                  f"(record {released['record_id']}); since start {counts.get('count', 0)} release(s): "
                  f"{counts.get('short', 0)} short ({yuan(counts.get('short_fen', 0))} in all), "
                  f"{counts.get('over', 0)} over ({yuan(counts.get('over_fen', 0))} in all)")
    storage = data.get("storage")
    if storage and not storage.get("ok", True):
        queued = storage.get("queued_audit_rows", 0)
        dropped = storage.get("dropped_audit_rows", 0)
        print(f"  STORAGE FAULT since {storage.get('since', '?')}: {storage.get('reason', '')} "
              f"(database {storage.get('path', '?')}; {storage.get('refused', 0)} write(s) refused, "
              f"{queued} barrier audit row(s) waiting in memory{f', {dropped} dropped' if dropped else ''})")
    bus = data.get("site_bus")
    if bus:
        if bus["connected"]:
            print(f"  site bus: booth {bus['booth_id']} connected to {bus.get('broker') or '?'}")
        else:
            print(f"  site bus: booth {bus['booth_id']} DOWN: {bus.get('last_error') or 'connecting'} "
                  "(the lanes work on their own meanwhile)")
    links = data.get("image_links")
    if links:
        print(f"  picture links at {links['public_url']}: served {links.get('served', 0)}, "
              f"refused {links.get('refused', 0)}")
    for line in _housekeeping(data.get("housekeeping") or {}):
        print(line)
    return 0


def _housekeeping(jobs: dict[str, Any]) -> list[str]:
    """One line per scheduled job (backup, retention, vacuum, report): its last run and result, its next run."""
    def at(stamp: Any) -> str:
        return str(stamp)[:16].replace("T", " ") if stamp else "never"
    lines = []
    for name, job in jobs.items():
        result = job.get("result") or {}
        said = "FAILED: " + str(result.get("error", "")) if job.get("ok") is False else (
            "ok" if job.get("ok") else "not run yet")
        lines.append(f"  housekeeping {name:9} last {at(job.get('last_run'))} {said}; next {at(job.get('next_run'))}")
    return lines


def _refused(lane: dict[str, Any]) -> str:
    """What a lane turned away since the daemon started: pushes that failed the camera's authentication, readings
    that were no plate (sent to the booth), noise on the plate line. Empty when there was none."""
    camera, lines = lane.get("camera") or {}, lane.get("plate_lines") or {}
    counts = (("camera pushes without valid credentials", camera.get("refused_credentials", 0)),
              ("camera pushes from sources not allowed", camera.get("refused_source", 0)),
              ("camera messages from another camera", camera.get("wrong_camera", 0)),  # over MQTT
              ("unreadable plates sent to the booth", lane.get("unreadable_plates", 0)),
              ("bytes of noise on the plate line", lines.get("garbage_bytes", 0)))
    return ", ".join(f"{n} {what}" for what, n in counts if n)


def cmd_balance(args: argparse.Namespace) -> int:
    data = call(args, "balances", plate=args.plate, limit=args.limit)
    if args.json:
        print_json(data)
        return 0
    if not data["balances"]:
        print("no stored-value balance" + (f" for {args.plate}" if args.plate else ""))
    for plate, fen in sorted(data["balances"].items()):
        print(f"{plate:10} {yuan(fen):>9} 元")
    for m in data["moves"]:
        print(f"  {m['at'][:19].replace('T', ' ')}  {m['plate']:10} {m['kind']:8} {signed_yuan(m['delta_fen']):>9}  "
              f"{m['record_id'] or m['reference']}")
    return 0
