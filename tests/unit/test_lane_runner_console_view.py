"""What the console shows of a lane comes from the runner's published status: after each step the runner tells
`on_status`, and `status.car` holds the car it handles (plate, colour, class, entry, fee and its breakdown)
until the car is gone."""

from __future__ import annotations

from lanectl.core.events import OperatorOpen, PlateRead
from tests.fakes import MemoryLaneStore
from tests.unit.test_lane_runner_storage import entry_and_exit, until


async def test_the_runner_publishes_the_waiting_car_and_tells_after_each_step():
    store = MemoryLaneStore()
    told: list[str] = []
    async with entry_and_exit(store, on_status=told.append) as (entry, exit_):
        entry.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: "粤B12345" in store.inside(), "the car inside")
        assert exit_.status.car is None
        before = len(told)
        exit_.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: exit_.status.phase == "awaiting_payment", "the exit pricing the stay")
        assert len(told) > before and set(told) == {"out1"}
        car = exit_.status.car
        assert car is not None
        assert (car["plate"], car["color"], car["due_fen"], car["record_id"]) == (
            "粤B12345", "blue", 500, exit_.state.visit.record_id)
        assert car["entered_at"] == store.inside()["粤B12345"].entered_at.isoformat()
        assert isinstance(car["detail"], list)

        exit_.emit(OperatorOpen("王", "cash", amount_fen=500))
        await until(lambda: exit_.status.phase != "awaiting_payment", "the release")
        assert exit_.status.car is not None and exit_.status.car["operator"] == "王"  # the car still at the arm


async def test_the_waiting_car_carries_its_picture_its_entry_record_and_the_plate_it_was_matched_to():
    store = MemoryLaneStore()
    async with entry_and_exit(store) as (entry, exit_):
        entry.emit(PlateRead("粤B8C123", "blue", 90, image="/var/lib/lanectl/images/in1/a.jpg"))
        await until(lambda: "粤B8C123" in store.inside(), "the car inside")
        # the exit camera reads a B for the 8: matched by the letters that look alike
        exit_.emit(PlateRead("粤BBC123", "blue", 90, image="/var/lib/lanectl/images/out1/b.jpg"))
        await until(lambda: exit_.status.phase == "awaiting_payment", "the exit pricing the stay")
        car = exit_.status.car
        assert car is not None and "match:confusable" in car["detail"]
        assert (car["image"], car["entry_record_id"], car["entry_plate"]) == (
            "/var/lib/lanectl/images/out1/b.jpg", store.inside()["粤B8C123"].record_id, "粤B8C123")
