"""`lanectl sign`: the published vectors, a hand-computed XFT signature, --verify, and clear usage errors."""

from __future__ import annotations

import hashlib
import json

import pytest

from lanectl.cli import main

BOLINK_DATA = '{"union_id":"200208","park_id":"21835","local_id":"0071cc97102b_1001_qh321_quanhao-atest1"}'
BOLINK_KEY = "8403A41ED5EF20BC"
BOLINK_SIGN = "CB649425CB5548A375099103AB04CC1E"  # shared/protocols/bolink.md
TDZN_KEY = "45DC1F8604F940829E75D6A76595C299"
TDZN_PARAMS = {"bizContent": '{"enterTime":"2018-01-01 11:00:00","parkCode":"TEST/1P1","plateNum":"粤B12345"}',
               "pid": "123456", "serviceName": "enterNotify", "timestamp": 1539571096}
TDZN_SIGN = "EE454BE0DE3D211559865DA33745E589"  # shared/protocols/tdzn.md


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sign", *argv])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err.strip()


def test_bolink_vector(capsys):
    assert run(capsys, "bolink", "--key", BOLINK_KEY, "--data", BOLINK_DATA) == (0, BOLINK_SIGN, "")


def test_bolink_signs_the_text_as_given_not_a_reserialization(capsys):
    spaced = BOLINK_DATA.replace(",", ", ")
    code, out, _ = run(capsys, "bolink", "--key", BOLINK_KEY, "--data", spaced)
    assert code == 0 and out == hashlib.md5((spaced + "key=" + BOLINK_KEY).encode()).hexdigest().upper() != BOLINK_SIGN


def test_bolink_gbk_charset(capsys):
    data = '{"car_number":"粤B12345"}'
    code, out, _ = run(capsys, "bolink", "--key", "K", "--data", data, "--charset", "gbk")
    assert out == hashlib.md5((data + "key=K").encode("gbk")).hexdigest().upper()


def test_tdzn_vector_with_the_signing_string(capsys):
    code, out, _ = run(capsys, "tdzn", "--key", TDZN_KEY, "--params", json.dumps(TDZN_PARAMS, ensure_ascii=False),
                       "--show")
    shown, sign = out.splitlines()
    assert code == 0 and sign == TDZN_SIGN
    assert shown == ("signing string: bizContent=" + TDZN_PARAMS["bizContent"] +
                     "&pid=123456&serviceName=enterNotify&timestamp=1539571096&key=" + TDZN_KEY)


def test_xft_sorted_keys_sign_type_included_empty_dropped(capsys):
    params = {"store_code": "S1", "app_id": "A1", "sign_type": "MD5", "channel": "WECHAT", "openid": "",
              "extra": '{"trade_scene":"PARKING","plate_number":"粤B12345"}'}
    text = ('app_id=A1&channel=WECHAT&extra={"trade_scene":"PARKING","plate_number":"粤B12345"}'
            '&sign_type=MD5&store_code=S1&key=K9')
    code, out, _ = run(capsys, "xft", "--key", "K9", "--params", json.dumps(params, ensure_ascii=False), "--show")
    assert code == 0 and out.splitlines() == [f"signing string: {text}",
                                              hashlib.md5(text.encode()).hexdigest().upper()]


def test_verify_reports_match_and_mismatch(capsys, monkeypatch):
    monkeypatch.setenv("BOLINK_KEY", BOLINK_KEY)
    code, out, _ = run(capsys, "bolink", "--key-env", "BOLINK_KEY", "--data", BOLINK_DATA, "--verify",
                       BOLINK_SIGN.lower())
    assert code == 0 and out.startswith("OK")
    code, out, _ = run(capsys, "bolink", "--key-env", "BOLINK_KEY", "--data", BOLINK_DATA, "--verify", "0" * 32)
    assert code == 1 and out == f"MISMATCH: expected {BOLINK_SIGN}, got {'0' * 32}"


@pytest.mark.parametrize("argv, message", [
    (["bolink", "--key", "K"], "give --data"),
    (["bolink", "--key", "K", "--data", "{not json"], "not JSON"),
    (["bolink", "--key", "K", "--data", "[1]"], "JSON object"),
    (["xft", "--key", "K", "--data", "{}"], "give --params"),
    (["tdzn", "--key", "K", "--params", "1"], "JSON object"),
    (["xft", "--key-env", "LANECTL_NO_SUCH_VAR", "--params", "{}"], "not set"),
])
def test_usage_errors_are_clear(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err
