"""`check-config` warns when an RS-485 bus cannot poll all its barrier modules at the configured period."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanectl.cli import main
from lanectl.config import load_config
from lanectl.config.bus_budget import bus_warnings, poll_ms
from lanectl.config.devices import ModbusRtuBarrier


def rtu(**kw) -> ModbusRtuBarrier:
    return ModbusRtuBarrier(kind="modbus_rtu", **{"port": "/dev/ttyUSB0", **kw})


def test_one_poll_is_request_answer_and_two_silences():
    # 9600 8N1, 5 inputs: 8 + 6 characters of 10 bits, and two t3.5 of 3.65 ms
    assert poll_ms(rtu()) == pytest.approx(14 * 10 / 9600 * 1000 + 2 * 3.5 * 10 / 9600 * 1000)
    assert poll_ms(rtu()) == pytest.approx(21.875)
    # parity adds a bit per character; above 19200 baud t3.5 is a fixed 1.75 ms
    assert poll_ms(rtu(parity="E")) == pytest.approx(21.875 * 11 / 10)
    assert poll_ms(rtu(baudrate=115200)) == pytest.approx(14 * 10 / 115200 * 1000 + 3.5)
    # more than 8 inputs in the read: a second data byte in the answer
    far = rtu(points={"anti_smash": 9})
    assert poll_ms(far) == pytest.approx(21.875 + 10 / 9600 * 1000)


def test_a_bus_warns_for_each_lane_configured_faster_than_its_units_can_be_polled():
    files = {f"in{i}": Path(f"/etc/lanectl/lanes/in{i}.yaml") for i in range(1, 9)}
    eight = {f"in{i}": rtu(unit=i, poll_ms=200 if i > 1 else 50) for i in range(1, 9)}
    [warning] = bus_warnings(eight, files)  # 8 x 21.9 = 175 ms: only the lane at 50 ms is too fast
    assert warning.startswith("/etc/lanectl/lanes/in1.yaml: devices.barrier.poll_ms: 50 ms")
    assert "/dev/ttyUSB0" in warning and "8 unit(s)" in warning and "at least 175 ms" in warning
    # the same units spread over two lines: each line polls its 4 in 88 ms
    split = {lane: b.model_copy(update={"port": "/dev/ttyUSB1"}) if int(lane[2:]) % 2 else b
             for lane, b in eight.items()}
    [warning] = bus_warnings({**split, "in1": rtu(unit=1, port="/dev/ttyUSB1", poll_ms=80)}, files)
    assert "80 ms" in warning and "/dev/ttyUSB1" in warning and "4 unit(s)" in warning and "88 ms" in warning
    assert bus_warnings({**split, "in1": rtu(unit=1, port="/dev/ttyUSB1", poll_ms=90)}, files) == []


def test_check_config_prints_the_warning_naming_the_bus_and_the_figure(example_config: Path, capsys):
    # the example: two lanes on one 9600 bus at 50 ms (2 x 21.9 ms fits); east_in at 40 ms does not
    assert not any("poll_ms" in w for w in load_config(example_config).warnings)
    p = example_config / "lanes" / "east-in.yaml"
    p.write_text(p.read_text().replace("poll_ms: 50", "poll_ms: 40"))
    assert main(["check-config", str(example_config)]) == 0  # a warning, not an error
    [line] = [line for line in capsys.readouterr().out.splitlines() if "poll_ms" in line]
    assert line.startswith("warning: ") and "east-in.yaml: devices.barrier.poll_ms: 40 ms" in line
    assert "usb-FTDI_USB-RS485-if00-port0" in line and "2 unit(s)" in line and "at least 44 ms" in line
