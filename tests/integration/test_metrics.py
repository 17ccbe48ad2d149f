"""/metrics on the LAN face of a daemon built from fakes (devices, clock) over real SQLite and real listeners: after a
car passes, every series docs/operations.md lists is there with the figures the daemon holds; the public face
answers 404 for it; the text parses as the Prometheus format."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lanectl.bootstrap import build_app
from lanectl.config import load_config
from lanectl.core.events import DeviceFault, DeviceRecovered, PlateRead
from tests.fakes import FakeClock, FakeControlServer, FakeLaneDevices, FakeNotifier
from tests.minimal_site import AT_THE_LOOP, DEVICE_LANE, write_minimal_config
from tests.unit.test_lane_runner_storage import until

SERIES = ("lanectl_decisions", "lanectl_plate_to_command_seconds", "lanectl_barrier_commands",
          "lanectl_device_faults", "lanectl_device_fault_duration_seconds", "lanectl_device_fault_active",
          "lanectl_outbox_pending", "lanectl_outbox_dead", "lanectl_outbox_oldest_age_seconds",
          "lanectl_settlement_attempts", "lanectl_late_payments", "lanectl_http_requests",
          "lanectl_database_size_bytes", "lanectl_storage_ok")


def samples(text: str) -> dict[str, Any]:
    """{family name: {sample name + sorted labels: value}}; parsing is the format check."""
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        values = out.setdefault(family.name, {})
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def one(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    return families[family][(sample, tuple(sorted(labels.items())))]


@pytest.fixture
def daemon_config(tmp_path: Path):
    # the webhook's address refuses connections: the car's record stays pending in the outbox
    etc = write_minimal_config(tmp_path, uploads={"webhook": {"url": "http://127.0.0.1:1/records"}})
    (etc / "lanes" / "in1.yaml").write_text(DEVICE_LANE)
    return load_config(etc)


async def test_metrics_after_a_car_passes(daemon_config):
    clock, devices = FakeClock(), FakeLaneDevices()
    app = build_app(daemon_config, clock=clock, devices=devices, control=FakeControlServer, notifier=FakeNotifier(),
                    raise_nofile=lambda: (4096, 4096))
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), 5)
        barrier, camera = devices.barriers["in1"], devices.readers["in1"]
        await barrier.send(AT_THE_LOOP)
        await camera.send(PlateRead("粤B12345", "blue", 95, "in1-camera"))
        await asyncio.wait_for(barrier.opened.wait(), 5)
        await camera.send(DeviceFault("plate_reader", "port gone"))
        await clock.advance(3)
        await camera.send(DeviceRecovered("plate_reader"))
        await clock.advance(2)  # the record waits in the outbox 5 s in all
        await clock.settle()
        # settle() sees a quiet loop while a commit runs on the store's thread: the lane's own word is waited for
        await until(lambda: not app.runners["in1"].status.plate_reader_fault, "the plate reader's recovery", 10)

        assert app.lan is not None
        lan = f"http://127.0.0.1:{app.lan.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{app.http.port}/metrics") as public:
                assert public.status == 404  # never on the face the internet reaches
            async with http.get(f"{lan}/healthz") as health:
                assert health.status == 200
            async with http.get(f"{lan}/metrics") as answer:
                assert answer.status == 200 and answer.content_type == "text/plain"
                text = await answer.text()
        got = samples(text)
        assert set(SERIES) <= set(got)
        assert one(got, "lanectl_decisions", "lanectl_decisions_total", lane="in1", kind="entry",
               outcome="inside") == 1
        assert one(got, "lanectl_plate_to_command_seconds", "lanectl_plate_to_command_seconds_count", lane="in1") == 1
        assert one(got, "lanectl_barrier_commands", "lanectl_barrier_commands_total", lane="in1", command="open",
                   result="ok") == 1
        assert one(got, "lanectl_device_faults", "lanectl_device_faults_total", lane="in1",
                   device="plate_reader") == 1
        assert one(got, "lanectl_device_fault_duration_seconds", "lanectl_device_fault_duration_seconds_sum",
                   lane="in1", device="plate_reader") == pytest.approx(3)
        assert one(got, "lanectl_device_fault_active", "lanectl_device_fault_active", lane="in1",
                   device="plate_reader") == 0
        assert one(got, "lanectl_outbox_pending", "lanectl_outbox_pending", destination="webhook") == 1
        assert one(got, "lanectl_outbox_dead", "lanectl_outbox_dead", destination="webhook") == 0
        assert one(got, "lanectl_outbox_oldest_age_seconds", "lanectl_outbox_oldest_age_seconds",
                   destination="webhook") == pytest.approx(5, abs=0.5)
        assert one(got, "lanectl_database_size_bytes", "lanectl_database_size_bytes") > 4096
        assert one(got, "lanectl_storage_ok", "lanectl_storage_ok") == 1
        # the scheduled jobs: none has come due yet, so failures 0 and no last result
        for job in ("backup", "retention", "vacuum", "report"):
            assert one(got, "lanectl_housekeeping_failures", "lanectl_housekeeping_failures", job=job) == 0
        assert not got.get("lanectl_housekeeping_last_ok")
        # requests by route pattern and status, on both faces (this scrape is counted once it is answered)
        assert one(got, "lanectl_http_requests", "lanectl_http_requests_total", face="public", route="unmatched",
                   status="404") == 1
        assert one(got, "lanectl_http_requests", "lanectl_http_requests_total", face="LAN", route="/healthz",
                   status="200") == 1
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 5)


async def test_metrics_disabled_leaves_the_lan_face_closed_without_cameras(tmp_path: Path):
    config = load_config(write_minimal_config(tmp_path, metrics={"enabled": False}))
    app = build_app(config, clock=FakeClock(), devices=FakeLaneDevices(), control=FakeControlServer,
                    notifier=FakeNotifier(), raise_nofile=lambda: (4096, 4096))
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), 5)
        assert app.lan is None and (await app.health())["listeners"] == {"public": True, "lan": None}
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 5)


async def test_an_unreadable_store_leaves_the_outbox_series_out_rather_than_zero(daemon_config):
    from lanectl.service.ports import StorageUnavailable
    from tests.fakes import FakeListener, MemoryDaemonStore

    store = MemoryDaemonStore()
    app = build_app(daemon_config, store=store, clock=FakeClock(), devices=FakeLaneDevices(), listener=FakeListener,
                    control=FakeControlServer, notifier=FakeNotifier(), raise_nofile=lambda: (4096, 4096))
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), 5)
        assert (await app.metric_figures()).outbox == {"webhook": (0, 0, 0.0)}

        async def unreadable(destinations: list) -> dict:
            raise StorageUnavailable("disk I/O error")
        store.outbox_depths = unreadable  # type: ignore[method-assign]
        figures = await app.metric_figures()
        assert figures.outbox == {} and figures.faults[("in1", "barrier")] is False
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 5)
