"""hil.emulators.barrier_io: the physics model alone, then the pymodbus server it sits behind."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from hil.emulators.barrier_io import BarrierEmulator, BarrierModel, Physics
from hil.wire import VirtualCable
from lanectl.config.devices import PointMap

DI_ARMING, DI_SAFETY, DI_UP, DI_DOWN, DI_ANTI = range(5)
COIL_OPEN, COIL_CLOSE, COIL_STOP = range(3)




# --- the model, driven by hand (no clock, no server) -------------------------------------------------------


def _model(**physics) -> BarrierModel:
    return BarrierModel(1, PointMap(), Physics(**{"rise_s": 1.0, "fall_s": 1.0, **physics}))


def _run(model: BarrierModel, seconds: float, t0: float = 0.0, dt: float = 0.01) -> list[str]:
    events: list[str] = []
    for i in range(1, round(seconds / dt) + 1):
        events += model.tick(t0 + i * dt, dt)
    return events


def test_model_open_rises_over_rise_s_to_up_limit():
    m = _model(rise_s=0.5)
    assert m.down_limit and not m.up_limit
    assert m.write_coil(COIL_OPEN, True, 0.0) == ["open"]
    assert _run(m, 0.25) == [] and 0.45 < m.position < 0.55 and not m.down_limit
    assert _run(m, 0.30) == ["up_limit"] and m.up_limit and m.motion == 0


def test_model_commands_act_on_rising_edges_only():
    m = _model()
    assert m.write_coil(COIL_OPEN, True, 0.0) == ["open"]
    assert m.write_coil(COIL_OPEN, True, 0.1) == []  # still ON: no new edge
    assert m.write_coil(COIL_OPEN, False, 0.2) == []
    assert m.write_coil(COIL_OPEN, True, 0.3) == ["open"]
    assert m.write_coil(9, True, 0.4) == []  # a coil the map does not use


def test_model_close_refused_while_safety_or_anti_smash_occupied():
    m = _model(rise_s=0.1, fall_s=0.1)
    m.command("open")
    _run(m, 0.2)
    m.safety = True
    assert m.write_coil(COIL_CLOSE, True, 1.0) == ["close", "close_refused"]
    _run(m, 0.3)
    assert m.up_limit and m.close_refused == 1
    m.safety, m.anti_smash = False, True
    m.write_coil(COIL_CLOSE, False, 2.0)
    assert m.write_coil(COIL_CLOSE, True, 2.1) == ["close", "close_refused"]
    assert m.close_refused == 2 and m.arm_hits == 0


def test_model_reverses_when_a_car_enters_under_a_lowering_arm():
    m = _model(rise_s=0.1, fall_s=1.0)
    m.command("open")
    _run(m, 0.2)
    m.command("close")
    _run(m, 0.3)
    assert 0.6 < m.position < 0.8
    m.safety = True
    assert _run(m, 0.5) == ["reversed", "up_limit"]
    assert m.arm_hits == 0


def test_model_without_protection_counts_arm_hits():
    m = _model(rise_s=0.1, fall_s=0.5, safety_reverse=False)
    m.command("open")
    _run(m, 0.2)
    m.safety = True
    assert m.command("close") == []  # an unprotected barrier obeys
    assert m.close_refused == 1
    assert _run(m, 0.6) == ["arm_hit", "down_limit"]
    assert m.arm_hits == 1  # one hit per lowering, not one per tick


def test_model_stop_halts_and_close_lowers_to_down_limit():
    m = _model(rise_s=1.0, fall_s=0.2)
    m.command("open")
    _run(m, 0.3)
    m.command("stop")
    pos = m.position
    _run(m, 0.3)
    assert m.position == pos and not m.up_limit and not m.down_limit
    m.command("close")
    assert _run(m, 0.3) == ["down_limit"] and m.down_limit


def test_model_auto_close_after_the_loops_clear():
    m = _model(rise_s=0.1, fall_s=0.1, auto_close_s=0.5)
    m.command("open")
    m.arming = True
    _run(m, 1.0)
    assert m.up_limit  # a car waits on the arming loop: no auto close
    m.arming, m.safety = False, True
    _run(m, 1.0, t0=1.0)
    assert m.up_limit
    m.safety = False
    events = _run(m, 0.8, t0=2.0)
    assert events == ["auto_close", "down_limit"] and m.auto_closes == 1


def test_model_coil_auto_reset():
    m = _model(coil_auto_reset_s=0.1)
    m.write_coil(COIL_OPEN, True, 0.0)
    _run(m, 0.05)
    assert m.coils[COIL_OPEN]
    _run(m, 0.1, t0=0.05)
    assert not m.coils[COIL_OPEN]
    assert m.write_coil(COIL_OPEN, True, 0.2) == ["open"]


# --- the server --------------------------------------------------------------------------------------------


async def _tcp_client(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.3, retries=0, reconnect_delay=0)
    assert await client.connect()
    return client


async def test_tcp_server_reads_inputs_and_records_coil_commands():
    seen: list[tuple[int, str, float]] = []
    emu = BarrierEmulator((1,), physics=Physics(rise_s=0.1, fall_s=0.1), on_command=lambda *a: seen.append(a))
    async with emu:
        port = await emu.start_tcp(0)
        assert port > 0 and emu.port == port
        client = await _tcp_client(port)
        try:
            rsp = await client.read_discrete_inputs(0, count=5, device_id=1)
            assert rsp.bits[:5] == [False, False, False, True, False]  # down limit
            emu.set_loop(1, "arming", True)
            emu.set_anti_smash(1, True)
            rsp = await client.read_discrete_inputs(0, count=5, device_id=1)
            assert rsp.bits[:5] == [True, False, False, True, True]
            emu.set_anti_smash(1, False)

            t_before = time.monotonic()
            assert not (await client.write_coil(COIL_OPEN, True, device_id=1)).isError()
            assert (await client.read_coils(0, count=3, device_id=1)).bits[:3] == [True, False, False]
            await client.write_coil(COIL_OPEN, False, device_id=1)
            assert [(u, n) for u, n, _ in seen] == [(1, "open")]
            assert t_before <= seen[0][2] <= time.monotonic()
            assert emu.commands[0].name == "open"
            assert [(w.coil, w.value) for w in emu.coil_writes] == [(0, True), (0, False)]

            await emu.wait_event(1, "up_limit", timeout=2)
            rsp = await client.read_discrete_inputs(0, count=5, device_id=1)
            assert rsp.bits[DI_UP] and not rsp.bits[DI_DOWN]
        finally:
            client.close()


async def test_multiple_coils_write_and_two_units_are_independent():
    emu = BarrierEmulator((1, 2), physics=Physics(rise_s=0.1, fall_s=0.1))
    async with emu:
        client = await _tcp_client(await emu.start_tcp(0))
        try:
            await client.write_coils(0, [True, False, False], device_id=2)  # function 15
            await emu.wait_event(2, "up_limit", timeout=2)
            assert emu.barrier(1).down_limit and emu.barrier(2).up_limit
            assert [(e.unit, e.name) for e in emu.commands] == [(2, "open")]
        finally:
            client.close()


async def test_unknown_unit_is_silent_without_tracebacks(caplog):
    emu = BarrierEmulator((1,))
    async with emu:
        client = await _tcp_client(await emu.start_tcp(0))
        try:
            with caplog.at_level(logging.DEBUG, logger="pymodbus"):
                with pytest.raises(ModbusIOException):
                    await client.read_discrete_inputs(0, count=5, device_id=9)
            assert emu.ignored_requests == 1
            assert not [r for r in caplog.records if "Traceback" in r.getMessage() or "KeyError" in r.getMessage()]
            assert not (await client.read_discrete_inputs(0, count=5, device_id=1)).isError()
        finally:
            client.close()


async def test_custom_point_map_and_out_of_range_address():
    points = PointMap(open=8, close=9, stop=10, arming=16, safety=17, up_limit=18, down_limit=19, anti_smash=None)
    emu = BarrierEmulator((1,), points=points, physics=Physics(rise_s=0.05))
    async with emu:
        client = await _tcp_client(await emu.start_tcp(0))
        try:
            rsp = await client.read_discrete_inputs(16, count=4, device_id=1)
            assert rsp.bits[:4] == [False, False, False, True]
            await client.write_coil(8, True, device_id=1)
            await emu.wait_event(1, "up_limit", timeout=2)
            # The module has 32 inputs; a read past them is an exception answer (illegal address).
            rsp = await client.read_discrete_inputs(30, count=8, device_id=1)
            assert rsp.isError() and rsp.exception_code == 2
        finally:
            client.close()


async def test_rtu_over_virtual_cable_survives_unplug(tmp_path):
    a, b = str(tmp_path / "daemon"), str(tmp_path / "device")
    with VirtualCable(a, b, baudrate=19200) as cable:
        emu = BarrierEmulator((1, 2), physics=Physics(rise_s=0.05))
        async with emu:
            await emu.start_serial(b, baudrate=19200)
            client = AsyncModbusSerialClient(a, baudrate=19200, timeout=0.3, retries=0, reconnect_delay=0)
            try:
                assert await client.connect()
                assert (await client.read_discrete_inputs(0, count=5, device_id=2)).bits[DI_DOWN]
                cable.unplug()
                await asyncio.sleep(0.2)
                client.close()
                cable.plug()
                assert await client.connect()
                # The emulator notices the vanished port and reopens it by itself.
                deadline = time.monotonic() + 3
                while True:
                    try:
                        await client.write_coil(COIL_OPEN, True, device_id=1)
                        break
                    except ModbusIOException:
                        assert time.monotonic() < deadline, "emulator did not reopen its port"
                await emu.wait_event(1, "up_limit", timeout=2)
            finally:
                client.close()


async def test_rtu_resyncs_on_silence_after_a_partial_frame(tmp_path):
    # The tail of a frame (a port opened mid-frame) must not poison the next request, as on a real line.
    a, b = str(tmp_path / "daemon"), str(tmp_path / "device")
    read_inputs = bytes.fromhex("010200000005b809")  # unit 1, read 5 discrete inputs from 0, CRC
    with VirtualCable(a, b, baudrate=9600):
        async with BarrierEmulator((1,)) as emu:
            await emu.start_serial(b, baudrate=9600)
            with serial.Serial(a, baudrate=9600, timeout=0.5) as port:
                port.write(b"\x05\xb8")  # garbage: the end of some earlier frame
                await asyncio.sleep(0.25)  # a silence longer than the emulator's resync threshold
                port.write(read_inputs)
                await asyncio.sleep(0.1)
                assert port.read(6) == bytes.fromhex("01020108a04e")  # down limit set


def test_standalone_cli_prints_what_happens():
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.emulators.barrier_io", "--tcp", "0", "--units", "1,2", "--rise", "0.05"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=Path(__file__).resolve().parents[2],  # the repo root, so `-m hil...` resolves from anywhere
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = None
        for _ in range(20):
            line = proc.stdout.readline()
            if line.startswith("listening on"):
                port = int(line.rsplit(":", 1)[1])
                break
        assert port, "no 'listening on' line"

        async def poke() -> None:
            client = await _tcp_client(port)
            try:
                await client.write_coil(COIL_OPEN, True, device_id=2)
            finally:
                client.close()

        asyncio.run(poke())
        time.sleep(0.3)
        proc.stdin.write("2 safety on\nstatus\nquit\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "unit 2: open" in out and "unit 2: up_limit" in out
    assert "unit 2: position=1.00" in out and "safety=True" in out
    assert proc.returncode == 0
