"""Messages Bolink sends to the lane — the same handlers for the callback URL and the SDK HTTP-mode downlink.

Every message is verified over its raw bytes first. What changes state is stored (inbox, unique per provider
and key) before it is answered, so a repeat is answered again and changes nothing. Nothing here touches a
lane or opens a barrier: payment results go to the settlement service, which confirms a payment to the lane
once; the lane decides.

    outpark (5.5)            e-payment result       -> settlement.on_result; answered after it is recorded
    notice_car_owner (5.2)   sign-free or not        -> a mark on the plate; a repeated `rand` is a replay
    update_balance           HTTP-mode form of 5.2   -> the same mark (no answer)
    query_price (5.1)        what a car owes now     -> the fee engine, through the app's quote function
    monthcard_pay (5.8)      a card renewed online    -> kept, then applied to the local cards (app's renew)
    prepay_order (5.3)       paid ahead in the lot    -> kept against the entry record; the exit deducts it
    nolicence_in_park (5.7)  plate-less car scanned   -> the app admits it at the entry lane of channel_id
Others are refused with `state:0` and a reason until the lane supports them.

Messages fetched from download.do (SDK HTTP mode, `handle_downlink`, or any message in the flat form) are
answered with the SDK channel's reply field sets (bl.*_reply_sdk); callbacks with the API's.

Verification, the park check, the inbox and the settlement hand-off are the shared callback pipeline's
(providers/pipeline.py); this module supplies Bolink's steps and its per-message handlers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Mapping, Optional, Protocol

from lanectl.core.money import DEFAULT_MAX_FEN
from lanectl.core.rules import CardRenewal, RenewalError
from lanectl.core.settlement import ChargeAnswer
from lanectl.providers.bolink import codec as bl
from lanectl.providers.pipeline import Answers, CallbackPipeline, Payment, Refused
from lanectl.providers.ports import AdmitFn, InboundStore, PriceQuote, QuoteFn, RenewFn, Results
from lanectl.service.ports import Clock

log = logging.getLogger("lanectl.bolink")

__all__ = ["AdmitFn", "BolinkInbound", "BolinkStore", "PriceQuote", "QuoteFn", "RenewFn"]


class BolinkStore(InboundStore, Protocol):
    """The inbox, plus what Bolink's own messages keep: prepayments and per-plate marks."""

    async def add_prepayment(self, provider: str, trade_no: str, *, order_id: str, plate: str, amount_fen: int,
                             paid_at: datetime, now: datetime) -> str: ...

    async def set_mark(self, provider: str, plate: str, name: str, value: str, now: datetime) -> None: ...


@dataclass(frozen=True)
class Incoming:
    msg: bl.SignedMessage
    sdk: bool  # answered with the SDK channel's reply field sets
    downlink: bool = False  # fetched from download.do: no reply where the protocol wants none


class BolinkInbound:
    """Bolink's steps of the callback pipeline (providers/pipeline.py) and its per-message handlers."""

    name = "bolink"
    content_type = "application/json"

    def __init__(self, key: str, park_id: str, store: BolinkStore, settlement: Optional[Results], clock: Clock,
                 *, lanes_by_channel: Mapping[str, str], quote: QuoteFn, renew: Optional[RenewFn] = None,
                 admit: Optional[AdmitFn] = None, free_out_minutes: int = 10,
                 max_fen: int = DEFAULT_MAX_FEN) -> None:
        self._key, self.park_id, self.store, self.settlement, self.clock = key, park_id, store, settlement, clock
        self.lanes_by_channel, self.quote, self.free_out_minutes = lanes_by_channel, quote, free_out_minutes
        self.renew, self.admit = renew, admit
        self.max_fen = max_fen  # amounts above it are refused (state 0 + errmsg), site payments.max_amount_fen
        self.counts = {"accepted": 0, "duplicate": 0, "bad_signature": 0, "malformed": 0, "refused": 0}
        self.pipeline: CallbackPipeline[Incoming] = CallbackPipeline(self, store, settlement, clock, log)

    async def handle_body(self, body: bytes) -> bytes:
        """A callback POST: the answer body (always JSON with `state`, never a traceback)."""
        return (await self.pipeline.handle_body(body))[0]

    async def handle_downlink(self, msg: bl.SignedMessage) -> Optional[bytes]:
        """A message fetched from download.do: answered in the SDK channel's reply fields."""
        return await self.pipeline.handle_verified(Incoming(msg, sdk=True, downlink=True))

    async def handle_message(self, msg: bl.SignedMessage, *, sdk: Optional[bool] = None) -> Optional[bytes]:
        """A verified message; the reply body, or None where the protocol wants no reply (update_balance).
        `sdk` (default: the message came in the flat download.do form) picks the SDK channel's reply fields."""
        return await self.pipeline.handle_verified(
            Incoming(msg, sdk=msg.form == "flat" if sdk is None else sdk, downlink=True))

    # --- the pipeline's steps ----------------------------------------------------------------------------------
    def verify(self, body: bytes, content_type: str = "") -> Incoming:
        try:
            msg = bl.decode_signed(body, self._key)
        except bl.BadSignature as exc:
            raise Refused("bad_signature", bl.answer_error(bl.ERR_SIGNATURE), str(exc)) from None
        except bl.BolinkError as exc:
            raise Refused("malformed", bl.answer_error(str(exc)[:200]), str(exc)) from None
        # the flat download.do form is answered in the SDK channel's reply fields
        return Incoming(msg, sdk=msg.form == "flat")

    def park_of(self, inc: Incoming) -> tuple[Optional[str], str]:
        park = inc.msg.data.get("park_id")
        return (None if park is None else str(park)), self.park_id

    def wrong_park(self, inc: Incoming, park: str) -> bytes:
        return bl.answer_error(f"park_id {park} is not this park", inc.msg.service_name)

    def server_error(self) -> Optional[bytes]:
        return None  # the listener answers 503 / 500: not acknowledged, Bolink sends it again

    async def dispatch(self, inc: Incoming, body: bytes = b"") -> Optional[bytes]:
        """A verified message; the reply body, or None where the protocol wants no reply (update_balance)."""
        msg, sdk = inc.msg, inc.sdk
        try:
            cb = bl.parse_callback(msg, None, max_fen=self.max_fen)
        except bl.BolinkError as exc:
            raise Refused("malformed", bl.answer_error(str(exc)[:200], msg.service_name),
                          f"{msg.service_name or 'callback'}: {exc}") from None
        handler = {bl.Outpark: self._outpark, bl.NoticeCarOwner: self._notice, bl.UpdateBalance: self._balance,
                   bl.QueryPrice: self._query_price, bl.MonthcardPay: self._monthcard,
                   bl.PrepayOrder: self._prepay, bl.NolicenceInPark: self._nolicence}.get(type(cb))
        if handler is None:
            raise Refused("refused", bl.answer_error("not supported by this lane controller", msg.service_name),
                          f"{type(cb).__name__}: not supported by this lane yet")
        reply = await handler(cb, msg, sdk)  # type: ignore[operator]
        return bl.answer_notice() if reply is None and not inc.downlink else reply

    # --- handlers ----------------------------------------------------------------------------------------------
    async def _outpark(self, cb: bl.Outpark, msg: bl.SignedMessage, sdk: bool = False) -> bytes:
        status = {1: "paid", 0: "failed"}.get(cb.state, "pending")
        answer = ChargeAnswer(status, cb.trade_no, cb.total_fen, cb.pay_type, cb.errmsg or f"outpark state {cb.state}")  # type: ignore[arg-type]
        lane = self.lanes_by_channel.get(cb.out_channel_id) if cb.out_channel_id else None
        unbound = None
        if cb.out_channel_id and lane is None:
            unbound = (logging.ERROR, f"names channel {cb.out_channel_id!r}, which is no lane here: recorded, not "
                                      "applied")
        # one order id, charged by the wallet (or paid by scanning) or by ETC: the pay type says which
        providers = ("bolink_etc", "bolink") if cb.pay_type == "etc" else ("bolink", "bolink_etc")
        ack = bl.answer_outpark(cb.trade_no, cb.order_id)

        def answered(outcome: Optional[str]) -> bytes:
            if outcome is not None:
                log.info("bolink outpark %s order %s state %d: %s", cb.trade_no, cb.order_id, cb.state, outcome)
            return ack

        # a paying (2) then paid (1) push of one trade are two facts
        payment = Payment(f"outpark:{cb.trade_no}:{cb.state}", msg.data_text, cb.order_id, answer, lane, providers,
                          unbound)
        answers = Answers(ack=answered, duplicate=ack, count=lambda _: "accepted", count_when_stored=True)
        return await self.pipeline.pay(payment, answers)

    async def _notice(self, cb: bl.NoticeCarOwner, msg: bl.SignedMessage, sdk: bool = False) -> bytes:
        now = self.clock.now()
        if not await self.pipeline.record(cb.rand, msg.data_text, inbox="bolink-rand"):
            self.counts["refused"] += 1
            log.warning("bolink notice_car_owner for %s refused: rand %s seen before (replay)", cb.car_number,
                        cb.rand)
            return bl.answer_notice(0, "rand重复: replay refused")
        await self.store.set_mark("bolink", cb.car_number, "signfree", str(cb.is_union_user), now)
        self.counts["accepted"] += 1
        log.info("bolink: %s is %ssign-free", cb.car_number, "" if cb.is_union_user == 1 else "not ")
        return bl.answer_notice(1, "")

    async def _balance(self, cb: bl.UpdateBalance, msg: bl.SignedMessage, sdk: bool = False) -> Optional[bytes]:
        await self.store.set_mark("bolink", cb.car_number, "signfree", str(cb.autopay), self.clock.now())
        self.counts["accepted"] += 1
        return None

    async def _monthcard(self, cb: bl.MonthcardPay, msg: bl.SignedMessage, sdk: bool = False) -> bytes:
        answer = (bl.compact(bl.monthcard_reply_sdk(cb.trade_no, cb.park_id or self.park_id, cb.amount_fen)) if sdk
                  else bl.answer_monthcard(cb.trade_no))
        if not await self.pipeline.record(f"monthcard:{cb.trade_no}", msg.data_text):
            self.counts["duplicate"] += 1
            return answer
        self.counts["accepted"] += 1
        if not cb.paid:
            log.info("bolink monthcard_pay %s: payment failed (state %s), card unchanged", cb.trade_no, cb.state)
            return answer
        try:
            end = date.fromisoformat(cb.end_time)
            start = date.fromisoformat(cb.start_time) if cb.start_time else None
        except ValueError:
            # Kept in the inbox; without a period there is nothing to extend — the operator applies it by hand.
            log.error("bolink monthcard_pay %s for %s card %s has no usable end_time %r: kept, not applied",
                      cb.trade_no, cb.car_number, cb.card_id, cb.end_time)
            return answer
        if self.renew is not None:
            try:
                await self.renew(CardRenewal(cb.card_id, cb.car_number, start, end), cb.trade_no, cb.amount_fen)
            except RenewalError as exc:
                log.error("bolink monthcard_pay %s kept but not applied: %s", cb.trade_no, exc)
        return answer

    async def _prepay(self, cb: bl.PrepayOrder, msg: bl.SignedMessage, sdk: bool = False) -> bytes:
        now = self.clock.now()
        # the SDK channel's push has no trade_no: a repeat of it carries the same order, amount, type and time
        ref = cb.trade_no or f"{cb.order_id}:{cb.total_fen}:{cb.prepay_type or ''}:{cb.pay_time or ''}"
        await self.pipeline.record(f"prepay:{ref}", msg.data_text)  # kept, whatever follows
        paid_at = datetime.fromtimestamp(cb.pay_time, now.tzinfo) if cb.pay_time else now
        outcome = await self.store.add_prepayment("bolink", ref, order_id=cb.order_id, plate=cb.car_number,
                                                  amount_fen=cb.total_fen, paid_at=paid_at, now=now)
        if outcome == "not_inside":
            log.error("bolink prepay %s (%d fen) for order %s / %s: no such car inside; kept in the inbox for the "
                      "operator", ref, cb.total_fen, cb.order_id, cb.car_number)
        else:
            self.counts["accepted" if outcome == "recorded" else "duplicate"] += 1
            log.info("bolink prepay %s: %d fen for order %s %s", ref, cb.total_fen, cb.order_id, outcome)
        if sdk:
            return bl.compact(bl.prepay_reply_sdk(cb.order_id, cb.park_id or self.park_id, cb.total_fen))
        return bl.answer_prepay(cb.trade_no, cb.order_id)

    async def _nolicence(self, cb: bl.NolicenceInPark, msg: bl.SignedMessage, sdk: bool = False) -> bytes:
        def answer(state: int, errmsg: str) -> bytes:
            if sdk:
                return bl.compact(bl.nolicence_reply_sdk(cb.car_number, state, errmsg))
            return bl.answer_nolicence(cb.car_number, cb.timetemp, state, errmsg)

        if not await self.pipeline.record(f"nolicence:{cb.car_number}:{cb.timetemp}", msg.data_text):
            self.counts["duplicate"] += 1  # a repeated request: answered, never a second opening
            return answer(1, "")
        if self.admit is None:
            return answer(0, "plate-less entry not supported here")
        opened, why = await self.admit(cb.channel_id, cb.car_number)
        self.counts["accepted" if opened else "refused"] += 1
        log.info("bolink nolicence_in_park %s at channel %s: %s", cb.car_number, cb.channel_id,
                 "admitted" if opened else f"refused ({why})")
        return answer(1 if opened else 0, "" if opened else why)

    async def _query_price(self, cb: bl.QueryPrice, msg: bl.SignedMessage, sdk: bool = False) -> bytes:
        q = await self.quote(cb.car_number, cb.order_id, cb.out_channel_id)
        if q is None:
            if sdk:
                return bl.compact(bl.query_price_unknown_sdk(
                    park_id=self.park_id, order_id=cb.order_id, query_order_no=cb.query_order_no,
                    free_out_time_min=self.free_out_minutes, query_time=int(self.clock.now().timestamp())))
            return bl.compact(bl.query_price_unknown(park_id=self.park_id, order_id=cb.order_id,
                                                     query_order_no=cb.query_order_no))
        self.counts["accepted"] += 1
        return bl.answer_query_price(
            park_id=self.park_id, order_id=q.order_id, price_fen=q.due_fen, total_fen=q.total_fen,
            duration_min=q.duration_min, query_order_no=cb.query_order_no, free_out_time_min=self.free_out_minutes,
            in_time=int(q.entered_at.timestamp()) if q.entered_at else None,
            query_time=int(self.clock.now().timestamp()),
            **({"errmsg": "success", "derate_duration_min": 0} if sdk else {}))
