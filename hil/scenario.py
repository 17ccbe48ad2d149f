"""Scenario files (hil/scenarios/*.yaml) played against a running daemon on the rig.

    name: demo
    lanes: [{id: in1, direction: entry, unit: 1}, {id: out1, direction: exit, unit: 2}]
    inside: [{plate: 粤A88888, lane: in1, minutes_ago: 180}]   # parked before the scenario starts
    steps:
      - car: {lane: in1, plate: 粤B12345}          expect: passed | refused | waiting
      - operator: {lane: out1, operator: 王, reason: cash, amount_fen: 500}     expect: passed
      - wait: 1.5

`waiting` leaves the car at the barrier (the arm must stay down); a later operator or payment step on that
lane lets it through. The same files drive `lanectl demo` and tests/hil.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from hil.rig import CarResult, Rig, RigLane
from lanectl.adapters.control_client import ControlClient

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
EXPECTS = {"passed", "refused", "waiting", "not_opened"}


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    lanes: list[RigLane]
    steps: list[dict[str, Any]]
    site: dict[str, Any] = field(default_factory=dict)
    inside: list[dict[str, Any]] = field(default_factory=list)  # cars already parked: {plate, lane, minutes_ago}


def load_scenario(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIOS / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.yaml")))
        raise ScenarioError(f"no scenario {name_or_path!r} (known: {known})")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        lanes = [RigLane(str(x["id"]), str(x["direction"]), int(x["unit"])) for x in doc["lanes"]]
        steps = list(doc["steps"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"{path}: lanes and steps are required ({exc})") from None
    for i, step in enumerate(steps, 1):
        kinds = {"car", "operator", "wait"} & set(step)
        if len(kinds) != 1:
            raise ScenarioError(f"{path}: step {i}: needs exactly one of car / operator / wait")
        if step.get("expect", "passed") not in EXPECTS and "wait" not in step:
            raise ScenarioError(f"{path}: step {i}: expect must be one of {sorted(EXPECTS)}")
    inside = list(doc.get("inside") or [])
    for car in inside:
        if not isinstance(car, dict) or "plate" not in car or "lane" not in car:
            raise ScenarioError(f"{path}: inside: each car needs plate and lane (and minutes_ago)")
    return Scenario(str(doc.get("name", path.stem)), str(doc.get("description", "")), lanes, steps,
                    dict(doc.get("site") or {}), inside)


@dataclass
class StepOutcome:
    index: int
    what: str
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got or (self.expected == "not_opened" and self.got in ("refused", "waiting"))


class ScenarioPlayer:
    def __init__(self, rig: Rig, control: ControlClient, *, settle_s: float = 2.0, refuse_wait_s: float = 3.0):
        self.rig, self.control = rig, control
        self.settle_s, self.refuse_wait_s = settle_s, refuse_wait_s
        self.waiting: dict[str, asyncio.Task[CarResult]] = {}
        self.outcomes: list[StepOutcome] = []
        self.cars: list[CarResult] = []

    async def play(self, scenario: Scenario) -> list[StepOutcome]:
        for i, step in enumerate(scenario.steps, 1):
            if "wait" in step:
                await asyncio.sleep(float(step["wait"]))
                continue
            expected = str(step.get("expect", "passed"))
            if "car" in step:
                got, what = await self._car(step["car"], expected)
            else:
                got, what = await self._operator(step["operator"], expected)
            self.outcomes.append(StepOutcome(i, what, expected, got))
        for task in self.waiting.values():
            task.cancel()
        return self.outcomes

    async def _car(self, spec: dict[str, Any], expected: str) -> tuple[str, str]:
        lane, plate = str(spec["lane"]), str(spec.get("plate", ""))
        what = f"car {plate or '(no plate)'} at {lane}"
        if expected in ("waiting", "not_opened"):
            task = asyncio.create_task(self.rig.car(lane, plate, color=spec.get("color", "blue"),
                                                    wait_open_s=120.0))
            self.waiting[lane] = task
            await asyncio.sleep(self.settle_s)
            if task.done():
                return self._record(task.result()), what
            return "waiting", what
        result = await self.rig.car(lane, plate, color=spec.get("color", "blue"),
                                    wait_open_s=8.0 if expected == "passed" else self.refuse_wait_s)
        return self._record(result), what

    async def _operator(self, spec: dict[str, Any], expected: str) -> tuple[str, str]:
        lane = str(spec["lane"])
        amount: Optional[int] = spec.get("amount_fen")
        what = f"operator {spec.get('operator', '')} opens {lane} ({spec.get('reason', '')})"
        answer = await self.control.open_barrier(lane=lane, operator=str(spec.get("operator", "")),
                                                 reason=str(spec.get("reason", "")), amount_fen=amount)
        if not answer.get("opened"):
            return "not_opened", what
        task = self.waiting.pop(lane, None)
        if task is None:
            await self.rig.wait_down(lane)
            return "passed", what
        try:
            result = await asyncio.wait_for(task, timeout=15.0)
        except asyncio.TimeoutError:
            return "refused", what
        return self._record(result), what

    def _record(self, result: CarResult) -> str:
        self.cars.append(result)
        return "passed" if result.passed else "refused"

    async def settle(self) -> None:
        """Wait for every barrier to be down again."""
        for lane in self.rig.lanes:
            await self.rig.wait_down(lane.id)
