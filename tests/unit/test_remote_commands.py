"""Remote commands over the site bus (service/remote_commands.py) on the in-memory broker: a signed command runs
through the app's operations under `operator@issuer`; a forged, replayed (also after a restart), expired,
unsigned or misdirected one runs nothing, and its refusal is published on the issuer's reply topic."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from lanectl.adapters.control_socket import ControlError
from lanectl.adapters.store import SqliteStore
from lanectl.protocols.site_commands import RemoteCommand, canonical, decode_reply, encode
from lanectl.service.remote_commands import RemoteCommands, remote_operators
from lanectl.service.site_bus import topic
from tests.fakes import FakeClock, MemoryBroker

KEY = b"the lot's site key"
KEYS = {"k1": KEY}
START = datetime(2026, 12, 7, 12, 0, 0, tzinfo=timezone.utc)
T0 = int(START.timestamp())


class Handlers:
    """The app's operations as the service calls them: every call kept, an answer or a ControlError."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse: Optional[ControlError] = None

    async def open_barrier(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("open_barrier", kw))
        if self.refuse is not None:
            raise self.refuse
        return {"lane": kw["lane"], "opened": True, "record_id": "out1_20261207200000_1", "operator": kw["operator"],
                "operator_uid": None}

    async def topup(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("topup", kw))
        return {"plate": kw["plate"], "amount_fen": kw["amount_fen"], "balance_fen": 12000}


class Site:
    """Booth B running the service, and a console listening for its replies, on one memory broker."""

    def __init__(self, db: Path, clock: FakeClock, **service: Any) -> None:
        self.broker = MemoryBroker()
        self.console = self.broker.client()
        self.replies: dict[str, dict[str, Any]] = {}
        self.arrived = asyncio.Event()
        self.console.subscribe(topic("t", "console", "replies", "+"), self._reply)
        self.handlers = Handlers()
        self.clock = clock
        self.db = db
        self.service_args = service
        self.store: Optional[SqliteStore] = None
        self.service: Optional[RemoteCommands] = None

    async def start(self) -> None:
        self.store = SqliteStore(self.db)
        await self.store.open()
        self.service = RemoteCommands(self.broker.client(), "t", "boothB", KEYS, self.handlers, self.store.inbox_put,
                                      self.clock, reply_key_id="k1", skew_s=30, **self.service_args)
        self.service.attach()

    async def restart(self) -> None:
        assert self.store is not None and self.service is not None
        self.broker.clients.remove(self.service.bus)  # type: ignore[arg-type]
        await self.store.close()
        await self.start()

    async def _reply(self, topic_: str, payload: bytes) -> None:
        reply = decode_reply(payload, KEYS)  # replies are signed with the site key too
        assert topic_.endswith("/" + reply["id"])
        self.replies[reply["id"]] = reply
        self.arrived.set()

    async def send(self, payload: bytes, command_id: str) -> dict[str, Any]:
        self.replies.pop(command_id, None)
        await self.console.publish(topic("t", "boothB", "commands"), payload)
        return await self.reply_to(command_id)

    async def reply_to(self, command_id: str) -> dict[str, Any]:
        while command_id not in self.replies:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)
        return self.replies[command_id]


def command(**over: Any) -> RemoteCommand:
    fields = dict(id=str(uuid.uuid4()), kind="open", booth="boothB", lane="out1", operator="wang",
                  reason="ticket machine jammed", issued_at=T0, expires_at=T0 + 20, issuer="console", key_id="k1")
    fields.update(over)
    return RemoteCommand(**fields)


@pytest.fixture
async def site(tmp_path: Path):
    s = Site(tmp_path / "lanectl.db", FakeClock(START))
    await s.start()
    yield s
    assert s.store is not None
    await s.store.close()


async def test_a_signed_open_runs_the_apps_release_as_operator_at_issuer(site):
    cmd = command(amount_fen=500)
    reply = await site.send(encode(cmd, KEY), cmd.id)
    assert reply["ok"] is True and reply["booth"] == "boothB"
    assert reply["result"]["opened"] is True and reply["result"]["operator"] == "wang@console"
    [(name, kw)] = site.handlers.calls
    assert name == "open_barrier"
    assert (kw["lane"], kw["operator"], kw["reason"], kw["amount_fen"], kw["operator_uid"]) == (
        "out1", "wang@console", "ticket machine jammed", 500, None)
    # the command's expiry (+ skew) is the lane request's deadline, in loop time
    left = kw["deadline"] - asyncio.get_running_loop().time()
    assert 49 - 1 < left <= 50


async def test_release_and_topup_run_their_operations(site):
    release = command(kind="release")
    assert (await site.send(encode(release, KEY), release.id))["ok"] is True
    topup = command(kind="topup", lane=None, plate="粤B12345", amount_fen=10000)
    reply = await site.send(encode(topup, KEY), topup.id)
    assert reply["ok"] is True and reply["result"]["balance_fen"] == 12000
    assert [(n, kw.get("amount_fen"), kw["operator"]) for n, kw in site.handlers.calls] == [
        ("open_barrier", None, "wang@console"), ("topup", 10000, "wang@console")]
    assert site.handlers.calls[1][1]["plate"] == "粤B12345"


async def refused(site: Site, payload: bytes, command_id: str, code: str) -> None:
    reply = await site.send(payload, command_id)
    assert reply["ok"] is False and reply["code"] == code, reply
    assert site.handlers.calls == []  # nothing opened, nothing credited


async def test_a_forged_command_is_refused_and_nothing_runs(site):
    cmd = command()
    await refused(site, encode(cmd, b"a guessed key"), cmd.id, "bad_signature")
    altered = encode(cmd, KEY).replace(b'"lane":"out1"', b'"lane":"out2"')
    await refused(site, altered, cmd.id, "bad_signature")
    # the forged attempts did not burn the id: the genuine command still runs
    assert (await site.send(encode(cmd, KEY), cmd.id))["ok"] is True


async def test_an_unsigned_command_is_refused(site):
    cmd = command()
    await refused(site, canonical(cmd.body()), cmd.id, "unsigned")


async def test_an_expired_or_early_command_is_refused(site):
    late = command(issued_at=T0 - 100, expires_at=T0 - 31)
    await refused(site, encode(late, KEY), late.id, "expired")
    early = command(issued_at=T0 + 31, expires_at=T0 + 60)
    await refused(site, encode(early, KEY), early.id, "not_yet_valid")
    held = command()
    await site.clock.advance(51)  # held back (by an attacker, or a queue) past its expiry and the skew allowance
    await refused(site, encode(held, KEY), held.id, "expired")


async def test_a_command_for_another_booth_is_refused(site):
    other = command(booth="boothA")
    await refused(site, encode(other, KEY), other.id, "wrong_booth")


async def test_a_replayed_command_is_refused_also_after_a_restart(site):
    cmd = command()
    payload = encode(cmd, KEY)
    assert (await site.send(payload, cmd.id))["ok"] is True
    assert len(site.handlers.calls) == 1
    reply = await site.send(payload, cmd.id)
    assert (reply["ok"], reply["code"]) == (False, "replayed")
    await site.restart()
    reply = await site.send(payload, cmd.id)
    assert (reply["ok"], reply["code"]) == (False, "replayed")
    assert len(site.handlers.calls) == 1  # opened once, whatever came after


async def test_the_apps_refusal_comes_back_with_its_code(site):
    site.handlers.refuse = ControlError("unknown_lane", "no lane 'out9'; lanes: out1", 404)
    cmd = command(lane="out9")
    reply = await site.send(encode(cmd, KEY), cmd.id)
    assert (reply["ok"], reply["code"], reply["message"]) == (False, "unknown_lane", "no lane 'out9'; lanes: out1")


async def test_garbage_on_the_command_topic_is_counted_and_answers_nobody(site):
    await site.console.publish(topic("t", "boothB", "commands"), b"\xff open now")
    assert site.service is not None
    await asyncio.wait_for(_settled(site.service), 5)
    assert site.service.counts["refused"] == 1 and site.replies == {} and site.handlers.calls == []


async def test_a_flood_of_forged_commands_is_counted_not_logged_line_by_line(site, caplog):
    assert site.service is not None
    for _ in range(20):
        forged = command()
        await site.console.publish(topic("t", "boothB", "commands"), encode(forged, b"guess"))
    await asyncio.wait_for(_settled(site.service), 5)
    assert site.service.unverified.total == 20 and site.handlers.calls == []
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


async def _settled(service: RemoteCommands) -> None:
    while service.running:
        await asyncio.gather(*service.running)


class _Entry:
    def __init__(self, name: Optional[str], roles: tuple[str, ...]) -> None:
        self.name, self.roles = name, roles


class _Operators:
    users = {"wang": _Entry("王师傅", ("open",)), "li": _Entry(None, ("open", "topup")), "1002": _Entry(None, ("open",))}


def test_remote_names_come_from_the_listed_users():
    assert remote_operators(None) is None
    assert remote_operators(_Operators()) == {"王师傅": frozenset({"open"}), "li": frozenset({"open", "topup"})}


async def test_with_operators_configured_only_listed_names_with_the_role_act(tmp_path: Path):
    s = Site(tmp_path / "lanectl.db", FakeClock(START), operators=remote_operators(_Operators()))
    await s.start()
    try:
        unknown = command(operator="wang")  # the unix name, not the name the site records for wang
        await refused(s, encode(unknown, KEY), unknown.id, "not_an_operator")
        no_role = command(kind="topup", lane=None, plate="粤B12345", amount_fen=100, operator="王师傅")
        await refused(s, encode(no_role, KEY), no_role.id, "not_allowed")
        listed = command(operator="王师傅")
        assert (await s.send(encode(listed, KEY), listed.id))["ok"] is True
        assert s.handlers.calls[0][1]["operator"] == "王师傅@console"
    finally:
        assert s.store is not None
        await s.store.close()


async def test_a_command_that_expires_while_its_id_is_stored_does_not_run():
    clock, handlers, broker = FakeClock(START), Handlers(), MemoryBroker()
    kept: list[str] = []

    async def slow_store(provider: str, key: str, payload: str, now: Any) -> bool:
        await clock.advance(60)  # the disk was slow: the command's validity ran out meanwhile
        kept.append(key)
        return True

    service = RemoteCommands(broker.client(), "t", "boothB", KEYS, handlers, slow_store, clock, reply_key_id="k1")
    cmd = command()
    await service.handle(encode(cmd, KEY))
    assert kept == [cmd.id] and handlers.calls == [] and service.counts == {"done": 0, "refused": 1}
    [(reply_topic, payload, qos, _retain)] = broker.log
    assert reply_topic == f"lanectl/t/console/replies/{cmd.id}" and qos == 1
    assert decode_reply(payload, KEYS)["code"] == "expired"


async def test_a_command_still_running_at_stop_is_cancelled(site):
    entered, hold = asyncio.Event(), asyncio.Event()

    async def stuck_open(**kw: Any) -> dict[str, Any]:
        entered.set()
        await hold.wait()  # the lane never answers
        return {}

    site.handlers.open_barrier = stuck_open  # type: ignore[method-assign]
    await site.console.publish(topic("t", "boothB", "commands"), encode(command(), KEY))
    await asyncio.wait_for(entered.wait(), 5)
    assert site.service is not None and len(site.service.running) == 1
    await asyncio.wait_for(site.service.aclose(), 5)
    assert not site.service.running and site.replies == {}


async def test_a_command_that_comes_before_the_lanes_run_waits_and_is_checked_then(tmp_path: Path):
    ready = asyncio.Event()
    s = Site(tmp_path / "lanectl.db", FakeClock(START), ready=ready)
    await s.start()
    try:
        early = command()
        await s.console.publish(topic("t", "boothB", "commands"), encode(early, KEY))
        assert s.service is not None and len(s.service.running) == 1  # held, not refused
        await s.clock.advance(60)  # the daemon took a minute to start its lanes
        ready.set()
        reply = await s.reply_to(early.id)
    finally:
        assert s.store is not None
        await s.store.close()
    assert (reply["ok"], reply["code"]) == (False, "expired") and s.handlers.calls == []
