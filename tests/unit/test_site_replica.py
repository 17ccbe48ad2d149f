"""The replication codec and the replica projection (core/site_replica.py): versioned messages with typed errors,
idempotent re-delivery, any delivery order, gap detection, and the partition rule (the latest stay of a plate)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from lanectl.core import site_replica as sr
from lanectl.core.lane import InsideCar

T0 = "2026-12-07T10:00:00+08:00"
T1 = "2026-12-07T11:00:00+08:00"


def entry(booth: str, seq: int, rid: str, plate: str = "粤B12345", status: str = "inside", at: str = T0,
          **kw: object) -> sr.SiteRecord:
    return sr.SiteRecord(booth=booth, seq=seq, kind="entry", record_id=rid, plate=plate, status=status, at=at,
                         lane_id="in1", **kw)


def test_a_message_round_trips_with_its_order_ids_payments_prepayment_and_picture():
    msg = entry("A", 3, "A-1", order_ids={"bolink": "A-1"}, flags=("signfree",), image="http://x/p.jpg",
                payments=(sr.SitePayment(amount_fen=200, method="bolink:prepay", reference="T9"),),
                prepaid_fen=200, prepaid_at=T1)
    assert sr.decode(sr.encode(msg)) == msg
    car = sr.inside_car(msg)
    assert car.paid_fen == 200 and car.image == "http://x/p.jpg" and car.entered_at == datetime.fromisoformat(T0)


@pytest.mark.parametrize("payload, error", [
    (b"{not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"v": 2, "booth": "A"}', "unsupported version 2"),
    (b'{"v": 1, "booth": "A", "seq": 0, "kind": "entry", "record_id": "x"}', "seq"),
    (b'{"v": 1, "booth": "A", "seq": 1, "kind": "teleport", "record_id": "x"}', "kind"),
    (b'{"v": 1, "booth": "A", "seq": 1, "kind": "entry"}', "record_id"),
])
def test_a_bad_message_is_a_typed_error_naming_what_is_wrong(payload: bytes, error: str):
    with pytest.raises(sr.SiteMessageError, match=error):
        sr.decode(payload)


def test_a_field_added_by_a_later_v1_is_skipped_not_refused():
    raw = sr.encode(entry("A", 1, "A-1")).replace(b'{"', b'{"new_field":5,"', 1)
    assert sr.decode(raw).record_id == "A-1"


def test_redelivery_and_an_older_snapshot_change_nothing():
    replica = sr.RemoteInside()
    assert replica.apply(entry("A", 1, "A-1"))
    newer = entry("A", 4, "A-1", prepaid_fen=300, prepaid_at=T1)
    assert replica.apply(newer)
    assert replica.apply(newer) == [] and replica.apply(entry("A", 1, "A-1")) == []
    assert replica.inside() == [newer]


def test_a_stay_closed_by_an_exit_elsewhere_is_not_reopened_by_its_entry_arriving_late():
    replica = sr.RemoteInside()
    exit_b = sr.SiteRecord(booth="B", seq=1, kind="exit", record_id="B-9", entry_record_id="A-1", plate="粤B12345")
    assert replica.apply(exit_b) == []  # the entry is not here yet
    replica.apply(entry("A", 1, "A-1"))
    replica.apply(sr.correction("B", 2, "A-1", "A", "exited", "B-9"))  # the correction follows
    assert replica.inside() == []
    replica.apply(entry("A", 5, "A-1", prepaid_fen=100))  # a newer snapshot that A sent before it heard
    assert replica.inside() == [] and replica.entry("A-1").closed == "exited"


def test_a_stay_closed_between_a_plan_and_its_put_stays_closed():
    replica = sr.RemoteInside()
    replica.apply(entry("A", 1, "A-1"))
    planned = replica.plan(entry("A", 2, "A-1", prepaid_fen=100))  # a newer snapshot, being persisted ...
    closed = replica.close("A-1", "exited")  # ... while a lane here lets the car out
    replica.put([closed])
    replica.put(planned)
    assert replica.inside() == [] and replica.entry("A-1").record.prepaid_fen == 100


def test_out_of_order_delivery_gives_the_same_replica():
    messages = [entry("A", 1, "A-1"), entry("A", 2, "A-2", plate="粤B00002"),
                sr.SiteRecord(booth="B", seq=1, kind="exit", record_id="B-1", entry_record_id="A-1"),
                entry("A", 3, "A-1", status="exited")]
    forward, backward = sr.RemoteInside(), sr.RemoteInside()
    for m in messages:
        forward.apply(m)
    for m in reversed(messages):
        backward.apply(m)
    assert [r.record_id for r in forward.inside()] == [r.record_id for r in backward.inside()] == ["A-2"]


def test_a_refused_entry_is_never_inside():
    replica = sr.RemoteInside()
    replica.apply(entry("A", 1, "A-1", status="refused"))
    assert replica.inside() == []


def test_gaps_are_found_and_filled_and_redelivery_is_spotted():
    seqs = sr.SeqTracker()
    assert seqs.seen("A", 1) and seqs.seen("A", 2) and not seqs.gap("A")
    assert seqs.seen("A", 5) and seqs.gap("A") and seqs.upto["A"] == 2
    assert not seqs.seen("A", 5) and not seqs.seen("A", 1)
    assert seqs.after("A", 3) == (3, frozenset({5}))
    assert seqs.upto["A"] == 2  # `after` changes nothing until marked
    seqs.seen("A", 3)
    seqs.seen("A", 4)
    assert seqs.upto["A"] == 5 and not seqs.gap("A")


def _remote(*records: sr.SiteRecord) -> sr.RemoteCars:
    cars = sr.RemoteCars()
    replica = sr.RemoteInside()
    for r in records:
        for e in replica.apply(r):
            cars.update(e)
    return cars


def test_partition_rule_the_latest_stay_of_a_plate_is_the_one_a_lane_sees_and_the_others_are_kept():
    local = {"粤B12345": InsideCar("B-1", datetime.fromisoformat(T0), "in2")}
    view = sr.InsideView(local, _remote(entry("A", 1, "A-1", at=T1), entry("C", 1, "C-1", plate="粤C1")))
    assert view["粤B12345"].record_id == "A-1"  # A's entry at 11:00 is later than ours at 10:00
    assert sorted(view) == ["粤B12345", "粤C1"] and len(view) == 2 and "粤C1" in view
    assert [c.record_id for c in view.others("粤B12345")] == ["B-1"]  # kept, superseded when the exit closes A-1
    earlier = sr.InsideView(local, _remote(entry("A", 1, "A-1", at="2026-12-07T09:00:00+08:00")))
    assert earlier["粤B12345"].record_id == "B-1"
    assert "粤Z0" not in view and view.get("粤Z0") is None


def test_a_tie_on_entry_time_is_broken_by_record_id_the_same_way_on_every_booth():
    a, b = entry("A", 1, "A-1"), entry("B", 1, "B-1")
    assert sr.InsideView({}, _remote(a, b))["粤B12345"].record_id == \
        sr.InsideView({}, _remote(b, a))["粤B12345"].record_id == "B-1"


def test_a_prepay_notice_round_trips_names_the_owner_and_closes_nothing():
    held = entry("A", 3, "A-1", prepaid_fen=100, prepaid_at=T0)
    prepay = sr.SitePrepay(provider="bolink", trade_no="T-7", amount_fen=200, paid_at=T1)
    notice = sr.prepay_notice("B", 9, held, prepay)
    raw = sr.encode(notice)
    assert sr.decode(raw) == notice
    assert json.loads(raw)["kind"] == "correction" and json.loads(raw)["owner"] == "A"
    assert notice.owned_by == "A" and sr.closes(notice) is None  # a receiver that does not know `prepay`: a no-op
    replica = sr.RemoteInside([sr.RemoteEntry(held)])
    assert replica.apply(notice) == [] and replica.inside() == [held]
    # counted in the replica's entry at the booth that kept it, until the owner's snapshot arrives
    counted = sr.with_prepayment(held, 200, T1)
    assert counted.prepaid_fen == 300 and sr.inside_car(counted).paid_at == datetime.fromisoformat(T1)
    assert "prepay" not in json.loads(sr.encode(held))  # messages without it keep their v1 form


@pytest.mark.parametrize("prepay, error", [
    ({"provider": "bolink", "trade_no": "T", "amount_fen": -1, "paid_at": T1}, "prepay.amount_fen"),
    ({"provider": "bolink", "trade_no": "T", "amount_fen": 1, "paid_at": "yesterday"}, "prepay.paid_at"),
    ({"provider": "bolink", "amount_fen": 1, "paid_at": T1}, "prepay.trade_no"),
])
def test_a_bad_prepay_notice_is_a_typed_error(prepay: dict, error: str):
    raw = {"v": 1, "booth": "B", "seq": 1, "kind": "correction", "record_id": "A-1", "owner": "A", "prepay": prepay}
    with pytest.raises(sr.SiteMessageError, match=error):
        sr.decode(json.dumps(raw))


def test_an_owner_snapshot_counts_what_was_passed_on_until_it_shows_it_and_then_once():
    passed_on = [sr.SitePrepay(provider="bolink", trade_no="T-B", amount_fen=200, paid_at=T1)]
    before = entry("A", 4, "A-1", prepaid_fen=100, prepaid_at=T0,
                   payments=(sr.SitePayment(amount_fen=100, method="bolink:prepay", reference="T-A"),))
    assert sr.counting(before, passed_on).prepaid_fen == 300
    after = entry("A", 5, "A-1", prepaid_fen=300, prepaid_at=T1, payments=before.payments + (
        sr.SitePayment(amount_fen=200, method="bolink:prepay", reference="T-B"),))
    assert sr.counting(after, passed_on) == after
