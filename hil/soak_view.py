"""Print what happened at one lane of a kept soak run, merged in time order: cars, coil writes and command
edges, the arm, barrier_actions rows, records, kills and restarts — to read a finding in context.

    python -m hil.soak_view DIR --lane in1 [--from T] [--to T]

DIR is a soak work directory (`python -m hil.soak --keep DIR`, or a failed run's directory); T is the rig's
monotonic time a finding is listed at.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional


def lines(doc: dict[str, Any], lane: str, t0: float, t1: float) -> list[str]:
    unit = doc.get("units", {}).get(lane)
    out: list[tuple[float, str]] = []
    for e in doc["edges"]:
        if e["lane"] == lane:
            out.append((e["t"], f"module: {e['command'].upper()} edge"))
    for e in doc["down_limits"]:
        if e["lane"] == lane:
            out.append((e["t"], "arm at its down limit"))
    for a in doc["actions"]:
        if a["lane"] == lane:
            done = f" answered at {a['t_done']:.3f}" if a["t_done"] is not None else ""
            out.append((a["t_requested"], f"row {a['action_id']} {a['command'].upper()} {a['authority']} "
                                          f"{a['reason']} {a['operator']} -> {a['status']}{done}"))
    for r in doc["records"]:
        if r["lane"] == lane:
            out.append((r["t"], f"record {r['record_id']} {r['kind']} {r['plate']} {r['status']}"))
    for c in doc["cars"]:
        if c["lane"] != lane:
            continue
        out.append((c["t_arrive"], f"car {c['kind']} {c['plate'] or '(no plate)'} arrives, arm "
                                   f"{'up' if c['arm_up_on_arrival'] else 'down'}"
                                   f"{', daemon down' if c['daemon_down_on_arrival'] else ''}"))
        out += [(t, f"camera reads {c['plate']}") for t in c.get("reads", [])]
        if c["t_pass"] is not None:
            out.append((c["t_pass"], f"car {c['plate'] or '(no plate)'} drives onto the safety loop"))
        if c["t_gone"] is not None:
            out.append((c["t_gone"], f"car {c['plate'] or '(no plate)'} gone"))
    for s in doc["arm"]:
        if s["lane"] == lane:
            out.append((s["t"], "arm " + ("down" if s["down"] else "leaves its down limit")))
    for k, r in doc["downtimes"]:
        out += [(k, "KILL -9"), (r, "daemon answering again")]
    for w in doc["coil_writes"]:
        if unit is None or w["unit"] == unit:
            out.append((w["t"], f"coil write unit {w['unit']} coil {w['coil']} {'ON' if w['value'] else 'OFF'}"))
    for f in doc["findings"]:
        if f["lane"] == lane:
            out.append((f["t"], f">>> {f['what']}: {f['detail']}"))
    offset = doc["offset"]
    return [f"{t:10.3f} {datetime.fromtimestamp(t + offset).strftime('%H:%M:%S.%f')[:-3]}  {text}"
            for t, text in sorted(out, key=lambda x: x[0]) if t0 <= t <= t1]


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hil.soak_view", description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--lane", required=True)
    ap.add_argument("--from", dest="t0", type=float, default=float("-inf"))
    ap.add_argument("--to", dest="t1", type=float, default=float("inf"))
    args = ap.parse_args(argv)
    doc = json.loads((args.dir / "timeline.json").read_text())
    print("\n".join(lines(doc, args.lane, args.t0, args.t1)))


if __name__ == "__main__":
    main()
