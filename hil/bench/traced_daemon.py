"""The daemon with stage timestamps, for finding where a decision's time goes (bench use only).

    LANECTL_TRACE=/path/trace.json python -m hil.bench.traced_daemon run --config DIR ...

Wraps a few of the daemon's methods from outside (nothing in lanectl changes) and records, on the system-wide
monotonic clock the rig also uses (so the bench can line them up with its own t_plate / t_open):

- `emit`: a PlateRead handed to its lane (the line's last byte arrived and was decoded)
- `step`: the lane took it off its queue; `commit` / `committed`: the write-ahead transaction (writer-thread hop,
  SQL, fsync) around it
- `write`: the OPEN handed to the barrier driver; `slot`: the bus's slot held (a poll in flight finished); `written`: the
  module's answer read
- `gc`: every collection (start, seconds, generation); `acquire`: a command waiting for the bus slot;
  `settle`: coils driven OFF and read back before a command; `read`: input reads (the polls)

and writes them as JSON to $LANECTL_TRACE when the process exits. `gc.freeze()` after the imports when
$LANECTL_GC_FREEZE=1 (an experiment: the start-up objects leave the collector's generations).
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time
from typing import Any

from lanectl.adapters import modbus_barrier
from lanectl.adapters.store.sqlite_store import SqliteStore
from lanectl.cli import main
from lanectl.core.events import PlateRead
from lanectl.service.lane_runner import LaneRunner

TRACE: dict[str, list[Any]] = {k: [] for k in ("emit", "step", "commit", "committed", "write", "slot", "written",
                                               "gc", "acquire", "settle", "read")}


def _interval(cls: type, name: str, kind: str, want=lambda *a, **k: True) -> None:
    """Record (start, seconds) of every call of an async method into TRACE[kind]."""
    original = getattr(cls, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not want(*args, **kwargs):
            return await original(*args, **kwargs)
        start = time.monotonic()
        try:
            return await original(*args, **kwargs)
        finally:
            TRACE[kind].append((start, time.monotonic() - start, None))

    setattr(cls, name, wrapper)


def _wrap_async(cls: type, name: str, before: str, after: str, want=lambda *a, **k: True) -> None:
    original = getattr(cls, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark = want(*args, **kwargs)
        if mark:
            TRACE[before].append(time.monotonic())
        try:
            return await original(*args, **kwargs)
        finally:
            if mark and after:
                TRACE[after].append(time.monotonic())

    setattr(cls, name, wrapper)


def _install() -> None:
    emit = LaneRunner.emit

    def traced_emit(self: LaneRunner, event: Any) -> None:
        if isinstance(event, PlateRead):
            TRACE["emit"].append(time.monotonic())
        emit(self, event)

    LaneRunner.emit = traced_emit  # type: ignore[method-assign]
    step = LaneRunner.step

    async def traced_step(self: LaneRunner, event: Any) -> Any:
        if isinstance(event, PlateRead):
            TRACE["step"].append(time.monotonic())
        return await step(self, event)

    LaneRunner.step = traced_step  # type: ignore[method-assign]
    _wrap_async(SqliteStore, "commit_lane", "commit", "committed",
                lambda self, lane, state, effects, now: any(type(e).__name__ == "OpenBarrier" for e in effects))
    opening = lambda self, unit, address, value, **kw: bool(value) and address == 0  # noqa: E731
    _wrap_async(modbus_barrier.ModbusBarrier, "open", "write", "")
    _wrap_async(modbus_barrier._Session, "write_coil", "slot", "written", opening)

    _interval(modbus_barrier._Slot, "acquire", "acquire", lambda self, priority: priority)  # commands only
    _interval(modbus_barrier.ModbusBarrier, "_settle_coils", "settle")
    _interval(modbus_barrier.ModbusBarrier, "_read", "read")  # input reads: the polls (and CLOSE's check)
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.monotonic()]
        elif started:
            TRACE["gc"].append((started[0], time.monotonic() - started[0], info.get("generation")))

    gc.callbacks.append(on_gc)
    path = os.environ.get("LANECTL_TRACE")
    if path:
        atexit.register(lambda: open(path, "w").write(json.dumps(TRACE)))
    if os.environ.get("LANECTL_GC_FREEZE") == "1":
        gc.collect()
        gc.freeze()


if __name__ == "__main__":
    _install()
    sys.exit(main(sys.argv[1:]))
