"""The cars inside the lot, as a projection of what was committed.

A car is inside from the entry record that admitted it (NewRecord: kind entry, status inside, a plate) until
that record's status changes (exited, superseded, ...); money paid ahead for the stay (`Prepaid`) is added to it.
This is exactly what re-deriving it from the records table gives (entry records still `inside`, with the sum of
their prepayments) — tests/unit/test_inside_projection.py proves it — but it costs one look-up per committed
effect instead of a query, and lanes read it through a read-only view instead of a copy per step.

Pure: the projection changes only by `apply` with facts already committed; no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Iterable, Mapping

from lanectl.core import effects as fx
from lanectl.core.lane import InsideCar


@dataclass(frozen=True, slots=True)
class Prepaid:
    """Money paid ahead for a stay (a platform's prepay notice), committed against its entry record."""

    record_id: str
    amount_fen: int
    paid_at: datetime


class InsideCars:
    """Cars inside by plate, with an index by entry record so a status change finds its car at once."""

    def __init__(self, cars: Mapping[str, InsideCar] | None = None) -> None:
        self._cars: dict[str, InsideCar] = dict(cars or {})
        self._plates: dict[str, str] = {car.record_id: plate for plate, car in self._cars.items()}
        self.view: Mapping[str, InsideCar] = MappingProxyType(self._cars)  # live, read-only

    def snapshot(self) -> dict[str, InsideCar]:
        return dict(self._cars)

    def car(self, record_id: str) -> InsideCar | None:
        plate = self._plates.get(record_id)
        return self._cars.get(plate) if plate is not None else None

    def apply(self, committed: Iterable[object]) -> None:
        """Bring the projection up to date with the effects of one committed step (or a Prepaid), in order."""
        for e in committed:
            if isinstance(e, fx.NewRecord):
                if e.kind == "entry" and e.status == "inside" and e.plate:
                    self._put(e.plate, InsideCar(e.record_id, datetime.fromisoformat(e.at), e.lane_id, e.reason,
                                                 e.color, image=e.image))
            elif isinstance(e, fx.PatchRecord):
                status = dict(e.changes).get("status")
                if status is not None and status != "inside":
                    self._leave(e.record_id)
            elif isinstance(e, Prepaid):
                car = self.car(e.record_id)
                if car is not None:
                    latest = e.paid_at if car.paid_at is None else max(car.paid_at, e.paid_at)
                    self._cars[self._plates[e.record_id]] = replace(car, paid_fen=car.paid_fen + e.amount_fen,
                                                                    paid_at=latest)

    def _put(self, plate: str, car: InsideCar) -> None:
        before = self._cars.get(plate)
        if before is not None:
            self._plates.pop(before.record_id, None)  # the newer stay of a plate wins, as in the records' order
        self._cars[plate] = car
        self._plates[car.record_id] = plate

    def _leave(self, record_id: str) -> None:
        plate = self._plates.pop(record_id, None)
        if plate is not None:
            del self._cars[plate]


def inside_after(cars: Mapping[str, InsideCar], committed: Iterable[object]) -> dict[str, InsideCar]:
    """The cars inside after `committed`, starting from `cars` (which is not changed)."""
    projection = InsideCars(cars)
    projection.apply(committed)
    return projection.snapshot()
