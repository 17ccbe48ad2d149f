"""Lanes over one store see the cars inside as the store keeps them from committed effects (core/inside.py):
an entry committed by one lane is the stay the exit lane prices; a step refused for want of storage changes
nothing; the exit takes the car out again."""

from __future__ import annotations

from lanectl.core.events import OperatorOpen, PlateRead
from tests.fakes import MemoryLaneStore
from tests.unit.test_lane_runner_storage import entry_and_exit, until



async def test_the_exit_lane_prices_the_stay_the_entry_lane_committed_and_a_refused_step_changes_nothing():
    store = MemoryLaneStore()
    async with entry_and_exit(store) as (entry, exit_):

        store.down = True
        entry.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: store.refused >= 1, "the entry refused")
        assert store.inside() == {}  # nothing committed, nobody inside

        store.down = False
        entry.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: "粤B12345" in store.inside(), "the car inside by the store's books")
        stay = store.inside()["粤B12345"]
        assert stay.lane_id == "in1" and stay.record_id == entry.state.visit.record_id

        exit_.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: exit_.state.phase.value == "awaiting_payment", "the exit pricing the stay")
        assert exit_.state.visit.entry_record_id == stay.record_id and exit_.state.visit.due_fen == 500
        assert "粤B12345" in store.inside()  # still inside until it leaves

        exit_.emit(OperatorOpen("王", "cash", amount_fen=500))
        await until(lambda: "粤B12345" not in store.inside(), "the car out by the store's books")
        assert store.inside() == {}
