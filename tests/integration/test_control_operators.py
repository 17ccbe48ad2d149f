"""Operator identity over a real unix socket: the uid is the kernel's (SO_PEERCRED), never the body's, and the
site's operators map decides who may open or top up, under which name. The handlers are a fake app that
records what it was handed."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import subprocess
import sys
import textwrap

import pytest

from lanectl.adapters.control_client import ControlClient
from lanectl.adapters.control_client import ControlError as ClientControlError
from lanectl.adapters.control_socket import ControlServer
from lanectl.adapters.operator_identity import resolve_operators
from lanectl.config.operators import OperatorsConfig
from tests.integration.test_control_socket import REPO_ROOT, FakeApp, short_dir  # noqa: F401 (fixture)

ME = os.getuid()
OTHER = ME + 12345  # a uid that is surely not this test's


def my_unix_name() -> str:
    try:
        return pwd.getpwuid(ME).pw_name
    except KeyError:
        return f"uid:{ME}"


def operators(section: dict | None):
    return resolve_operators(None if section is None else OperatorsConfig.model_validate(section))


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


async def serve(short_dir: str, app: FakeApp, section: dict | None, **kw) -> ControlServer:
    server = ControlServer(os.path.join(short_dir, "control.sock"), app, operators=operators(section), **kw)
    await server.start()
    return server


async def refusal(call) -> tuple[int, str]:
    with pytest.raises(ClientControlError) as info:
        await call
    return info.value.http_status, info.value.code


async def test_a_mapped_caller_acts_under_its_mapped_name_and_its_uid(short_dir, app):
    server = await serve(short_dir, app, {"users": {ME: {"name": "值班员", "roles": ["open", "topup"]}}})
    try:
        client = ControlClient(server.path, timeout=5)
        await client.open_barrier(lane="OUT1", reason="cash", amount_fen=100)
        await client.open_barrier(lane="OUT1", reason="cash", operator="值班员")
        await client.topup(plate="粤B77777", amount_fen=1000, reason="cash")
    finally:
        await server.stop()
    assert [c[1]["operator"] for c in app.calls] == ["值班员", "值班员", "值班员"]
    assert app.uids == [ME, ME, ME]


async def test_a_name_that_is_not_the_callers_is_refused_and_nothing_is_done(short_dir, app, caplog):
    server = await serve(short_dir, app, {"users": {ME: {"name": "值班员", "roles": ["open"]}}})
    try:
        client = ControlClient(server.path, timeout=5)
        with caplog.at_level(logging.WARNING, "lanectl.adapters.control_socket"):
            assert await refusal(client.open_barrier(lane="OUT1", reason="cash", operator="李四")) == \
                (403, "operator_mismatch")
    finally:
        await server.stop()
    assert app.calls == []
    assert f"uid {ME} open: operator_mismatch" in caplog.text


async def test_an_unmapped_caller_is_not_an_operator(short_dir, app, caplog):
    server = await serve(short_dir, app, {"users": {OTHER: {"name": "别人", "roles": ["open", "topup"]}}})
    try:
        client = ControlClient(server.path, timeout=5)
        with caplog.at_level(logging.WARNING, "lanectl.adapters.control_socket"):
            assert await refusal(client.open_barrier(lane="OUT1", reason="x", operator="别人")) == \
                (403, "not_an_operator")
            assert await refusal(client.open_barrier(lane="OUT1", reason="x")) == (403, "not_an_operator")
            assert await refusal(client.topup(plate="粤B77777", amount_fen=1, reason="x")) == \
                (403, "not_an_operator")
        status = await client.status()  # reading needs no role
        # the first refusal is logged at once, the rest are counted (one line per interval, or at stop)
        assert len([r for r in caplog.records if "operator requests refused" in r.getMessage()]) == 1
    finally:
        await server.stop()
    assert app.names() == ["status"] and status["lanes"]


async def test_a_caller_without_the_role_is_not_allowed(short_dir, app):
    server = await serve(short_dir, app, {"users": {ME: {"name": "值班员", "roles": ["open"]}}})
    try:
        client = ControlClient(server.path, timeout=5)
        assert await refusal(client.topup(plate="粤B77777", amount_fen=100, reason="cash")) == (403, "not_allowed")
    finally:
        await server.stop()
    assert app.calls == []


async def test_without_a_section_the_typed_name_is_used_and_the_uid_recorded(short_dir, app, caplog):
    server = await serve(short_dir, app, None)
    try:
        client = ControlClient(server.path, timeout=5)
        with caplog.at_level(logging.INFO, "lanectl.adapters.control_socket"):
            await client.open_barrier(lane="OUT1", reason="cash", operator="张三")
            await client.open_barrier(lane="OUT1", reason="cash")  # no name: the unix user name, never empty
    finally:
        await server.stop()
    assert [c[1]["operator"] for c in app.calls] == ["张三", my_unix_name()]
    assert app.uids == [ME, ME]
    assert f"control open requested: lane=OUT1 operator='张三' reason='cash' amount_fen=None uid={ME} pid=" \
        in caplog.text


@pytest.mark.skipif(ME != 0, reason="only root can be refused through a group grant it holds")
async def test_root_is_refused_through_a_group_grant(short_dir, app):
    server = await serve(short_dir, app, {"groups": {"root": ["open"]}})
    try:
        assert await refusal(ControlClient(server.path, timeout=5).open_barrier(lane="OUT1", reason="x")) == \
            (403, "not_an_operator")
    finally:
        await server.stop()
    assert app.calls == []


# A child process drops to another uid and asks for an open: the daemon must see that uid, not its parent's.
_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from lanectl.adapters.control_client import ControlClient, ControlClientError
    path, uid = sys.argv[2], int(sys.argv[3])
    try:  # warm up every lazy import while still privileged
        ControlClient(path + ".absent").call_sync("status")
    except ControlClientError:
        pass
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    try:
        print(ControlClient(path).call_sync("open", lane="OUT1", reason="night shift")["lane"])
    except ControlClientError as exc:
        print(type(exc).__name__, exc.code)
    """
)


def open_as(path: str, uid: int) -> str:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(REPO_ROOT), path, str(uid)],
                         capture_output=True, text=True, timeout=30, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_another_uid_is_told_apart_by_the_kernel(short_dir, app):
    os.chmod(short_dir, 0o755)
    server = await serve(short_dir, app, {"users": {65534: {"name": "夜班", "roles": ["open"]},
                                                     ME: {"name": "值班员", "roles": ["open"]}}}, mode=0o666)
    try:
        assert await asyncio.to_thread(open_as, server.path, 65534) == "OUT1"
        assert await asyncio.to_thread(open_as, server.path, 65533) == "ControlError not_an_operator"
    finally:
        await server.stop()
    assert [c[1]["operator"] for c in app.calls] == ["夜班"]
    assert app.uids == [65534]
