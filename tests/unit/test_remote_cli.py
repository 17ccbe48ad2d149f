"""`lanectl remote ...` against a booth on the memory broker: it signs with the site key of its configuration,
publishes, and shows the booth's signed answer; refusals and silence have their own exit codes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from lanectl.adapters.control_socket import ControlError
from lanectl.cli.main import build_parser
from lanectl.cli.remote import remote
from lanectl.config import load_config
from lanectl.service.remote_commands import RemoteCommands
from tests.fakes import FakeClock, MemoryBroker, MemoryDaemonStore
from tests.minimal_site import write_minimal_config
from tests.unit.test_remote_commands import Handlers

KEY = "the lot's site key"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_SITE_KEY", KEY)
    etc = write_minimal_config(tmp_path, site_bus={"enabled": True, "booth_id": "console1",
                                                   "site_key": {"env": "TEST_SITE_KEY"}, "site_key_id": "k1"})
    return load_config(etc)


class Booth:
    def __init__(self, broker: MemoryBroker) -> None:
        self.handlers = Handlers()
        self.store = MemoryDaemonStore()
        self.service = RemoteCommands(broker.client(), "t", "boothB", {"k1": KEY.encode()}, self.handlers,
                                      self.store.inbox_put, FakeClock(datetime.now(timezone.utc)),
                                      reply_key_id="k1")
        self.service.attach()


def args(*argv: str) -> Any:
    return build_parser().parse_args(["remote", *argv])


async def test_remote_open_is_signed_sent_and_answered(config, capsys):
    broker = MemoryBroker()
    booth = Booth(broker)
    code = await remote(args("open", "--config", "x", "--booth", "boothB", "--lane", "out1", "--operator", "wang",
                             "--reason", "jammed ticket", "--amount", "300"), config, lambda c, cid: broker.client())
    assert code == 0
    [(name, kw)] = booth.handlers.calls
    assert (name, kw["lane"], kw["operator"], kw["reason"], kw["amount_fen"]) == (
        "open_barrier", "out1", "wang@console1", "jammed ticket", 300)
    assert "booth boothB lane out1: OPEN delivered" in capsys.readouterr().out


async def test_remote_topup_and_an_issuer_given_on_the_command_line(config, capsys):
    broker = MemoryBroker()
    booth = Booth(broker)
    code = await remote(args("topup", "--config", "x", "--booth", "boothB", "--plate", "粤b 12345", "--amount",
                             "5000", "--operator", "li", "--reason", "cash", "--issuer", "hq"), config,
                        lambda c, cid: broker.client())
    assert code == 0
    [(name, kw)] = booth.handlers.calls
    assert (name, kw["plate"], kw["amount_fen"], kw["operator"]) == ("topup", "粤B12345", 5000, "li@hq")


async def test_a_refusal_exits_1_with_its_code(config, capsys):
    broker = MemoryBroker()
    booth = Booth(broker)
    booth.handlers.refuse = ControlError("lane_faulted", "lane out1: the barrier does not answer")
    code = await remote(args("release", "--config", "x", "--booth", "boothB", "--lane", "out1", "--operator",
                             "wang", "--reason", "r"), config, lambda c, cid: broker.client())
    assert code == 1
    assert "refused: lane_faulted: lane out1: the barrier does not answer" in capsys.readouterr().out


async def test_no_answer_exits_75(config, capsys):
    broker = MemoryBroker()  # nobody serves boothB
    code = await remote(args("open", "--config", "x", "--booth", "boothB", "--lane", "out1", "--operator", "w",
                             "--reason", "r", "--wait", "0.2"), config, lambda c, cid: broker.client())
    assert code == 75 and "no answer from booth boothB" in capsys.readouterr().err
    assert [t for t, *_ in broker.log] == ["lanectl/t/boothB/commands"]  # sent once


async def test_a_bad_command_or_no_site_key_is_a_usage_error(config, tmp_path, capsys):
    broker = MemoryBroker()
    code = await remote(args("open", "--config", "x", "--booth", "boothB", "--lane", "out/1", "--operator", "w",
                             "--reason", "r"), config, lambda c, cid: broker.client())
    assert code == 2 and "lane" in capsys.readouterr().err and broker.log == []
    bare = load_config(write_minimal_config(tmp_path / "bare"))
    code = await remote(args("open", "--config", "x", "--booth", "boothB", "--lane", "out1", "--operator", "w",
                             "--reason", "r"), bare, lambda c, cid: broker.client())
    assert code == 2 and "site_bus.site_key is not configured" in capsys.readouterr().err
