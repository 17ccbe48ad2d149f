"""XFT aggregation parking API v2 (sign-free / 无感) over HTTP: the client, the exit-payment provider and the
entry publisher.

* XftClient signs each request once (codec.py), POSTs it as JSON and spaces calls at `rate_per_s`.
  Any answer that is not HTTP 200 — or no answer at all — is ProviderUnavailable: the charge may or may not
  have happened, so the settlement treats it as pending and never as paid.
* XftProvider charges at an exit lane: the signed-relation query first, as the settlement's precheck (its own
  timeout `relation_timeout_s`, never the charge's; cached per plate and channel for `relation_cache_s`), then
  `entrance/v2` with out_trade_no = the exit record id. SUCCESS is paid, FAIL is failed, INIT (or anything
  else) is pending; `query/charge/v2` then settles it (00 paid; 01/06/98/99 failed; ORDER_NOT_EXIST is
  "absent", which the settlement weighs against whether entrance/v2 was ever answered).
  The notify is taken by inbound.py. Every answer must carry a good signature and name our
  order, otherwise it is no answer at all.
* The relation query on a channel that seed 000 says needs sub_openid (WECHAT) is sent without a channel: the
  lane knows the plate, never the driver's WeChat sub_openid. The answer's channel must be the lane's.
* XftPublisher sends entry records through the outbox as `entry/v2` (out_trade_no = the entry record id).
  A repeat the platform recognises counts as done.

`channels` maps a lane id to the XFT payment channel charged at it (WECHAT, ALIPAY ...); lanes not listed use
`cfg.channel`. XFT has no gate / lane field, so nothing else about the lane is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, tzinfo
from typing import Any, Mapping, Optional

import aiohttp

from lanectl.adapters.platform_http import PlatformTransport
from lanectl.providers.xft.config import XftConfig
from lanectl.core import effects as fx
from lanectl.core.plates import normalize_plate
from lanectl.providers.xft import codec as xft
from lanectl.service.outbox import OutboxItem, Outcome
from lanectl.service.settlement import Attempt, ChargeAnswer, ProviderUnavailable

log = logging.getLogger("lanectl.xft")

METHOD = "signfree"  # recorded by the lane as "xft:signfree"

# entry/v2 refusals that mean "already have it" (inferred: XFT documents no codes; the emulator answers a
# repeat with state 1, a real gateway may refuse it instead).
ENTRY_KNOWN_CODES = frozenset({"OUT_TRADE_NO_USED", "ORDER_EXIST", "ORDER_EXISTS", "ORDER_EXISTED",
                               "REPEAT_ORDER", "DUPLICATE_ORDER", "ENTRY_EXIST"})
ENTRY_KNOWN_WORDS = ("重复", "已存在", "已入场")
# entry/v2 refusals worth retrying: our credentials (fixable by the operator) or the platform's load. Anything
# else is final, so one bad record cannot hold the XFT queue behind it forever.
ENTRY_RETRY_CODES = frozenset({"SIGN_ERROR", "APP_ID_ERROR", "SYSTEM_ERROR", "SYSTEMERROR", "SYSTEM_BUSY",
                               "FREQUENCY_LIMITED", "RATE_LIMITED"})


class XftClient:
    def __init__(self, cfg: XftConfig, key: str, session: aiohttp.ClientSession) -> None:
        self.cfg, self._key = cfg, key
        self._http = PlatformTransport("xft", session, rate_per_s=cfg.rate_per_s, timeout_s=cfg.timeout_s)

    @property
    def key(self) -> str:
        return self._key

    async def post(self, path: str, params: Mapping[str, Any], *, timeout_s: Optional[float] = None) -> bytes:
        """One signed call; the raw answer body. ProviderUnavailable when there is no usable answer.
        XftError when `params` cannot be signed (nothing was sent)."""
        body = xft.encode_request(params, self._key)
        return await self._http.post(self.cfg.base_url + "/" + path, body, path, timeout_s=timeout_s)


def _moment(iso: str, zone: tzinfo) -> datetime:
    """Record times are ISO 8601 with an offset; a naive one is the lot's wall time."""
    at = datetime.fromisoformat(iso)
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


class XftProvider:
    name = "xft"

    def __init__(self, client: XftClient, channels: Mapping[str, str], tz: tzinfo) -> None:
        self.client, self.channels, self.tz = client, channels, tz
        self._relations: dict[tuple[str, str], tuple[float, bool, str]] = {}  # (plate, channel) -> (until, ok, why)

    def order_ref(self, order: fx.StartSettlement) -> str:
        # out_trade_no is XFT's idempotency key: one exit record, one XFT order, at most one payment.
        return order.record_id

    def channel(self, lane_id: str) -> str:
        return self.channels.get(lane_id) or self.client.cfg.channel

    async def precheck(self, order: fx.StartSettlement, attempt: Attempt) -> Optional[ChargeAnswer]:
        """Before the charge, outside its timeout: is this car signed up? None: charge it. A skip otherwise —
        also when the relation is unknown (no answer within relation_timeout_s, an error): nothing was sent
        that could charge the car, so the next provider or the booth can take it at once."""
        if not order.plate:
            return ChargeAnswer("skip", detail="plate-less car: no sign-free contract")
        if attempt.amount_fen <= 0:
            return ChargeAnswer("skip", detail="nothing to charge")
        if not self.client.cfg.relation_check:
            return None  # configured off: entrance/v2 answers FAIL for a car without a contract
        signed, why = await self._signed(order.plate, self.channel(order.lane_id))
        return None if signed else ChargeAnswer("skip", detail=why)

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        """entrance/v2. The settlement calls precheck (the signed relation) first."""
        if not order.plate:
            return ChargeAnswer("skip", detail="plate-less car: no sign-free contract")
        if attempt.amount_fen <= 0:
            return ChargeAnswer("skip", detail="nothing to charge")
        channel = self.channel(order.lane_id)
        cfg = self.client.cfg
        try:
            params = xft.exit_params(
                app_id=cfg.app_id, merchant_code=cfg.merchant_code, store_code=cfg.store_code, channel=channel,
                out_trade_no=attempt.order_ref, amount_fen=attempt.amount_fen, notify_url=cfg.notify_url,
                plate_number=order.plate, start_time=_moment(order.entered_at or order.left_at, self.tz),
                end_time=_moment(order.left_at, self.tz), zone=self.tz, client_ip=cfg.client_ip,
                car_type=order.vehicle_class or None)
        except (xft.XftError, ValueError) as exc:
            # nothing went out: the next provider (or the booth) can charge without any risk of a double charge
            return ChargeAnswer("failed", detail=f"cannot build entrance/v2: {exc}")
        raw = await self.client.post(xft.PATHS["exit"], params)
        try:
            answer = xft.parse_exit_answer(raw, self.client.key, require_signature=True,
                                           expect_out_trade_no=attempt.order_ref)
        except xft.XftError as exc:
            # forged, garbled, for another order, or refused without data: the order may exist -> poll it
            raise ProviderUnavailable(f"xft entrance answer: {exc}") from None
        if answer.is_allow == "SUCCESS":
            # WeChat fills third_trade_no only later (notify / query): the out_trade_no stands in for it
            return ChargeAnswer("paid", answer.third_trade_no or attempt.order_ref, attempt.amount_fen, METHOD,
                                "entrance/v2 SUCCESS")
        if answer.is_allow == "FAIL":
            return ChargeAnswer("failed", detail=_why("entrance/v2 FAIL", answer.failure_code, answer.failure_msg))
        return ChargeAnswer("pending", detail=f"entrance/v2 {answer.raw_is_allow or 'no is_allow'}: undecided")

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        cfg = self.client.cfg
        params = xft.charge_query_params(app_id=cfg.app_id, merchant_code=cfg.merchant_code,
                                         out_trade_no=attempt.order_ref, client_ip=cfg.client_ip)
        raw = await self.client.post(xft.PATHS["charge_query"], params)
        try:
            state = xft.parse_charge_query(raw, self.client.key, require_signature=True,
                                           expect_out_trade_no=attempt.order_ref)
        except xft.XftError as exc:
            raise ProviderUnavailable(f"xft charge query answer: {exc}") from None
        if state.paid:
            return ChargeAnswer("paid", state.third_trade_no or attempt.order_ref, state.amount_fen, METHOD,
                                "query/charge/v2 00")
        if state.failed:
            return ChargeAnswer("failed", state.third_trade_no,
                                detail=_why(f"query/charge/v2 {state.state}", state.failure_code, state.failure_msg))
        if state.absent:
            return ChargeAnswer("absent", detail=_why("query/charge/v2", state.failure_code, state.failure_msg))
        return ChargeAnswer("pending", detail=_why(f"query/charge/v2 {state.state or 'no state'}",
                                                   state.failure_code, state.failure_msg))

    async def _signed(self, plate: str, channel: str) -> tuple[bool, str]:
        """Is this plate signed up for sign-free payment on `channel`? Clean answers are cached; an error or
        no usable answer within relation_timeout_s is a "no" that is asked again next time (nothing was
        charged, so moving on is safe)."""
        plate = normalize_plate(plate)
        now = time.monotonic()
        cached = self._relations.get((plate, channel))
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        cfg = self.client.cfg
        # WECHAT needs the driver's sub_openid (seed 000), which a lane never knows: ask by plate alone
        asked = None if channel in xft.CHANNEL_NEEDS_SUB_OPENID else channel
        limit = cfg.relation_timeout_s
        try:
            params = xft.signed_relation_params(app_id=cfg.app_id, merchant_code=cfg.merchant_code,
                                                store_code=cfg.store_code, channel=asked, plate_number=plate)
            async with asyncio.timeout(limit):  # the rate-limit slot included
                raw = await self.client.post(xft.PATHS["signed_relation"], params, timeout_s=limit)
            rel = xft.parse_signed_relation(raw, self.client.key, require_signature=True)
        except TimeoutError:
            return False, f"signed relation unknown: no answer within {limit:g} s"
        except (ProviderUnavailable, xft.XftError) as exc:
            return False, f"signed relation unknown: {exc}"
        if rel.failure_code:
            return False, _why("signed relation refused", rel.failure_code, rel.failure_msg)
        # a "signed" answer that lists the user's plates without ours is not about this car; one for another
        # payment method than the lane charges with is not a contract entrance/v2 can use
        ok = rel.sign_flag and (not rel.plates or plate in rel.plates) and rel.channel in ("", channel)
        why = "" if ok else (f"{plate} is signed up on {rel.channel}, this lane charges {channel}"
                             if rel.sign_flag and rel.channel not in ("", channel)
                             else f"{plate} has no XFT sign-free contract on {channel}")
        if cfg.relation_cache_s > 0:
            self._relations[(plate, channel)] = (now + cfg.relation_cache_s, ok, why)
        return ok, why


def _why(what: str, code: str, msg: str) -> str:
    return " ".join(p for p in (what, code, msg) if p)


class XftPublisher:
    """Outbox destination "xft": entry records as entry/v2; other kinds are not XFT's business."""

    def __init__(self, client: XftClient, channels: Mapping[str, str], tz: tzinfo) -> None:
        self.client, self.channels, self.tz = client, channels, tz

    async def publish(self, item: OutboxItem) -> Outcome:
        r = item.payload
        if item.kind != "entry" or not r.get("plate") or r.get("status") == "refused":
            return Outcome.done()  # exits are settled by entrance/v2; plate-less cars cannot be signed up
        cfg = self.client.cfg
        try:
            params = xft.entry_params(
                app_id=cfg.app_id, merchant_code=cfg.merchant_code, store_code=cfg.store_code,
                channel=self.channels.get(r.get("lane_id", "")) or cfg.channel, out_trade_no=r["record_id"],
                plate_number=r["plate"], start_time=_moment(r["at"], self.tz), zone=self.tz,
                car_type=r.get("vehicle_class") or None)
        except (xft.XftError, KeyError, ValueError) as exc:
            return Outcome.reject(f"cannot send entry/v2: {exc!r}")
        try:
            raw = await self.client.post(xft.PATHS["entry"], params)
            answer = xft.parse_entry_answer(raw, self.client.key, require_signature=True)
        except ProviderUnavailable as exc:
            return Outcome.retry(str(exc))
        except xft.XftRefused as exc:
            return Outcome.reject(f"xft refused entry/v2: {exc}")
        except xft.XftError as exc:
            return Outcome.retry(f"xft entry answer unusable: {exc}")  # e.g. a bad signature: key mismatch
        if answer.ok or answer.failure_code in ENTRY_KNOWN_CODES or \
                any(w in answer.failure_msg for w in ENTRY_KNOWN_WORDS):
            return Outcome.done()
        why = _why("xft entry/v2 refused:", answer.failure_code or f"state {answer.state or '?'}", answer.failure_msg)
        if answer.failure_code in ENTRY_RETRY_CODES:
            return Outcome.retry(why)
        return Outcome.reject(why)
