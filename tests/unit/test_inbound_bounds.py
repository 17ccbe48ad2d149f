"""Issue 14: a correctly signed callback whose amount is absurd, not decimal or of the wrong type is refused in
the platform's own error form (Bolink state 0 + errmsg, XFT FAIL, tdzn code != 200) — never stored, never
applied, never an exception out of the handler (which the listener would answer 500)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lanectl.providers.bolink.inbound import BolinkInbound
from lanectl.providers.tdzn.inbound import TdznInbound
from lanectl.providers.xft.inbound import XftInbound
from tests.fakes import FakeClock, SettlementResults

TZ = ZoneInfo("Asia/Shanghai")
CEILING = 10_000_000
BOLINK_KEY, XFT_KEY, TDZN_KEY, TDZN_PID = "0123456789ABCDEF", "k3y", "45DC1F8604F940829E75D6A76595C299", "123456"


class Inbox:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool:
        self.rows.append((provider, key))
        return True

    async def set_mark(self, *a, **kw) -> None:
        raise AssertionError("nothing may be marked")

    async def add_prepayment(self, *a, **kw) -> str:
        raise AssertionError("nothing may be kept as paid ahead")


async def no_quote(*a):
    return None


async def no_release(*a):
    raise AssertionError("nothing may be released")


# Bolink signs DATA + "key=" + KEY (bolink.md); written here so the test does not lean on the codec under test
def bolink_body(data_text: str) -> bytes:
    sign = hashlib.md5((data_text + "key=" + BOLINK_KEY).encode()).hexdigest().upper()
    return ('{"union_id":200208,"sign":"%s","data":%s}' % (sign, data_text)).encode()


def outpark(total_json: str) -> bytes:
    return bolink_body('{"service_name":"outpark","state":1,"order_id":"out1_1","trade_no":"T1","total":%s,'
                       '"pay_type":"wallet"}' % total_json)


BAD_YUAN = ['"' + "9" * 5000 + '"', "1" + "0" * 4000, '"100000.01"', "100001", '"1e3"', '"-1"', "-1", '"NaN"',
            '"Infinity"', "true", "null", '["7"]', '{"v":"7"}', '"7.001"', '"seven"', '"\u0667"', "1E+400"]


@pytest.mark.parametrize("total", BAD_YUAN, ids=lambda t: t[:12])
async def test_bolink_outpark_with_a_bad_total_is_state_0_with_errmsg(total):
    store, results = Inbox(), SettlementResults()
    inbound = BolinkInbound(BOLINK_KEY, "21835", store, results, FakeClock(), lanes_by_channel={},
                            quote=no_quote, max_fen=CEILING)
    answer = json.loads(await inbound.handle_body(outpark(total)))
    assert answer["state"] == 0 and answer["errmsg"], answer
    assert len(answer["errmsg"]) <= 200
    assert store.rows == [] and results.calls == []
    assert inbound.counts["malformed"] == 1


async def test_bolink_outpark_at_the_ceiling_is_accepted():
    store, results = Inbox(), SettlementResults()
    inbound = BolinkInbound(BOLINK_KEY, "21835", store, results, FakeClock(), lanes_by_channel={},
                            quote=no_quote, max_fen=CEILING)
    answer = json.loads(await inbound.handle_body(outpark('"100000.00"')))
    assert answer["state"] == 1
    assert results.calls[0][2].amount_fen == CEILING


@pytest.mark.parametrize("pay_time", ["1" + "0" * 18, "253402300800", '"99999999999999999"'])
async def test_bolink_prepay_with_a_pay_time_no_clock_can_hold_is_refused(pay_time):
    store = Inbox()
    inbound = BolinkInbound(BOLINK_KEY, "21835", store, None, FakeClock(), lanes_by_channel={}, quote=no_quote)
    body = bolink_body('{"service_name":"prepay_order","order_id":"in1_1","trade_no":"P1","prepay":"5.00",'
                       '"pay_time":%s}' % pay_time)
    answer = json.loads(await inbound.handle_body(body))
    assert answer["state"] == 0 and answer["errmsg"]
    assert store.rows == []


def xft_notify(amount: object) -> bytes:
    fields = {"out_trade_no": "out1_1", "state": "00", "amount": amount, "sign_type": "MD5"}
    text = "&".join(f"{k}={v}" for k, v in sorted(fields.items())) + "&key=" + XFT_KEY  # xft.md signing
    fields["sign"] = hashlib.md5(text.encode()).hexdigest().upper()
    return json.dumps(fields).encode()


@pytest.mark.parametrize("amount", ["9" * 5000, 10 ** 4000, "10000001", 10_000_001, "7.00", "-1", -1, "1e3",
                                    True, "NaN"], ids=lambda a: repr(a)[:12])
async def test_xft_notify_with_a_bad_amount_is_fail(amount):
    store, results = Inbox(), SettlementResults()
    inbound = XftInbound(XFT_KEY, store, results, FakeClock(), require_signature=True, max_fen=CEILING)
    assert await inbound.handle_body(xft_notify(amount), "application/json") == (b"FAIL", "text/plain")
    assert store.rows == [] and results.calls == []


async def test_xft_notify_at_the_ceiling_is_success():
    store, results = Inbox(), SettlementResults()
    inbound = XftInbound(XFT_KEY, store, results, FakeClock(), require_signature=True, max_fen=CEILING)
    assert (await inbound.handle_body(xft_notify("10000000"), "application/json"))[0] == b"SUCCESS"
    assert results.calls[0][2].amount_fen == CEILING


def tdzn_body(biz: dict, timestamp: int) -> bytes:
    params = {"pid": TDZN_PID, "serviceName": "payNotify", "timestamp": timestamp,
              "bizContent": json.dumps(biz, ensure_ascii=False, separators=(",", ":"))}
    text = "&".join(f"{k}={params[k]}" for k in sorted(params)) + "&key=" + TDZN_KEY  # tdzn.md 2.2
    params["sign"] = hashlib.md5(text.encode()).hexdigest().upper()
    return json.dumps(params, ensure_ascii=False).encode()


PAY = {"parkCode": "P1", "orderNo": "TC1", "payTime": "2024-03-01 08:00:00", "type": 1, "recordNo": "out1_1",
       "paidFee": 700, "payType": 1}


def tdzn_inbound(store: Inbox, results: SettlementResults, clock: FakeClock) -> TdznInbound:
    return TdznInbound(TDZN_KEY, TDZN_PID, "P1", store, results, clock, TZ, window_s=300, lanes_by_channel={},
                       quote=no_quote, release=no_release, max_fen=CEILING)


@pytest.mark.parametrize("fee", [10 ** 4000, "9" * 5000, 10_000_001, "10000001", "7.00", "-1", True, None, [7],
                                 {"fen": 7}], ids=lambda a: repr(a)[:12])
async def test_tdzn_pay_notify_with_a_bad_fee_is_a_refusal_code(fee):
    store, results, clock = Inbox(), SettlementResults(), FakeClock()
    inbound = tdzn_inbound(store, results, clock)
    answer = json.loads(await inbound.handle_body(tdzn_body(dict(PAY, paidFee=fee), int(clock.now().timestamp()))))
    assert answer["code"] in (400, 402) and answer["msg"], answer
    assert store.rows == [] and results.calls == [] and inbound.counts["error"] == 0


async def test_tdzn_signed_timestamp_too_big_for_a_float_is_402_not_a_server_error():
    store, results, clock = Inbox(), SettlementResults(), FakeClock()
    inbound = tdzn_inbound(store, results, clock)
    answer = json.loads(await inbound.handle_body(tdzn_body(PAY, 10 ** 400)))
    assert answer["code"] == 402 and inbound.counts["error"] == 0


async def test_tdzn_pay_notify_at_the_ceiling_is_200():
    store, results, clock = Inbox(), SettlementResults(), FakeClock()
    inbound = tdzn_inbound(store, results, clock)
    answer = json.loads(await inbound.handle_body(tdzn_body(dict(PAY, paidFee=CEILING),
                                                            int(clock.now().timestamp()))))
    assert answer["code"] == 200 and results.calls[0][2].amount_fen == CEILING
