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
- `calls`: (start, seconds, label) of the steps a paid exit goes through — every store write on the writer
  thread (its function's name, the thread hop excluded), platform HTTP calls (and their rate-limit wait), the
  settlement driver's effects and verified provider results, lane events handed over
- `fsync`: (start, seconds) of every COMMIT statement: the WAL frames appended and synced

and writes them as JSON to $LANECTL_TRACE when the process exits. `gc.freeze()` after the imports when
$LANECTL_GC_FREEZE=1 (an experiment: the start-up objects leave the collector's generations).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import sys
import time
from typing import Any

from hil.bench.fsync import timed_transaction
from lanectl.adapters import modbus_barrier, platform_http
from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.adapters.store.sqlite_store import SqliteStore
from lanectl.cli import main
from lanectl.core.events import PlateRead
from lanectl.service.lane_runner import LaneRunner
from lanectl.service.settlement import SettlementService

TRACE: dict[str, list[Any]] = {k: [] for k in ("emit", "step", "commit", "committed", "write", "slot", "written",
                                               "gc", "acquire", "settle", "read", "calls", "fsync")}


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


def _labelled(cls: type, name: str, label: Any) -> None:
    """Record (start, seconds, label(*args)) of every call of a method (async or not) into TRACE["calls"]."""
    original = getattr(cls, name)
    if asyncio.iscoroutinefunction(original):
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return await original(*args, **kwargs)
            finally:
                TRACE["calls"].append((start, time.monotonic() - start, label(*args, **kwargs)))
    else:
        def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            start = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                TRACE["calls"].append((start, time.monotonic() - start, label(*args, **kwargs)))
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
    commit_lane = SqliteStore.commit_lane

    def traced_commit(self: SqliteStore, lane: str, state: Any, effects: Any, now: Any, **kw: Any) -> Any:
        # the store answers with a future the lane awaits as it is: marked by a callback, not wrapped in a coroutine
        opening = any(type(e).__name__ == "OpenBarrier" for e in effects)
        if opening:
            TRACE["commit"].append(time.monotonic())
        answer = commit_lane(self, lane, state, effects, now, **kw)
        if opening:
            answer.add_done_callback(lambda _: TRACE["committed"].append(time.monotonic()))
        return answer

    SqliteStore.commit_lane = traced_commit  # type: ignore[method-assign]
    opening = lambda self, unit, address, value, **kw: bool(value) and address == 0  # noqa: E731
    _wrap_async(modbus_barrier.ModbusBarrier, "open", "write", "")
    _wrap_async(modbus_barrier._Session, "write_coil", "slot", "written", opening)

    _interval(modbus_barrier._Slot, "acquire", "acquire",  # commands only (a rank above the polls')
              lambda self, priority: modbus_barrier._rank(priority) < modbus_barrier.POLL)
    _interval(modbus_barrier.ModbusBarrier, "_settle_coils", "settle")
    _interval(modbus_barrier.ModbusBarrier, "_read", "read")  # input reads: the polls (and CLOSE's check)
    _labelled(UnitOfWork, "_writing", lambda self, probe, fn, *a: f"store {getattr(fn, '__name__', fn)}")
    _labelled(platform_http.PlatformTransport, "post", lambda self, url, body, what, **kw: f"http {what}")
    _labelled(platform_http.PlatformTransport, "_wait_slot", lambda self: "http rate-limit wait")
    _labelled(SettlementService, "_execute", lambda self, record, effect, *a: f"settle {type(effect).__name__}")
    _labelled(SettlementService, "on_result", lambda self, provider, ref, answer, **kw: f"result {provider} "
              f"{answer.status}")
    _labelled(LaneRunner, "emit", lambda self, event: f"emit {type(event).__name__}")
    opened = UnitOfWork.open

    async def traced_open(self: UnitOfWork, *args: Any, **kwargs: Any) -> None:
        await opened(self, *args, **kwargs)
        timed_transaction(self, lambda began, started, done: TRACE["fsync"].append((started, done - started, None)))

    UnitOfWork.open = traced_open  # type: ignore[method-assign]
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
