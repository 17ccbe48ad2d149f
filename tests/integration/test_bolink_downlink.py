"""Bolink SDK HTTP mode end to end: the lane's downlink client against the platform emulator with the park in
"http_mode" (long-poll download.do, replies as upload.do), wired to the real BolinkInbound handlers and a
real SQLite store. The client must log in, deliver each message once to the handlers, upload their replies,
pace itself when the server does not hold, log in again when its token dies, back off while the platform is
down, and shrug off forged messages."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any, Awaitable, Callable, Optional
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from hil.emulators import bolink as emu
from lanectl.providers.bolink.downlink import BolinkDownlink
from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.config.base import SecretRef
from lanectl.providers.bolink.config import BolinkConfig
from lanectl.providers.bolink import codec as bl
from lanectl.providers.bolink.inbound import BolinkInbound, PriceQuote
from tests.fakes import SettlementResults as Results

TZ = ZoneInfo("Asia/Shanghai")
CLOCK = SystemClock(TZ)
KEY = "8403A41ED5EF20BC"
PARK = "21835"
PLATE = "粤B12345"
UPLOAD = bl.HTTP_MODE_PATHS["upload"]


async def eventually(pred: Callable[[], Any], timeout: float = 2.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


class Rig:
    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.results = Results()
        self.quotes: dict[str, PriceQuote] = {}
        self.task: Optional[asyncio.Task[None]] = None

    async def start(self, *, hold_s: float = 0.3, union_id: Optional[int] = None,
                    handle: Optional[Callable[[bl.SignedMessage], Awaitable[Optional[bytes]]]] = None,
                    **downlink: Any) -> "Rig":
        self.store = SqliteStore(self.tmp_path / "lanectl.db", destinations=["bolink"])
        await self.store.open()
        self.platform = emu.BolinkPlatform(key=KEY, hold_s=hold_s, ack_timeout_s=0.4, push_interval_s=0.05,
                                           push_attempts=2)
        self.platform.downlink[PARK] = "http_mode"
        await self.platform.start()
        self.cfg = BolinkConfig(base_url=self.platform.url, union_id=union_id or self.platform.union_id,
                                park_id=PARK, key=SecretRef(env="UNUSED"), downlink="http_mode", timeout_s=1.0)
        self.session = aiohttp.ClientSession()
        self.inbound = BolinkInbound(KEY, PARK, self.store, self.results, CLOCK,
                                     lanes_by_channel={"A1": "out1"}, quote=self._quote)
        self.downlink = BolinkDownlink(self.cfg, KEY, self.session, handle or self.inbound.handle_message,
                                       **downlink)
        self.task = asyncio.create_task(self.downlink.run(), name="bolink-downlink")
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.platform.stop()
        await self.session.close()
        await self.store.close()

    async def _quote(self, plate: str, order_id: str, channel: str) -> Optional[PriceQuote]:
        return self.quotes.get(plate or order_id)

    async def logged_in(self) -> None:
        await eventually(lambda: self.downlink.status()["logged_in"] and self.platform.polls > 0, what="login")

    def replies(self, service_name: str) -> list[emu.Upload]:
        return [u for u in self.platform.uploads if u.path == f"{UPLOAD}:{service_name}"]


@pytest.fixture
async def make_rig(tmp_path):
    rigs: list[Rig] = []

    async def make(**kw: Any) -> Rig:
        rig = Rig(tmp_path)  # one rig per test
        rigs.append(rig)
        return await rig.start(**kw)
    yield make
    for r in rigs:
        await r.stop()


async def test_login_then_a_balance_notice_marks_the_plate_without_a_reply(make_rig):
    rig = await make_rig()
    await rig.logged_in()
    login = rig.replies("login")[0]
    assert login.data == {"union_id": str(rig.platform.union_id), "park_id": PARK, "local_id": PARK}
    # in HTTP mode the platform's 5.2 is update_balance
    [push] = await rig.platform.push_notice_car_owner(PARK, PLATE, is_union_user=1)
    assert push.service_name == "update_balance" and push.transport == "http_mode"
    await eventually(lambda: rig.store.mark("bolink", PLATE, "signfree"), what="sign-free mark")
    assert await rig.store.mark("bolink", PLATE, "signfree") == "1"
    await asyncio.sleep(0.1)
    assert not rig.replies("update_balance"), "update_balance is never answered"
    st = rig.downlink.status()
    assert st["messages"] == 1 and st["replies"] == 0 and st["failures"] == 0 and st["last_error"] is None


async def test_query_price_is_answered_through_upload(make_rig):
    rig = await make_rig()
    rig.quotes[PLATE] = PriceQuote("in1_1", 700, 700, CLOCK.now() - timedelta(hours=3), 180)
    await rig.logged_in()
    # the emulator matches a reply to its question by query_order_no (scenes 1/2) or order_id
    push = await rig.platform.push_query_price(PARK, pay_scene=1, car_number=PLATE, out_channel_id="A1")
    assert push.acked and (push.answer["state"], push.answer["price"], push.answer["order_id"]) == (1, "7.00",
                                                                                                    "in1_1")
    assert push.answer["query_order_no"] == push.data["query_order_no"]
    unknown = await rig.platform.push_query_price(PARK, car_number="粤B99999", order_id="in9_9")
    assert unknown.answer["state"] == 0 and unknown.answer["errmsg"] == bl.ERR_NO_SUCH_ORDER
    up = rig.replies("query_price")
    assert len(up) == 2 and all("data_target" not in u.data for u in up), "HTTP mode sends no data_target"
    assert all(u.answer["state"] == 1 for u in up)  # type: ignore[index]
    await eventually(lambda: rig.downlink.status()["replies"] == 2, what="both replies counted")


async def test_a_pushed_outpark_reaches_settlement_and_is_acknowledged(make_rig):
    rig = await make_rig()
    await rig.logged_in()
    pushes = await rig.platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, trade_no="T1")
    assert [p.acked for p in pushes] == [True], "answered on the first delivery"
    assert pushes[0].answer == {"service_name": "outpark", "state": 1, "errmsg": "", "trade_no": "T1",
                                "order_id": "in1_1", "park_id": PARK}  # park_id: the emulator adds it from login
    [(provider, order_ref, answer, lane)] = rig.results.calls
    assert (provider, order_ref, answer.status, answer.trade_no, answer.amount_fen) == ("bolink", "in1_1", "paid",
                                                                                        "T1", 700)
    # a re-delivery (as after a lost reply) is answered again and changes nothing
    again = await rig.platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, trade_no="T1")
    assert again[-1].acked and len(rig.results.calls) == 1


async def test_a_server_that_does_not_hold_is_not_hammered(make_rig):
    rig = await make_rig(hold_s=0.0)  # "no message" answered at once, like a misbehaving platform
    await rig.logged_in()
    before = rig.platform.polls
    await asyncio.sleep(1.0)
    polls = rig.platform.polls - before
    assert 1 <= polls <= 3, f"{polls} polls in 1 s"
    assert rig.downlink.status()["failures"] == 0


async def test_a_dead_token_leads_to_a_new_login(make_rig):
    rig = await make_rig(min_poll_interval_s=0.3)
    await rig.logged_in()
    assert rig.platform.logins == 1
    rig.platform._tokens.clear()  # the platform forgot us (restart, expiry)
    await eventually(lambda: rig.platform.logins == 2 and rig.downlink.status()["logged_in"], what="re-login")
    rig.quotes[PLATE] = PriceQuote("in1_1", 500, 500, None, 60)
    push = await rig.platform.push_query_price(PARK, car_number=PLATE, order_id="in1_1")
    assert push.acked, "the new token works"
    assert rig.downlink.status()["failures"] == 0


async def test_platform_down_backs_off_logs_once_and_recovers(make_rig, caplog):
    caplog.set_level(logging.INFO, logger="lanectl.bolink")
    rig = await make_rig(min_poll_interval_s=0.1, backoff_initial_s=0.05, backoff_max_s=0.4)
    await rig.logged_in()
    port = rig.platform.port
    await rig.platform.stop()
    await eventually(lambda: rig.downlink.status()["failures"] >= 1, what="first failure")
    first = rig.downlink.status()["failures"]
    await asyncio.sleep(0.8)
    failing = rig.downlink.status()
    assert 1 <= failing["failures"] - first <= 8, "backs off, does not hammer"
    assert failing["failing"] and failing["last_error"]
    await rig.platform.start(port)
    await eventually(lambda: not rig.downlink.status()["failing"], timeout=1.5, what="recovery")
    msgs = [r.getMessage() for r in caplog.records]
    assert len([m for m in msgs if "downlink failing" in m]) == 1, "one line when it starts failing"
    assert len([m for m in msgs if "downlink recovered" in m]) == 1, "one line when it recovers"
    push = await rig.platform.push_query_price(PARK, car_number=PLATE, order_id="in1_1")
    assert push.answer["state"] == 0 and push.answer["errmsg"] == bl.ERR_NO_SUCH_ORDER  # answered again


async def test_a_refused_login_backs_off(make_rig, caplog):
    caplog.set_level(logging.INFO, logger="lanectl.bolink")
    rig = await make_rig(union_id=999, backoff_initial_s=0.05, backoff_max_s=0.4)  # the platform knows no 999
    await asyncio.sleep(0.8)
    st = rig.downlink.status()
    assert not st["logged_in"] and 2 <= st["failures"] <= 10 and "厂商编号错误" in st["last_error"]
    assert rig.platform.polls == 0
    assert len([r for r in caplog.records if "downlink failing" in r.getMessage()]) == 1


async def test_a_forged_message_is_counted_not_handled_not_answered(make_rig):
    rig = await make_rig(min_poll_interval_s=0.3)  # the client also paces after a refused message
    await rig.logged_in()
    pushes = await rig.platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, trade_no="F1",
                                             key="0000000000000000")
    assert pushes and all(p.answer == "no reply" for p in pushes), "no reply to a forged message"
    st = rig.downlink.status()
    assert st["bad_signature"] == len(pushes) and st["messages"] == 0
    assert not rig.results.calls and not rig.replies("outpark")
    assert not rig.task.done(), "the downlink keeps running"
    ok = await rig.platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, trade_no="T2")
    assert ok[-1].acked and len(rig.results.calls) == 1


async def test_a_failing_handler_does_not_stop_the_downlink(make_rig):
    calls: list[str] = []

    async def broken(msg: bl.SignedMessage) -> Optional[bytes]:
        calls.append(msg.service_name)
        if len(calls) == 1:
            raise RuntimeError("disk full")
        return bl.answer_outpark(msg.data["trade_no"], msg.data["order_id"])

    rig = await make_rig(handle=broken)
    await rig.logged_in()
    pushes = await rig.platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, trade_no="T3")
    assert [p.acked for p in pushes] == [False, True], "unanswered, re-delivered, then answered"
    await eventually(lambda: rig.downlink.status()["replies"] == 1, what="reply counted")
    st = rig.downlink.status()
    assert st["failures"] == 1 and "disk full" in st["last_error"] and calls == ["outpark", "outpark"]
