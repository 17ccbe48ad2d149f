"""A Bolink (泊链) platform for tests, the demo and bench work, with per-plate fault scripting.

It speaks the platform's side as the documents and real lot-side clients describe it, with its own wire code
(bolink_wire.py; nothing from lanectl): the signed API envelope on 3.1 addorder / 3.2 updateorder / 3.7
etcPayApi / 4.3 queryOrderState, and the SDK HTTP mode (/bpd/upload.do with login -> token, `inpark` /
`outpark` uploads into the same order book, replies to downlinks; /bpd/download.do held long-poll handing out
FLAT messages — service_name and every field at the top level, in the SDK channel's field names).
POST /__control__/push sends any downlink on demand. It keeps its own order book, refuses
bad signatures (verified over the raw bytes, optionally as a GBK-host client signs), rate-limits order
uploads per park, and pushes signed callbacks (5.2 notice_car_owner, 5.5 outpark, 5.1 query_price, ...) to
the lane's callback URL or, for a park in "http_mode", through its download queue — retried until the lane
answers state 1. Every upload and every push attempt is recorded for tests to assert on.

    python -m hil.emulators.bolink --port 8791 --key 8403A41ED5EF20BC --callback-url http://127.0.0.1:8080/bolink

Scripting (per plate, or the default for all plates):

    emu.default = pay_now()
    emu.scripts["粤B12345"] = pending_then_paid(0.2)
    emu.sign_free.add("粤B12345")           # wallet allowed, 5.2 says is_union_user 1
    emu.downlink["21835"] = "http_mode"     # that park's pushes go through download.do
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import secrets
import time
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Optional, Union

import aiohttp
from aiohttp import web

from hil.emulators import bolink_wire as w
from hil.emulators import pictures
from hil.emulators.bolink_wire import java_escape, java_number

KINDS = ("pay_now", "pending_then_paid", "fail", "never_settle", "duplicate_push", "out_of_order",
         "push_before_answer", "http_500", "slow", "bad_signature", "push_other_order")
NO_MESSAGE = {"state": 0, "errmsg": "暂无消息"}  # no service_name: real clients ignore it
ERR_FORMAT = "数据格式错误"
ERR_UNKNOWN_SERVICE = "未知的service_name"
CONTROL_PUSH = "/__control__/push"
# what a lot answers on upload.do to a downlink (update_balance gets no reply)
REPLIES = ("outpark", "query_price", "prepay_order", "monthcard_pay", "nolicence_in_park", "notice_car_owner")


def is_exit_upload(d: dict[str, Any]) -> bool:
    """An `outpark` upload is an exit (SDK 3.2) when it says when the car left or how it pays; a reply to a 5.5
    push carries trade_no + state and no out_time."""
    if "out_time" in d:
        return True
    return ("pay_type" in d or "total" in d) and not ("trade_no" in d and "state" in d)


# ---------------------------------------------------------------------------------------------- behaviours

@dataclass(frozen=True)
class Behaviour:
    """What the platform does with an e-payment exit (3.2 wallet / sweepcode / scancode) of a plate."""
    kind: str = "pay_now"
    answer_paid: bool = True  # pay_now: the 3.2 answer itself carries the payment (trade_no, total)
    push: bool = True  # pay_now / fail: also push 5.5 outpark
    after_s: float = 0.0  # pending_then_paid: until paid; slow: delay of the answer
    sync_state: int = 2  # pending answers: 2 paying, or 1 accepted-without-payment (no trade_no)
    times: Optional[int] = None  # http_500: how many requests fail (None: all of them)
    then: Optional[Behaviour] = None  # http_500 / slow: what happens after
    other_order_id: str = ""  # push_other_order: the order the stray success is for
    errmsg: str = "支付失败,余额不足"  # fail

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown behaviour {self.kind!r}; one of {', '.join(KINDS)}")
        if self.sync_state not in (1, 2):
            raise ValueError("sync_state is 2 (paying) or 1 (accepted without payment)")


def pay_now(*, answer_paid: bool = True, push: bool = True) -> Behaviour:
    return Behaviour("pay_now", answer_paid=answer_paid, push=push)


def pending_then_paid(after_s: float = 0.2, *, sync_state: int = 2) -> Behaviour:
    return Behaviour("pending_then_paid", after_s=after_s, sync_state=sync_state)


def fail(*, push: bool = True, errmsg: str = "支付失败,余额不足") -> Behaviour:
    return Behaviour("fail", push=push, errmsg=errmsg)


def never_settle(*, sync_state: int = 2) -> Behaviour:
    return Behaviour("never_settle", sync_state=sync_state)


def duplicate_push() -> Behaviour:
    return Behaviour("duplicate_push")


def out_of_order() -> Behaviour:
    """Sync answer 2; push state 1, then a stale state 2 for the same trade_no."""
    return Behaviour("out_of_order")


def push_before_answer(*, sync_state: int = 2) -> Behaviour:
    """The 5.5 success is delivered (and acknowledged) before the 3.2 HTTP answer, which then says pending."""
    return Behaviour("push_before_answer", sync_state=sync_state)


def http_500(times: Optional[int] = None, then: Optional[Behaviour] = None) -> Behaviour:
    return Behaviour("http_500", times=times, then=then)


def slow(seconds: float, then: Optional[Behaviour] = None) -> Behaviour:
    return Behaviour("slow", after_s=seconds, then=then)


def bad_signature() -> Behaviour:
    """Paid on the platform, but the 5.5 push is signed with a wrong key (4.3 still says paid)."""
    return Behaviour("bad_signature")


def push_other_order(other_order_id: str = "") -> Behaviour:
    """A success push for another order_id; this order stays pending for ever."""
    return Behaviour("push_other_order", other_order_id=other_order_id)


# ------------------------------------------------------------------------------------------------ records

@dataclass
class Order:
    park_id: str
    order_id: str
    car_number: str
    entry: Optional[dict[str, Any]] = None  # the 3.1 data; None: an exit arrived with no entry record
    exits: list[dict[str, Any]] = field(default_factory=list)
    status: str = "in"  # in | pending | paid | failed | cash | escape
    trade_no: str = ""
    total_fen: Optional[int] = None
    pay_type: str = ""
    pay_time: Optional[int] = None
    out_channel_id: str = ""

    @property
    def no_entry(self) -> bool:
        return self.entry is None


@dataclass
class Upload:
    path: str  # API path, or "/bpd/upload.do:<service_name>"
    data: dict[str, Any]
    answer: Union[dict[str, Any], int]  # the JSON answer, or an HTTP status when there was none


@dataclass
class Push:
    service_name: str
    data: dict[str, Any]
    body: bytes
    attempt: int
    transport: str  # "callback" | "http_mode"
    status: Optional[int] = None  # the lane's HTTP status (None: no answer / http mode)
    answer: Any = None  # the lane's parsed answer (or text / error name)
    acked: bool = False  # the lane answered state 1
    at: float = 0.0


@dataclass
class _Downlink:
    body: bytes
    delivered: asyncio.Event = field(default_factory=asyncio.Event)


def _s(d: dict[str, Any], name: str) -> str:
    v = d.get(name)
    return "" if v is None or isinstance(v, (dict, list, bool)) else str(v)


# --------------------------------------------------------------------------------------------- the platform

@dataclass
class BolinkPlatform:
    key: str = "8403A41ED5EF20BC"
    union_id: int = 200208
    callback_url: Optional[str] = None  # the lane's callback URL (pushes in the API envelope)
    monthcard_url: Optional[str] = None  # a dedicated 5.8 URL: pushed there without service_name
    default: Behaviour = field(default_factory=pay_now)
    scripts: dict[str, Behaviour] = field(default_factory=dict)  # plate -> behaviour
    sign_free: set[str] = field(default_factory=set)  # plates with 无感 (wallet) enabled
    balances: dict[str, int] = field(default_factory=dict)  # plate -> fen, for HTTP-mode update_balance
    downlink: dict[str, str] = field(default_factory=dict)  # park_id -> "callback" | "http_mode"
    default_downlink: str = "callback"
    sign_charset: str = "utf-8"  # "gbk": verify client bodies the way a GBK-host Java client signs
    max_uploads_per_s: Optional[int] = 9  # "under 10 per second per lot"; the next one gets 请求过快
    push_attempts: int = 3
    push_interval_s: float = 0.5
    push_timeout_s: float = 5.0
    ack_timeout_s: float = 5.0  # HTTP mode: how long a delivered message waits for its reply upload
    hold_s: float = 25.0  # download.do long-poll hold
    etc_pending_s: float = 0.2  # ETC jyyh: paying until then
    etc_plates: Optional[set[str]] = None  # cars with an ETC OBU (None: every car has one)
    duplicate_errmsg: str = "订单已存在"
    html_escape: bool = False  # escape = < > & in pushed data like a Gson sender (the sign covers the escapes)
    notify_car_owner: bool = True  # 5.2 (update_balance in HTTP mode) after each entry
    sign_downlinks: bool = True  # download.do messages carry a top-level sign (the SDK client ignores it)
    downlink_form: str = "flat"  # "envelope": {service_name, sign, data} as before issue 13 (real clients choke)
    bad_token_hold_s: float = 1.0  # download.do answers token无效 only after this long (no spinning clients)
    control_wait_s: float = 30.0  # POST /__control__/push waits this long for the push's outcome
    fetch_images: bool = True  # fetch inpark_img / outpark_img links as the platform stores them
    port: int = 0
    # observations
    orders: dict[tuple[str, str], Order] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    # (started, seconds, path) of every API call: how long the platform itself took to answer (monotonic clock,
    # from the request's body read to the answer made) — the benches subtract it from the lane's latency
    answer_times: list[tuple[float, float, str]] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)
    images: pictures.Fetched = field(default_factory=dict)  # picture links fetched: link -> (status, body)
    bad_signatures: int = 0
    rate_limited: int = 0
    duplicates: int = 0
    http_500s: int = 0
    polls: int = 0
    bad_token_polls: int = 0
    logins: int = 0
    _runner: Optional[web.AppRunner] = None
    _session: Optional[aiohttp.ClientSession] = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _closing: Optional[asyncio.Event] = None
    _queues: dict[str, asyncio.Queue[_Downlink]] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)  # token -> park_id
    _acks: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _recent: dict[str, deque[float]] = field(default_factory=dict)
    _failures_500: dict[str, int] = field(default_factory=dict)
    _seq: Any = field(default_factory=lambda: itertools.count(1))
    _rands: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        for kind, path in w.API_PATHS.items():
            app.router.add_post(path, self._api)
        app.router.add_post(w.UPLOAD_PATH, self._upload)
        app.router.add_post(w.DOWNLOAD_PATH, self._download)
        app.router.add_post(CONTROL_PUSH, self._control_push)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # held polls and delays return now
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until every scheduled push (and its retries) is done."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------------------------- scripting

    def behaviour_for(self, plate: str) -> Behaviour:
        return self.scripts.get(plate, self.default)

    def mode(self, park_id: str) -> str:
        return self.downlink.get(park_id, self.default_downlink)

    def order(self, park_id: str, order_id: str) -> Optional[Order]:
        return self.orders.get((park_id, order_id))

    def pushes_for(self, service_name: str) -> list[Push]:
        return [p for p in self.pushes if p.service_name == service_name]

    # ------------------------------------------------------------------------------------- API paths

    async def _api(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        try:
            return await self._api_call(request)
        finally:
            self.answer_times.append((started, time.monotonic() - started, request.path))

    async def _api_call(self, request: web.Request) -> web.StreamResponse:
        kind = next(k for k, p in w.API_PATHS.items() if p == request.path)
        body = await request.read()
        try:
            msg = w.read_envelope(body, self.key, self.sign_charset)
        except w.BadSign:
            self.bad_signatures += 1
            return self._answer(request.path, {}, {"state": 0, "errmsg": w.ERR_SIGNATURE})
        except w.WireError as e:
            return self._answer(request.path, {}, {"state": 0, "errmsg": f"{ERR_FORMAT}: {e}"})
        if msg.union_id not in (None, "") and str(msg.union_id) != str(self.union_id):
            return self._answer(request.path, msg.data, {"state": 0, "errmsg": "厂商编号错误"})
        return await self._handle(kind, dict(msg.data), request.path)

    async def _handle(self, kind: str, d: dict[str, Any], path: str) -> web.StreamResponse:
        self._fetch_images(d)
        if kind in ("entry", "exit", "etc") and not self._allow(_s(d, "park_id")):
            self.rate_limited += 1
            return self._answer(path, d, {"state": 0, "errmsg": "请求过快,请稍后重试"})
        if kind == "entry":
            return self._answer(path, d, self._entry(d))
        if kind == "order_state":
            return self._answer(path, d, self._order_state(d))
        result = await (self._exit(d) if kind == "exit" else self._etc(d))
        if isinstance(result, web.StreamResponse):
            self.uploads.append(Upload(path, d, result.status))
            return result
        return self._answer(path, d, result)

    def _fetch_images(self, d: dict[str, Any]) -> None:
        for name in ("inpark_img", "outpark_img"):
            if self.fetch_images and pictures.wants(self.images, d.get(name)):
                self._spawn(pictures.fetch(self._session, d[name], self.images))

    def _answer(self, path: str, d: dict[str, Any], answer: dict[str, Any]) -> web.Response:
        self.uploads.append(Upload(path, d, answer))
        return web.Response(body=w.body(answer), content_type="application/json", charset="utf-8")

    def _allow(self, park_id: str) -> bool:
        if self.max_uploads_per_s is None:
            return True
        now = time.monotonic()
        recent = self._recent.setdefault(park_id, deque())
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if len(recent) >= self.max_uploads_per_s:
            return False
        recent.append(now)
        return True

    def _entry(self, d: dict[str, Any]) -> dict[str, Any]:
        missing = [n for n in ("park_id", "car_number", "in_time", "order_id", "empty_plot") if _s(d, n) == ""]
        if missing:
            return {"state": 0, "errmsg": f"缺少参数:{missing[0]}"}
        park, oid, plate = _s(d, "park_id"), _s(d, "order_id"), _s(d, "car_number")
        if not w.is_order_id(oid):
            return {"state": 0, "errmsg": "order_id格式错误"}
        if (park, oid) in self.orders:  # a retried or repeated upload: no second order
            self.duplicates += 1
            return {"state": 0, "errmsg": self.duplicate_errmsg}
        self.orders[(park, oid)] = Order(park, oid, plate, entry=d)
        if self.notify_car_owner:
            self._spawn(self.push_notice_car_owner(park, plate, order_id=oid))
        return {"state": 1, "errmsg": "上传成功", "order_id": oid}

    def _book(self, d: dict[str, Any]) -> Order:
        key = (_s(d, "park_id"), _s(d, "order_id"))
        if key not in self.orders:  # no entry record: the exit still works, and is recorded
            self.orders[key] = Order(key[0], key[1], _s(d, "car_number"))
        o = self.orders[key]
        o.exits.append(d)
        return o

    def _paid_answer(self, o: Order, errmsg: str = "支付成功") -> dict[str, Any]:
        return {"state": 1, "errmsg": errmsg, "order_id": o.order_id, "pay_type": o.pay_type,
                "trade_no": o.trade_no, "total": java_number(o.total_fen or 0), "car_number": o.car_number,
                "out_channel_id": o.out_channel_id, "pay_time": o.pay_time}

    def _pending_answer(self, o: Order, sync_state: int = 2) -> dict[str, Any]:
        if sync_state == 1:  # accepted, not paid: no trade_no, no total
            return {"state": 1, "errmsg": "上传成功", "order_id": o.order_id}
        return {"state": 2, "errmsg": "支付中", "order_id": o.order_id, "trade_no": o.trade_no}

    async def _exit(self, d: dict[str, Any]) -> Union[dict[str, Any], web.StreamResponse]:
        missing = [n for n in ("park_id", "car_number", "order_id", "total", "pay_type") if _s(d, n) == ""]
        if missing:
            return {"state": 0, "errmsg": f"缺少参数:{missing[0]}"}
        try:
            total = w.fen(d["total"])
        except w.WireError:
            return {"state": 0, "errmsg": "total格式错误"}
        pay_type = _s(d, "pay_type")
        if pay_type not in w.PAY_TYPES:
            return {"state": 0, "errmsg": "pay_type错误"}
        o = self._book(d)
        if o.status == "paid":  # the exit may be repeated until settled: same payment again
            return self._paid_answer(o, "数据已处理过")
        if pay_type in ("cash", "escape"):
            o.status, o.pay_type, o.total_fen = pay_type, pay_type, total
            return {"state": 1, "errmsg": "上传成功", "order_id": o.order_id}
        if pay_type == "wallet" and o.car_number not in self.sign_free:
            return {"state": 0, "errmsg": "该车辆未开通无感支付", "order_id": o.order_id}
        if pay_type == "sweepcode" and not _s(d, "auth_code"):
            return {"state": 0, "errmsg": "缺少参数:auth_code", "order_id": o.order_id}
        if o.status == "pending":  # still paying: the repeat changes nothing
            return self._pending_answer(o)
        o.pay_type, o.total_fen, o.out_channel_id = pay_type, total, _s(d, "out_channel_id")
        return await self._run(self.behaviour_for(o.car_number), o)

    async def _run(self, bh: Behaviour, o: Order) -> Union[dict[str, Any], web.StreamResponse]:
        if bh.kind == "http_500":
            n = self._failures_500.get(o.car_number, 0)
            if bh.times is None or n < bh.times:
                self._failures_500[o.car_number] = n + 1
                self.http_500s += 1
                return web.Response(status=500, text="<html><body><h1>500 Internal Server Error</h1></body></html>",
                                    content_type="text/html")
            return await self._run(bh.then or pay_now(), o)
        if bh.kind == "slow":
            await self._sleep(bh.after_s)
            return await self._run(bh.then or pay_now(), o)

        o.trade_no = self._trade_no()
        o.status = "pending"
        if bh.kind == "pay_now":
            self._mark_paid(o)
            if bh.push:
                self._spawn(self._push_outpark(o, 1))
            return self._paid_answer(o) if bh.answer_paid else self._pending_answer(o, 1)
        if bh.kind == "pending_then_paid":
            self._spawn(self._pay_later(o, bh.after_s))
            return self._pending_answer(o, bh.sync_state)
        if bh.kind == "fail":
            o.status = "failed"
            if bh.push:
                self._spawn(self._push_outpark(o, 0, errmsg=bh.errmsg))
            return {"state": 0, "errmsg": bh.errmsg, "order_id": o.order_id, "trade_no": o.trade_no}
        if bh.kind == "never_settle":
            return self._pending_answer(o, bh.sync_state)
        if bh.kind == "duplicate_push":
            self._mark_paid(o)
            self._spawn(self._push_twice(o))
            return self._paid_answer(o)
        if bh.kind == "out_of_order":
            self._mark_paid(o)
            self._spawn(self._push_stale(o))
            return self._pending_answer(o)
        if bh.kind == "push_before_answer":
            self._mark_paid(o)
            task = self._spawn(self._push_outpark(o, 1))
            await asyncio.wait({task}, timeout=self.push_attempts * (self.push_timeout_s + self.push_interval_s))
            return self._pending_answer(o, bh.sync_state)
        if bh.kind == "bad_signature":
            self._mark_paid(o)
            self._spawn(self._push_outpark(o, 1, key=self.key[::-1] + "x"))
            return self._pending_answer(o)
        # push_other_order
        other = bh.other_order_id or ("X" + o.order_id)[:48]
        stray = replace(o, order_id=other, trade_no=self._trade_no(), pay_time=int(time.time()), exits=[])
        self._spawn(self._push_outpark(stray, 1))
        return self._pending_answer(o)

    def _mark_paid(self, o: Order) -> None:
        o.status, o.pay_time = "paid", int(time.time())

    async def _pay_later(self, o: Order, after_s: float) -> None:
        await self._sleep(after_s)
        if o.status == "pending":
            self._mark_paid(o)
            await self._push_outpark(o, 1)

    async def _push_twice(self, o: Order) -> None:
        await self._push_outpark(o, 1)
        await self._push_outpark(o, 1)

    async def _push_stale(self, o: Order) -> None:
        await self._push_outpark(o, 1)
        await self._push_outpark(o, 2, errmsg="支付中")

    def outpark_data(self, o: Order, state: int, errmsg: str = "") -> dict[str, Any]:
        """Seed 003's field order, money as JSON numbers the way the platform writes them."""
        total = java_number(o.total_fen or 0)
        return {"state": state, "pay_type": o.pay_type, "pay_channel": 2 if o.pay_type == "wallet" else 0,
                "errmsg": errmsg or {1: "支付成功", 2: "支付中"}.get(state, "支付失败"), "service_name": "outpark",
                "trade_no": o.trade_no, "total": total, "pay_time": o.pay_time or int(time.time()),
                "order_id": o.order_id, "car_number": o.car_number, "out_channel_id": o.out_channel_id,
                "arrive_money": total, "account_type": 1, "fee": Decimal("0.0"),
                "remark": f"收到停车费-{o.car_number}"}

    async def _push_outpark(self, o: Order, state: int, *, errmsg: str = "", key: Optional[str] = None) -> list[Push]:
        return await self.push(o.park_id, self.outpark_data(o, state, errmsg), key=key)

    async def _etc(self, d: dict[str, Any]) -> Union[dict[str, Any], web.StreamResponse]:
        required = ("park_id", "car_number", "in_time", "out_time", "pay_type", "total", "order_id",
                    "out_channel_id", "in_channel_id", "parking_time", "lane_no")
        missing = [n for n in required if _s(d, n) == ""]
        if not missing and _s(d, "pay_type") == "my":
            missing = [n for n in ("empty_plot", "total_original", "inpark_img", "outpark_img") if _s(d, n) == ""]
        if missing:
            return {"state": 0, "errmsg": f"缺少参数:{missing[0]}"}
        if _s(d, "pay_type") not in w.ETC_PAY_TYPES:
            return {"state": 0, "errmsg": "pay_type错误"}
        try:
            total = w.fen(d["total"])
        except w.WireError:
            return {"state": 0, "errmsg": "total格式错误"}
        if self.etc_plates is not None and _s(d, "car_number") not in self.etc_plates:
            return {"state": 0, "errmsg": "非ETC车辆"}
        o = self._book(d)
        if o.status == "paid":
            return self._etc_answer(o, "数据已处理过")
        if o.status == "pending":
            return {"state": 2, "errmsg": "支付中", "order_id": o.order_id}
        bh = self.scripts.get(o.car_number)  # only faults apply to ETC; its payment follows the ETC type
        while bh is not None and bh.kind in ("http_500", "slow"):
            if bh.kind == "slow":
                await self._sleep(bh.after_s)
            else:
                n = self._failures_500.get(o.car_number, 0)
                if bh.times is None or n < bh.times:
                    self._failures_500[o.car_number] = n + 1
                    self.http_500s += 1
                    return web.Response(status=500, text="Internal Server Error")
            bh = bh.then
        o.pay_type, o.total_fen, o.out_channel_id = "etc", total, _s(d, "out_channel_id")
        o.trade_no = self._trade_no("etc")
        if bh is not None and bh.kind == "fail":
            o.status = "failed"
            return {"state": 0, "errmsg": "etc扣费失败", "order_id": o.order_id}
        if _s(d, "pay_type") == "jyyh":  # the only ETC type with a paying state: 5.5 follows
            o.status = "pending"
            self._spawn(self._pay_later(o, self.etc_pending_s))
            return {"state": 2, "errmsg": "支付中", "order_id": o.order_id}
        self._mark_paid(o)
        return self._etc_answer(o, "etc扣费成功")

    def _etc_answer(self, o: Order, errmsg: str) -> dict[str, Any]:
        total = java_number(o.total_fen or 0)
        return {"state": 1, "errmsg": errmsg, "order_id": o.order_id, "pay_type": "etc", "trade_no": o.trade_no,
                "total": total, "car_number": o.car_number, "out_channel_id": o.out_channel_id,
                "pay_time": o.pay_time, "arrive_money": total, "fee": Decimal("0.0"), "account_type": 1}

    def _order_state(self, d: dict[str, Any]) -> dict[str, Any]:
        park, oid, plate = _s(d, "park_id"), _s(d, "order_id"), _s(d, "car_number")
        if not oid and not plate:
            return {"state": 0, "errmsg": "缺少参数:order_id"}
        found = [o for (p, _), o in self.orders.items()
                 if p == park and (o.order_id == oid if oid else o.car_number == plate)]
        codes = {"pending": 2, "paid": 1, "failed": 0}
        items = [{"order_id": o.order_id, "trade_no": o.trade_no, "state": codes[o.status],
                  "total": java_number(o.total_fen or 0), "pay_time": o.pay_time if o.status == "paid" else None,
                  "pay_type": o.pay_type} for o in found if o.status in codes]
        return {"state": 1, "errmsg": "", "data": items}

    # ------------------------------------------------------------------------------------- HTTP mode

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = await request.read()
        try:
            msg = w.read_envelope(body, self.key, self.sign_charset)
        except w.BadSign:
            self.bad_signatures += 1
            return self._answer(path, {}, {"state": 0, "errmsg": w.ERR_SIGNATURE})
        except w.WireError as e:
            return self._answer(path, {}, {"state": 0, "errmsg": f"{ERR_FORMAT}: {e}"})
        name, d = msg.service_name, dict(msg.data)
        path = f"{path}:{name}"
        if name == "login":
            if str(msg.union_id) != str(self.union_id) or not _s(d, "park_id"):
                return self._answer(path, d, {"state": 0, "errmsg": "厂商编号错误"})
            token = secrets.token_hex(16)
            self._tokens[token] = _s(d, "park_id")
            self.logins += 1
            return self._answer(path, d, {"state": 1, "errmsg": "登录成功", "token": token})
        park = self._tokens.get(msg.token)
        if park is None:
            return self._answer(path, d, {"state": 0, "errmsg": w.ERR_TOKEN})
        d.setdefault("park_id", park)  # the SDK knows its park from login
        if name in ("inpark", "in_park"):  # the SDK channel's 3.1 (in_park: an older spelling)
            return await self._handle("entry", d, path)
        if name == "outpark" and is_exit_upload(d):  # the SDK channel's 3.2, not a reply to a 5.5 push
            return await self._handle("exit", d, path)
        if name in ("query_order_state", "order_state"):
            return await self._handle("order_state", d, path)
        if name not in REPLIES:  # never a silent success: the client must learn its upload went nowhere
            return self._answer(path, d, {"state": 0, "errmsg": f"{ERR_UNKNOWN_SERVICE}:{name}"})
        matched = self._ack(name, d)  # a reply to a downlink message
        return self._answer(path, d, {"state": 1, "errmsg": "上传成功" if matched else "已收到"})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        assert self._closing is not None
        try:
            token = json.loads(await request.read()).get("token")
        except (ValueError, AttributeError):
            token = None
        park = self._tokens.get(token) if isinstance(token, str) else None
        if park is None:
            # held like "no message": a client that never logs in again must not spin on an instant answer
            self.bad_token_polls += 1
            await self._sleep(self.bad_token_hold_s)
            return web.Response(body=w.body({"state": 0, "errmsg": w.ERR_TOKEN}), content_type="application/json",
                                charset="utf-8")
        self.polls += 1
        queue = self._queue(park)
        get = asyncio.ensure_future(queue.get())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({get, closing}, timeout=self.hold_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not get.done():
                get.cancel()
            await asyncio.gather(get, closing, return_exceptions=True)
        if get.cancelled() or get.exception() is not None:
            return web.json_response(NO_MESSAGE)
        item = get.result()
        item.delivered.set()
        return web.Response(body=item.body, content_type="application/json", charset="utf-8")

    async def _control_push(self, request: web.Request) -> web.StreamResponse:
        """POST /__control__/push: any downlink message (a JSON object with service_name), sent to the park named
        by ?park_id=, the message's park_id, or the only park logged in — through its download queue in HTTP mode,
        to the callback URL otherwise. Answers with the outcome once the push is acknowledged or given up (or
        state 2 while it still waits to be fetched after control_wait_s). ?retry=0 sends it once."""
        try:
            msg = w.loads_object(await request.read())
        except w.WireError as e:
            return web.json_response({"state": 0, "errmsg": f"{ERR_FORMAT}: {e}"}, status=400)
        name = msg.get("service_name")
        if not isinstance(name, str) or not name:
            return web.json_response({"state": 0, "errmsg": "service_name missing"}, status=400)
        parks = sorted(set(self._tokens.values()))
        park = request.query.get("park_id") or _s(msg, "park_id") or (parks[0] if len(parks) == 1 else "")
        if not park:
            return web.json_response({"state": 0, "errmsg": "which park? give ?park_id="}, status=400)
        retry = request.query.get("retry", "1") not in ("0", "false")
        task = self._spawn(self.push(park, msg, retry=retry))
        done, _ = await asyncio.wait({task}, timeout=self.control_wait_s)
        if not done:
            return web.Response(body=w.body({"state": 2, "errmsg": "queued, not fetched yet", "park_id": park}),
                                content_type="application/json", charset="utf-8")
        pushes = task.result()
        no_reply = self._ack_key(name, msg) is None and self.mode(park) == "http_mode"  # update_balance
        ok = bool(pushes) and (pushes[-1].acked or no_reply)
        out = {"state": 1 if ok else 0, "park_id": park, "transport": self.mode(park),
               "pushes": [{"attempt": p.attempt, "acked": p.acked, "status": p.status, "answer": p.answer,
                           "body": p.body.decode("utf-8", "replace")} for p in pushes]}
        return web.Response(text=json.dumps(out, ensure_ascii=False, default=str), content_type="application/json",
                            charset="utf-8")

    def _queue(self, park_id: str) -> asyncio.Queue[_Downlink]:
        return self._queues.setdefault(park_id, asyncio.Queue())

    @staticmethod
    def _ack_key(name: str, d: dict[str, Any]) -> Optional[tuple[str, str]]:
        """What ties a reply to its push, as far as the fields allow: prepay_order replies carry no trade_no
        (the SDK reads none), so order_id; outpark / monthcard_pay by trade_no."""
        if name == "prepay_order":
            return name, _s(d, "order_id")
        if name in ("outpark", "monthcard_pay"):
            return name, _s(d, "trade_no")
        if name == "query_price":
            return name, _s(d, "query_order_no") or _s(d, "order_id")
        if name == "nolicence_in_park":
            return name, _s(d, "car_number")
        return None  # update_balance: no reply

    def _ack(self, name: str, d: dict[str, Any]) -> bool:
        key = self._ack_key(name, d)
        fut = self._acks.get(key) if key else None
        if fut is None and name == "query_price":
            # a scene-0 question by plate alone has no id to echo: the answer (which names the order it found)
            # belongs to the one id-less question outstanding
            fut = self._acks.get((name, ""))
        if fut is not None and not fut.done():
            fut.set_result(d)
            return True
        return False

    # ------------------------------------------------------------------------------------- pushes

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sleep(self, seconds: float) -> None:
        """A delay that ends early when the platform stops."""
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    def _trade_no(self, prefix: str = "BL") -> str:
        return f"{prefix}{time.strftime('%Y%m%d%H%M%S')}{next(self._seq):06d}"

    def _rand(self) -> str:
        while True:
            r = f"0.{random.randrange(10 ** 15, 10 ** 16)}"
            if r not in self._rands:
                self._rands.add(r)
                return r

    def _encode(self, data: dict[str, Any], key: str, *, http_mode: bool, order: str = "usd") -> bytes:
        if http_mode and self.downlink_form == "envelope":
            text = java_escape(w.dumps(data)) if self.html_escape else w.dumps(data)
            return w.upload_envelope(str(data.get("service_name", "")), text, key)
        if http_mode:  # download.do: flat, as the SDK client reads it; the sign only when the knob says so
            return w.flat_downlink(data, key if self.sign_downlinks else None, escape=self.html_escape)
        text = w.dumps(data)
        if self.html_escape:
            text = java_escape(text)
        return w.api_envelope(self.union_id, text, key, order)

    async def push(self, park_id: str, data: dict[str, Any], *, key: Optional[str] = None, url: Optional[str] = None,
                   retry: bool = True, order: str = "usd") -> list[Push]:
        """Deliver one platform message to the lane of `park_id` (callback URL, or its download queue in HTTP
        mode), signed with `key` (default: the platform key); retried until the lane answers state 1.
        `order` is the envelope member order (u union_id, s sign, d data; seed 001 prints "dsu")."""
        key = key or self.key
        if self.mode(park_id) == "http_mode":
            return await self._push_http(park_id, data, key, retry)
        target = url or self.callback_url
        attempts = self.push_attempts if retry else 1
        out: list[Push] = []
        for attempt in range(1, attempts + 1):
            if "rand" in data and attempt > 1:
                data = {**data, "rand": self._rand()}  # a nonce is never sent twice
            body = self._encode(data, key, http_mode=False, order=order)
            p = Push(str(data.get("service_name", "")), data, body, attempt, "callback", at=time.monotonic())
            if target is None:
                p.answer = "no callback url"
            else:
                p.status, p.answer = await self._post(target, body)
                p.acked = isinstance(p.answer, dict) and p.answer.get("state") in (1, "1")
            self.pushes.append(p)
            out.append(p)
            if p.acked or attempt == attempts:
                break
            await self._sleep(self.push_interval_s)
        return out

    async def _post(self, url: str, body: bytes) -> tuple[Optional[int], Any]:
        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers={"Content-Type": "application/json;charset=utf-8"},
                                          timeout=aiohttp.ClientTimeout(total=self.push_timeout_s)) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return None, type(e).__name__
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    async def _push_http(self, park_id: str, data: dict[str, Any], key: str, retry: bool) -> list[Push]:
        name = str(data.get("service_name", ""))
        ack_key = self._ack_key(name, data)
        attempts = self.push_attempts if retry and ack_key else 1
        loop = asyncio.get_running_loop()
        out: list[Push] = []
        for attempt in range(1, attempts + 1):
            item = _Downlink(self._encode(data, key, http_mode=True))
            fut: Optional[asyncio.Future[dict[str, Any]]] = None
            if ack_key is not None:
                fut = self._acks[ack_key] = loop.create_future()
            self._queue(park_id).put_nowait(item)
            await item.delivered.wait()
            p = Push(name, data, item.body, attempt, "http_mode", at=time.monotonic())
            self.pushes.append(p)
            out.append(p)
            if fut is None:
                break
            try:
                p.answer = await asyncio.wait_for(fut, self.ack_timeout_s)
                p.acked = p.answer.get("state") in (1, "1")
            except asyncio.TimeoutError:
                p.answer = "no reply"
            finally:
                if self._acks.get(ack_key) is fut:
                    del self._acks[ack_key]
            if p.acked or (p.answer != "no reply" and not retry):
                break
            if attempt < attempts:
                await self._sleep(self.push_interval_s)
        return out

    # ------------------------------------------------------------------------------------- helpers for tests / demo

    async def push_notice_car_owner(self, park_id: str, car_number: str, *, order_id: str = "",
                                    is_union_user: Optional[int] = None, rand: Optional[str] = None) -> list[Push]:
        """5.2 (update_balance for an HTTP-mode park). is_union_user defaults to membership of sign_free."""
        member = (car_number in self.sign_free) if is_union_user is None else bool(is_union_user)
        if self.mode(park_id) == "http_mode":
            return await self.push_update_balance(park_id, car_number, autopay=int(member))
        data = {"service_name": "notice_car_owner", "union_id": self.union_id, "park_id": park_id,
                "order_id": order_id, "car_number": car_number, "is_union_user": int(member),
                "rand": rand or self._rand()}
        return await self.push(park_id, data)

    async def push_update_balance(self, park_id: str, car_number: str, *, autopay: int,
                                  balance_fen: Optional[int] = None) -> list[Push]:
        fen = self.balances.get(car_number, 0) if balance_fen is None else balance_fen
        data = {"service_name": "update_balance", "car_number": car_number, "balance": w.yuan(fen),
                "autopay": autopay}
        return await self.push(park_id, data, retry=False)

    async def push_query_price(self, park_id: str, *, pay_scene: int = 0, car_number: str = "", order_id: str = "",
                               out_channel_id: str = "", query_order_no: str = "") -> Push:
        """5.1, asked once; the lane's answer is in the returned Push's `answer`."""
        data: dict[str, Any] = {"service_name": "query_price", "union_id": self.union_id, "park_id": park_id,
                                "pay_scene": pay_scene}
        for name, v in (("car_number", car_number), ("order_id", order_id), ("out_channel_id", out_channel_id),
                        ("query_order_no", query_order_no or (f"Q{next(self._seq):08d}" if pay_scene else ""))):
            if v:
                data[name] = v
        return (await self.push(park_id, data, retry=False))[-1]

    async def push_monthcard_pay(self, park_id: str, *, amount_fen: int, car_number: str = "", card_id: str = "",
                                 start_time: str = "", end_time: str = "", trade_no: str = "",
                                 out_trade_no: str = "", attach: Any = None) -> list[Push]:
        """5.8 in seed 001's shape; to `monthcard_url` without service_name when that is set."""
        amount = java_number(amount_fen)
        data: dict[str, Any] = {"trade_no": trade_no or self._trade_no("M"), "out_trade_no": out_trade_no,
                                "card_id": card_id, "park_id": park_id, "amount": amount, "state": 1,
                                "pay_time": int(time.time()), "arrive_money": amount, "fee": 0, "account_type": 1,
                                "remark": f"收到月卡续费-{car_number}", "car_number": car_number,
                                "start_time": start_time, "end_time": end_time}
        if attach is not None:
            data["attach"] = attach
        if self.monthcard_url and self.mode(park_id) == "callback":
            return await self.push(park_id, data, url=self.monthcard_url, order="dsu")
        if self.mode(park_id) == "http_mode":  # the SDK channel calls the amount pay_money
            data = {("pay_money" if k == "amount" else k): v for k, v in data.items()}
        return await self.push(park_id, {"service_name": "monthcard_pay", **data}, order="dsu")

    async def push_nolicence_in_park(self, park_id: str, *, channel_id: str, car_number: str = "",
                                     order_id: str = "") -> Push:
        """5.7, asked once; car_number is a platform id for the plate-less car."""
        data: dict[str, Any] = {"service_name": "nolicence_in_park",
                                "car_number": car_number or f"wx_{secrets.token_hex(6)}", "park_id": park_id,
                                "union_id": self.union_id, "channel_id": channel_id,
                                "timetemp": int(time.time() * 1000)}
        if order_id:
            data["order_id"] = order_id
        return (await self.push(park_id, data, retry=False))[-1]

    async def push_prepay(self, park_id: str, *, order_id: str, total_fen: int, car_number: str = "",
                          free_out_time_min: int = 10, trade_no: str = "", prepay_type: int = 1) -> list[Push]:
        """5.3 (fields inferred): a car paid ahead in the lot. In HTTP mode the SDK channel's form: `prepay`,
        `prepay_type` (1 electronic, 2 cash at a pay station), no trade_no unless one is given."""
        o = self.orders.get((park_id, order_id))
        if self.mode(park_id) == "http_mode":
            sdk: dict[str, Any] = {"service_name": "prepay_order", "park_id": park_id, "order_id": order_id,
                                   "car_number": car_number or (o.car_number if o else ""),
                                   "prepay": java_number(total_fen), "prepay_type": prepay_type,
                                   "pay_time": int(time.time()), "free_out_time": free_out_time_min}
            if trade_no:
                sdk["trade_no"] = trade_no
            return await self.push(park_id, sdk)
        data = {"service_name": "prepay_order", "park_id": park_id, "order_id": order_id,
                "trade_no": trade_no or self._trade_no("P"), "car_number": car_number or (o.car_number if o else ""),
                "prepay": java_number(total_fen), "pay_time": int(time.time()), "pay_channel": 0,
                "free_out_time": free_out_time_min}
        return await self.push(park_id, data)

    async def push_outpark(self, park_id: str, order_id: str, *, state: int = 1, total_fen: Optional[int] = None,
                           trade_no: str = "", key: Optional[str] = None) -> list[Push]:
        """A hand-made 5.5 for an order (known or not), e.g. a late success."""
        o = self.orders.get((park_id, order_id)) or Order(park_id, order_id, "")
        o = replace(o, trade_no=trade_no or o.trade_no or self._trade_no(),
                    total_fen=o.total_fen if total_fen is None else total_fen, exits=[])
        return await self._push_outpark(o, state, key=key)


async def _main(args: argparse.Namespace) -> None:
    emu = BolinkPlatform(key=args.key, union_id=args.union_id, callback_url=args.callback_url,
                         sign_free=set(args.sign_free), hold_s=args.hold, sign_charset=args.sign_charset,
                         bad_token_hold_s=args.bad_token_hold, sign_downlinks=not args.unsigned_downlinks)
    for park in args.http_mode:
        emu.downlink[park] = "http_mode"
    await emu.start(args.port)
    print(f"bolink platform listening on {emu.url} (callbacks to {emu.callback_url})", flush=True)
    try:
        while True:
            await asyncio.sleep(5)
            print(json.dumps({"orders": len(emu.orders), "uploads": len(emu.uploads), "pushes": len(emu.pushes),
                              "bad_signatures": emu.bad_signatures, "rate_limited": emu.rate_limited}), flush=True)
    finally:
        await emu.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8791)
    ap.add_argument("--key", default="8403A41ED5EF20BC")
    ap.add_argument("--union-id", type=int, default=200208)
    ap.add_argument("--callback-url", default=None)
    ap.add_argument("--sign-free", nargs="*", default=[], metavar="PLATE")
    ap.add_argument("--http-mode", nargs="*", default=[], metavar="PARK_ID", help="parks whose downlink is HTTP mode")
    ap.add_argument("--hold", type=float, default=25.0, help="download.do long-poll hold, seconds")
    ap.add_argument("--sign-charset", default="utf-8", choices=["utf-8", "gbk"])
    ap.add_argument("--bad-token-hold", type=float, default=1.0, help="download.do holds a token无效 answer, s")
    ap.add_argument("--unsigned-downlinks", action="store_true", help="flat downlinks without a sign member")
    asyncio.run(_main(ap.parse_args()))
