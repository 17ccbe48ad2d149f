"""Signed remote commands on the site bus (issue 17 item 3): a pure codec, bytes in, a checked command out.

A command is a JSON object signed with the site key (HMAC-SHA256). The body is serialized ONCE in canonical form
(sorted keys, no spaces, UTF-8, absent fields left out) and those exact bytes are signed and sent, inside an
envelope built by concatenation, not by a second serialization (ARCHITECTURE rule 5):

    {"cmd":<canonical body>,"sig":"<64 lowercase hex: HMAC-SHA256(site key, canonical body)>"}

The receiver cuts the body out of the raw bytes it got and hashes exactly those; only then does it parse them.
A body that verifies but is not in canonical form is refused too: one command has one byte form.

Body fields: id (uuid, lowercase with hyphens), kind (open | release | topup), booth (the booth that must run it),
lane (open, release) or plate (topup), operator, reason, amount_fen (open: optional cash; topup: required > 0;
release: none), issued_at / expires_at (unix seconds, integers), issuer (the booth or console that sent it),
key_id (which site key signed it, so keys can be rotated).

Replies travel in the same envelope under "reply" instead of "cmd", signed with the same key.

Refusals are typed (CommandRefused subclasses); each has a short `code` that is published back to the issuer.
Replay (an id seen before) is decided by the receiver's store, not here; `Replayed` is defined here so every
refusal code lives in one place. Time comes in as an argument (unix seconds): this module reads no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from lanectl.core.plates import normalize_plate

KINDS = ("open", "release", "topup")
DEFAULT_SKEW_S = 30
MAX_TTL_S = 600  # a command valid for longer than this is refused: a leaked command must not stay usable
MAX_PAYLOAD = 4096
MAX_OPERATOR_LEN = 64
MAX_REASON_LEN = 500
MAX_PLATE_LEN = 16
MAX_AMOUNT_FEN = 1_000_000_000  # the control socket's bound: anything bigger is a typo

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NODE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")  # booth and issuer ids: safe as one MQTT topic level
_LANE = re.compile(r"^[0-9A-Za-z_]{1,32}$")
_KEY_ID = re.compile(r"^[0-9A-Za-z_.-]{1,32}$")
_SIG = re.compile(rb'^[0-9a-f]{64}$')
FIELDS = frozenset({"id", "kind", "booth", "lane", "plate", "operator", "reason", "amount_fen", "issued_at",
                    "expires_at", "issuer", "key_id"})


# ------------------------------------------------------------------------------------------------ refusals
class CommandRefused(Exception):
    """A command that must not run. `code` goes back to the issuer; `message` says why to a human."""

    code = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message


class Unsigned(CommandRefused):
    code = "unsigned"


class BadSignature(CommandRefused):
    code = "bad_signature"


class UnknownKey(CommandRefused):
    code = "unknown_key"


class Expired(CommandRefused):
    code = "expired"


class NotYetValid(CommandRefused):
    code = "not_yet_valid"


class Replayed(CommandRefused):
    code = "replayed"


class Malformed(CommandRefused):
    code = "malformed"


class WrongBooth(CommandRefused):
    code = "wrong_booth"


# ------------------------------------------------------------------------------------------------- command
@dataclass(frozen=True)
class RemoteCommand:
    id: str
    kind: str
    booth: str
    operator: str
    reason: str
    issued_at: int
    expires_at: int
    issuer: str
    key_id: str
    lane: Optional[str] = None
    plate: Optional[str] = None
    amount_fen: Optional[int] = None

    def body(self) -> dict[str, Any]:
        """The fields as sent: the ones left empty are not in the body at all."""
        return {k: v for k, v in vars(self).items() if v is not None}


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The one byte form of a JSON object: sorted keys, no spaces, UTF-8 (not \\u escapes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def signature(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _envelope(field: str, body: bytes, key: bytes) -> bytes:
    # concatenated, never re-serialized: the bytes signed are the bytes sent
    return b'{"' + field.encode() + b'":' + body + b',"sig":"' + signature(key, body).encode() + b'"}'


def encode(command: RemoteCommand, key: bytes) -> bytes:
    """The signed message for `command` (checked first: an issuer cannot send what a booth would refuse as
    malformed)."""
    check_fields(command.body())
    return _envelope("cmd", canonical(command.body()), key)


def encode_reply(reply: Mapping[str, Any], key_id: str, key: bytes) -> bytes:
    return _envelope("reply", canonical({**reply, "key_id": key_id}), key)


# -------------------------------------------------------------------------------------------------- decode
def _split(payload: bytes, field: str) -> tuple[bytes, bytes]:
    """(body bytes, signature) cut out of the raw envelope; Unsigned / Malformed when it is not one."""
    if len(payload) > MAX_PAYLOAD:
        raise Malformed(f"message of {len(payload)} bytes, more than {MAX_PAYLOAD}")
    head, tail_len = b'{"' + field.encode() + b'":', len(b',"sig":"') + 64 + len(b'"}')
    if payload.startswith(head) and len(payload) > len(head) + tail_len:
        body, tail = payload[len(head):-tail_len], payload[-tail_len:]
        if tail.startswith(b',"sig":"') and tail.endswith(b'"}') and _SIG.match(tail[8:-2]):
            return body, tail[8:-2]
    # not the signed form: say whether a signature is missing or the message is simply not one of ours
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Malformed("not a JSON message") from None
    if isinstance(doc, dict) and not doc.get("sig"):
        raise Unsigned("the message carries no signature")
    raise Malformed(f'not a signed envelope {{"{field}":{{...}},"sig":"<64 lowercase hex>"}}')


def _parse_object(body: bytes) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise Malformed("a field is given twice")
        return out
    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError):
        raise Malformed("the signed body is not JSON") from None
    if not isinstance(doc, dict):
        raise Malformed("the signed body is not a JSON object")
    return doc


def _verify(body: bytes, sig: bytes, doc: Mapping[str, Any], keys: Mapping[str, bytes]) -> None:
    key_id = doc.get("key_id")
    if not isinstance(key_id, str) or key_id not in keys:
        raise UnknownKey(f"signed with key {key_id!r}, which this booth does not hold")
    if not hmac.compare_digest(signature(keys[key_id], body).encode(), sig):
        raise BadSignature(f"the signature does not match key {key_id!r}")
    if canonical(doc) != body:
        raise Malformed("signed, but not in canonical form (sorted keys, no spaces, UTF-8)")


def decode(payload: bytes, keys: Mapping[str, bytes], *, now: float, booth: str,
           skew_s: float = DEFAULT_SKEW_S) -> RemoteCommand:
    """The command in `payload` if it is signed by one of `keys` (key id -> key), meant for `booth` and valid
    at `now` (unix seconds, give or take `skew_s`); a CommandRefused subclass otherwise."""
    body, sig = _split(payload, "cmd")
    doc = _parse_object(body)
    _verify(body, sig, doc, keys)
    command = check_fields(doc)
    if command.booth != booth:
        raise WrongBooth(f"meant for booth {command.booth}, this is {booth}")
    if now < command.issued_at - skew_s:
        raise NotYetValid(f"issued {command.issued_at - now:.0f} s in the future (allowed skew {skew_s:g} s)")
    if now > command.expires_at + skew_s:
        raise Expired(f"expired {now - command.expires_at:.0f} s ago (allowed skew {skew_s:g} s)")
    return command


def decode_reply(payload: bytes, keys: Mapping[str, bytes]) -> dict[str, Any]:
    """A booth's signed reply (the issuer's side); CommandRefused subclasses as for commands."""
    body, sig = _split(payload, "reply")
    doc = _parse_object(body)
    _verify(body, sig, doc, keys)
    return doc


def claimed_origin(payload: bytes) -> Optional[tuple[str, str]]:
    """(issuer, id) a message CLAIMS, unverified, so a refusal can be sent where the sender waits; None when
    they are missing or could not name a topic level safely."""
    try:
        doc = json.loads(payload[:MAX_PAYLOAD].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    cmd = doc.get("cmd", doc) if isinstance(doc, dict) else None
    if not isinstance(cmd, dict):
        return None
    issuer, cid = cmd.get("issuer"), cmd.get("id")
    if isinstance(issuer, str) and _NODE.match(issuer) and isinstance(cid, str) and _UUID.match(cid):
        return issuer, cid
    return None


# -------------------------------------------------------------------------------------------------- fields
def _text(doc: Mapping[str, Any], name: str, max_len: int) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"{name} must be a non-empty string")
    if value != value.strip() or len(value) > max_len:
        raise Malformed(f"{name} must be at most {max_len} characters without surrounding spaces")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise Malformed(f"{name} must not contain control characters")
    return value


def _pattern(doc: Mapping[str, Any], name: str, pattern: re.Pattern[str], what: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not pattern.match(value):
        raise Malformed(f"{name}={value!r} is not {what}")
    return value


def _whole(doc: Mapping[str, Any], name: str) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{name} must be a whole number")
    return value


def check_fields(doc: Mapping[str, Any]) -> RemoteCommand:
    """The command a body describes, or Malformed naming the first field that is wrong."""
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        raise Malformed(f"unknown field(s): {', '.join(unknown)}")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise Malformed(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    operator = _text(doc, "operator", MAX_OPERATOR_LEN)
    if "@" in operator:
        raise Malformed("operator must not contain @ (the booth records it as operator@issuer)")
    issued, expires = _whole(doc, "issued_at"), _whole(doc, "expires_at")
    if not 0 < expires - issued <= MAX_TTL_S:
        raise Malformed(f"expires_at must be after issued_at by at most {MAX_TTL_S} s")
    lane = plate = amount = None
    if kind == "topup":
        if "lane" in doc:
            raise Malformed("a topup names a plate, not a lane")
        plate = _text(doc, "plate", MAX_PLATE_LEN)
        if normalize_plate(plate) != plate:
            raise Malformed(f"plate={plate!r} is not normalized (send {normalize_plate(plate)!r})")
        amount = _whole(doc, "amount_fen")
        if not 0 < amount <= MAX_AMOUNT_FEN:
            raise Malformed(f"amount_fen={amount} is out of range 1..{MAX_AMOUNT_FEN}")
    else:
        if "plate" in doc:
            raise Malformed(f"{kind} names a lane, not a plate")
        lane = _pattern(doc, "lane", _LANE, "a lane id (1-32 characters of 0-9 A-Z a-z _)")
        if "amount_fen" in doc:
            if kind == "release":
                raise Malformed("a release takes no cash (send open with amount_fen for that)")
            amount = _whole(doc, "amount_fen")
            if not 0 <= amount <= MAX_AMOUNT_FEN:
                raise Malformed(f"amount_fen={amount} is out of range 0..{MAX_AMOUNT_FEN}")
    return RemoteCommand(
        id=_pattern(doc, "id", _UUID, "a lowercase uuid"), kind=kind,
        booth=_pattern(doc, "booth", _NODE, "a booth id"), operator=operator,
        reason=_text(doc, "reason", MAX_REASON_LEN), issued_at=issued, expires_at=expires,
        issuer=_pattern(doc, "issuer", _NODE, "a booth or console id"),
        key_id=_pattern(doc, "key_id", _KEY_ID, "a key id"), lane=lane, plate=plate, amount_fen=amount)
