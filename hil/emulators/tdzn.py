"""The tdzn parking platform ("HTTP 对接文档", seed 004) as the lane meets it, with scripted payments and faults.

Endpoints (one each way; every request is the signed envelope, routed by its `serviceName`):
    POST http://127.0.0.1:<port>/api   lane → platform: enterNotify leaveNotify preLeaveNotify preEnterNotify
    POST <lane_url>                     platform → lane: queryParkFee payNotify remoteDev (one URL, all three)
Every tdzn answer goes out with HTTP 200 and its code in the JSON (401 bad signature, 402 illegal param / stale
timestamp / unknown pid or parkCode, 404 unknown service, 405 duplicate, 4021 bad JSON, 6003 no entry record).
Only the `http_500` script and `available=False` (HTTP 503) break HTTP itself.

What it keeps: entries by recordNo (enterNotify), leaves and pre-entries by recordNo, pre-leave bills by orderNo
(recordNo when the lane sent none). A repeat is answered 405 — except a repeated preLeaveNotify whose bill was
already paid at pre-leave, which gets the same 200 again (a lane that timed out on a slow platform must be able
to learn that the car was charged; `replay_paid_preleave=False` answers 405 instead).

preLeaveNotify is scripted per plate (`script(plate, *steps)`: one step per new bill, the last one sticks) or by
`default`; see the step constructors below. payNotify goes to the lane with a fresh timestamp and signature per
attempt and is retried every `notify_interval_s`, at most `notify_attempts` times, until the lane answers 200,
405 or 6006. Everything in and out is kept in `log`.

    python -m hil.emulators.tdzn --port 8793 --pid 123456 --key KEY --lane-url http://127.0.0.1:8794/tdzn \\
        [--default pay_later:2] [--script 粤B12345=never_pay] [--park-code TEST/1P1] [--no-require-entry]
`POST /__control__/push` (not tdzn's) sends any platform → lane request now, signed by this platform; see
push() and hil/README.md. Or type on stdin: `fee PLATE [SCENE]`, `pay ORDER_NO FEE_FEN RECORD_NO [CHANNEL]`,
`open CHANNEL OPERATOR REASON`, `script PLATE SPEC`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Callable, Mapping, Optional, Sequence
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from hil.emulators import pictures
from hil.emulators.common import compact_json, md5_sign, param_text, same_sign


# ---------------------------------------------------------------- the wire
# Written from tdzn.md and seed 004, not from lanectl.protocols.tdzn: the emulator checks the daemon's codec.

ENTER_NOTIFY, LEAVE_NOTIFY, PRE_LEAVE_NOTIFY, PRE_ENTER_NOTIFY = (
    "enterNotify", "leaveNotify", "preLeaveNotify", "preEnterNotify")  # lane → platform (3.1–3.4)
# platform → lane (4.1, 4.2, 4.12)
QUERY_PARK_FEE, PAY_NOTIFY, REMOTE_DEV = "queryParkFee", "payNotify", "remoteDev"
LANE_SERVICES = (ENTER_NOTIFY, LEAVE_NOTIFY, PRE_LEAVE_NOTIFY, PRE_ENTER_NOTIFY)
PLATFORM_SERVICES = (QUERY_PARK_FEE, PAY_NOTIFY, REMOTE_DEV)
JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}
CONTROL_PUSH = "/__control__/push"  # not tdzn's: a script makes the platform send a request on demand
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the doc's YYYY-MM-DD HH:mm:ss, local time
ENVELOPE = ("pid", "serviceName", "timestamp", "bizContent", "sign")
MEANING = {200: "成功", 400: "缺少参数", 401: "签名错误", 402: "非法参数", 404: "不存在", 405: "重复请求",
           500: "服务器错误", 4021: "JSON格式错误", 6001: "车场无响应", 6003: "无入场记录", 6004: "查询费用失败",
           6005: "支付通知失败", 6006: "重复支付通知"}
# bizContent fields tdzn.md / seed 004 mark required (是) for what the lane sends; sweepAuthCode too when
# sweepCode=1.
REQUIRED = {
    ENTER_NOTIFY: ("parkCode", "recordNo", "plateNum", "carType", "carSubType", "entrance", "enterTime",
                   "remainParkNum", "totalParkNum"),
    LEAVE_NOTIFY: ("parkCode", "recordNo", "plateNum", "carType", "carSubType", "exitdesc", "leaveTime",
                   "remainParkNum", "totalParkNum", "payableFee", "discountFee", "cashFee", "mobileFee", "payOrders"),
    PRE_LEAVE_NOTIFY: ("parkCode", "recordNo", "plateNum", "carType", "carSubType", "enterTime", "leaveTime",
                       "payableFee", "discountFee", "paidFee", "sweepCode", "plateId"),
    PRE_ENTER_NOTIFY: ("parkCode", "recordNo", "plateNum", "carType", "carSubType", "entrance", "enterTime"),
}


class TdznError(ValueError):
    """A request refused; `code` is the tdzn answer code to give."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code


@dataclass(frozen=True)
class Request:
    pid: str
    service_name: str
    timestamp: int
    biz: dict[str, Any]
    biz_text: str  # the bizContent text the signature covered
    sign: str


@dataclass(frozen=True)
class Answer:
    code: int
    msg: str
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def duplicate(self) -> bool:
        """405 duplicate request / 6006 duplicate pay notify: done before, nothing to do again."""
        return self.code in (405, 6006)


def sign(params: Mapping[str, Any], key: str) -> str:
    """doc 2.2: the non-empty top-level params except sign, sorted, k=v&...&key=KEY, MD5, upper hex."""
    return md5_sign(params, key)


def encode_request(pid: str, service: str, biz: Mapping[str, Any], key: str, timestamp: int) -> bytes:
    """The signed envelope, bizContent sent as a JSON string of the exact text that was signed."""
    params = {"pid": pid, "serviceName": service, "timestamp": timestamp, "bizContent": compact_json(dict(biz))}
    return compact_json({**params, "sign": sign(params, key)}).encode("utf-8")


def decode_request(body: bytes, key: str, *, now: Optional[float] = None, window_s: int = 300,
                   pid: Optional[str] = None) -> Request:
    """Read and check a signed envelope: 4021 not JSON, 400 a param missing, 402 illegal (bizContent not an
    object, a timestamp that is no unix time, another pid, a timestamp outside ±window_s of `now`), 401 a
    wrong signature. Every top-level member but `sign` is signed, bizContent as the text received (a string)
    or, sent as an object, as its compact JSON text."""
    try:
        env = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TdznError(4021, "body is not JSON") from None
    if not isinstance(env, dict):
        raise TdznError(4021, "body is not a JSON object")
    for name in ENVELOPE:
        if env.get(name) in (None, ""):
            raise TdznError(400, f"missing param: {name}")
    biz_value = env["bizContent"]
    if isinstance(biz_value, str):
        try:
            biz = json.loads(biz_value)
        except (ValueError, RecursionError):
            raise TdznError(4021, "bizContent is not JSON") from None
        biz_text = biz_value
    else:
        biz, biz_text = biz_value, compact_json(biz_value)
    if not isinstance(biz, dict):
        raise TdznError(402, "bizContent is not a JSON object")
    ts = env["timestamp"]
    if isinstance(ts, str) and ts.isascii() and ts.isdigit():
        timestamp = int(ts)
    elif isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0:
        timestamp = ts
    else:
        raise TdznError(402, f"timestamp is not unix seconds: {ts!r}")
    if not isinstance(env["serviceName"], str) or not isinstance(env["sign"], str):
        raise TdznError(402, "serviceName and sign must be strings")
    if pid is not None and str(env["pid"]) != pid:
        raise TdznError(402, f"unknown pid {env['pid']!r}")
    signed = {k: (biz_text if k == "bizContent" else v) for k, v in env.items() if k != "sign"}
    try:
        expected = sign(signed, key)
    except TypeError:
        raise TdznError(402, "a parameter has no signable text") from None
    if not same_sign(expected, env["sign"]):
        raise TdznError(401, "bad signature")
    if now is not None and abs(now - timestamp) > window_s:
        raise TdznError(402, f"timestamp {timestamp} is more than {window_s}s away from now")
    return Request(str(env["pid"]), env["serviceName"], timestamp, biz, biz_text, env["sign"])


def answer(code: int, msg: str = "", data: Optional[Mapping[str, Any]] = None) -> bytes:
    """`{code, msg[, data]}` as the doc answers."""
    out: dict[str, Any] = {"code": code, "msg": msg or MEANING.get(code, "")}
    if data is not None:
        out["data"] = dict(data)
    return compact_json(out).encode("utf-8")


def parse_answer(raw: bytes) -> Answer:
    """The lane's `{code, msg, data?}`; extra fields tolerated, code as a number or digit text, data an object,
    its JSON text, or absent. Anything else raises TdznError."""
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TdznError(4021, "answer is not JSON") from None
    if not isinstance(value, dict):
        raise TdznError(4021, "answer is not a JSON object")
    code = value.get("code")
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise TdznError(400, f"answer code is not a number: {code!r}")
    data = value.get("data")
    if isinstance(data, str) and data.strip():
        try:
            data = json.loads(data)
        except ValueError:
            raise TdznError(4021, "answer data is not JSON") from None
    if data in (None, "", []):
        data = {}
    if not isinstance(data, dict):
        raise TdznError(402, "answer data is not an object")
    msg = value.get("msg")
    return Answer(code, "" if msg is None else str(msg), data)


def format_time(at: datetime, tz: tzinfo) -> str:
    return at.astimezone(tz).strftime(TIME_FORMAT)


def parse_time(text: Any, tz: tzinfo) -> datetime:
    if not isinstance(text, str) or len(text) != 19:
        raise TdznError(402, f"not a YYYY-MM-DD HH:mm:ss time: {text!r}")
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=tz)
    except ValueError:
        raise TdznError(402, f"not a YYYY-MM-DD HH:mm:ss time: {text!r}") from None


def missing_fields(service: str, biz: Mapping[str, Any]) -> list[str]:
    need = list(REQUIRED.get(service, ()))
    if service == PRE_LEAVE_NOTIFY and str(biz.get("sweepCode")) == "1":
        need.append("sweepAuthCode")
    return [name for name in need if biz.get(name) in (None, "")]


# ---------------------------------------------------------------- preLeaveNotify scripts

@dataclass(frozen=True)
class Script:
    kind: str
    after_s: float = 0.0  # delay before the payNotify
    type: int = 1  # payNotify type: 1 exit QR paid, 2 sign-free async success (0 prepaid in the lot)
    pay_type: int = 1  # payType: 1 WeChat, 2 Alipay, 3 balance, 4 cash, 5 UnionPay, 6 other
    replay_after_s: float = 0.0  # replayed_timestamp: when the old bytes are sent again
    age_s: float = 0.0  # stale_timestamp: how old the signed timestamp is
    seconds: float = 0.0  # slow: delay before answering
    then: Optional["Script"] = None  # slow: what happens after the delay


def pay_at_preleave(pay_type: int = 3) -> Script:
    """Answer 200 with {orderNo, payType, payTime}: paid by sign-free / scanner; no payNotify follows."""
    return Script("pay_at_preleave", pay_type=pay_type)


def pay_later(after_s: float = 0.1, type: int = 1, pay_type: int = 1) -> Script:
    """Answer code 0 (not paid); after `after_s` POST a signed payNotify to the lane (retried until done)."""
    return Script("pay_later", after_s=after_s, type=type, pay_type=pay_type)


def never_pay() -> Script:
    """Answer code 0 and never notify."""
    return Script("never_pay")


def duplicate_notify(after_s: float = 0.0, type: int = 1, pay_type: int = 1) -> Script:
    """Like pay_later, then the same payment (same orderNo, freshly signed) is notified a second time."""
    return Script("duplicate_notify", after_s=after_s, type=type, pay_type=pay_type)


def replayed_timestamp(after_s: float = 0.0, replay_after_s: float = 0.5, type: int = 1) -> Script:
    """Like pay_later, then the accepted payNotify bytes (old timestamp and signature) are re-sent once."""
    return Script("replayed_timestamp", after_s=after_s, replay_after_s=replay_after_s, type=type)


def stale_timestamp(age_s: float = 3600.0, after_s: float = 0.0, type: int = 1) -> Script:
    """Like pay_later, but every payNotify is correctly signed over a timestamp `age_s` in the past."""
    return Script("stale_timestamp", after_s=after_s, age_s=age_s, type=type)


def bad_signature(after_s: float = 0.0, type: int = 1) -> Script:
    """Like pay_later, but every payNotify carries a wrong signature."""
    return Script("bad_signature", after_s=after_s, type=type)


def http_500() -> Script:
    """HTTP 500 with a plain-text body; the bill is not remembered, so the lane's retry is a new request."""
    return Script("http_500")


def slow(seconds: float, then: Optional[Script] = None) -> Script:
    """Answer only after `seconds`, then act as `then` (default pay_at_preleave: the charge happens even if the
    lane gave up waiting — a late success)."""
    return Script("slow", seconds=seconds, then=then)


_SPECS: dict[str, Callable[..., Script]] = {
    "pay_at_preleave": pay_at_preleave, "pay_later": pay_later, "never_pay": never_pay,
    "duplicate_notify": duplicate_notify, "replayed_timestamp": replayed_timestamp,
    "stale_timestamp": stale_timestamp, "bad_signature": bad_signature, "http_500": http_500, "slow": slow,
}


def parse_spec(spec: str) -> Script:
    """`name[:arg[:arg]]` for the command line: `pay_later:2:2` = pay_later(2, type=2), `slow:3`."""
    name, *args = spec.strip().split(":")
    if name not in _SPECS:
        raise ValueError(f"unknown script {name!r}; one of {', '.join(_SPECS)}")
    conv = [int(a) if a.isdigit() and i > 0 else float(a) for i, a in enumerate(args)]
    if name == "pay_at_preleave":
        conv = [int(a) for a in args]
    return _SPECS[name](*conv)


# ---------------------------------------------------------------- records

@dataclass
class Exchange:
    direction: str  # "in": lane → platform, "out": platform → lane
    service: str
    biz: dict[str, Any]
    code: Optional[int]  # the tdzn code answered (in) or received (out); None: no tdzn answer
    http_status: Optional[int]
    body: bytes  # the request body as received / sent
    note: str = ""  # script step, "retry 2", "replay", an exception name...


@dataclass
class PreLeaveBill:
    record_no: str
    plate: str
    order_no: str
    script: str
    paid: bool
    answer: bytes


# ---------------------------------------------------------------- the platform

@dataclass
class TdznPlatform:
    pid: str = "123456"
    key: str = "45DC1F8604F940829E75D6A76595C299"
    lane_url: Optional[str] = None  # where queryParkFee / payNotify / remoteDev are POSTed
    park_code: Optional[str] = None  # when set, requests for another parkCode are refused (402)
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    window_s: int = 300
    require_entry: bool = True  # leave/preLeave for a recordNo never entered → 6003
    replay_paid_preleave: bool = True
    notify_attempts: int = 5
    notify_interval_s: float = 0.2
    lane_timeout_s: float = 5.0
    default: Script = field(default_factory=pay_at_preleave)
    available: bool = True  # False: every request gets HTTP 503 (platform down)
    clock: Callable[[], float] = time.time
    scripts: dict[str, list[Script]] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # recordNo -> enterNotify biz
    pre_entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    leaves: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetch_images: bool = True  # fetch enterPic / leavePic links as the platform does
    images: pictures.Fetched = field(default_factory=dict)  # picture links fetched: link -> (status, body)
    bills: dict[str, PreLeaveBill] = field(default_factory=dict)  # orderNo (or recordNo) -> bill
    log: list[Exchange] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)  # "in:enterNotify:200", "out:payNotify:None", ...
    port: int = 0
    _runner: Optional[web.AppRunner] = None
    _session: Optional[aiohttp.ClientSession] = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _stopping: Optional[asyncio.Event] = None
    _seq: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    async def start(self, port: int = 0) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/api", self._api)
        app.router.add_post(CONTROL_PUSH, self._control_push)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.lane_timeout_s))

    async def stop(self) -> None:
        """Cut short slow answers and pending notifies, then close the listener and the client."""
        if self._stopping is not None:
            self._stopping.set()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until every scheduled payNotify (and replay) has finished."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------ scripting and queries

    def script(self, plate: str, *steps: Script) -> None:
        """preLeaveNotify behaviour for `plate`: one step per new bill; the last step repeats."""
        self.scripts[plate] = list(steps)

    def add_entry(self, record_no: str, plate: str = "") -> None:
        """Know an entry without an enterNotify (the lane was offline when the car came in)."""
        self.entries[record_no] = {"recordNo": record_no, "plateNum": plate}

    def exchanges(self, service: Optional[str] = None, direction: Optional[str] = None) -> list[Exchange]:
        return [e for e in self.log if (service is None or e.service == service)
                and (direction is None or e.direction == direction)]

    def codes(self, service: str, direction: str = "in") -> list[Optional[int]]:
        return [e.code for e in self.exchanges(service, direction)]

    def _next_script(self, plate: str) -> Script:
        steps = self.scripts.get(plate)
        if not steps:
            return self.default
        return steps.pop(0) if len(steps) > 1 else steps[0]

    # ------------------------------------------------------------ lane → platform

    async def _api(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if not self.available:
            self._record("in", _service_of(body), {}, None, 503, body, "unavailable")
            return web.Response(status=503, text="platform unavailable")
        try:
            req = decode_request(body, self.key, now=self.clock(), window_s=self.window_s, pid=self.pid)
        except TdznError as e:
            return self._reply(_service_of(body), {}, body, e.code, str(e))
        handler = {ENTER_NOTIFY: self._enter, LEAVE_NOTIFY: self._leave,
                   PRE_LEAVE_NOTIFY: self._pre_leave, PRE_ENTER_NOTIFY: self._pre_enter
                   }.get(req.service_name)
        if handler is None:
            return self._reply(req.service_name, req.biz, body, 404, f"unknown serviceName {req.service_name}")
        missing = missing_fields(req.service_name, req.biz)
        if missing:
            return self._reply(req.service_name, req.biz, body, 400, f"missing param: {', '.join(missing)}")
        illegal = _illegal_fields(req.biz, self.tz)
        if illegal:
            return self._reply(req.service_name, req.biz, body, 402, f"illegal param: {', '.join(illegal)}")
        if self.park_code is not None and req.biz.get("parkCode") != self.park_code:
            return self._reply(req.service_name, req.biz, body, 402, f"unknown parkCode {req.biz.get('parkCode')!r}")
        return await handler(req, body)

    async def _enter(self, req: Request, body: bytes) -> web.Response:
        return self._once(self.entries, req, body)

    async def _pre_enter(self, req: Request, body: bytes) -> web.Response:
        return self._once(self.pre_entries, req, body)

    async def _leave(self, req: Request, body: bytes) -> web.Response:
        record_no = str(req.biz["recordNo"])
        if record_no not in self.leaves and self.require_entry and record_no not in self.entries:
            return self._reply(req.service_name, req.biz, body, 6003, f"no entry record {record_no}")
        return self._once(self.leaves, req, body)

    def _once(self, seen: dict[str, dict[str, Any]], req: Request, body: bytes) -> web.Response:
        record_no = str(req.biz["recordNo"])
        if record_no in seen:
            return self._reply(req.service_name, req.biz, body, 405, f"duplicate request {record_no}")
        seen[record_no] = req.biz
        for name in ("enterPic", "leavePic"):
            if self.fetch_images and pictures.wants(self.images, req.biz.get(name)):
                self._spawn(pictures.fetch(self._session, req.biz[name], self.images), f"fetch {name}")
        return self._reply(req.service_name, req.biz, body, 200)

    async def _pre_leave(self, req: Request, body: bytes) -> web.StreamResponse:
        biz = req.biz
        record_no, plate = str(biz["recordNo"]), str(biz["plateNum"])
        key = str(biz.get("orderNo") or record_no)
        bill = self.bills.get(key)
        if bill is not None:
            if bill.paid and self.replay_paid_preleave:
                return self._reply(req.service_name, biz, body, 200, raw=bill.answer, note="paid before: same answer")
            return self._reply(req.service_name, biz, body, 405, f"duplicate request {key}")
        if self.require_entry and record_no not in self.entries:
            return self._reply(req.service_name, biz, body, 6003, f"no entry record {record_no}")
        step = self._next_script(plate)
        while step.kind == "slow":
            await self._sleep(step.seconds)
            step = step.then or pay_at_preleave()
        if step.kind == "http_500":
            self._record("in", req.service_name, biz, None, 500, body, "http_500")
            return web.Response(status=500, text="500 Internal Server Error")
        order_no = str(biz.get("orderNo") or self._order_no())
        if step.kind == "pay_at_preleave":
            data = {"orderNo": order_no, "payType": step.pay_type, "payTime": self._now_text()}
            raw = answer(200, "成功", data)
            self.bills[key] = PreLeaveBill(record_no, plate, order_no, step.kind, True, raw)
            return self._reply(req.service_name, biz, body, 200, raw=raw, note=step.kind)
        raw = answer(0, "未支付")
        self.bills[key] = PreLeaveBill(record_no, plate, order_no, step.kind, False, raw)
        if step.kind != "never_pay":
            self._spawn(self._pay_script(step, biz, order_no), f"tdzn-{step.kind}-{order_no}")
        return self._reply(req.service_name, biz, body, 0, raw=raw, note=step.kind)

    # ------------------------------------------------------------ platform → lane

    async def query_park_fee(self, plate: str = "", *, pay_scene: int = 1, record_no: str = "",
                             out_channel_id: str = "", park_code: Optional[str] = None) -> Optional[Answer]:
        """POST a signed queryParkFee; the lane's answer, or None when it gave no tdzn answer."""
        biz = {"parkCode": park_code or self._park(), "payScene": pay_scene, "plateNum": plate,
               "recordNo": record_no, "outChannelid": out_channel_id}
        return await self._call(QUERY_PARK_FEE, _drop_empty(biz))

    async def pay_notify(self, *, order_no: str, paid_fee: int, record_no: str = "", out_channel_id: str = "",
                         type: int = 1, pay_type: int = 1, discount_fee: int = 0, pay_time: Optional[datetime] = None,
                         park_code: Optional[str] = None, retry: bool = True, age_s: float = 0.0,
                         bad_sign: bool = False, note: str = "") -> Optional[Answer]:
        """POST a signed payNotify; with `retry`, again (fresh timestamp and signature) until the lane answers
        200/405/6006 or `notify_attempts` are spent. Returns the last answer (None: no tdzn answer)."""
        biz = self.pay_notify_biz(order_no=order_no, paid_fee=paid_fee, record_no=record_no,
                                  out_channel_id=out_channel_id, type=type, pay_type=pay_type,
                                  discount_fee=discount_fee, pay_time=pay_time, park_code=park_code)
        last: Optional[Answer] = None
        for attempt in range(self.notify_attempts if retry else 1):
            if attempt:
                await self._sleep(self.notify_interval_s)
            body = self._signed(PAY_NOTIFY, biz, age_s=age_s, bad_sign=bad_sign)
            last = await self._post(PAY_NOTIFY, biz, body, f"{note} attempt {attempt + 1}".strip())
            if last is not None and (last.ok or last.duplicate):
                break
        return last

    def pay_notify_biz(self, *, order_no: str, paid_fee: int, record_no: str = "", out_channel_id: str = "",
                       type: int = 1, pay_type: int = 1, discount_fee: int = 0, pay_time: Optional[datetime] = None,
                       park_code: Optional[str] = None) -> dict[str, Any]:
        pay_text = format_time(pay_time, self.tz) if pay_time is not None else self._now_text()
        return _drop_empty({"parkCode": park_code or self._park(), "orderNo": order_no, "payTime": pay_text,
                            "type": type, "outChannelid": out_channel_id, "recordNo": record_no,
                            "paidFee": paid_fee, "payType": pay_type, "discountFee": discount_fee})

    async def remote_dev(self, channel_id: str, type: int = 2, plate_id: str = "", operator: str = "",
                         cmd: int = 1, open_gate_case: str = "") -> Optional[Answer]:
        """POST a signed remoteDev (type 0 confirm / 1 cancel / 2 free release; cmd 0 in/out, 1 manual raise)."""
        biz = {"channelid": channel_id, "type": type, "plateId": plate_id, "operator": operator, "cmd": cmd,
               "openGateCase": open_gate_case}
        return await self._call(REMOTE_DEV, _drop_empty(biz))

    async def push(self, service: str, biz: Mapping[str, Any], *, signature: str = "good", age_s: float = 0.0,
                   url: Optional[str] = None) -> tuple[bytes, Optional[Answer]]:
        """Send any platform → lane request now (payNotify, queryParkFee, remoteDev, or any other serviceName),
        once, with exactly this bizContent (a payNotify without parkCode / payTime gets this platform's park
        and now). Signed right ("good"), with another key ("bad"), or with an empty sign ("none"); `age_s`
        back-dates the timestamp. Returns the bytes sent and the lane's answer (None: no tdzn answer)."""
        biz = dict(biz)
        if service == PAY_NOTIFY:
            biz.setdefault("parkCode", self._park())
            biz.setdefault("payTime", self._now_text())
        body = self._signed(service, biz, age_s=age_s, bad_sign=signature == "bad")
        if signature == "none":
            env = json.loads(body)
            env["sign"] = ""
            body = compact_json(env).encode("utf-8")
        return body, await self._post(service, biz, body, f"control push ({signature})", url=url)

    async def _control_push(self, request: web.Request) -> web.Response:
        """POST /__control__/push {"service": "payNotify", "biz": {...}, "signature"?, "age_s"?, "url"?} ->
        {"sent": <the envelope sent>, "answer": {code, msg, data} | null}."""
        try:
            spec = json.loads(await request.read())
            if not isinstance(spec, dict) or not isinstance(spec.get("service"), str) or not spec["service"]:
                raise ValueError('say which request: {"service": "payNotify", "biz": {...}}')
            biz = spec.get("biz", {})
            if not isinstance(biz, dict):
                raise ValueError("biz must be an object")
            if spec.get("signature", "good") not in ("good", "bad", "none"):
                raise ValueError("signature is good | bad | none")
            body, ans = await self.push(spec["service"], biz, signature=spec.get("signature", "good"),
                                        age_s=float(spec.get("age_s", 0)), url=spec.get("url"))
        except (ValueError, TypeError, RuntimeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        answer_ = None if ans is None else {"code": ans.code, "msg": ans.msg, "data": ans.data}
        return web.json_response({"sent": json.loads(body), "answer": answer_}, dumps=compact_json)

    async def send_raw(self, service: str, body: bytes, note: str = "raw") -> Optional[Answer]:
        """POST bytes as they are (replays, tampering) and record the lane's answer."""
        return await self._post(service, {}, body, note)

    async def _call(self, service: str, biz: dict[str, Any]) -> Optional[Answer]:
        return await self._post(service, biz, self._signed(service, biz))

    async def _pay_script(self, step: Script, biz: Mapping[str, Any], order_no: str) -> None:
        await self._sleep(step.after_s)
        kw = dict(order_no=order_no, paid_fee=int(biz.get("paidFee") or 0), record_no=str(biz.get("recordNo", "")),
                  out_channel_id=str(biz.get("outChannelid", "")), type=step.type, pay_type=step.pay_type,
                  discount_fee=int(biz.get("discountFee") or 0), park_code=str(biz.get("parkCode") or ""))
        if step.kind == "stale_timestamp":
            await self.pay_notify(**kw, age_s=step.age_s, note=step.kind)
        elif step.kind == "bad_signature":
            await self.pay_notify(**kw, bad_sign=True, note=step.kind)
        else:
            await self.pay_notify(**kw, note=step.kind)
        if step.kind == "duplicate_notify":
            await self.pay_notify(**kw, note="duplicate")
        elif step.kind == "replayed_timestamp":
            accepted = [e for e in self.exchanges(PAY_NOTIFY, "out") if e.biz.get("orderNo") == order_no]
            if accepted:
                await self._sleep(step.replay_after_s)
                await self.send_raw(PAY_NOTIFY, accepted[-1].body, "replay")

    # ------------------------------------------------------------ plumbing

    def _signed(self, service: str, biz: Mapping[str, Any], *, age_s: float = 0.0, bad_sign: bool = False) -> bytes:
        ts = int(self.clock() - age_s)
        body = encode_request(self.pid, service, biz, self.key, ts)
        if bad_sign:  # a well-formed signature made with another key
            env = json.loads(body)
            env["sign"] = sign({k: v for k, v in env.items() if k != "sign"}, self.key + "-wrong")
            body = json.dumps(env, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return body

    async def _post(self, service: str, biz: dict[str, Any], body: bytes, note: str = "",
                    url: Optional[str] = None) -> Optional[Answer]:
        url = url or self.lane_url
        if url is None or self._session is None:
            raise RuntimeError("no lane_url configured, or the platform is not started")
        try:
            async with self._session.post(url, data=body, headers=JSON_HEADERS) as resp:
                raw, status = await resp.read(), resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self._record("out", service, biz, None, None, body, f"{note} {type(e).__name__}".strip())
            return None
        ans: Optional[Answer] = None
        if status == 200:
            try:
                ans = parse_answer(raw)
            except TdznError:
                note = f"{note} unreadable answer".strip()
        self._record("out", service, biz, ans.code if ans else None, status, body, note)
        return ans

    def _reply(self, service: str, biz: dict[str, Any], body: bytes, code: int, msg: str = "",
               raw: Optional[bytes] = None, note: str = "") -> web.Response:
        self._record("in", service, biz, code, 200, body, note or msg)
        return web.Response(body=raw if raw is not None else answer(code, msg),
                            content_type="application/json", charset="utf-8")

    def _record(self, direction: str, service: str, biz: dict[str, Any], code: Optional[int],
                status: Optional[int], body: bytes, note: str) -> None:
        self.log.append(Exchange(direction, service, dict(biz), code, status, body, note))
        self.counters[f"{direction}:{service}:{code if code is not None else status}"] += 1

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sleep(self, seconds: float) -> None:
        """A delay that stop() cuts short, so no slow answer or pending notify outlives the platform."""
        if seconds <= 0 or self._stopping is None:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    def _now_text(self) -> str:
        return datetime.fromtimestamp(self.clock(), self.tz).strftime(TIME_FORMAT)

    def _order_no(self) -> str:
        stamp = datetime.fromtimestamp(self.clock(), self.tz).strftime("%Y%m%d%H%M%S")
        return f"TD{stamp}{next(self._seq):04d}"

    def _park(self) -> str:
        return self.park_code or "TEST/1P1"


_INT_FIELDS = ("carType", "carSubType", "remainParkNum", "totalParkNum", "payableFee", "discountFee", "paidFee",
               "cashFee", "mobileFee", "sweepCode")
_TIME_FIELDS = ("enterTime", "leaveTime")


def _illegal_fields(biz: Mapping[str, Any], tz: tzinfo) -> list[str]:
    """Stricter than the lane must be tolerant: numbers and money are JSON integers >= 0, times the doc format."""
    bad = [n for n in _INT_FIELDS if n in biz and (type(biz[n]) is not int or biz[n] < 0)]
    for n in _TIME_FIELDS:
        if n in biz:
            try:
                parse_time(biz[n], tz)
            except TdznError:
                bad.append(n)
    orders = biz.get("payOrders", [])
    if not isinstance(orders, list) or not all(
            isinstance(o, dict) and type(o.get("paidFee")) is int and o["paidFee"] >= 0
            and o.get("payType", 1) in PAY_TYPES for o in orders):
        bad.append("payOrders")
    if "carType" in biz and "carSubType" in biz and "carType" not in bad and "carSubType" not in bad \
            and biz["carSubType"] not in CAR_SUBTYPES.get(biz["carType"], ()):
        bad.append("carType/carSubType")
    return bad


# tdzn.md dictionaries: carType 9 temporary (91–95), 8 monthly (81–85), 7 stored-value (71–75), 1 free (11–15,
# 16 military/police, 17 VIP); payType 1 WeChat, 2 Alipay, 3 balance, 4 cash, 5 UnionPay, 6 other, 10 coupon,
# 11 points.
CAR_SUBTYPES = {9: range(91, 96), 8: range(81, 86), 7: range(71, 76), 1: range(11, 18)}
PAY_TYPES = frozenset({1, 2, 3, 4, 5, 6, 10, 11})


def _drop_empty(biz: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in biz.items() if v not in (None, "")}


def _service_of(body: bytes) -> str:
    """Best effort, for the log of a request we refused."""
    try:
        value = json.loads(body)
        return str(value.get("serviceName", "")) if isinstance(value, dict) else ""
    except (ValueError, RecursionError):
        return ""


# ---------------------------------------------------------------- standalone

async def _command(platform: TdznPlatform, line: str) -> str:
    words = line.split()
    if not words:
        return ""
    cmd, args = words[0], words[1:]
    try:
        if cmd == "fee" and args:
            a = await platform.query_park_fee(args[0], pay_scene=int(args[1]) if len(args) > 1 else 1)
        elif cmd == "pay" and len(args) >= 3:
            a = await platform.pay_notify(order_no=args[0], paid_fee=int(args[1]), record_no=args[2],
                                          out_channel_id=args[3] if len(args) > 3 else "")
        elif cmd == "open" and len(args) >= 3:
            a = await platform.remote_dev(args[0], 2, operator=args[1], open_gate_case=" ".join(args[2:]))
        elif cmd == "script" and len(args) == 2:
            platform.script(args[0], parse_spec(args[1]))
            return f"{args[0]}: {args[1]}"
        else:
            return "commands: fee PLATE [SCENE] | pay ORDER_NO FEE_FEN RECORD_NO [CHANNEL] | " \
                   "open CHANNEL OPERATOR REASON | script PLATE SPEC"
    except (ValueError, RuntimeError) as e:
        return f"error: {e}"
    return json.dumps(None if a is None else {"code": a.code, "msg": a.msg, "data": a.data}, ensure_ascii=False)


async def _main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hil.emulators.tdzn", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8793)
    ap.add_argument("--pid", default="123456")
    ap.add_argument("--key", default="45DC1F8604F940829E75D6A76595C299")
    ap.add_argument("--lane-url", default=None, help="the lane's single tdzn endpoint, e.g. http://127.0.0.1:8794/tdzn")
    ap.add_argument("--park-code", default=None)
    ap.add_argument("--default", default="pay_at_preleave", help="preLeave script spec, e.g. pay_later:2 or slow:3")
    ap.add_argument("--script", action="append", default=[], metavar="PLATE=SPEC")
    ap.add_argument("--no-require-entry", action="store_true")
    ap.add_argument("--window-s", type=int, default=300)
    a = ap.parse_args(argv)
    platform = TdznPlatform(pid=a.pid, key=a.key, lane_url=a.lane_url, park_code=a.park_code,
                            require_entry=not a.no_require_entry, window_s=a.window_s, default=parse_spec(a.default))
    for item in a.script:
        plate, _, spec = item.partition("=")
        platform.script(plate, parse_spec(spec))
    await platform.start(a.port)
    print(f"tdzn platform on {platform.url}; lane at {platform.lane_url}", flush=True)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()
    reading = False
    try:
        loop.add_reader(sys.stdin.fileno(), lambda: lines.put_nowait(sys.stdin.readline()))
        reading = True
    except (OSError, ValueError, NotImplementedError):
        pass
    try:
        while True:
            try:
                line = await asyncio.wait_for(lines.get(), 5)
            except asyncio.TimeoutError:
                print(json.dumps(dict(platform.counters), ensure_ascii=False), flush=True)
                continue
            if line == "" and reading:  # EOF: stop reading, keep serving
                loop.remove_reader(sys.stdin.fileno())
                reading = False
                continue
            out = await _command(platform, line)
            if out:
                print(out, flush=True)
    finally:
        if reading:
            loop.remove_reader(sys.stdin.fileno())
        await platform.stop()


if __name__ == "__main__":
    try:
        asyncio.run(_main())
    except KeyboardInterrupt:
        pass
