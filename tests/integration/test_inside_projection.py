"""The cars inside, kept incrementally from committed effects (core/inside.py), equal at every step to what
re-deriving them from the records table gives — on a real SQLite file, through the store's own commit path.

Steps are generated the way lanes make them: an entry (allowed or refused, a plate or a platform's id, a stale
stay of the same plate superseded), an exit (the entry's record marked exited, an exit record written), a
waiting exit abandoned, an operator's release record, money paid ahead for a stay, a restart of the store."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lanectl.adapters.store import SqliteStore
from lanectl.core import effects as fx
from lanectl.core.inside import InsideCars, Prepaid, inside_after
from lanectl.core.lane import InsideCar

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=TZ)
PLATES = ("粤B11111", "粤B22222", "粤B33333", "")  # "": a plate-less car (never inside by plate)

Step = tuple
steps = st.lists(st.one_of(
    st.tuples(st.just("enter"), st.sampled_from(PLATES), st.booleans()),
    st.tuples(st.just("exit"), st.sampled_from(PLATES)),
    st.tuples(st.just("abandon"), st.sampled_from(PLATES)),
    st.tuples(st.just("release")),
    st.tuples(st.just("prepay"), st.sampled_from(PLATES), st.integers(0, 2000)),
    st.tuples(st.just("restart")),
), min_size=1, max_size=14)


def lane_effects(step: Step, n: int, at: datetime, inside: dict[str, InsideCar]) -> list[fx.Effect]:
    """What a lane step commits for `step` (n: a fresh record number)."""
    kind = step[0]
    if kind == "enter":
        _, plate, allowed = step
        out: list[fx.Effect] = [fx.NewRecord(f"in1_{n}", "in1", "entry", plate, "blue", at.isoformat(),
                                             "inside" if allowed else "refused", "temporary", "temporary",
                                             image=f"/i/{n}.jpg")]
        stale = inside.get(plate) if plate and allowed else None
        if stale is not None:  # its exit was missed: one car, one stay
            out.append(fx.PatchRecord(stale.record_id, (("status", "superseded"),)))
        return out
    if kind in ("exit", "abandon"):
        plate = step[1]
        stay = inside.get(plate)
        status = "leaving" if kind == "exit" else "awaiting_payment"
        out = [fx.NewRecord(f"out1_{n}", "out1", "exit", plate, "blue", at.isoformat(), status,
                            entry_record_id=stay.record_id if stay else "")]
        if kind == "exit" and stay is not None:
            out.append(fx.PatchRecord(stay.record_id, (("status", "exited"),)))
        else:
            out.append(fx.PatchRecord(f"out1_{n}", (("status", "abandoned"),)))
        return out
    if kind == "release":
        return [fx.NewRecord(f"out1_{n}", "out1", "release", "", "", at.isoformat(), "released")]
    raise AssertionError(kind)


async def replay(path: Path, script: list[Step]) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        for n, step in enumerate(script, 1):
            at = T0 + timedelta(minutes=n)
            before = store.inside()
            if step[0] == "restart":
                await store.close()
                store = SqliteStore(path)
                await store.open()
                assert store.inside() == before  # re-derived at open: the same cars
                continue
            if step[0] == "prepay":
                _, plate, fen = step
                outcome = await store.add_prepayment("bolink", f"P{n}", order_id="", plate=plate, amount_fen=fen,
                                                     paid_at=at, now=at)
                assert outcome == ("recorded" if plate in before else "not_inside")
                committed: list[object] = [Prepaid(before[plate].record_id, fen, at)] if plate in before else []
            else:
                effects = lane_effects(step, n, at, before)
                await store.commit_lane("in1", {"seq": n}, effects, at)
                committed = list(effects)
            kept = store.inside()
            assert kept == await store.lanes.derive_inside(), step  # incremental == re-derived from the records
            assert kept == inside_after(before, committed)  # and the pure function says the same
            assert dict(store.inside_view()) == kept
    finally:
        await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=steps)
def test_the_cars_inside_kept_incrementally_equal_the_cars_re_derived_from_the_records(script):
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(replay(Path(tmp) / "lanectl.db", script))


def test_a_lane_reads_a_live_read_only_view_not_a_copy():
    cars = InsideCars()
    view = cars.view
    cars.apply([fx.NewRecord("in1_1", "in1", "entry", "粤B1", "blue", T0.isoformat(), "inside")])
    assert list(view) == ["粤B1"]  # the same view sees the commit
    try:
        view["粤B2"] = view["粤B1"]  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("the view must be read-only")
    cars.apply([fx.PatchRecord("in1_1", (("status", "exited"),))])
    assert dict(view) == {}
