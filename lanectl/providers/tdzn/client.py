"""tdzn ("HTTP 对接文档", seed 004) over HTTP: the client, the exit-payment provider and the record publisher.

* TdznClient signs each request once (codec.py, timestamp = now in unix seconds), POSTs it to the
  platform's single endpoint and spaces calls at `rate_per_s`. Anything but HTTP 200 with a readable
  `{code, msg}` answer — or no answer in time — is ProviderUnavailable: the platform may or may not have
  acted, so the settlement treats it as pending, never as paid.
* TdznProvider charges at an exit lane with 3.3 `preLeaveNotify` (synchronous, `pre_leave_timeout_s`):
  code 200 is paid (sign-free or scanner); any other code, a timeout or garbage is "not paid yet" — the
  platform shows its exit QR and settles by 4.2 `payNotify` (inbound.py).
  The doc has no order-status query, so `query` is:
    - after a definite non-200 answer: pending, nothing sent (only payNotify can settle it);
    - after NO usable answer (timeout, HTTP 5xx, network): the same preLeaveNotify (same recordNo and
      orderNo) is re-sent every RESEND_EVERY_POLLS polls. A platform that already charged this bill answers
      200 again (the emulator's `replay_paid_preleave`), so a charge the lane timed out on is still learned;
      one that has the bill unpaid answers 405 (or 0), after which we stop re-sending and wait for payNotify.
  order_ref (the tdzn recordNo) is the stay's serial: the entry record id enterNotify used, else the exit
  record id. orderNo is the exit record id, so a re-send is the same bill, never a second one.
* TdznPublisher uploads records through the outbox: entries as 3.1 `enterNotify`, exits as 3.2 `leaveNotify`
  with the payments the lane booked. 405 / 6006 (already have it) is done; 401 (our key) and platform-side
  trouble are retried; 6003 and other refusals of our data are final (dead letter, visible in `lanectl outbox`).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, tzinfo
from typing import Any, Callable, Mapping, Optional

import aiohttp

from lanectl.adapters.image_links import LinkFn, no_links
from lanectl.adapters.platform_http import PlatformTransport
from lanectl.providers.tdzn.config import TdznConfig
from lanectl.core import effects as fx
from lanectl.providers.tdzn import codec as tdzn
from lanectl.providers.tdzn.codec import Answer, TdznError
from lanectl.service.outbox import OutboxItem, Outcome
from lanectl.service.settlement import Attempt, ChargeAnswer, ProviderUnavailable

log = logging.getLogger("lanectl.tdzn")

PROVIDER = "tdzn"
RESEND_EVERY_POLLS = 3  # an unanswered preLeaveNotify is re-sent every 3rd poll (~6 s at 2 s polls)
NO_PLATE = "无牌车"  # plateNum is required; plate-less cars are told apart by plateId (the exit record id)
CASH_PAY_TYPE, OTHER_PAY_TYPE = 4, 6
_REMEMBER = 5000  # per-attempt poll state kept for the most recent attempts only

# leaveNotify / enterNotify answers worth retrying: our credentials (fixable) or the platform's own trouble.
# Other refusals (400, 402, 4021, 6003 ...) are about the record itself: final, so one bad record cannot hold
# the tdzn queue behind it forever.
RETRY_CODES = frozenset({401, 500, 6001, 6004, 6005})


class TdznClient:
    def __init__(self, cfg: TdznConfig, key: str, session: aiohttp.ClientSession, tz: tzinfo) -> None:
        if not key:
            raise ValueError("the tdzn key is empty")
        self.cfg, self._key, self.tz = cfg, key, tz
        self._http = PlatformTransport("tdzn", session, rate_per_s=cfg.rate_per_s, timeout_s=cfg.timeout_s,
                                       content_type="application/json;charset=UTF-8")

    async def post(self, service_name: str, biz: Mapping[str, Any], *, timeout_s: Optional[float] = None) -> bytes:
        """One signed call; the raw answer body (HTTP 200). ProviderUnavailable when there is no usable answer;
        TdznError when `biz` cannot be encoded (then nothing was sent)."""
        body = tdzn.encode_request(self.cfg.pid, service_name, biz, self._key, int(time.time()))
        return await self._http.post(self.cfg.url, body, service_name, timeout_s=timeout_s)

    async def call(self, service_name: str, biz: Mapping[str, Any], *, timeout_s: Optional[float] = None) -> Answer:
        """One signed call, its `{code, msg, data}`. An unreadable answer is no answer: ProviderUnavailable."""
        raw = await self.post(service_name, biz, timeout_s=timeout_s)
        try:
            return tdzn.parse_answer(raw)
        except TdznError as exc:
            raise ProviderUnavailable(f"tdzn {service_name}: unreadable answer: {exc}") from None



def _moment(iso: str, zone: tzinfo) -> datetime:
    """Record times are ISO 8601 with an offset; a naive one is the lot's wall time."""
    at = datetime.fromisoformat(iso)
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


def _vehicle_class(vehicle_class: str) -> str:
    """Our class if tdzn has a car type for it, else temporary (an odd class must not block an upload)."""
    try:
        tdzn.car_type(vehicle_class or "temporary")
    except TdznError:
        return "temporary"
    return vehicle_class or "temporary"


def pay_type_of(method: str) -> int:
    """tdzn payType for a payment the lane booked: cash 4; `tdzn:<payType>` keeps the platform's; else 6 other."""
    if method == "cash":
        return CASH_PAY_TYPE
    provider, _, kind = method.partition(":")
    if provider == PROVIDER and kind.isascii() and kind.isdigit() and int(kind) in tdzn.PAY_TYPES:
        return int(kind)
    return OTHER_PAY_TYPE


class TdznProvider:
    name = PROVIDER

    def __init__(self, client: TdznClient, channels: Mapping[str, str]) -> None:
        self.client, self.channels = client, channels
        self._polls: dict[int, int] = {}  # attempt id -> queries so far
        self._answered: set[int] = set()  # attempts whose preLeaveNotify got a definite non-200 answer

    def order_ref(self, order: fx.StartSettlement) -> str:
        # tdzn's recordNo is the stay's serial: what enterNotify sent (the entry record id); payNotify names it
        return order.entry_record_id or order.record_id

    def channel(self, lane_id: str) -> str:
        return self.channels.get(lane_id, lane_id)

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        if attempt.amount_fen <= 0:
            return ChargeAnswer("skip", detail="nothing to charge")
        return await self._pre_leave(order, attempt)

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        if attempt.id in self._answered:
            return ChargeAnswer("pending", detail="not paid at preLeaveNotify: waiting for payNotify")
        polls = self._polls[attempt.id] = self._polls.get(attempt.id, 0) + 1
        self._forget_old(attempt.id)
        if polls % RESEND_EVERY_POLLS:
            return ChargeAnswer("pending", detail="preLeaveNotify unanswered: re-sent every "
                                                  f"{RESEND_EVERY_POLLS} polls")
        return await self._pre_leave(order, attempt)

    async def _pre_leave(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        cfg, tz = self.client.cfg, self.client.tz
        try:
            biz = tdzn.pre_leave_notify(
                park_code=cfg.park_code, record_no=attempt.order_ref, plate=order.plate or NO_PLATE,
                plate_id=order.plate or order.record_id, enter_time=_moment(order.entered_at or order.left_at, tz),
                leave_time=_moment(order.left_at, tz), tz=tz, payable_fee=order.total_fen, discount_fee=0,
                paid_fee=attempt.amount_fen, vehicle_class=_vehicle_class(order.vehicle_class),
                out_channel_id=self.channel(order.lane_id), order_no=order.record_id)
            raw = await self.client.post(tdzn.PRE_LEAVE_NOTIFY, biz, timeout_s=cfg.pre_leave_timeout_s)
        except (TdznError, ValueError) as exc:
            # nothing went out: the next provider (or the booth) can charge without any risk of a double charge
            return ChargeAnswer("failed", detail=f"cannot build preLeaveNotify: {exc}")
        try:
            result = tdzn.parse_pre_leave_answer(raw, tz)
        except TdznError as exc:
            raise ProviderUnavailable(f"tdzn preLeaveNotify: unreadable answer: {exc}") from None
        if result.paid:
            self._polls.pop(attempt.id, None)
            return ChargeAnswer("paid", result.order_no or order.record_id, None,
                                "" if result.pay_type is None else str(result.pay_type),
                                f"preLeaveNotify 200 {result.msg}".strip())
        # 0 "not paid", 405 "have this bill", 6003 ...: the platform answered; only payNotify can settle it now
        self._answered.add(attempt.id)
        self._polls.pop(attempt.id, None)
        said = " ".join(part for part in (f"preLeaveNotify {result.code}", result.msg) if part)
        return ChargeAnswer("pending", detail=f"{said}: not paid yet")

    def _forget_old(self, newest: int) -> None:
        if len(self._polls) + len(self._answered) > 2 * _REMEMBER:
            self._polls = {k: v for k, v in self._polls.items() if k > newest - _REMEMBER}
            self._answered = {k for k in self._answered if k > newest - _REMEMBER}


class TdznPublisher:
    """Outbox destination "tdzn": entries as enterNotify, exits as leaveNotify (recordNo = the stay's serial).

    remainParkNum comes from `free_spaces()` when the app has a counter; without one, `total_spaces` is
    reported (the doc requires the field; tdzn uses it for display only)."""

    def __init__(self, client: TdznClient, channels: Mapping[str, str], tz: tzinfo, *, total_spaces: int,
                 free_spaces: Optional[Callable[[], int]] = None, links: LinkFn = no_links) -> None:
        self.client, self.channels, self.tz, self.links = client, channels, tz, links
        self.total_spaces, self.free_spaces = total_spaces, free_spaces

    async def publish(self, item: OutboxItem) -> Outcome:
        r = item.payload
        try:
            built = self._build(item.kind, r)
        except (TdznError, KeyError, ValueError, TypeError) as exc:
            return Outcome.reject(f"cannot upload to tdzn: {exc!r}")
        if built is None:
            return Outcome.done()
        service, biz = built
        try:
            answer = await self.client.call(service, biz)
        except ProviderUnavailable as exc:
            return Outcome.retry(str(exc))
        if answer.ok or answer.duplicate:
            return Outcome.done()
        why = f"tdzn {service} {r.get('record_id')}: {answer.code} {answer.msg}"
        if answer.code in RETRY_CODES:
            return Outcome.retry(why)  # our key or the platform's trouble: keep the item (and those behind it)
        return Outcome.reject(why)

    def _build(self, kind: str, r: Mapping[str, Any]) -> Optional[tuple[str, dict[str, Any]]]:
        if not r.get("plate"):
            return None  # plate-less cars reach tdzn by exit channel (queryParkFee payScene 2), not by record
        cfg, lane = self.client.cfg, r["lane_id"]
        channel = self.channels.get(lane, lane)
        remain = self.free_spaces() if self.free_spaces is not None else self.total_spaces
        if kind == "entry":
            if r.get("status") == "refused":
                return None
            return tdzn.ENTER_NOTIFY, tdzn.enter_notify(
                park_code=cfg.park_code, record_no=r["record_id"], plate=r["plate"], entrance=lane,
                enter_time=_moment(r["at"], self.tz), tz=self.tz, remain_park_num=max(0, remain),
                total_park_num=self.total_spaces, vehicle_class=_vehicle_class(r.get("vehicle_class", "")),
                enter_pic=self.links(r.get("image")), in_channel_id=channel)
        if kind != "exit":
            return None  # operator releases without a car record are not tdzn's business
        orders: list[tdzn.PayOrder] = []
        cash = mobile = 0
        for n, p in enumerate(r.get("payments") or [], 1):
            if p.get("flag"):
                continue  # late / short money is refund review, not this stay's settlement
            method, amount = str(p["method"]), p["amount_fen"]
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise ValueError(f"payment amount is not whole fen: {amount!r}")
            pay_type = pay_type_of(method)
            # a platform payment keeps its own order number; the booth's are numbered under the exit record
            order_no = p.get("reference") if ":" in method and p.get("reference") else f"{r['record_id']}_{n}"
            orders.append(tdzn.PayOrder(str(order_no)[:50], amount, pay_type, _moment(p["at"], self.tz)))
            if pay_type == CASH_PAY_TYPE:
                cash += amount
            else:
                mobile += amount
        return tdzn.LEAVE_NOTIFY, tdzn.leave_notify(
            park_code=cfg.park_code, record_no=r.get("entry_record_id") or r["record_id"], plate=r["plate"],
            exit_desc=lane, leave_time=_moment(r["at"], self.tz), tz=self.tz, remain_park_num=max(0, remain),
            total_park_num=self.total_spaces, payable_fee=int(r.get("total_fen") or 0), discount_fee=0,
            cash_fee=cash, mobile_fee=mobile, pay_orders=orders,
            vehicle_class=_vehicle_class(r.get("vehicle_class", "")), out_channel_id=channel,
            leave_pic=self.links(r.get("image")))
