"""Per-lane device sections of the lane YAML (barrier IO, plate reader). Typos are errors (extra="forbid")."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from lanectl.config_base import Strict


class SerialLine(Strict):
    port: str  # a tty path: /dev/ttyUSB0, /dev/serial/by-id/..., a pty from the HIL rig
    baudrate: int = Field(9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


class PointMap(Strict):
    """Modbus addresses (0-based) of the barrier IO module; the default is the map in lane-hardware.md."""

    open: int = Field(0, ge=0)  # coil, pulse
    close: int = Field(1, ge=0)  # coil, pulse
    stop: int = Field(2, ge=0)  # coil, pulse
    arming: int = Field(0, ge=0)  # discrete input, level
    safety: int = Field(1, ge=0)
    up_limit: int = Field(2, ge=0)
    down_limit: int = Field(3, ge=0)
    anti_smash: Optional[int] = Field(4, ge=0)  # null when the lane has no anti-smash sensor

    @model_validator(mode="after")
    def _distinct(self) -> "PointMap":
        coils = [self.open, self.close, self.stop]
        inputs = [self.arming, self.safety, self.up_limit, self.down_limit]
        if self.anti_smash is not None:
            inputs.append(self.anti_smash)
        if len(set(coils)) != len(coils):
            raise ValueError("open, close and stop must be different coils")
        if len(set(inputs)) != len(inputs):
            raise ValueError("arming, safety, up_limit, down_limit and anti_smash must be different inputs")
        return self


class _ModbusCommon(Strict):
    unit: int = Field(1, ge=0, le=247)
    points: PointMap = PointMap()
    poll_ms: int = Field(50, ge=10, le=5000)
    timeout_s: float = Field(0.5, gt=0, le=10)
    retries: int = Field(1, ge=0, le=5)
    pulse_ms: int = Field(300, ge=0, le=5000)  # 0: write ON only, the module resets the coil itself


class ModbusRtuBarrier(_ModbusCommon, SerialLine):
    kind: Literal["modbus_rtu"]


class ModbusTcpBarrier(_ModbusCommon):
    kind: Literal["modbus_tcp"]
    host: str
    tcp_port: int = Field(502, gt=0, lt=65536)


BarrierConfig = Annotated[Union[ModbusRtuBarrier, ModbusTcpBarrier], Field(discriminator="kind")]


class SerialPlateReader(SerialLine):
    kind: Literal["serial_line"]
    encoding: Literal["gbk", "utf-8"] = "gbk"
    delimiter: str = Field(",", min_length=1, max_length=3)


PlateReaderConfig = Annotated[Union[SerialPlateReader], Field(discriminator="kind")]


class LaneDevices(Strict):
    barrier: Optional[BarrierConfig] = None
    plate_reader: Optional[PlateReaderConfig] = None
