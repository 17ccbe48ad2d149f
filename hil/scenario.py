"""Scenario files (hil/scenarios/*.yaml) played against a running daemon on the rig.

    name: demo
    lanes: [{id: in1, direction: entry, unit: 1}, {id: out1, direction: exit, unit: 2}]   # camera: http on a lane
                                                       # pushes plates and pictures over HTTP instead of a serial line
    inside: [{plate: 粤A88888, lane: in1, minutes_ago: 180}]   # parked before the scenario starts
    steps:
      - car: {lane: in1, plate: 粤B12345}          expect: passed | refused | waiting
      - operator: {lane: out1, operator: 王, reason: cash, amount_fen: 500}     expect: passed
      - wait: 1.5
    platforms: [bolink]                               # payment platform emulators on the rig
      - bolink: {sign_free: 粤C11111}               # the platform marks a plate sign-free (5.2)
      - bolink: {script: 粤C22222, behaviour: pending_then_paid, after_s: 3}
      - bolink: {query_price: 粤A88888}             # the platform asks what a car owes (5.1)
      - bolink: {monthcard_pay: 粤C44444, days: 30}  # a monthly card bought online (5.8), from yesterday
                                                      # (starts_days_ago: 1) so it covers the whole stay
      - scan: {lane: out1, code: "134567890123456789"}   # the driver pays at the booth scanner

`waiting` leaves the car at the barrier (the arm must stay down); a later operator or payment step on that
lane lets it through. The same files drive `lanectl demo` and tests/hil.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from pathlib import Path
from typing import Any, Optional, Protocol

import yaml

from hil.emulators import bolink as bolink_emu
from hil.emulators import tdzn as tdzn_emu
from hil.emulators import xft as xft_emu
from hil.platforms import BOLINK_PARK, CHANNELS, Platforms
from hil.rig import CarResult, Rig, RigLane
from lanectl.adapters.control_client import ControlClient

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
EXPECTS = {"passed", "refused", "waiting", "not_opened"}
RIG_TZ = ZoneInfo("Asia/Shanghai")  # the rig's site timezone (hil/rig.py)
STEP_KINDS = {"car", "operator", "wait", "bolink", "xft", "tdzn", "scan"}
BOLINK_BEHAVIOURS = {"pay_now": bolink_emu.pay_now, "pending_then_paid": bolink_emu.pending_then_paid,
                     "fail": bolink_emu.fail, "never_settle": bolink_emu.never_settle}
XFT_BEHAVIOURS = {
    "success": lambda after_s=0.0: xft_emu.success(),
    "fail": lambda after_s=0.0: xft_emu.fail(),
    "init_then_notify": lambda after_s=2.0: xft_emu.init_then("00", after_s),  # the notify settles it
    "init_then_poll": lambda after_s=2.0: replace(xft_emu.init_then("00", after_s), notify=False),  # polling does
    "init_forever": lambda after_s=0.0: xft_emu.init_forever(),
}
TDZN_BEHAVIOURS = {
    "pay_at_preleave": lambda after_s=0.0, type=1: tdzn_emu.pay_at_preleave(),
    "pay_later": lambda after_s=2.0, type=1: tdzn_emu.pay_later(after_s, type=type),
    "never_pay": lambda after_s=0.0, type=1: tdzn_emu.never_pay(),
}


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
    platforms: tuple[str, ...] = ()  # payment platform emulators the scenario needs


def load_scenario(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIOS / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.yaml")))
        raise ScenarioError(f"no scenario {name_or_path!r} (known: {known})")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        lanes = [RigLane(str(x["id"]), str(x["direction"]), int(x["unit"]), str(x.get("camera", "serial")))
                 for x in doc["lanes"]]
        steps = list(doc["steps"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"{path}: lanes and steps are required ({exc})") from None
    for lane in lanes:
        if lane.camera not in ("serial", "http"):
            raise ScenarioError(f"{path}: lane {lane.id}: camera must be serial or http, not {lane.camera!r}")
    for i, step in enumerate(steps, 1):
        kinds = STEP_KINDS & set(step)
        if len(kinds) != 1:
            raise ScenarioError(f"{path}: step {i}: needs exactly one of {' / '.join(sorted(STEP_KINDS))}")
        if "bolink" in step:
            behaviour = step["bolink"].get("behaviour") if isinstance(step["bolink"], dict) else None
            if not isinstance(step["bolink"], dict) or behaviour not in (None, *BOLINK_BEHAVIOURS):
                raise ScenarioError(f"{path}: step {i}: bolink needs sign_free, script (+ behaviour one of "
                                    f"{sorted(BOLINK_BEHAVIOURS)}), query_price or monthcard_pay")
        elif "xft" in step:
            spec = step["xft"]
            if not isinstance(spec, dict) or not ({"sign", "script"} & set(spec)) or \
                    spec.get("behaviour", "success") not in XFT_BEHAVIOURS:
                raise ScenarioError(f"{path}: step {i}: xft needs sign: PLATE or script: PLATE with behaviour one of "
                                    f"{sorted(XFT_BEHAVIOURS)}")
        elif "tdzn" in step:
            spec = step["tdzn"]
            if not isinstance(spec, dict) or not ({"script", "query_park_fee", "remote_dev"} & set(spec)) or \
                    spec.get("behaviour", "pay_at_preleave") not in TDZN_BEHAVIOURS:
                raise ScenarioError(f"{path}: step {i}: tdzn needs script: PLATE (behaviour one of "
                                    f"{sorted(TDZN_BEHAVIOURS)}), query_park_fee: PLATE or remote_dev: LANE")
            if "remote_dev" in spec:
                step.setdefault("expect", "passed")
        elif step.get("expect", "passed") not in EXPECTS and "wait" not in step:
            raise ScenarioError(f"{path}: step {i}: expect must be one of {sorted(EXPECTS)}")
    inside = list(doc.get("inside") or [])
    for car in inside:
        if not isinstance(car, dict) or "plate" not in car or "lane" not in car:
            raise ScenarioError(f"{path}: inside: each car needs plate and lane (and minutes_ago)")
    platforms = tuple(doc.get("platforms") or ())
    for name in ("bolink", "xft", "tdzn"):
        if any(name in step for step in steps) and name not in platforms:
            raise ScenarioError(f"{path}: {name} steps need `platforms: [{name}]`")
    return Scenario(str(doc.get("name", path.stem)), str(doc.get("description", "")), lanes, steps,
                    dict(doc.get("site") or {}), inside, platforms)


PLATFORM_STEPS = ("bolink", "xft", "tdzn")


def booth_cases(scenario: Scenario) -> Scenario:
    """The scenario cut down to its booth cases: each `operator:` step with the car it lets out (the last car
    left `waiting` at that lane before it), the platform steps naming that car's plate (a refused wallet ...)
    and the waits just before it. The cars parked beforehand stay. For a browser test or an operator's practice
    run that covers every booth case of the scenario without the rest."""
    steps, keep = scenario.steps, set()
    for i, step in enumerate(steps):
        if "operator" not in step:
            continue
        lane = str(step["operator"]["lane"])
        keep.add(i)
        j = i - 1
        while j >= 0 and "wait" in steps[j]:
            keep.add(j)
            j -= 1
        cars = [k for k in range(i) if "car" in steps[k] and str(steps[k]["car"]["lane"]) == lane
                and steps[k].get("expect") in ("waiting", "not_opened")]
        if not cars:
            continue  # a release with no car waiting (an empty lane's arm raised): the step alone
        keep.add(cars[-1])
        plate = str(steps[cars[-1]]["car"].get("plate", ""))
        keep.update(k for k in range(cars[-1]) for name in PLATFORM_STEPS
                    if plate and isinstance(steps[k].get(name), dict) and plate in map(str, steps[k][name].values()))
    kept = [steps[k] for k in sorted(keep)]
    return replace(scenario, name=f"{scenario.name} (booth cases)", steps=kept,
                   platforms=tuple(p for p in scenario.platforms if any(p in step for step in kept)))


@dataclass
class StepOutcome:
    index: int
    what: str
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got or (self.expected == "not_opened" and self.got in ("refused", "waiting"))


class Booth(Protocol):
    """Who takes the scenario's `operator:` steps: the control socket (lanectl's ControlClient), the console's
    HTTP API or a person at the console (hil/console_booth.py)."""

    async def open_barrier(self, *, lane: str, reason: str, operator: Optional[str] = None,
                           amount_fen: Optional[int] = None) -> dict[str, Any]: ...


class ScenarioPlayer:
    def __init__(self, rig: Rig, control: ControlClient, *, settle_s: float = 2.0, refuse_wait_s: float = 3.0,
                 platforms: Optional[Platforms] = None, booth: Optional[Booth] = None):
        self.rig, self.control, self.platforms = rig, control, platforms
        self.booth: Booth = booth if booth is not None else control  # operator steps; the control socket by default
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
            if "bolink" in step:
                got, what = await self._bolink(step["bolink"])
                expected = "done"
            elif "xft" in step:
                got, what = self._xft(step["xft"])
                expected = "done"
            elif "scan" in step:
                got, what = await self._scan(step["scan"])
            elif "tdzn" in step:
                got, what = await self._tdzn(step["tdzn"])
                expected = "passed" if "remote_dev" in step["tdzn"] else "done"
            elif "car" in step:
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
        who = getattr(self.booth, "name", "") or spec.get("operator", "")  # the console records its own account
        what = f"operator {who} opens {lane} ({spec.get('reason', '')})"
        answer = await self.booth.open_barrier(lane=lane, operator=str(spec.get("operator", "")),
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

    async def _bolink(self, spec: dict[str, Any]) -> tuple[str, str]:
        platform = self.platforms.bolink if self.platforms else None
        if platform is None:
            return "no bolink emulator", "bolink"
        say = self.rig.say
        if "sign_free" in spec:
            plate = str(spec["sign_free"])
            entry = next((r for r in await self.control.records(plate=plate) if r["kind"] == "entry"), None)
            platform.sign_free.add(plate)
            pushes = await platform.push_notice_car_owner(BOLINK_PARK, plate,
                                                          order_id=entry["record_id"] if entry else "")
            ok = bool(pushes) and pushes[-1].acked
            say("bolink", f"5.2 notice_car_owner: {plate} is sign-free → lane answered "
                          f"{'state 1' if ok else pushes[-1].answer if pushes else 'nothing'}")
            return ("done" if ok else "refused"), f"bolink marks {plate} sign-free"
        if "script" in spec:
            plate, name = str(spec["script"]), str(spec.get("behaviour", "pay_now"))
            kwargs = {"after_s": float(spec["after_s"])} if "after_s" in spec else {}
            platform.scripts[plate] = BOLINK_BEHAVIOURS[name](**kwargs)
            after = f" after {kwargs['after_s']:g} s" if kwargs else ""
            say("bolink", f"{plate}: the platform will answer {name}{after}")
            return "done", f"bolink scripts {plate} ({name})"
        if "monthcard_pay" in spec:
            plate, days = str(spec["monthcard_pay"]), int(spec.get("days", 30))
            # The card starts the day before (by default) so it covers the whole stay of a car that came in
            # hours ago: a card starting today leaves the minutes before midnight temporary (charged), which
            # made the demo depend on the hour it was run.
            start = datetime.now(RIG_TZ).date() - timedelta(days=int(spec.get("starts_days_ago", 1)))
            end = start + timedelta(days=days - 1)
            pushes = await platform.push_monthcard_pay(BOLINK_PARK, amount_fen=int(spec.get("amount_fen", 30000)),
                                                       car_number=plate, start_time=start.isoformat(),
                                                       end_time=end.isoformat())
            ok = bool(pushes) and pushes[-1].acked
            say("bolink", f"5.8 monthcard_pay: {plate} bought a monthly card {start} - {end} → lane answered "
                          f"{'state 1' if ok else 'nothing'}")
            return ("done" if ok else "refused"), f"bolink renews {plate}'s monthly card"
        plate = str(spec.get("query_price", ""))
        push = await platform.push_query_price(BOLINK_PARK, car_number=plate)
        answer = push.answer if isinstance(push.answer, dict) else {}
        say("bolink", f"5.1 query_price {plate}: lane answered state {answer.get('state')} price "
                      f"{answer.get('price', '-')} 元 for {answer.get('duration', '-')} min")
        return ("done" if answer.get("state") == 1 else "refused"), f"bolink asks the price of {plate}"

    def _xft(self, spec: dict[str, Any]) -> tuple[str, str]:
        platform = self.platforms.xft if self.platforms else None
        if platform is None:
            return "no xft emulator", "xft"
        if "sign" in spec:
            plate = str(spec["sign"])
            platform.sign_plate(plate)
            self.rig.say("xft", f"{plate} signs up for XFT sign-free payment (无感支付)")
            return "done", f"xft signs {plate}"
        plate, name = str(spec["script"]), str(spec.get("behaviour", "success"))
        kwargs = {"after_s": float(spec["after_s"])} if "after_s" in spec else {}
        platform.scripts[plate] = XFT_BEHAVIOURS[name](**kwargs)
        self.rig.say("xft", f"{plate}: the platform will answer {name}")
        return "done", f"xft scripts {plate} ({name})"

    async def _scan(self, spec: dict[str, Any]) -> tuple[str, str]:
        lane = str(spec["lane"])
        what = f"booth scanner at {lane}"
        await self.rig.scan(lane, str(spec["code"]))
        task = self.waiting.pop(lane, None)
        if task is None:
            return "not_opened", what
        try:
            return self._record(await asyncio.wait_for(task, timeout=15.0)), what
        except asyncio.TimeoutError:
            return "refused", what

    async def _tdzn(self, spec: dict[str, Any]) -> tuple[str, str]:
        platform = self.platforms.tdzn if self.platforms else None
        if platform is None:
            return "no tdzn emulator", "tdzn"
        say = self.rig.say
        if "script" in spec:
            plate, name = str(spec["script"]), str(spec.get("behaviour", "pay_at_preleave"))
            kwargs: dict[str, Any] = {k: spec[k] for k in ("after_s", "type") if k in spec}
            platform.script(plate, TDZN_BEHAVIOURS[name](**kwargs))
            say("tdzn", f"{plate}: the platform will answer preLeaveNotify with {name}"
                        + (f" (payNotify type {kwargs.get('type', 1)} after {kwargs.get('after_s', 2.0):g} s)"
                           if name == "pay_later" else ""))
            return "done", f"tdzn scripts {plate} ({name})"
        if "query_park_fee" in spec:
            plate = str(spec["query_park_fee"])
            answer = await platform.query_park_fee(plate, pay_scene=0)
            data = answer.data if answer is not None else {}
            say("tdzn", f"queryParkFee {plate}: lane answered code {answer.code if answer else '-'}, payable "
                        f"{data.get('payableFee', '-')} fen, due {data.get('paidFee', '-')} fen, "
                        f"{data.get('useTime', '-')} s parked")
            return ("done" if answer is not None and answer.ok else "refused"), f"tdzn asks the fee of {plate}"
        lane = str(spec["remote_dev"])
        operator, reason = str(spec.get("operator", "")), str(spec.get("reason", ""))
        answer = await platform.remote_dev(CHANNELS.get(lane, lane), type=2, operator=operator,
                                           open_gate_case=reason)
        say("tdzn", f"remoteDev on {lane} by {operator} ({reason}): lane answered code "
                    f"{answer.code if answer else '-'}")
        what = f"tdzn remoteDev releases {lane} ({operator}: {reason})"
        if answer is None or not answer.ok:
            return "not_opened", what
        task = self.waiting.pop(lane, None)
        if task is None:
            await self.rig.wait_down(lane)
            return "passed", what
        return self._record(await asyncio.wait_for(task, timeout=15.0)), what

    def _record(self, result: CarResult) -> str:
        self.cars.append(result)
        return "passed" if result.passed else "refused"

    async def settle(self) -> None:
        """Wait for every barrier to be down again."""
        for lane in self.rig.lanes:
            await self.rig.wait_down(lane.id)
