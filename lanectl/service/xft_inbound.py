"""The XFT notify (异步通知) the platform POSTs to the lane's notify_url once an order settles.

Verified over the raw bytes first; stored in the inbox (provider "xft", key out_trade_no:third_trade_no:state)
before it is answered SUCCESS, so a repeat is answered SUCCESS again and changes nothing. Nothing here
touches a lane: the result goes to the settlement service, which confirms a payment to the lane at most once,
and only for the attempt whose out_trade_no (our exit record id) the notify names.

    signed, good            00 -> paid, 01/06/98/99 -> failed, else pending     answered SUCCESS once stored
    signature wrong          never stored, never applied                        answered FAIL (XFT retries)
    malformed / other store  never stored, never applied                        answered FAIL
    unsigned (only with require_signature=False, for a platform that does not sign its notifies, as seed 000
    lists no `sign`): a HINT, never money. Passed on as "pending", so nothing opens; the settlement's own
    query/charge/v2 poll (signed answers) is what confirms it. Stored under its own key (…:unsigned) so an
    unsigned forgery can never shadow the real signed notify as a "repeat".

Paid notifies go to the settlement with an empty trade_no and the third_trade_no in the detail: XFT has one
order per out_trade_no, and the WeChat entrance answer carries no third_trade_no, so a sync SUCCESS is booked
under the out_trade_no. Passing the third_trade_no here would make the settlement read the later notify as
a second, different payment for the same charge and confirm it twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Optional, Protocol

from lanectl.core.money import DEFAULT_MAX_FEN
from lanectl.protocols import xft
from lanectl.service.ports import Clock, StorageUnavailable
from lanectl.service.settlement import ChargeAnswer

log = logging.getLogger("lanectl.xft")

PROVIDER = "xft"
ANSWER_TYPE = "text/plain"


class InboundStore(Protocol):
    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool: ...


class Results(Protocol):
    async def on_result(self, provider: str, order_ref: str, answer: ChargeAnswer, *,
                        lane_id: Optional[str] = None) -> str: ...


class XftInbound:
    def __init__(self, key: str, store: InboundStore, settlement: Optional[Results], clock: Clock, *,
                 require_signature: bool, store_code: str = "", max_fen: int = DEFAULT_MAX_FEN) -> None:
        if not key:
            raise ValueError("the XFT merchant key is empty")
        self._key, self.store, self.settlement, self.clock = key, store, settlement, clock
        self.require_signature = require_signature
        self.store_code = store_code  # when set, notifies naming another store are refused
        self.max_fen = max_fen  # a bigger amount is refused (FAIL), site payments.max_amount_fen
        self.counts = {"accepted": 0, "duplicate": 0, "bad_signature": 0, "malformed": 0, "refused": 0,
                       "unsigned": 0, "error": 0}

    async def handle_body(self, body: bytes, content_type: str = "") -> tuple[bytes, str]:
        """One notify POST -> (answer body, content type). Always an XFT answer: never raises, never a 500.
        An empty content type lets the codec tell JSON from a form by the first byte."""
        try:
            notify = xft.parse_notify(body, self._key, content_type=content_type or None,
                                      require_signature=self.require_signature, max_fen=self.max_fen)
        except xft.BadSignature as exc:
            self.counts["bad_signature"] += 1
            log.warning("xft notify refused: %s", exc)
            return xft.NOTIFY_NACK, ANSWER_TYPE
        except xft.XftError as exc:
            self.counts["malformed"] += 1
            log.warning("xft notify malformed: %.300s", exc)
            return xft.NOTIFY_NACK, ANSWER_TYPE
        if self.store_code and notify.store_code and notify.store_code != self.store_code:
            self.counts["refused"] += 1
            log.warning("xft notify for order %s names store %r; this lane is store %r: refused",
                        notify.out_trade_no, notify.store_code, self.store_code)
            return xft.NOTIFY_NACK, ANSWER_TYPE

        key = f"{notify.out_trade_no}:{notify.third_trade_no}:{notify.state}" + ("" if notify.signed else ":unsigned")
        try:
            new = await self.store.inbox_put(PROVIDER, key, bytes(body).decode("utf-8-sig"), self.clock.now())
        except StorageUnavailable:
            self.counts["error"] += 1  # not recorded: not acknowledged (the store logged the fault once)
            return xft.NOTIFY_NACK, ANSWER_TYPE
        except Exception:
            # not recorded: not acknowledged, so XFT sends it again
            self.counts["error"] += 1
            log.exception("xft notify %s could not be stored", key)
            return xft.NOTIFY_NACK, ANSWER_TYPE
        if not new:
            self.counts["duplicate"] += 1
            log.info("xft notify %s repeated: answered again, nothing changed", key)
            return xft.NOTIFY_ACK, ANSWER_TYPE

        if not notify.signed:
            self.counts["unsigned"] += 1
            answer = ChargeAnswer("pending", detail=f"unsigned notify state {notify.state}: to be confirmed by "
                                                    f"query/charge/v2")
        else:
            self.counts["accepted"] += 1
            answer = self._answer(notify)
        if self.settlement is not None:
            try:
                outcome = await self.settlement.on_result(PROVIDER, notify.out_trade_no, answer)
            except Exception:
                # recorded already: the settlement's own polling of query/charge/v2 still settles the order
                self.counts["error"] += 1
                log.exception("xft notify %s stored but not applied", key)
            else:
                log.info("xft notify order %s state %s (third %s, %s fen)%s: %s", notify.out_trade_no, notify.state,
                         notify.third_trade_no or "-", notify.amount_fen, "" if notify.signed else " unsigned",
                         outcome)
        return xft.NOTIFY_ACK, ANSWER_TYPE

    @staticmethod
    def _answer(notify: xft.Notify) -> ChargeAnswer:
        detail = " ".join(p for p in (f"notify {notify.state}", f"third_trade_no={notify.third_trade_no}"
                                      if notify.third_trade_no else "", notify.failure_code, notify.failure_msg) if p)
        if notify.paid:
            return ChargeAnswer("paid", "", notify.amount_fen, "signfree", detail)
        if notify.failed:
            return ChargeAnswer("failed", notify.third_trade_no, notify.amount_fen, detail=detail)
        return ChargeAnswer("pending", notify.third_trade_no, detail=detail)
