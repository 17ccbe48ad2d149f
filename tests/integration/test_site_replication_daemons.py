"""Two daemons built by the composition root (bootstrap.build_app) with fake devices and their own real SQLite
databases, one booth with the entry lane and one with the exit lane, sharing one in-memory broker: the bus is
down while the car enters at A, comes back, and the exit at B still finds A's entry; A's books follow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lanectl.adapters.clock import SystemClock
from lanectl.bootstrap import build_app
from lanectl.config import load_config
from lanectl.core.events import IoSnapshot, PlateRead
from tests.fakes import SHANGHAI, FakeControlServer, FakeLaneDevices, FakeListener, FakeNotifier, FakeSession, \
    MemoryBroker
from tests.integration.test_site_replication import until
from tests.minimal_site import write_minimal_config

AT_THE_LOOP = IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True)
PLATE = "粤B12345"


def booth(tmp: Path, name: str, lane: str, broker: MemoryBroker):
    etc = write_minimal_config(tmp / name, site_bus={"enabled": True, "booth_id": name})
    (etc / "lanes" / "in1.yaml").unlink()
    (etc / "lanes" / f"{lane}.yaml").write_text(
        f"id: {lane}\ndirection: {'entry' if lane.startswith('in') else 'exit'}\ndevices:\n"
        "  barrier: {kind: modbus_rtu, port: /dev/null-rs485, unit: 1}\n"
        "  plate_reader: {kind: serial_line, port: /dev/null-camera}\n")
    devices, bus = FakeLaneDevices(), broker.client()
    app = build_app(load_config(etc), clock=SystemClock(SHANGHAI), devices=devices,
                    listener=lambda *a, **k: FakeListener(*a, **k), control=lambda *a, **k: FakeControlServer(*a, **k),
                    session=FakeSession, notifier=FakeNotifier(), raise_nofile=lambda: (4096, 4096), site_bus=bus)
    return app, devices, bus


async def test_two_daemons_one_broker_an_outage_during_the_entry_and_the_exit_at_the_other_booth_matches(tmp_path):
    broker = MemoryBroker()
    a, a_devices, a_bus = booth(tmp_path, "A", "in1", broker)
    b, b_devices, _ = booth(tmp_path, "B", "out1", broker)
    stop = asyncio.Event()
    daemons = [asyncio.create_task(app.run(stop)) for app in (a, b)]
    try:
        await asyncio.wait_for(asyncio.gather(a.ready.wait(), b.ready.wait()), 5)
        a_bus.connected = False  # the broker is unreachable from A while the car comes in
        await a_devices.barriers["in1"].send(AT_THE_LOOP)
        await a_devices.readers["in1"].send(PlateRead(PLATE, "blue", 95, "in1-camera"))
        await asyncio.wait_for(a_devices.barriers["in1"].opened.wait(), 5)  # the lane did not wait for the bus
        entry = a.store.inside()[PLATE]
        assert PLATE not in b.store.inside_view()

        a_bus.connected = True  # back: the outbox sends the entry (after its backoff)
        await until(lambda: PLATE in b.store.inside_view(), "A's entry replicated at B", timeout=8)
        await b_devices.barriers["out1"].send(AT_THE_LOOP)
        await b_devices.readers["out1"].send(PlateRead(PLATE, "blue", 95, "out1-camera"))
        exit_lane = b.runners["out1"]
        exit_lane = b.runners["out1"]
        await until(lambda: exit_lane.state.visit is not None and exit_lane.state.visit.entry_record_id, "B matches")
        exit_id = exit_lane.state.visit.record_id
        assert exit_lane.state.visit.entry_record_id == entry.record_id
        await until(lambda: bool(b.store.conn.execute("SELECT 1 FROM records WHERE record_id=? AND status!='pending'",
                                                      (exit_id,)).fetchone()), "B's exit decided")
        row = b.store.conn.execute("SELECT entered_at, entry_record_id FROM records WHERE record_id=?",
                                   (exit_id,)).fetchone()
        assert row["entry_record_id"] == entry.record_id
        assert row["entered_at"] == entry.entered_at.isoformat()  # the stay is priced from A's entry time
        await until(lambda: PLATE not in a.store.inside(), "A's books follow the exit at B")

        await until(lambda: not a.store.conn.execute("SELECT 1 FROM outbox WHERE status='pending'").fetchone(),
                    "A's closing snapshot sent")
        sent = [t for t, *_ in broker.log if t.endswith("/records")]
        assert sent.count("lanectl/t/A/records") == 2  # the entry, then its closing (exited) snapshot, once each
        assert b.replicator.counts["duplicate"] == 0 and b.replicator.counts["bad"] == 0
        status = b.replication_status()
        assert status["peers"] == {"A": 2} and status["remote_inside"] == 0 and status["applied"] == 2
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*daemons, return_exceptions=True), 10)
