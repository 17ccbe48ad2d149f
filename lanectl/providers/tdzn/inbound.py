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

Verification, the park (store) check, the inbox and the settlement hand-off are the shared callback
pipeline's (providers/pipeline.py); this module supplies the platform's steps and its answers.
"""

from __future__ import annotations

import logging
from datetime import timedelta, tzinfo
from typing import Mapping, Optional

from lanectl.core.money import DEFAULT_MAX_FEN
from lanectl.core.settlement import ChargeAnswer
from lanectl.providers.pipeline import Answers, CallbackPipeline, Payment, Refused
from lanectl.providers.ports import InboundStore, QuoteFn, ReleaseFn, Results
from lanectl.providers.tdzn import codec as tdzn
from lanectl.providers.tdzn.codec import TdznError
from lanectl.service.ports import Clock

log = logging.getLogger("lanectl.tdzn")

PROVIDER = "tdzn"

__all__ = ["QuoteFn", "ReleaseFn", "TdznInbound"]


class TdznInbound:
    """tdzn's steps of the callback pipeline (providers/pipeline.py) and its per-service handlers."""

    name = PROVIDER
    content_type = "application/json"

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
        self.pipeline: CallbackPipeline[tdzn.Request] = CallbackPipeline(self, store, settlement, clock, log)

    async def handle_body(self, body: bytes) -> bytes:
        """One POST to the lane's tdzn endpoint -> the tdzn answer body. Never raises."""
        return (await self.pipeline.handle_body(body))[0]

    # --- the pipeline's steps ----------------------------------------------------------------------------------
    def verify(self, body: bytes, content_type: str = "") -> tdzn.Request:
        try:
            return tdzn.decode_request(body, self._key, now=self.clock.now().timestamp(), window_s=self.window_s,
                                       pid=self.pid)
        except tdzn.BadSignature as exc:
            raise Refused("bad_signature", tdzn.answer(exc.code, exc.msg), str(exc)) from None
        except tdzn.ReplayRefused as exc:
            raise Refused("replay", tdzn.answer(exc.code, exc.msg), f"replay or clock skew: {exc}") from None
        except TdznError as exc:
            raise Refused("malformed", tdzn.answer(exc.code, exc.msg), f"{exc} ({exc.code})") from None

    def park_of(self, req: tdzn.Request) -> tuple[Optional[str], str]:
        park = req.biz.get("parkCode")
        return (None if park is None else str(park)), self.park_code

    def wrong_park(self, req: tdzn.Request, park: str) -> bytes:
        return tdzn.answer(402, f"parkCode {park} is not this park")

    def server_error(self) -> Optional[bytes]:
        return tdzn.answer(500, "server error")  # not stored, so not acknowledged: tdzn sends it again

    async def dispatch(self, req: tdzn.Request, body: bytes) -> bytes:
        try:
            value = tdzn.parse_lane_request(req, self.tz, max_fen=self.max_fen)
        except TdznError as exc:
            raise Refused("malformed", tdzn.answer(exc.code, exc.msg),
                          f"{req.service_name:.60}: {exc} ({exc.code})") from None
        text = bytes(body).decode("utf-8", "replace")
        if isinstance(value, tdzn.PayNotify):
            return await self._pay_notify(value, text)
        if isinstance(value, tdzn.QueryParkFee):
            return await self._query_park_fee(value)
        return await self._remote_dev(value, req, text)

    # --- payNotify ---------------------------------------------------------------------------------------------
    async def _pay_notify(self, n: tdzn.PayNotify, text: str) -> bytes:
        lane = self.lanes_by_channel.get(n.out_channel_id) if n.out_channel_id else None
        unbound = None
        if n.type == 0:
            # Prepaid inside the lot: the car is not at an exit and no charge of ours is open. Kept for the
            # prepay step (paid-ahead grace at the exit); nothing is confirmed to any lane now.
            unbound = (logging.WARNING, f"prepaid in the lot, record {n.record_no or '-'}, {n.paid_fee_fen} fen: "
                                        "kept, NOT applied (prepay is not handled yet)")
        elif not n.record_no:
            unbound = (logging.ERROR, f"{n.paid_fee_fen} fen, channel {n.out_channel_id}: names no recordNo: kept, "
                                      "not applied")
        elif n.out_channel_id and lane is None:
            # the recordNo alone binds it to our charge (record ids are site-unique); say so for the map's sake
            log.warning("tdzn payNotify %s names channel %r, which is no lane here", n.order_no, n.out_channel_id)
        answer = ChargeAnswer("paid", n.order_no, n.paid_fee_fen, str(n.pay_type),
                              f"payNotify type {n.type} at {n.pay_time_text}")

        def counted(outcome: Optional[str]) -> str:
            if n.type == 0:
                return "prepaid"
            if outcome in (None, "unknown_order", "mismatch"):
                return "unapplied"
            return "accepted" if outcome == "accepted" else "duplicate"

        def answered(outcome: Optional[str]) -> bytes:
            if outcome == "accepted":
                log.info("tdzn payNotify %s record %s type %d: %d fen (payType %d)", n.order_no, n.record_no,
                         n.type, n.paid_fee_fen, n.pay_type)
            elif outcome is not None:
                log.error("tdzn payNotify %s record %s (%d fen): %s — kept, not confirmed", n.order_no,
                          n.record_no, n.paid_fee_fen, outcome)
            return tdzn.answer(200)

        # kept in the inbox but not booked when the settlement fails: say so; a resend is answered 6006
        return await self.pipeline.pay(
            Payment(f"payNotify:{n.order_no}", text, n.record_no, answer, lane, unbound=unbound),
            Answers(ack=answered, duplicate=tdzn.answer(6006, "duplicate pay notify"), count=counted,
                    not_applied=tdzn.answer(6005, "pay notify failed")))

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
        if not await self.pipeline.record(key, text):
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
