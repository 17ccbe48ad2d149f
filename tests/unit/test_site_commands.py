"""The remote-command codec (protocols/site_commands.py), byte for byte: fixed vectors whose canonical bytes and
HMAC are computed here independently from the text, and every refusal."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from lanectl.protocols.site_commands import (MAX_TTL_S, BadSignature, CommandRefused, Expired, Malformed,
                                             NotYetValid, RemoteCommand, Unsigned, UnknownKey, WrongBooth,
                                             canonical, claimed_origin, decode, decode_reply, encode, encode_reply)

KEY = b"site-key-for-tests"
KEYS = {"k1": KEY}
T0 = 1_800_000_000
CID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def command(**over) -> RemoteCommand:
    fields = dict(id=CID, kind="open", booth="boothB", lane="out1", operator="wang", reason="stuck ticket",
                  issued_at=T0, expires_at=T0 + 30, issuer="console", key_id="k1")
    fields.update(over)
    return RemoteCommand(**fields)


def independent(body_text: str, key: bytes = KEY) -> bytes:
    """The envelope built by hand from the canonical text: what the codec must produce byte for byte."""
    body = body_text.encode("utf-8")
    sig = hmac.new(key, body, hashlib.sha256).hexdigest()
    return b'{"cmd":' + body + b',"sig":"' + sig.encode() + b'"}'


VECTORS = [
    (command(),
     '{"booth":"boothB","expires_at":1800000030,"id":"0f8fad5b-d9cb-469f-a165-70867728950e","issued_at":1800000000,'
     '"issuer":"console","key_id":"k1","kind":"open","lane":"out1","operator":"wang","reason":"stuck ticket"}'),
    (command(operator="王师傅", reason="现金 5元", amount_fen=500),
     '{"amount_fen":500,"booth":"boothB","expires_at":1800000030,"id":"0f8fad5b-d9cb-469f-a165-70867728950e",'
     '"issued_at":1800000000,"issuer":"console","key_id":"k1","kind":"open","lane":"out1","operator":"王师傅",'
     '"reason":"现金 5元"}'),
    (command(kind="topup", lane=None, plate="粤B12345", amount_fen=10000, issuer="boothA"),
     '{"amount_fen":10000,"booth":"boothB","expires_at":1800000030,"id":"0f8fad5b-d9cb-469f-a165-70867728950e",'
     '"issued_at":1800000000,"issuer":"boothA","key_id":"k1","kind":"topup","operator":"wang","plate":"粤B12345",'
     '"reason":"stuck ticket"}'),
]


@pytest.mark.parametrize("cmd,text", VECTORS, ids=["open", "open-cash-utf8", "topup"])
def test_the_message_is_the_canonical_body_and_its_hmac_byte_for_byte(cmd, text):
    assert canonical(cmd.body()) == text.encode("utf-8")
    assert encode(cmd, KEY) == independent(text)
    assert decode(independent(text), KEYS, now=T0 + 1, booth="boothB") == cmd


def test_one_fixed_signature_pins_the_hmac():
    # computed once from the first vector's text with `hmac.new(KEY, text, sha256)`; pinned so an accidental
    # change of hash, key handling or text (e.g. ASCII escapes) shows up
    sig = hmac.new(KEY, VECTORS[0][1].encode(), hashlib.sha256).hexdigest()
    assert encode(VECTORS[0][0], KEY).endswith(f',"sig":"{sig}"}}'.encode())
    assert len(sig) == 64 and sig == sig.lower()


def test_the_skew_allowance_is_honoured_at_both_ends():
    msg = encode(command(), KEY)
    assert decode(msg, KEYS, now=T0 - 30, booth="boothB").id == CID
    assert decode(msg, KEYS, now=T0 + 60, booth="boothB").id == CID
    with pytest.raises(NotYetValid):
        decode(msg, KEYS, now=T0 - 31, booth="boothB")
    with pytest.raises(Expired):
        decode(msg, KEYS, now=T0 + 61, booth="boothB")
    with pytest.raises(Expired):
        decode(msg, KEYS, now=T0 + 31, booth="boothB", skew_s=0)


def test_unsigned_messages_are_refused_as_unsigned():
    body = canonical(command().body())
    for payload in (body, b'{"cmd":' + body + b'}', b'{"cmd":' + body + b',"sig":""}',
                    b'{"cmd":' + body + b',"sig":null}'):
        with pytest.raises(Unsigned):
            decode(payload, KEYS, now=T0, booth="boothB")


def test_a_forged_or_altered_command_is_refused():
    good = encode(command(), KEY)
    with pytest.raises(BadSignature):
        decode(encode(command(), b"another key"), KEYS, now=T0, booth="boothB")
    altered = good.replace(b'"lane":"out1"', b'"lane":"out2"')
    with pytest.raises(BadSignature):
        decode(altered, KEYS, now=T0, booth="boothB")
    # a later expiry with the old signature
    with pytest.raises(BadSignature):
        decode(good.replace(b"1800000030", b"1800000300"), KEYS, now=T0, booth="boothB")
    with pytest.raises(UnknownKey):
        decode(encode(command(key_id="k2"), KEY), KEYS, now=T0, booth="boothB")


def test_a_signed_but_non_canonical_body_is_malformed():
    text = VECTORS[0][1].replace('"booth":"boothB",', '"booth": "boothB",')
    with pytest.raises(Malformed, match="canonical"):
        decode(independent(text), KEYS, now=T0, booth="boothB")
    escaped = VECTORS[1][1].encode("utf-8").decode().replace("王师傅", "\\u738b\\u5e08\\u5085")
    with pytest.raises(Malformed, match="canonical"):
        decode(independent(escaped), KEYS, now=T0, booth="boothB")


def test_a_command_for_another_booth_is_refused():
    with pytest.raises(WrongBooth):
        decode(encode(command(), KEY), KEYS, now=T0, booth="boothA")


BAD_BODIES = {
    "unknown field": VECTORS[0][1].replace('"booth"', '"extra":1,"booth"'),
    "bad kind": VECTORS[0][1].replace('"kind":"open"', '"kind":"reboot"'),
    "bad id": VECTORS[0][1].replace(CID, "not-a-uuid"),
    "uppercase id": VECTORS[0][1].replace(CID, CID.upper()),
    "float time": VECTORS[0][1].replace("1800000030", "1800000030.5"),
    "bad lane": VECTORS[0][1].replace('"lane":"out1"', '"lane":"out/1"'),
    "no lane": VECTORS[0][1].replace('"lane":"out1",', ""),
    "empty reason": VECTORS[0][1].replace('"reason":"stuck ticket"', '"reason":""'),
    "spaced operator": VECTORS[0][1].replace('"operator":"wang"', '"operator":" wang"'),
    "@ in operator": VECTORS[0][1].replace('"operator":"wang"', '"operator":"wang@x"'),
    "control char": VECTORS[0][1].replace('"reason":"stuck ticket"', '"reason":"a\\u0007b"'),
    "release with cash": VECTORS[0][1].replace('{"booth"', '{"amount_fen":5,"booth"').replace('"open"',
                                                                                               '"release"'),
    "negative cash": VECTORS[0][1].replace('{"booth"', '{"amount_fen":-1,"booth"'),
    "bool cash": VECTORS[0][1].replace('{"booth"', '{"amount_fen":true,"booth"'),
    "too long-lived": VECTORS[0][1].replace("1800000030", str(T0 + MAX_TTL_S + 1)),
    "expires before issued": VECTORS[0][1].replace("1800000030", str(T0)),
    "topup with lane": VECTORS[2][1].replace('"operator"', '"lane":"out1","operator"'),
    "topup without amount": VECTORS[2][1].replace('"amount_fen":10000,', ""),
    "topup of zero": VECTORS[2][1].replace('"amount_fen":10000', '"amount_fen":0'),
    "plate not normalized": VECTORS[2][1].replace("粤B12345", "粤b12345"),
    "duplicate key": VECTORS[0][1].replace('"booth":"boothB"', '"booth":"boothB","booth":"boothB"'),
    "not an object": '["open"]',
}


@pytest.mark.parametrize("text", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_signed_body_with_wrong_fields_is_malformed(text):
    with pytest.raises(Malformed):
        decode(independent(text), KEYS, now=T0 + 1, booth="boothB")


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"open out1", b"[1,2]", b'{"cmd":{},"sig":"zz"}',
                                     b'{"cmd":{},"sig":"' + b"A" * 64 + b'"}', b"{" + b" " * 5000 + b"}"])
def test_garbage_is_malformed_never_a_crash(payload):
    with pytest.raises(CommandRefused) as exc:
        decode(payload, KEYS, now=T0, booth="boothB")
    assert exc.value.code == "malformed"


def test_garbage_around_a_good_message_is_refused():
    good = encode(command(), KEY)
    for payload in (b" " + good, good + b"\n", good[:-1], good + good):
        with pytest.raises(CommandRefused):
            decode(payload, KEYS, now=T0, booth="boothB")


def test_every_refusal_has_its_own_code():
    from lanectl.protocols import site_commands as sc
    codes = {cls.code for cls in (sc.Unsigned, sc.BadSignature, sc.UnknownKey, sc.Expired, sc.NotYetValid,
                                   sc.Replayed, sc.Malformed, sc.WrongBooth)}
    assert codes == {"unsigned", "bad_signature", "unknown_key", "expired", "not_yet_valid", "replayed",
                     "malformed", "wrong_booth"}


def test_the_encoder_refuses_what_a_booth_would_refuse():
    with pytest.raises(Malformed):
        encode(command(kind="release", amount_fen=100), KEY)


def test_replies_are_signed_and_checked_the_same_way():
    reply = encode_reply({"id": CID, "ok": True, "result": {"opened": True}}, "k1", KEY)
    assert decode_reply(reply, KEYS) == {"id": CID, "ok": True, "result": {"opened": True}, "key_id": "k1"}
    with pytest.raises(BadSignature):
        decode_reply(reply.replace(b"true}", b"false}", 1), KEYS)


def test_the_claimed_origin_is_read_only_when_it_names_a_safe_topic():
    assert claimed_origin(encode(command(), KEY)) == ("console", CID)
    assert claimed_origin(canonical(command().body())) == ("console", CID)
    assert claimed_origin(canonical(command(issuer="a/#").body())) is None
    assert claimed_origin(b"\xff") is None and claimed_origin(b"[]") is None
