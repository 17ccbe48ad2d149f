"""XFT's aggregation parking platform (sign-free / 无感 payment), with scripted exits and fault injection.

Serves the four calls under `<url>` = http://127.0.0.1:<port>/parking/aggegation/ (XFT's spelling), checks
every request's signature, signs every answer, and POSTs signed notifies to the lane's notify_url, retrying
until the lane answers SUCCESS (any case). What it decides where XFT's documents are silent:

- A request that is not signed right (wrong sign, no sign, sign_type not MD5) is answered with
  failure_code SIGN_ERROR and nothing positive: sign_flag 0, entry state 0, is_allow FAIL, no order state.
  A body that cannot be read is PARAM_ERROR; a wrong app_id (when one is configured) APP_ID_ERROR.
- A plate whose owner has not signed up (or signed up for another channel) leaves with is_allow FAIL,
  failure_code NOT_SIGNED, and no order is created.
- answer_style "flat" sends the signed fields as they are; "wrapped" sends
  {"code":"0000","message":"SUCCESS","result":"SUCCESS","data":{signed fields}}; "wrapped_text" the same with
  data as JSON text. Business failures live in data.failure_code; only an unreadable request gets code 4000
  and data null.
- entry/v2 and entrance/v2 are idempotent by out_trade_no: a repeated entry is acknowledged again; a repeated
  exit answers from the order as it is now (00 SUCCESS, 01 FAIL, else INIT) and charges nothing twice; the
  same out_trade_no with another amount is FAIL OUT_TRADE_NO_USED.
- On the WECHAT channel third_trade_no is empty in the entrance answer ("微信通道为异步返回") and comes with
  the notify and the order query.
- A notify counts as received when the lane answers 2xx with the body SUCCESS (any case, whitespace ignored).

Not XFT's: `POST /__control__/push` makes the platform send a notify now (see push_notify and hil/README.md):
    {"callback": "notify", "fields": {"out_trade_no": "...", "state": "00", ...}, "url": "http://lane/...",
     "signature": "good" | "bad" | "none", "attempts": 1, "format": "json" | "form"}

    python -m hil.emulators.xft --port 8792 --key KEY [--sign-plate 粤B12345 ...] [--default init_then]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Optional

import aiohttp
from aiohttp import web

from hil.emulators.common import compact_json, md5_sign, param_text, plate_key, same_sign

BASE_PATH = "/parking/aggegation/"
CONTROL_PUSH = "/__control__/push"  # not XFT's: a script makes the platform send a notify on demand
AnswerStyle = Literal["flat", "wrapped", "wrapped_text"]


# ------------------------------------------------------------------------------------------ the wire
# Written from xft.md / seed 000, not from lanectl.protocols.xft: the emulator checks the daemon's codec.

PATHS = {  # call name -> path under BASE_PATH (seed 000's request addresses)
    "signed_relation": "query/signed/relation/v2",
    "entry": "entry/v2",
    "exit": "entrance/v2",
    "charge_query": "query/charge/v2",
}
SIGN_TYPE = "MD5"
# Order states (xft.md): 00 paid, 01 failed, 03/04/05 refunds, 06 cancelled, 09 awaiting payment, 98 closed,
# 99 timed out. The ones that mean "this charge did not and will not go through":
FAILED_STATES = frozenset({"01", "06", "98", "99"})


class Unreadable(ValueError):
    """A request body the platform cannot read as XFT fields."""


def sign_fields(fields: dict[str, Any], key: str) -> dict[str, str]:
    """The flat body the platform sends: every value as text (objects as compact JSON text, xft.md
    "nested objects travel as JSON strings"), empty values left out, sign_type MD5, and `sign` over exactly
    those fields (sign_type included)."""
    body = {k: param_text(v) for k, v in fields.items() if k != "sign" and v not in ({}, [])}
    body = {k: v for k, v in body.items() if v != ""}  # "drop empty values": never sent, never signed
    body.setdefault("sign_type", SIGN_TYPE)
    body["sign"] = md5_sign(body, key)
    return body


def signature_ok(fields: dict[str, Any], key: str) -> bool:
    """sign_type MD5 and `sign` equal to the MD5 of the other fields (as received) with the key."""
    if fields.get("sign_type") != SIGN_TYPE:
        return False
    try:
        expected = md5_sign(fields, key)
    except TypeError:  # a float or another value with no agreed text: not something we signed
        return False
    return same_sign(expected, fields.get("sign"))


def read_fields(raw: bytes, content_type: str = "") -> dict[str, Any]:
    """A request body -> its top-level fields. JSON (an object, or a JSON string holding one) or, when the
    content type says so, application/x-www-form-urlencoded."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("body is not UTF-8") from None
    if "x-www-form-urlencoded" in content_type:
        try:
            return dict(urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                                               errors="strict"))
        except (ValueError, UnicodeDecodeError):
            raise Unreadable("form body is not name=value pairs") from None
    try:
        value = json.loads(text)
        if isinstance(value, str):
            value = json.loads(value)
    except ValueError:
        raise Unreadable("body is not JSON") from None
    if not isinstance(value, dict):
        raise Unreadable("body is not a JSON object")
    return value


def nested(value: Any, name: str = "extra") -> dict[str, Any]:
    """A nested object (`extra`), sent as its JSON text or as an object; {} when absent."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise Unreadable(f"{name} is not JSON") from None
    if not isinstance(value, dict):
        raise Unreadable(f"{name} is not a JSON object")
    return value


def xft_time_ok(value: Any) -> bool:
    """A time as seed 000 writes it: yyyyMMddHHmmss, and a real date."""
    if not isinstance(value, str) or len(value) != 14 or not value.isascii() or not value.isdigit():
        return False
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def fen(value: Any) -> int:
    """`amount`: whole fen as a string of ASCII digits (xft.md), a JSON integer tolerated."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    raise Unreadable(f"amount is not whole fen: {value!r}")


# ------------------------------------------------------------------------------------------ exit scripts

@dataclass(frozen=True)
class ExitScript:
    """How entrance/v2 behaves for one plate. Build with the functions below rather than by hand."""

    name: str = "success"
    is_allow: str = "SUCCESS"  # the entrance answer: SUCCESS | FAIL | INIT
    final_state: Optional[str] = "00"  # the order state once settled; None: awaiting payment (09) forever
    settle_after_s: float = 0.0  # INIT: query shows 09 until then
    notify: bool = True  # send a notify when the order settles
    notify_copies: int = 1  # >1: the same notify delivered again after it was acknowledged
    notify_first: bool = False  # settle and deliver the notify before the entrance answer goes out
    notify_signature: Literal["good", "bad"] = "good"
    notify_other_order: bool = False  # the notify names another order than this one
    answer_delay_s: float = 0.0
    http_status: int = 200  # != 200: answer with this status and a text body instead of an XFT answer
    order_created: bool = True  # with http_status != 200: whether the order exists behind the error
    failure_code: str = ""
    failure_msg: str = ""


def success() -> ExitScript:
    """SUCCESS, order 00 at once; the notify follows the answer (WeChat deducts after letting the car out)."""
    return ExitScript()


def fail(failure_code: str = "PAY_FAIL", failure_msg: str = "扣款失败") -> ExitScript:
    """FAIL: the platform will not charge this car; order 01, no notify."""
    return ExitScript("fail", "FAIL", "01", notify=False, failure_code=failure_code, failure_msg=failure_msg)


def init_then(state: str = "00", after_s: float = 0.2) -> ExitScript:
    """INIT; query shows 09 until after_s, then `state` (00 or 01) and the notify is sent."""
    code, msg = ("", "") if state == "00" else ("PAY_FAIL", "扣款失败")
    return ExitScript(f"init_then({state})", "INIT", state, after_s, failure_code=code, failure_msg=msg)


def init_forever() -> ExitScript:
    """INIT and the order awaits payment (09) for good; no notify."""
    return ExitScript("init_forever", "INIT", None, notify=False)


def duplicate_notify(copies: int = 3, state: str = "00", after_s: float = 0.0) -> ExitScript:
    """INIT, then the settle notify delivered `copies` times, each acknowledged (notifies repeat)."""
    return replace(init_then(state, after_s), name="duplicate_notify", notify_copies=copies)


def out_of_order_notify(state: str = "00") -> ExitScript:
    """The order settles and its notify reaches the lane while the lane still waits for the entrance answer
    (which then says INIT). What a real platform does is repeat notifies and race them with answers; it does
    not send a 01 after a 00, so neither does this."""
    return replace(init_then(state, 0.0), name="out_of_order_notify", notify_first=True)


def http_500(order_created: bool = False, state: str = "00") -> ExitScript:
    """entrance/v2 answers HTTP 500. With order_created the order exists behind the error and settles to
    `state` with its notify: the lane has to reconcile with query/charge/v2."""
    return replace(init_then(state, 0.0), name="http_500", http_status=500, order_created=order_created)


def slow(seconds: float, then: Optional[ExitScript] = None) -> ExitScript:
    """Answer after `seconds` (the lane's timeout decides), otherwise as `then` (success by default)."""
    base = then if then is not None else success()
    return replace(base, name=f"slow({seconds})+{base.name}", answer_delay_s=seconds)


def bad_signature_notify(state: str = "00") -> ExitScript:
    """INIT; the order settles (query shows it, signed right) but its notify carries a wrong signature."""
    return replace(init_then(state, 0.0), name="bad_signature_notify", notify_signature="bad")


def notify_other_order() -> ExitScript:
    """INIT; a good notify (00) arrives for an order that is not this one; this one stays 09."""
    return replace(init_forever(), name="notify_other_order", notify=True, notify_other_order=True)


SCRIPTS = {"success": success, "fail": fail, "init_then": init_then, "init_forever": init_forever,
           "duplicate_notify": duplicate_notify, "out_of_order_notify": out_of_order_notify,
           "http_500": http_500, "bad_signature_notify": bad_signature_notify,
           "notify_other_order": notify_other_order}


# ------------------------------------------------------------------------------------------ records

@dataclass
class Entry:
    out_trade_no: str
    plate: str
    start_time: str
    store_code: str


@dataclass
class Order:
    id: str
    out_trade_no: str
    third_trade_no: str
    plate: str
    amount_fen: int
    notify_url: str
    channel: str
    store_code: str
    script: ExitScript
    state: str = "09"


@dataclass
class NotifyAttempt:
    url: str
    out_trade_no: str  # as named in the notify
    state: str
    copy: int  # 1..notify_copies
    attempt: int  # 1..notify_attempts within one copy
    status: Optional[int]  # None: no HTTP answer (refused, timed out)
    answer: str  # the body the lane answered, or the transport error
    acked: bool
    body: bytes


# ------------------------------------------------------------------------------------------ the platform

@dataclass
class XftPlatform:
    key: str = "xft-test-key"
    app_id: Optional[str] = None  # when set, other app_ids are refused
    # seed 000: "channel为WECHAT时sub_openid和车牌号必传". A lane rarely knows the driver's sub_openid, so this is
    # off by default; on, a WECHAT relation query without one is PARAM_ERROR (sign_flag 0), as XFT may answer.
    require_sub_openid: bool = False
    answer_style: AnswerStyle = "flat"
    answer_signature: Literal["good", "bad", "none"] = "good"
    default_script: ExitScript = field(default_factory=success)
    notify_format: Literal["json", "form"] = "json"
    notify_attempts: int = 5
    notify_interval_s: float = 0.2
    notify_timeout_s: float = 2.0
    relation_delay_s: float = 0.0  # fault: query/signed/relation/v2 answers this late
    port: int = 0
    # state, readable by tests
    scripts: dict[str, ExitScript] = field(default_factory=dict)  # normalized plate -> script
    signed: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # plate -> (channel, plates)
    entries: dict[str, Entry] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    notifies: list[NotifyAttempt] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)  # call name -> requests
    relation_requests: list[dict[str, Any]] = field(default_factory=list)  # fields + extra as received
    sign_errors: int = 0
    param_errors: int = 0
    not_signed: int = 0
    entry_repeats: int = 0
    exit_repeats: int = 0
    http_errors: int = 0
    _runner: Optional[web.AppRunner] = None
    _session: Optional[aiohttp.ClientSession] = None
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _stopping: Optional[asyncio.Event] = None
    _seq: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{BASE_PATH}"

    # -- set-up by tests

    def sign_plate(self, *plates: str, channel: str = "WECHAT") -> None:
        """One user signed up on `channel` with these plates (the relation answer lists them all)."""
        group = tuple(plate_key(p) for p in plates)
        for p in group:
            self.signed[p] = (channel, group)

    def unsign_plate(self, plate: str) -> None:
        self.signed.pop(plate_key(plate), None)

    def script(self, plate: str, script: ExitScript) -> None:
        self.scripts[plate_key(plate)] = script

    def acked_notifies(self, out_trade_no: Optional[str] = None) -> list[NotifyAttempt]:
        return [n for n in self.notifies if n.acked and out_trade_no in (None, n.out_trade_no)]

    async def idle(self, timeout: float = 2.0) -> None:
        """Wait until every settle / notify task has finished (init_forever starts none)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    # -- life cycle

    async def start(self, port: int = 0) -> None:
        self._stopping = asyncio.Event()
        self._session = aiohttp.ClientSession()
        app = web.Application()
        for name, path in PATHS.items():
            app.router.add_post(BASE_PATH + path, self._handler(name))
        app.router.add_post(CONTROL_PUSH, self._control_push)
        # a short shutdown: a handler still inside a slow() answer must not hold stop() for a minute
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # slow answers return now instead of holding the shutdown
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="xft-emulator-notify")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- callbacks on demand

    async def push_notify(self, fields: dict[str, Any], url: Optional[str] = None, *,
                          signature: Literal["good", "bad", "none"] = "good", attempts: int = 1,
                          fmt: Optional[Literal["json", "form"]] = None) -> list[NotifyAttempt]:
        """Send one notify now, whatever it says. When `out_trade_no` names an order of this platform, the
        order fills what `fields` leaves out (third_trade_no, store_code, amount, channel, state, and the
        notify_url when `url` is None). Signed with the merchant key ("good"), another key ("bad"), or not
        at all ("none"). Returns the attempts made (retried until SUCCESS, at most `attempts`)."""
        order = self.orders.get(str(fields.get("out_trade_no") or ""))
        if order is not None:
            fields = {"third_trade_no": order.third_trade_no, "store_code": order.store_code,
                      "amount": str(order.amount_fen), "channel": order.channel, "state": order.state, **fields}
            url = url or order.notify_url
        if not url:
            raise ValueError("no url, and out_trade_no names no order of this platform")
        body = sign_fields(notify_fields(**fields), self.key if signature != "bad" else self.key + "-wrong")
        if signature == "none":
            del body["sign"]
        before = len(self.notifies)
        await self._deliver(url, body, 1, attempts=attempts, fmt=fmt)
        return self.notifies[before:]

    async def _control_push(self, request: web.Request) -> web.Response:
        """POST /__control__/push {"callback": "notify", "fields": {...}, "url"?, "signature"?, "attempts"?,
        "format"?} -> {"sent": {signed fields}, "acked": bool, "attempts": [{status, answer, acked}]}."""
        try:
            spec = json.loads(await request.read())
            if not isinstance(spec, dict) or spec.get("callback", "notify") != "notify":
                raise ValueError('XFT has one callback: {"callback": "notify", "fields": {...}}')
            fields = spec.get("fields", {})
            if not isinstance(fields, dict):
                raise ValueError("fields must be an object")
            signature = spec.get("signature", "good")
            fmt = spec.get("format")
            if signature not in ("good", "bad", "none") or fmt not in (None, "json", "form"):
                raise ValueError("signature is good | bad | none, format json | form")
            tried = await self.push_notify(fields, spec.get("url"), signature=signature,
                                           attempts=max(1, int(spec.get("attempts", 1))), fmt=fmt)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        sent = json.loads(tried[0].body) if tried and tried[0].body.startswith(b"{") else (
            dict(urllib.parse.parse_qsl(tried[0].body.decode())) if tried else {})
        return web.json_response({"url": tried[0].url if tried else None, "sent": sent,
                                  "acked": any(t.acked for t in tried),
                                  "attempts": [{"status": t.status, "answer": t.answer, "acked": t.acked}
                                               for t in tried]}, dumps=compact_json)

    # -- answers

    def _answer(self, fields: dict[str, Any]) -> web.Response:
        data: dict[str, Any] = sign_fields(fields, self.key if self.answer_signature == "good"
                                           else self.key + "!")
        if self.answer_signature == "none":
            del data["sign"]
        if self.answer_style == "flat":
            body: dict[str, Any] = data
        else:
            inner = data if self.answer_style == "wrapped" else compact_json(data)
            body = {"code": "0000", "message": "SUCCESS", "result": "SUCCESS", "data": inner}
        return web.Response(body=compact_json(body).encode(), content_type="application/json")

    def _unreadable(self, reason: str) -> web.Response:
        self.param_errors += 1
        if self.answer_style == "flat":
            return self._answer({"failure_code": "PARAM_ERROR", "failure_msg": reason})
        body = {"code": "4000", "message": reason, "result": "FAIL", "data": None}
        return web.Response(body=compact_json(body).encode(), content_type="application/json")

    def _handler(self, name: str):
        handle = getattr(self, f"_{name}")

        async def handler(request: web.Request) -> web.Response:
            self.calls[name] += 1
            try:
                fields = read_fields(await request.read(), request.content_type)
                extra = nested(fields.get("extra"))
            except Unreadable as exc:
                return self._unreadable(str(exc))
            refusal = self._check(fields)
            if refusal is not None:
                return self._answer({**_NEGATIVE[name], **refusal})
            return await handle(fields, extra)
        return handler

    def _check(self, fields: dict[str, Any]) -> Optional[dict[str, str]]:
        if not signature_ok(fields, self.key):
            self.sign_errors += 1
            return {"failure_code": "SIGN_ERROR", "failure_msg": "签名错误"}
        if self.app_id is not None and fields.get("app_id") != self.app_id:
            return {"failure_code": "APP_ID_ERROR", "failure_msg": "app_id 不存在"}
        return None

    def _illegal(self, name: str, why: str) -> dict[str, str]:
        self.param_errors += 1
        return {**_NEGATIVE[name], "failure_code": "PARAM_ERROR", "failure_msg": why}

    def _missing(self, name: str, what: str) -> dict[str, str]:
        self.param_errors += 1
        return {**_NEGATIVE[name], "failure_code": "PARAM_ERROR", "failure_msg": f"缺少参数 {what}"}

    # -- the four calls

    async def _signed_relation(self, fields: dict[str, Any], extra: dict[str, Any]) -> web.Response:
        self.relation_requests.append({**fields, "extra": extra})
        if self.relation_delay_s and self._stopping is not None:
            try:
                await asyncio.wait_for(self._stopping.wait(), self.relation_delay_s)
                return web.Response(status=503, text="shutting down")
            except TimeoutError:
                pass
        plate = plate_key(str(extra.get("plate_number") or ""))
        if not plate:
            return self._answer(self._missing("signed_relation", "plate_number"))
        channel = str(fields.get("channel") or "")
        if self.require_sub_openid and channel == "WECHAT" and not extra.get("sub_openid"):
            return self._answer(self._missing("signed_relation", "sub_openid"))
        user = self.signed.get(plate)
        if user is None or (channel and channel != user[0]):
            return self._answer({"sign_flag": "0", "channel": channel, "plate_number": plate})
        credential = {"path": "pages/parking/auth", "wx_sub_mch_id": "1900000109"} if user[0] == "WECHAT" else {}
        return self._answer({"sign_flag": "1", "channel": user[0], "plate_number": ";".join(user[1]),
                             "credential": credential})

    async def _entry(self, fields: dict[str, Any], extra: dict[str, Any]) -> web.Response:
        out_trade_no = str(fields.get("out_trade_no") or "")
        plate = plate_key(str(extra.get("plate_number") or ""))
        for name, value in (("out_trade_no", out_trade_no), ("plate_number", plate),
                            ("start_time", extra.get("start_time"))):
            if not value:
                return self._answer(self._missing("entry", name))
        if not xft_time_ok(extra["start_time"]):
            return self._answer(self._illegal("entry", f"start_time is not yyyyMMddHHmmss: {extra['start_time']!r}"))
        store_code = str(fields.get("store_code") or "")
        if out_trade_no in self.entries:
            self.entry_repeats += 1
        else:
            self.entries[out_trade_no] = Entry(out_trade_no, plate, str(extra["start_time"]), store_code)
        return self._answer({"state": "1", "store_code": store_code, "plate_number": plate})

    async def _exit(self, fields: dict[str, Any], extra: dict[str, Any]) -> web.Response:
        out_trade_no = str(fields.get("out_trade_no") or "")
        plate = plate_key(str(extra.get("plate_number") or ""))
        for name, value in (("out_trade_no", out_trade_no), ("amount", fields.get("amount")),
                            ("notify_url", fields.get("notify_url")), ("plate_number", plate)):
            if not value:
                return self._answer(self._missing("exit", name))
        for name in ("start_time", "end_time"):
            if name in extra and not xft_time_ok(extra[name]):
                return self._answer({**self._illegal("exit", f"{name} is not yyyyMMddHHmmss: {extra[name]!r}"),
                                     "out_trade_no": out_trade_no})
        try:
            amount = fen(fields["amount"])
        except Unreadable as exc:
            amount, reason = 0, str(exc)
        else:
            reason = "amount must be > 0"
        if amount <= 0:
            self.param_errors += 1
            return self._answer({**_NEGATIVE["exit"], "out_trade_no": out_trade_no, "failure_code": "PARAM_ERROR",
                                 "failure_msg": reason})
        channel = str(fields.get("channel") or "")
        known = self.orders.get(out_trade_no)
        if known is not None:
            return self._repeat_exit(known, amount)
        user = self.signed.get(plate)
        if user is None or (channel and channel != user[0]):
            self.not_signed += 1
            return self._answer({"out_trade_no": out_trade_no, "is_allow": "FAIL", "channel": channel,
                                 "failure_code": "NOT_SIGNED", "failure_msg": "车牌未开通无感支付"})
        script = self.scripts.get(plate, self.default_script)
        if script.answer_delay_s and self._stopping is not None:
            try:
                await asyncio.wait_for(self._stopping.wait(), script.answer_delay_s)
                return web.Response(status=503, text="shutting down")
            except TimeoutError:
                pass
        self._seq += 1
        order = Order(f"XFT{self._seq:08d}", out_trade_no, f"42000{self._seq:010d}", plate, amount,
                      str(fields["notify_url"]), channel or user[0], str(fields.get("store_code") or ""), script)
        if script.http_status != 200:
            self.http_errors += 1
            if script.order_created:
                self.orders[out_trade_no] = order
                self._spawn(self._settle(order))
            return web.Response(status=script.http_status, text="Internal Server Error")
        self.orders[out_trade_no] = order
        if script.is_allow == "SUCCESS":
            order.state = script.final_state or "00"
        elif script.is_allow == "FAIL":
            order.state = script.final_state or "01"
        if script.notify_first:
            await self._settle(order)
        elif script.is_allow == "INIT" or script.notify:
            self._spawn(self._settle(order))
        return self._answer(self._exit_fields(order, script.is_allow))

    def _repeat_exit(self, order: Order, amount: int) -> web.Response:
        self.exit_repeats += 1
        if amount != order.amount_fen:
            return self._answer({"out_trade_no": order.out_trade_no, "is_allow": "FAIL",
                                 "failure_code": "OUT_TRADE_NO_USED", "failure_msg": "订单号重复"})
        is_allow = {"00": "SUCCESS", "01": "FAIL"}.get(order.state, "INIT")
        return self._answer(self._exit_fields(order, is_allow))

    def _exit_fields(self, order: Order, is_allow: str) -> dict[str, Any]:
        failed = is_allow == "FAIL"
        return {"out_trade_no": order.out_trade_no, "is_allow": is_allow, "channel": order.channel,
                "third_trade_no": "" if order.channel == "WECHAT" else order.third_trade_no,
                "failure_code": order.script.failure_code if failed else "",
                "failure_msg": order.script.failure_msg if failed else ""}

    async def _charge_query(self, fields: dict[str, Any], extra: dict[str, Any]) -> web.Response:
        out_trade_no = str(fields.get("out_trade_no") or "")
        if not out_trade_no:
            return self._answer(self._missing("charge_query", "out_trade_no"))
        order = self.orders.get(out_trade_no)
        third = fields.get("third_trade_no")
        if order is None or (third and third != order.third_trade_no):
            return self._answer({"out_trade_no": out_trade_no, "failure_code": "ORDER_NOT_EXIST",
                                 "failure_msg": "订单不存在"})
        settled = order.state != "09"
        failed = order.state in FAILED_STATES
        return self._answer({
            "id": order.id, "out_trade_no": order.out_trade_no, "amount": str(order.amount_fen),
            "state": order.state, "payer_id": f"oUser{order.plate.encode().hex()[:12]}" if settled else "",
            "channel": order.channel, "store_code": order.store_code, "subject": "停车费",
            "third_trade_no": order.third_trade_no if settled else "",
            "failure_code": order.script.failure_code if failed else "",
            "failure_msg": order.script.failure_msg if failed else ""})

    # -- settling and notifies

    async def _settle(self, order: Order) -> None:
        script = order.script
        if script.settle_after_s:
            await asyncio.sleep(script.settle_after_s)
        if script.final_state is not None:
            order.state = script.final_state
        if not script.notify:
            return
        named = order.out_trade_no if not script.notify_other_order else f"{order.out_trade_no[:58]}_OTHER"
        state = order.state if not script.notify_other_order else "00"
        failed = state in FAILED_STATES
        fields = notify_fields(out_trade_no=named, state=state, amount=str(order.amount_fen),
                               third_trade_no=order.third_trade_no, store_code=order.store_code,
                               channel=order.channel, failure_code=script.failure_code if failed else "",
                               failure_msg=script.failure_msg if failed else "", body="停车费", subject="停车费")
        key = self.key if script.notify_signature == "good" else self.key + "-wrong"
        for copy in range(1, script.notify_copies + 1):
            await self._deliver(order.notify_url, sign_fields(fields, key), copy)

    async def _deliver(self, url: str, fields: dict[str, str], copy: int, *, attempts: Optional[int] = None,
                       fmt: Optional[str] = None) -> bool:
        """POST one notify until the lane answers SUCCESS or the attempts run out."""
        attempts = self.notify_attempts if attempts is None else attempts
        if (fmt or self.notify_format) == "form":
            body, ctype = _form(fields).encode(), "application/x-www-form-urlencoded"
        else:
            body, ctype = compact_json(fields).encode(), "application/json"
        assert self._session is not None
        for attempt in range(1, attempts + 1):
            status: Optional[int] = None
            try:
                async with self._session.post(url, data=body, headers={"Content-Type": ctype},
                                              timeout=aiohttp.ClientTimeout(total=self.notify_timeout_s)) as r:
                    status, answer = r.status, await r.text(errors="replace")
            except (aiohttp.ClientError, TimeoutError) as exc:
                answer = f"{type(exc).__name__}: {exc}"
            acked = status is not None and 200 <= status < 300 and answer.strip().upper() == "SUCCESS"
            self.notifies.append(NotifyAttempt(url, fields.get("out_trade_no", ""), fields.get("state", ""), copy,
                                               attempt,
                                               status, answer, acked, body))
            if acked:
                return True
            if attempt < attempts:
                await asyncio.sleep(self.notify_interval_s)
        return False


# What each call answers besides failure_code when it refuses: never anything that reads as success.
_NEGATIVE: dict[str, dict[str, str]] = {
    "signed_relation": {"sign_flag": "0"},
    "entry": {"state": "0"},
    "exit": {"is_allow": "FAIL"},
    "charge_query": {},
}


def notify_fields(**fields: Any) -> dict[str, Any]:
    """The async notify's fields (seed 000 异步通知: out_trade_no, third_trade_no, store_code, body, channel,
    amount, subject, description, failure_code, failure_msg, state), unsigned; sign with sign_fields."""
    return {k: v for k, v in fields.items() if v not in (None, "")}


def _form(fields: dict[str, str]) -> str:
    def enc(text: str) -> str:
        return "".join(c if c.isascii() and (c.isalnum() or c in "-_.~") else
                       "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in text)
    return "&".join(f"{enc(k)}={enc(v)}" for k, v in fields.items())


async def _main(args: argparse.Namespace) -> None:
    make = SCRIPTS[args.default]
    platform = XftPlatform(key=args.key, answer_style=args.answer_style, default_script=make(),
                           notify_interval_s=args.notify_interval)
    for plate in args.sign_plate:
        platform.sign_plate(plate)
    await platform.start(args.port)
    print(f"XFT platform listening on {platform.url} (default exit: {platform.default_script.name})", flush=True)
    try:
        while True:
            await asyncio.sleep(5)
            print(json.dumps({"calls": dict(platform.calls), "orders": len(platform.orders),
                              "notifies": len(platform.notifies), "sign_errors": platform.sign_errors},
                             ensure_ascii=False), flush=True)
    finally:
        await platform.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8792)
    ap.add_argument("--key", required=True, help="the merchant key both sides sign with")
    ap.add_argument("--answer-style", choices=["flat", "wrapped", "wrapped_text"], default="flat")
    ap.add_argument("--sign-plate", action="append", default=[], help="a plate signed up on WECHAT (repeat)")
    ap.add_argument("--default", choices=sorted(SCRIPTS), default="success", help="exit script for every plate")
    ap.add_argument("--notify-interval", type=float, default=2.0, help="seconds between notify retries")
    try:
        asyncio.run(_main(ap.parse_args()))
    except KeyboardInterrupt:
        pass
