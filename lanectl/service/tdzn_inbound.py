"""Requests the tdzn platform POSTs to the lane's one endpoint (`callback_path`), routed by serviceName.

Every request is verified over its raw bytes first (signature, our pid, timestamp within ±window_s of our
clock, then our parkCode). A refusal gets tdzn's own answer (401 bad signature, 402 illegal param / replay /
other park, 400 missing param, 404 unknown service, 4021 bad JSON), never a traceback. What changes state is
stored in the inbox (provider "tdzn", unique key) before it is answered, so a repeat is answered again and
changes nothing. Nothing here touches a lane: payments go to the settlement service (which confirms one
payment to the lane once; the lane decides), releases go through the app's audited `release`.

    payNotify (4.2)     key payNotify:<orderNo>          type 1/2 -> settlement.on_result(recordNo) -> 200
                        repeat -> 6006, nothing changes   type 0 (prepaid in the lot) -> kept, 200, not applied yet
    queryParkFee (4.1)  the app's `quote`                 None -> 6003 (no entry record)
    remoteDev (4.12)    key remoteDev:<channel>:<plateId>:<type>:<timestamp>   0/2 -> release(lane, operator, reason)
                        1 (cancel) -> 200, nothing opens  repeat -> 405, nothing opens   unknown channel -> 404

A payNotify that cannot be bound to one of our charges (no recordNo, an unknown order, another lane's) is kept
in the inbox and answered 200 — the platform sending it again would not bind it either — and logged as an
error for the books: money, never an OPEN.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, tzinfo
from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol

from lanectl.core.money import DEFAULT_MAX_FEN
from lanectl.protocols import tdzn
from lanectl.protocols.tdzn import TdznError
from lanectl.service.bolink_inbound import PriceQuote
from lanectl.service.ports import Clock, StorageUnavailable
from lanectl.service.settlement import ChargeAnswer

log = logging.getLogger("lanectl.tdzn")

PROVIDER = "tdzn"

# (plate, recordNo, outChannelid) -> what the car owes now (order_id = the recordNo the platform pays), or None
QuoteFn = Callable[[str, str, str], Awaitable[Optional[PriceQuote]]]
# (lane id, operator, reason) -> {"opened": bool, "message": str}; enqueues an audited operator release
ReleaseFn = Callable[[str, str, str], Awaitable[Mapping[str, Any]]]


class InboundStore(Protocol):
    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool: ...


class Results(Protocol):
    async def on_result(self, provider: str, order_ref: str, answer: ChargeAnswer, *,
                        lane_id: Optional[str] = None) -> str: ...


class TdznInbound:
    def __init__(self, key: str, pid: str, park_code: str, store: InboundStore, settlement: Optional[Results],
                 clock: Clock, tz: tzinfo, *, window_s: int, lanes_by_channel: Mapping[str, str], quote: QuoteFn,
                 release: ReleaseFn, max_fen: int = DEFAULT_MAX_FEN) -> None:
        if not key:
            raise ValueError("the tdzn key is empty")
        self._key, self.pid, self.park_code = key, pid, park_code
        self.store, self.settlement, self.clock, self.tz = store, settlement, clock, tz
        self.window_s, self.lanes_by_channel, self.quote, self.release = window_s, lanes_by_channel, quote, release
        self.max_fen = max_fen  # a payNotify over it is refused with 402, site payments.max_amount_fen
        self.counts = {"accepted": 0, "duplicate": 0, "bad_signature": 0, "replay": 0, "malformed": 0,
                       "refused": 0, "unapplied": 0, "prepaid": 0, "error": 0}

    async def handle_body(self, body: bytes) -> bytes:
        """One POST to the lane's tdzn endpoint -> the tdzn answer body. Never raises."""
        try:
            return await self._handle(body)
        except StorageUnavailable:
            # not stored, so not acknowledged: tdzn sends it again (the store logged the fault once)
            self.counts["error"] += 1
            return tdzn.answer(500, "server error")
        except Exception:
            self.counts["error"] += 1
            log.exception("tdzn request could not be handled")
            return tdzn.answer(500, "server error")

    async def _handle(self, body: bytes) -> bytes:
        try:
            req = tdzn.decode_request(body, self._key, now=self.clock.now().timestamp(), window_s=self.window_s,
                                      pid=self.pid)
        except tdzn.BadSignature as exc:
            self.counts["bad_signature"] += 1
            log.warning("tdzn request refused: %s", exc)
            return tdzn.answer(exc.code, exc.msg)
        except tdzn.ReplayRefused as exc:
            self.counts["replay"] += 1
            log.warning("tdzn request refused (replay or clock skew): %s", exc)
            return tdzn.answer(exc.code, exc.msg)
        except TdznError as exc:
            self.counts["malformed"] += 1
            log.warning("tdzn request refused: %.300s (%d)", exc, exc.code)
            return tdzn.answer(exc.code, exc.msg)
        park = req.biz.get("parkCode")
        if park not in (None, "") and str(park) != self.park_code:
            self.counts["refused"] += 1
            log.warning("tdzn %s for park %r refused: this lane is park %r", req.service_name, park, self.park_code)
            return tdzn.answer(402, f"parkCode {park} is not this park")
        try:
            value = tdzn.parse_lane_request(req, self.tz, max_fen=self.max_fen)
        except TdznError as exc:
            self.counts["malformed"] += 1
            log.warning("tdzn %.60s refused: %.300s (%d)", req.service_name, exc, exc.code)
            return tdzn.answer(exc.code, exc.msg)
        text = bytes(body).decode("utf-8", "replace")
        if isinstance(value, tdzn.PayNotify):
            return await self._pay_notify(value, text)
        if isinstance(value, tdzn.QueryParkFee):
            return await self._query_park_fee(value)
        return await self._remote_dev(value, req, text)

    # --- payNotify ---------------------------------------------------------------------------------------------
    async def _pay_notify(self, n: tdzn.PayNotify, text: str) -> bytes:
        if not await self.store.inbox_put(PROVIDER, f"payNotify:{n.order_no}", text, self.clock.now()):
            self.counts["duplicate"] += 1
            log.info("tdzn payNotify %s repeated: answered 6006, nothing changed", n.order_no)
            return tdzn.answer(6006, "duplicate pay notify")
        if n.type == 0:
            # Prepaid inside the lot: the car is not at an exit and no charge of ours is open. Kept for the
            # prepay step (paid-ahead grace at the exit); nothing is confirmed to any lane now.
            self.counts["prepaid"] += 1
            log.warning("tdzn payNotify %s: prepaid in the lot, record %s, %d fen: kept, NOT applied (prepay is "
                        "not handled yet)", n.order_no, n.record_no or "-", n.paid_fee_fen)
            return tdzn.answer(200)
        if not n.record_no:
            self.counts["unapplied"] += 1
            log.error("tdzn payNotify %s (%d fen, channel %s) names no recordNo: kept, not applied", n.order_no,
                      n.paid_fee_fen, n.out_channel_id)
            return tdzn.answer(200)
        lane = self.lanes_by_channel.get(n.out_channel_id) if n.out_channel_id else None
        if n.out_channel_id and lane is None:
            # the recordNo alone binds it to our charge (record ids are site-unique); say so for the map's sake
            log.warning("tdzn payNotify %s names channel %r, which is no lane here", n.order_no, n.out_channel_id)
        answer = ChargeAnswer("paid", n.order_no, n.paid_fee_fen, str(n.pay_type),
                              f"payNotify type {n.type} at {n.pay_time_text}")
        if self.settlement is None:
            self.counts["unapplied"] += 1
            return tdzn.answer(200)
        try:
            outcome = await self.settlement.on_result(PROVIDER, n.record_no, answer, lane_id=lane)
        except Exception:
            # kept in the inbox, but not booked: say so; a resend is answered 6006 — the books show it
            self.counts["error"] += 1
            log.exception("tdzn payNotify %s kept but not applied", n.order_no)
            return tdzn.answer(6005, "pay notify failed")
        if outcome == "accepted":
            self.counts["accepted"] += 1
            log.info("tdzn payNotify %s record %s type %d: %d fen (payType %d)", n.order_no, n.record_no, n.type,
                     n.paid_fee_fen, n.pay_type)
        else:
            self.counts["unapplied" if outcome in ("unknown_order", "mismatch") else "duplicate"] += 1
            log.error("tdzn payNotify %s record %s (%d fen): %s — kept, not confirmed", n.order_no, n.record_no,
                      n.paid_fee_fen, outcome)
        return tdzn.answer(200)

    # --- queryParkFee --------------------------------------------------------------------------------------------
    async def _query_park_fee(self, q: tdzn.QueryParkFee) -> bytes:
        quote = await self.quote(q.plate, q.record_no, q.out_channel_id)
        if quote is None:
            self.counts["refused"] += 1
            log.info("tdzn queryParkFee plate %r record %r channel %r: no entry record", q.plate, q.record_no,
                     q.out_channel_id)
            return tdzn.answer(6003, "no entry record")
        now = self.clock.now()
        entered = quote.entered_at or now - timedelta(minutes=quote.duration_min)
        # total - due is what was paid ahead, not a discount: tdzn's discountFee stays 0
        data = tdzn.query_park_fee_answer(record_no=quote.order_id, plate=q.plate, enter_time=entered,
                                          leave_time=now, tz=self.tz, payable_fee=quote.total_fen, discount_fee=0,
                                          paid_fee=quote.due_fen, park_code=self.park_code)
        self.counts["accepted"] += 1
        return tdzn.answer(200, data=data)

    # --- remoteDev -----------------------------------------------------------------------------------------------
    async def _remote_dev(self, r: tdzn.RemoteDev, req: tdzn.Request, text: str) -> bytes:
        lane = self.lanes_by_channel.get(r.channel_id)
        if lane is None:
            self.counts["refused"] += 1
            log.warning("tdzn remoteDev for channel %r refused: no such lane here", r.channel_id)
            return tdzn.answer(404, f"channel {r.channel_id} not found")
        operator = r.operator.strip()
        if not operator:
            self.counts["refused"] += 1
            log.warning("tdzn remoteDev on %s refused: no operator named", lane)
            return tdzn.answer(400, "missing param: operator")
        # the type is part of the key: a cancel and a release sent in one second are two commands
        key = f"remoteDev:{r.channel_id}:{r.plate_id}:{r.type}:{req.timestamp}"
        if not await self.store.inbox_put(PROVIDER, key, text, self.clock.now()):
            self.counts["duplicate"] += 1
            log.warning("tdzn remoteDev %s repeated: nothing opened", key)
            return tdzn.answer(405, "duplicate request")
        if r.type == 1:
            self.counts["accepted"] += 1
            log.info("tdzn remoteDev cancel on %s by %s: nothing to do", lane, operator)
            return tdzn.answer(200)
        reason = f"tdzn remoteDev type {r.type}: {r.open_gate_case.strip() or 'no reason given'}"
        try:
            result = await self.release(lane, operator, reason)
        except Exception:
            self.counts["error"] += 1
            log.exception("tdzn remoteDev on %s by %s: release failed", lane, operator)
            return tdzn.answer(6001, "release failed")
        if not result.get("opened"):
            self.counts["refused"] += 1
            message = str(result.get("message") or "not opened")
            log.warning("tdzn remoteDev on %s by %s not done: %s", lane, operator, message)
            return tdzn.answer(6001, message)
        self.counts["accepted"] += 1
        log.info("tdzn remoteDev on %s by %s: released (%s)", lane, operator, reason)
        return tdzn.answer(200, str(result.get("message") or ""))
