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

Verification, the park (store) check, the inbox and the settlement hand-off are the shared callback
pipeline's (providers/pipeline.py); this module supplies the platform's steps and its answers.
"""

from __future__ import annotations

import logging
from typing import Optional

from lanectl.core.money import DEFAULT_MAX_FEN
from lanectl.core.settlement import ChargeAnswer
from lanectl.providers.pipeline import Answers, CallbackPipeline, Payment, Refused
from lanectl.providers.ports import InboundStore, Results
from lanectl.providers.xft import codec as xft
from lanectl.service.ports import Clock

log = logging.getLogger("lanectl.xft")

PROVIDER = "xft"
ANSWER_TYPE = "text/plain"


class XftInbound:
    """XFT's steps of the callback pipeline (providers/pipeline.py): one message type, the notify."""

    name = PROVIDER
    content_type = ANSWER_TYPE

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
        self.pipeline: CallbackPipeline[xft.Notify] = CallbackPipeline(self, store, settlement, clock, log)

    async def handle_body(self, body: bytes, content_type: str = "") -> tuple[bytes, str]:
        """One notify POST -> (answer body, content type). Always an XFT answer: never raises, never a 500.
        An empty content type lets the codec tell JSON from a form by the first byte."""
        return await self.pipeline.handle_body(body, content_type)

    # --- the pipeline's steps ----------------------------------------------------------------------------------
    def verify(self, body: bytes, content_type: str = "") -> xft.Notify:
        try:
            return xft.parse_notify(body, self._key, content_type=content_type or None,
                                    require_signature=self.require_signature, max_fen=self.max_fen)
        except xft.BadSignature as exc:
            raise Refused("bad_signature", xft.NOTIFY_NACK, str(exc)) from None
        except xft.XftError as exc:
            raise Refused("malformed", xft.NOTIFY_NACK, str(exc)) from None

    def park_of(self, notify: xft.Notify) -> tuple[Optional[str], str]:
        return notify.store_code or None, self.store_code  # XFT's "park" is the store

    def wrong_park(self, notify: xft.Notify, park: str) -> bytes:
        return xft.NOTIFY_NACK

    def server_error(self) -> Optional[bytes]:
        return xft.NOTIFY_NACK  # not recorded: not acknowledged, so XFT sends it again

    async def dispatch(self, notify: xft.Notify, body: bytes) -> bytes:
        if not notify.signed:
            answer = ChargeAnswer("pending", detail=f"unsigned notify state {notify.state}: to be confirmed by "
                                                    f"query/charge/v2")
        else:
            answer = self._answer(notify)

        def acked(outcome: Optional[str]) -> bytes:
            if outcome is not None:
                log.info("xft notify order %s state %s (third %s, %s fen)%s: %s", notify.out_trade_no,
                         notify.state, notify.third_trade_no or "-", notify.amount_fen,
                         "" if notify.signed else " unsigned", outcome)
            return xft.NOTIFY_ACK

        key = f"{notify.out_trade_no}:{notify.third_trade_no}:{notify.state}" + ("" if notify.signed else ":unsigned")
        payment = Payment(key, bytes(body).decode("utf-8-sig"), notify.out_trade_no, answer)
        # recorded already when the settlement fails: its own polling of query/charge/v2 still settles the order
        return await self.pipeline.pay(payment, Answers(
            ack=acked, duplicate=xft.NOTIFY_ACK, not_applied=xft.NOTIFY_ACK,
            count=lambda _: "accepted" if notify.signed else "unsigned", count_when_stored=True))

    @staticmethod
    def _answer(notify: xft.Notify) -> ChargeAnswer:
        detail = " ".join(p for p in (f"notify {notify.state}", f"third_trade_no={notify.third_trade_no}"
                                      if notify.third_trade_no else "", notify.failure_code, notify.failure_msg) if p)
        if notify.paid:
            return ChargeAnswer("paid", "", notify.amount_fen, "signfree", detail)
        if notify.failed:
            return ChargeAnswer("failed", notify.third_trade_no, notify.amount_fen, detail=detail)
        return ChargeAnswer("pending", notify.third_trade_no, detail=detail)
