"""What a lane records for /metrics: its decisions, the plate-to-OPEN latency of a delivered OPEN only, each barrier
command's result, and a device fault counted once when it begins and timed when it ends."""

from __future__ import annotations

from lanectl.core import effects as fx
from lanectl.core.events import DeviceFault, DeviceRecovered, PlateRead
from lanectl.service.ports import BarrierError, NoMetrics
from tests.fakes import FakeBarrier
from tests.unit.test_lane_runner_storage import Lane, until


class RecordedMetrics(NoMetrics):
    def __init__(self) -> None:
        self.decisions: list[tuple[str, str, str]] = []
        self.latencies: list[float] = []
        self.commands: list[tuple[str, str, str]] = []
        self.faults: list[tuple[str, str]] = []
        self.recovered: list[tuple[str, str, float]] = []

    def decision(self, lane_id: str, kind: str, outcome: str) -> None:
        self.decisions.append((lane_id, kind, outcome))

    def plate_to_command(self, lane_id: str, seconds: float) -> None:
        self.latencies.append(seconds)

    def barrier_command(self, lane_id: str, command: str, result: str) -> None:
        self.commands.append((lane_id, command, result))

    def device_fault(self, lane_id: str, device: str) -> None:
        self.faults.append((lane_id, device))

    def device_recovered(self, lane_id: str, device: str, seconds: float) -> None:
        self.recovered.append((lane_id, device, seconds))


class DeadBarrier(FakeBarrier):
    async def open(self) -> None:
        raise BarrierError("no answer from unit 1")


async def test_a_car_let_in_is_one_decision_one_delivered_open_and_one_latency():
    async with Lane() as lane:
        lane.runner.metrics = metrics = RecordedMetrics()
        lane.runner.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: metrics.commands == [("l1", "open", "ok")], "the OPEN delivered")
        assert metrics.decisions == [("l1", "entry", "inside")]
        assert len(metrics.latencies) == 1 and 0 <= metrics.latencies[0] < 2


async def test_an_open_not_delivered_is_counted_failed_without_a_latency():
    async with Lane() as lane:
        lane.runner.barrier = lane.barrier = DeadBarrier()
        lane.runner.metrics = metrics = RecordedMetrics()
        lane.runner.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: metrics.commands == [("l1", "open", "failed")], "the OPEN failed")
        assert metrics.latencies == [] and len(lane.store.written(fx.NewRecord)) == 1


async def test_a_fault_reported_twice_counts_once_and_is_timed_when_it_ends():
    async with Lane() as lane:
        lane.runner.metrics = metrics = RecordedMetrics()
        lane.runner.emit(DeviceFault("plate_reader", "port gone"))
        lane.runner.emit(DeviceFault("plate_reader", "still gone"))
        lane.runner.emit(DeviceRecovered("plate_reader"))
        lane.runner.emit(DeviceRecovered("plate_reader"))  # a recovery without a fault open: nothing to time
        await until(lambda: lane.runner.status.events >= 5, "the four events handled")
        assert metrics.faults == [("l1", "plate_reader")]
        assert [(lane_id, device) for lane_id, device, _ in metrics.recovered] == [("l1", "plate_reader")]
        assert metrics.recovered[0][2] >= 0


async def test_a_serial_device_fault_is_in_the_lane_status_and_the_sd_notify_line_until_it_recovers():
    from lanectl.app import lane_faults
    async with Lane() as lane:
        lane.runner.emit(DeviceFault("plate_reader", "/dev/ttyUSB0: no such device"))
        lane.runner.emit(DeviceFault("scanner", "/dev/ttyUSB1: no such device"))
        await until(lambda: lane.runner.status.scanner_fault != "", "the scanner's fault published")
        assert lane.runner.status.plate_reader_fault == "/dev/ttyUSB0: no such device"
        assert lane_faults(lane.runner.status) == ["plate reader: /dev/ttyUSB0: no such device",
                                                   "scanner: /dev/ttyUSB1: no such device"]
        lane.runner.emit(DeviceRecovered("plate_reader"))
        await until(lambda: lane.runner.status.plate_reader_fault == "", "the plate reader's recovery published")
        assert lane_faults(lane.runner.status) == ["scanner: /dev/ttyUSB1: no such device"]
