"""Two booths, each its own SQLite database and lanes, sharing one in-memory broker (tests/fakes.MemoryBroker):
an entry at booth A is found by an exit at booth B, priced from A's entry time, and A's inside list drops it; a
bus outage never stops a lane (the messages wait in the outbox and go out in order); a booth that missed messages
catches up; the partition rule holds on both sides. No duplicates, nothing lost."""

from __future__ import annotations

import asyncio
import json
import os
import contextlib
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.core.events import IoSnapshot, OperatorOpen, PlateRead
from lanectl.service.lane_runner import LaneRunner
from lanectl.service.outbox import Backoff, OutboxRelay
from lanectl.service.site_replication import SiteBusPublisher, SiteReplicator
from tests.fakes import SHANGHAI, FakeBarrier, MemoryBroker, MemoryBus
from tests.policies import FlatPolicy

DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)
CLOCK = SystemClock(SHANGHAI)
PARK = "p1"
PLATE = "粤B12345"


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    try:
        await asyncio.wait_for(_poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what}") from None


class Booth:
    def __init__(self, name: str, path: Path, broker: MemoryBroker,
                 backoff: Backoff = Backoff(base_s=0.02, cap_s=0.1)) -> None:
        self.name = name
        self.path = path
        self.bus: MemoryBus = broker.client()
        self.store = SqliteStore(path, site_booth=name)
        self.relay = OutboxRelay(self.store, {"site_bus": SiteBusPublisher(self.bus, PARK, name)}, CLOCK,
                                 backoff=backoff, default_rate_per_s=1000, idle_s=0.05)
        self.replicator = SiteReplicator(self.bus, self.store, CLOCK, PARK, name, catchup_s=3600,
                                         on_queued=lambda: self.relay.wake("site_bus"),
                                         on_back=lambda: self.relay.retry_now("site_bus"))
        self.tasks: list[asyncio.Task] = []
        self.lanes = 0

    async def lane(self, direction: str) -> LaneRunner:
        """A fresh lane for each car (a lane's barrier cycle is not what these tests are about)."""
        self.lanes += 1
        runner = LaneRunner(f"{self.name}-{direction}{self.lanes}", direction, FlatPolicy(flat_fen=500, free_minutes=0),
                            self.store, CLOCK, barrier=FakeBarrier(), after_commit=self.relay.wake)
        self.tasks.append(asyncio.create_task(runner.run()))
        await runner.started.wait()
        runner.emit(DOWN)
        await until(lambda: runner.state.io == DOWN, "the first snapshot")
        if direction == "exit":
            self.exit = runner
        return runner

    async def start(self) -> None:
        await self.store.open()
        self.tasks = [asyncio.create_task(self.relay.run())]
        self.exit = await self.lane("exit")

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()

    async def enter(self, plate: str) -> str:
        before = {c.record_id for c in self.store.inside().values()}
        (await self.lane("entry")).emit(PlateRead(plate, "blue", 90))
        await until(lambda: plate in self.store.inside() and self.store.inside()[plate].record_id not in before,
                    f"{plate} inside at {self.name}")
        return self.store.inside()[plate].record_id

    async def leave(self, plate: str) -> str:
        await self.lane("exit")
        self.exit.emit(PlateRead(plate, "blue", 90))
        await until(lambda: self.exit.state.phase.value == "awaiting_payment", f"{plate} priced at {self.name}")
        record_id = self.exit.state.visit.record_id
        self.exit.emit(OperatorOpen("王", "cash", amount_fen=self.exit.state.visit.due_fen))
        await until(lambda: record(self.store, record_id)["status"] == "released", f"{plate} out at {self.name}")
        return record_id

    def pending(self) -> int:
        return self.store.conn.execute("SELECT COUNT(*) FROM outbox WHERE status='pending'").fetchone()[0]


@pytest.fixture
async def booths(tmp_path: Path) -> AsyncIterator[tuple[MemoryBroker, Booth, Booth]]:
    broker = MemoryBroker()
    a, b = Booth("A", tmp_path / "a.db", broker), Booth("B", tmp_path / "b.db", broker)
    await a.start()
    await b.start()
    try:
        yield broker, a, b
    finally:
        for booth in (a, b):
            with contextlib.suppress(Exception):
                await booth.stop()


def record(store: SqliteStore, record_id: str) -> dict:
    return dict(store.conn.execute("SELECT * FROM records WHERE record_id=?", (record_id,)).fetchone())


async def test_an_exit_at_b_finds_the_entry_made_at_a_prices_it_from_a_and_a_drops_the_car(booths):
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "A's entry replicated at B")
    assert b.store.inside_view()[PLATE].entered_at == a.store.inside()[PLATE].entered_at
    assert PLATE not in b.store.inside()  # B's own books: not B's car

    b.exit.emit(PlateRead(PLATE, "blue", 90))
    await until(lambda: b.exit.state.phase.value == "awaiting_payment", "B pricing the stay")
    visit = b.exit.state.visit
    assert visit.entry_record_id == entry_id and visit.due_fen == 500
    b.exit.emit(OperatorOpen("王", "cash", amount_fen=500))
    await until(lambda: PLATE not in a.store.inside(), "A's inside list drops the car")
    assert record(a.store, entry_id)["status"] == "exited"
    assert PLATE not in b.store.inside_view() and PLATE not in a.store.inside_view()
    exit_row = record(b.store, visit.record_id)
    assert exit_row["entry_record_id"] == entry_id and exit_row["status"] == "released"
    await until(lambda: a.pending() == 0 and b.pending() == 0, "every message sent")
    # the retained state of A's entry was cleared once its stay ended
    assert not any(t.endswith(f"/inside/{entry_id}") for t in broker.retained)


async def test_the_bus_down_during_the_entry_stops_nothing_and_the_exit_after_it_is_back_still_matches(booths):
    broker, a, b = booths
    a.bus.connected = False
    entry_id = await a.enter(PLATE)  # the lane does not wait for the bus
    other = await a.enter("粤B00002")
    await until(lambda: a.relay.destination_status("site_bus").failing_since is not None, "the relay retrying")
    assert a.pending() == 2 and PLATE not in b.store.inside_view()

    a.bus.connected = True
    await until(lambda: a.pending() == 0, "the queued messages sent")
    assert PLATE in b.store.inside_view() and "粤B00002" in b.store.inside_view()
    seqs = [m for t, m, _, _ in broker.log if t == "lanectl/p1/A/records"]
    assert len(seqs) == 2  # in order, once each

    await b.leave(PLATE)
    await until(lambda: PLATE not in a.store.inside(), "A's books follow B's exit")
    assert record(a.store, entry_id)["status"] == "exited" and other in {c.record_id for c in a.store.inside().values()}


async def test_a_booth_that_missed_messages_catches_up_and_redelivery_changes_nothing(booths):
    broker, a, b = booths
    b.bus.connected = False  # B is off the bus: A's messages go out, B misses them
    first = await a.enter(PLATE)
    await until(lambda: a.pending() == 0, "A's entry sent")
    second = await a.enter("粤B00002")
    await until(lambda: a.pending() == 0, "A's second entry sent")
    assert b.store.inside_view() == {} or PLATE not in b.store.inside_view()

    b.bus.connected = True
    assert await b.replicator.catch_up()
    assert {PLATE, "粤B00002"} <= set(b.store.inside_view())
    assert b.store.site_gaps() == {"A": 2}
    applied = b.replicator.counts["applied"]
    assert await b.replicator.catch_up()  # asked again: everything is a duplicate now
    assert b.replicator.counts["applied"] == applied
    # a gap: B hears seq 4 without seq 3 and asks for what it missed at once
    b.bus.connected = False
    await a.enter("粤B00003")
    await until(lambda: a.pending() == 0, "A's third entry sent")
    b.bus.connected = True
    await a.enter("粤B00004")
    await until(lambda: "粤B00003" in b.store.inside_view() and "粤B00004" in b.store.inside_view(),
                "the gap filled")
    assert b.store.site_gaps() == {"A": 4} and not b.store.site_gap("A")
    assert {first, second} <= {c.record_id for c in b.store.inside_view().values()}


async def test_a_booth_back_on_the_bus_asks_for_what_it_missed_by_itself(booths):
    broker, a, b = booths
    replicator = asyncio.create_task(b.replicator.run())
    try:
        await until(lambda: b.replicator.counts["asked"] == 1, "B asks once connected")
        b.bus.connected = False
        await until(lambda: not b.replicator.on_bus, "B's replicator sees the bus down")
        entry_id = await a.enter(PLATE)
        await until(lambda: a.pending() == 0, "A's entry sent while B was off the bus")
        assert PLATE not in b.store.inside_view()
        b.bus.connected = True  # the reconnect is noticed at once: B asks, A answers
        await until(lambda: PLATE in b.store.inside_view(), "B caught up", timeout=3)
        assert b.store.inside_view()[PLATE].record_id == entry_id and b.replicator.counts["asked"] == 2
    finally:
        replicator.cancel()
        await asyncio.gather(replicator, return_exceptions=True)


async def test_records_queued_while_off_the_bus_go_out_when_it_is_back_not_after_the_backoff(tmp_path: Path):
    """A's relay backs off 30 s after failing to publish; the bus is back after ~0.3 s: A's replicator sees it and
    the relay sends at once (B asks for nothing here: the record comes by A's own outbox)."""
    broker = MemoryBroker()
    a = Booth("A", tmp_path / "a.db", broker, backoff=Backoff(base_s=30.0, cap_s=30.0, jitter=0.0))
    b = Booth("B", tmp_path / "b.db", broker)
    await a.start()
    await b.start()
    watching = asyncio.create_task(a.replicator.run())
    try:
        await until(lambda: a.replicator.on_bus, "A's replicator sees the bus")
        a.bus.connected = False
        await until(lambda: not a.replicator.on_bus, "A's replicator sees the bus down")
        await a.enter(PLATE)
        await until(lambda: a.relay.destination_status("site_bus").retry_at is not None, "A's relay backing off")
        a.bus.connected = True
        # well inside the 30 s backoff (a loaded CI machine may take seconds; the backoff would take 30)
        await until(lambda: PLATE in b.store.inside_view(), "the entry at B", timeout=10)
        assert a.pending() == 0
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        for booth in (a, b):
            await booth.stop()


async def test_the_replica_survives_a_restart(booths, tmp_path: Path):
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "replicated at B")
    await b.stop()
    again = Booth("B", b.path, broker)
    broker.clients.remove(b.bus)
    await again.start()
    try:
        assert again.store.inside_view()[PLATE].record_id == entry_id
        assert again.store.site_gaps() == {"A": 1}
        await again.leave(PLATE)
        await until(lambda: PLATE not in a.store.inside(), "A follows the exit at the restarted B")
    finally:
        await again.stop()


@pytest.mark.parametrize("at", ["A", "B"])
async def test_partition_both_booths_keep_their_entry_the_exit_closes_the_latest_and_supersedes_the_other(booths, at):
    broker, a, b = booths
    a.bus.connected = b.bus.connected = False  # partitioned: each decides alone
    early = await a.enter(PLATE)
    await asyncio.sleep(0.01)  # the later entry is later on the clock
    late = await b.enter(PLATE)
    a.bus.connected = b.bus.connected = True
    await until(lambda: a.pending() == 0 and b.pending() == 0, "both sides sent")
    # both kept: each booth has its own entry inside and the other's in its replica
    assert a.store.inside()[PLATE].record_id == early and b.store.inside()[PLATE].record_id == late
    assert {r.record_id for r in a.store.site_inside()} == {late}
    assert {r.record_id for r in b.store.site_inside()} == {early}
    # one stay per plate for a lane, on both sides: the latest entry
    assert a.store.inside_view()[PLATE].record_id == b.store.inside_view()[PLATE].record_id == late

    exiting, other = (a, b) if at == "A" else (b, a)
    exit_id = await exiting.leave(PLATE)  # closes B's (later) entry, supersedes A's
    assert record(exiting.store, exit_id)["entry_record_id"] == late
    await until(lambda: exiting.pending() == 0, "the exit and its corrections sent")
    await until(lambda: other.pending() == 0, "the other side's own correction sent")
    assert record(a.store, early)["status"] == "superseded" and record(b.store, late)["status"] == "exited"
    for booth in (a, b):
        assert PLATE not in booth.store.inside() and PLATE not in booth.store.inside_view()
        assert booth.store.site_inside() == []


async def test_an_entry_at_b_of_a_plate_inside_at_a_supersedes_a_s_stale_entry_on_both_sides(booths):
    broker, a, b = booths
    stale = await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "replicated at B")
    fresh = await b.enter(PLATE)  # A's exit of that car was missed: one car, one stay
    await until(lambda: PLATE not in a.store.inside(), "A's stale entry closed")
    assert record(a.store, stale)["status"] == "superseded"
    assert a.store.inside_view()[PLATE].record_id == b.store.inside_view()[PLATE].record_id == fresh


async def test_a_platform_mark_of_the_plate_at_a_sign_free_travels_with_the_entry_to_b(booths):
    broker, a, b = booths
    await a.store.set_mark("bolink", PLATE, "signfree", "1", CLOCK.now())
    await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "replicated at B")
    assert await b.store.mark("bolink", PLATE, "signfree") == "1"  # what B's Bolink client reads at the exit
    await b.store.set_mark("bolink", PLATE, "signfree", "0", CLOCK.now())  # B heard later that it ended
    await a.enter(PLATE)  # a new stay: A's older mark does not overwrite B's newer one
    await until(lambda: b.replicator.counts["applied"] >= 3, "A's next entry applied at B")
    assert await b.store.mark("bolink", PLATE, "signfree") == "0"


async def test_a_newer_mark_from_a_replaces_the_one_b_read_before(booths):
    broker, a, b = booths
    await b.store.set_mark("bolink", PLATE, "signfree", "0", CLOCK.now())
    assert await b.store.mark("bolink", PLATE, "signfree") == "0"  # B keeps what it read (the paid path's hop)
    await a.store.set_mark("bolink", PLATE, "signfree", "1", CLOCK.now() + timedelta(seconds=1))
    await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "replicated at B")
    assert await b.store.mark("bolink", PLATE, "signfree") == "1"


async def test_money_paid_ahead_at_a_travels_with_the_entry_to_the_exit_at_b(booths):
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    now = CLOCK.now()
    assert await a.store.add_prepayment("bolink", "T-1", order_id=entry_id, plate=PLATE, amount_fen=200,
                                        paid_at=now, now=now) == "recorded"
    a.relay.wake()
    await until(lambda: PLATE in b.store.inside_view() and b.store.inside_view()[PLATE].paid_fen == 200,
                "the prepayment replicated")
    assert b.store.inside_view()[PLATE].paid_at == now
    (snapshot,) = [r for r in b.store.site_inside() if r.record_id == entry_id]
    assert snapshot.prepaid_fen == 200 and [p.method for p in snapshot.payments] == ["bolink:prepay"]


async def test_the_stored_replica_keeps_a_closed_stay_closed_and_the_newest_snapshot(tmp_path: Path):
    from lanectl.core import site_replica as sr
    store = SqliteStore(tmp_path / "c.db", site_booth="C")
    await store.open()
    try:
        now = CLOCK.now()
        newer = sr.SiteRecord(booth="A", seq=5, kind="entry", record_id="A-1", plate=PLATE, status="inside",
                              at=now.isoformat(), prepaid_fen=100)
        older = newer.model_copy(update={"seq": 2, "prepaid_fen": 0})
        await store.uow.write(store.replica.put_sync, [sr.RemoteEntry(newer, "exited")], now)
        await store.uow.write(store.replica.put_sync, [sr.RemoteEntry(older, "")], now)
        entries, _ = await store.uow.run(store.replica.load_sync)
        assert entries == [sr.RemoteEntry(newer, "exited")]
    finally:
        await store.close()


async def test_many_cars_in_at_a_out_at_b_across_an_outage_none_lost_none_twice(booths):
    broker, a, b = booths
    cars = int(os.environ.get("SITE_REPLICATION_CARS", "30"))  # 200 for the figures (about 15 s)
    plates = [f"粤B{n:05d}" for n in range(cars)]
    entries = {}
    for n, plate in enumerate(plates):
        if n == cars // 3:
            a.bus.connected = False  # the broker is gone for the middle third: A keeps letting cars in
        if n == 2 * cars // 3:
            a.bus.connected = True
        entries[plate] = await a.enter(plate)
    await until(lambda: a.pending() == 0, "A's backlog sent once the bus is back")
    exits = {plate: await b.leave(plate) for plate in plates}
    await until(lambda: a.store.inside() == {} and a.pending() == 0 and b.pending() == 0, "every stay closed")

    matched = sum(record(b.store, exits[p])["entry_record_id"] == entries[p] for p in plates)
    assert matched == cars  # every exit matched to its own entry
    assert all(record(a.store, entries[p])["status"] == "exited" for p in plates)  # lost: 0
    seqs = [json.loads(m)["seq"] for t, m, _, _ in broker.log if t == "lanectl/p1/A/records"]
    assert sorted(seqs) == seqs == list(range(1, len(seqs) + 1))  # in order, no hole, none twice
    assert b.replicator.counts["duplicate"] == 0 and b.replicator.counts["bad"] == 0
    assert b.store.site_inside() == [] and b.store.site_gaps()["A"] == len(seqs)


async def prepay_at(booth: Booth, trade_no: str, order_id: str, amount_fen: int) -> str:
    now = CLOCK.now()
    outcome = await booth.store.add_prepayment("bolink", trade_no, order_id=order_id, plate=PLATE,
                                               amount_fen=amount_fen, paid_at=now, now=now)
    booth.relay.wake()
    return outcome


def prepaid_at_a(a: Booth, entry_id: str) -> list[tuple[str, int]]:
    return [(r["trade_no"], r["amount_fen"]) for r in a.store.conn.execute(
        "SELECT trade_no, amount_fen FROM prepayments WHERE entry_record_id=? ORDER BY id", (entry_id,))]


async def test_a_prepay_at_b_for_a_s_car_is_kept_deducted_at_b_s_exit_and_kept_by_a_once(booths):
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "A's entry replicated at B")
    # the platform tells B (the lot's one callback URL), by plate, not by the order id B never issued
    assert await prepay_at(b, "T-B1", "unknown-order", 200) == "recorded"
    assert b.store.inside_view()[PLATE].paid_fen == 200  # at once, before A hears of it
    await until(lambda: a.store.inside()[PLATE].paid_fen == 200, "A keeps the prepayment")
    assert prepaid_at_a(a, entry_id) == [("T-B1", 200)]
    assert [p["method"] for p in await a.store.payments(entry_id)] == ["bolink:prepay"]
    # A republished its entry with it: B's replica now holds A's snapshot, counted once
    await until(lambda: any(r.record_id == entry_id and r.booth == "A" and r.prepaid_fen == 200
                            and r.payments for r in b.store.site_inside()), "A's snapshot with the prepayment at B")
    assert b.store.inside_view()[PLATE].paid_fen == 200
    # a platform resend (to B, or the same trade to A) is answered again and changes nothing
    assert await prepay_at(b, "T-B1", entry_id, 200) == "duplicate"
    await until(lambda: a.pending() == 0 and b.pending() == 0, "every message sent")
    assert prepaid_at_a(a, entry_id) == [("T-B1", 200)] and b.store.inside_view()[PLATE].paid_fen == 200

    b.exit.emit(PlateRead(PLATE, "blue", 90))
    await until(lambda: b.exit.state.phase.value == "awaiting_payment", "B pricing the stay")
    assert b.exit.state.visit.entry_record_id == entry_id and b.exit.state.visit.due_fen == 300  # 500 - 200
    b.exit.emit(OperatorOpen("王", "cash", amount_fen=300))
    await until(lambda: PLATE not in a.store.inside(), "A's inside list drops the car")
    assert prepaid_at_a(a, entry_id) == [("T-B1", 200)]


async def test_a_prepay_at_b_that_covers_the_fee_lets_the_car_out_at_b_free(booths):
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "A's entry replicated at B")
    assert await prepay_at(b, "T-B2", entry_id, 500) == "recorded"  # by A's order id (the entry record)
    b.exit.emit(PlateRead(PLATE, "blue", 90))
    await until(lambda: b.exit.state.visit is not None and b.exit.state.visit.entry_record_id == entry_id,
                "B matches the exit to A's entry")
    assert b.exit.state.visit.due_fen == 0
    await until(lambda: PLATE not in a.store.inside(), "A's inside list drops the car")
    assert prepaid_at_a(a, entry_id) == [("T-B2", 500)]


async def test_a_prepay_at_b_while_the_bus_is_down_reaches_a_when_it_is_back(booths):
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "A's entry replicated at B")
    b.bus.connected = False
    assert await prepay_at(b, "T-B3", entry_id, 200) == "recorded"  # kept, never waits for the bus
    assert b.store.inside_view()[PLATE].paid_fen == 200 and b.pending() == 1
    assert prepaid_at_a(a, entry_id) == []
    b.bus.connected = True
    b.relay.retry_now("site_bus")
    await until(lambda: prepaid_at_a(a, entry_id) == [("T-B3", 200)], "A keeps it once the bus is back")
    assert a.store.inside()[PLATE].paid_fen == 200


async def test_a_prepay_at_b_for_a_plate_inside_nowhere_is_not_inside(booths):
    broker, a, b = booths
    assert await prepay_at(b, "T-B4", "nope", 200) == "not_inside"
    assert b.pending() == 0


async def test_a_trade_the_platform_told_a_first_and_resends_to_b_is_counted_once(booths):
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    assert await prepay_at(a, "T-A1", entry_id, 200) == "recorded"
    await until(lambda: PLATE in b.store.inside_view() and b.store.inside_view()[PLATE].paid_fen == 200,
                "A's snapshot with the prepayment at B")
    assert await prepay_at(b, "T-A1", entry_id, 200) == "duplicate"
    assert b.store.inside_view()[PLATE].paid_fen == 200 and b.pending() == 0


async def test_a_resend_reaching_b_before_a_s_snapshot_is_set_right_by_a(booths):
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "A's entry replicated at B")
    await until(lambda: a.pending() == 0, "A's entry sent")
    relay = a.tasks.pop(0)  # A's relay held: its new snapshot stays in its outbox, A still hears the bus
    relay.cancel()
    await asyncio.gather(relay, return_exceptions=True)
    assert await prepay_at(a, "T-A2", entry_id, 200) == "recorded"
    assert await prepay_at(b, "T-A2", entry_id, 200) == "recorded"  # B cannot know yet: counts it, tells A
    await until(lambda: a.pending() >= 2, "A answers B's notice with its snapshot again")
    assert prepaid_at_a(a, entry_id) == [("T-A2", 200)]
    assert b.store.inside_view()[PLATE].paid_fen == 200  # B's own count meanwhile
    a.tasks.append(asyncio.create_task(a.relay.run()))
    await until(lambda: a.pending() == 0, "A's snapshots sent")
    await until(lambda: any(r.record_id == entry_id and r.payments for r in b.store.site_inside()),
                "A's snapshot at B")
    assert b.store.inside_view()[PLATE].paid_fen == 200  # A's snapshot (seq newer) replaced B's own count


async def test_a_snapshot_a_sent_before_it_kept_b_s_prepayment_does_not_drop_it_at_b(booths, tmp_path: Path):
    """Even across a restart of B: what B passed on is counted in every snapshot of A that does not show it yet."""
    from lanectl.core import site_replica as sr
    broker, a, b = booths
    entry_id = await a.enter(PLATE)
    await until(lambda: PLATE in b.store.inside_view(), "A's entry replicated at B")
    await until(lambda: a.pending() == 0, "A's entry sent")
    relay = a.tasks.pop(0)  # A's relay held: what A queues stays in its outbox
    relay.cancel()
    await asyncio.gather(relay, return_exceptions=True)
    assert await prepay_at(a, "T-A5", entry_id, 100) == "recorded"  # A's snapshot s1: T-A5 only
    (s1,) = [sr.decode(r[0]) for r in a.store.conn.execute(
        "SELECT payload FROM outbox WHERE destination='site_bus' AND status='pending'")]
    assert s1.prepaid_fen == 100
    assert await prepay_at(b, "T-B5", entry_id, 200) == "recorded"
    await until(lambda: prepaid_at_a(a, entry_id) == [("T-A5", 100), ("T-B5", 200)], "A keeps B's prepayment")
    await until(lambda: b.pending() == 0, "B's notice sent")
    await b.stop()
    broker.clients.remove(b.bus)
    again = SqliteStore(tmp_path / "b.db", site_booth="B")
    await again.open()
    try:
        assert await again.apply_site(s1, CLOCK.now()) == "applied"  # s1 reaches B after B counted T-B5
        assert again.inside_view()[PLATE].paid_fen == 300  # A's 100 and B's own 200, not 100
        (s2,) = [sr.decode(r[0]) for r in a.store.conn.execute(
            "SELECT payload FROM outbox WHERE destination='site_bus' AND status='pending' AND seq > ?", (s1.seq,))]
        assert await again.apply_site(s2, CLOCK.now()) == "applied"  # A's snapshot with both: counted once
        assert [p.reference for p in s2.payments] == ["T-A5", "T-B5"] and again.inside_view()[PLATE].paid_fen == 300
    finally:
        await again.close()
