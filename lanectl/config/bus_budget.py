"""Can an RS-485 bus poll all its barrier IO modules at the configured period? (a `check-config` warning)

Every lane on one serial line polls its module's inputs (Modbus RTU function 2) once per `poll_ms`, and the
line carries one frame at a time. One poll is an 8-byte request and a (5 + input bytes)-byte answer, each
followed by the 3.5-character silence that ends an RTU frame; the module's own answer delay comes on top. So
a line cannot poll its units faster than the sum of their poll frames: at 9600 baud 8N1 ~21.9 ms a unit,
~175 ms for 8. A lane configured faster is polled late, and its loops are seen late.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

from lanectl.config.devices import ModbusRtuBarrier

REQUEST_BYTES = 8  # unit, function, start (2), count (2), CRC (2)
ANSWER_OVERHEAD_BYTES = 5  # unit, function, byte count, CRC (2) — plus the input bits, 8 a byte


def bits_per_char(bytesize: int, parity: str, stopbits: int) -> int:
    """Start bit + data + parity + stop bits (8N1 = 10, 8E1 = 11)."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def frame_silence_ms(baudrate: int, bits: int) -> float:
    """t3.5 between RTU frames; fixed 1.75 ms above 19200 baud (Modbus over serial line, 2.5.1.1)."""
    return 1.75 if baudrate > 19200 else 3.5 * bits / baudrate * 1000


def poll_ms(barrier: ModbusRtuBarrier) -> float:
    """Line time of one input poll of this module: request, answer and the silence after each."""
    p = barrier.points
    inputs = [p.arming, p.safety, p.up_limit, p.down_limit] + ([p.anti_smash] if p.anti_smash is not None else [])
    count = max(inputs) - min(inputs) + 1  # the adapter reads every input in one request
    bits = bits_per_char(barrier.bytesize, barrier.parity, barrier.stopbits)
    chars = REQUEST_BYTES + ANSWER_OVERHEAD_BYTES + math.ceil(count / 8)
    return chars * bits / barrier.baudrate * 1000 + 2 * frame_silence_ms(barrier.baudrate, bits)


def bus_warnings(barriers: Mapping[str, ModbusRtuBarrier], files: Mapping[str, Path]) -> list[str]:
    """One warning per lane whose bus cannot poll every unit on it within the lane's poll_ms.
    `barriers`: lane id -> its RTU barrier; `files`: lane id -> its lane file (named in the warning)."""
    by_line: dict[str, list[str]] = {}
    for lane_id, barrier in barriers.items():
        by_line.setdefault(str(Path(barrier.port)), []).append(lane_id)
    out = []
    for port, lanes in by_line.items():
        minimum = sum(poll_ms(barriers[lane]) for lane in lanes)
        baud = barriers[lanes[0]].baudrate
        for lane in sorted(lanes):
            configured = barriers[lane].poll_ms
            if configured < minimum:
                out.append(f"{files[lane]}: devices.barrier.poll_ms: {configured} ms is shorter than bus {port} "
                           f"can poll its {len(lanes)} unit(s) at {baud} baud: at least {minimum:.0f} ms a round "
                           f"(~{minimum / len(lanes):.1f} ms a poll); inputs will be read late (raise poll_ms to "
                           f"{math.ceil(minimum / 10) * 10} or more, or split the units over more lines)")
    return out

