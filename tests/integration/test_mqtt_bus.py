"""The MQTT site bus on a real Mosquitto 2 (tests/mosquitto.py; clients from tests/bus_clients.py): password auth
and ACL, client certificates, QoS 1, presence with a last will, fail-over between broker URIs, reconnect +
re-subscribe after a broker restart, retained telemetry."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.clock import SystemClock
from lanectl.adapters.mqtt_bus import BrokerRefused, MqttBus, PublishRefused
from lanectl.config.site_bus import SiteBusConfig
from lanectl.service.site_bus import BusUnavailable
from lanectl.service.telemetry import TelemetryPublisher
from tests.bus_clients import PARK, Inbox, bus, config, running, until, watcher
from tests.mosquitto import USERS, Mosquitto, free_port

pytestmark = pytest.mark.timeout(30)


ONLINE_A = f"lanectl/{PARK}/boothA/online"


@pytest.fixture(autouse=True)
def no_paho_thread_left():
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("paho-mqtt-client")]
    assert not left, f"paho network threads still running: {left}"


async def test_a_booth_connects_with_its_password_and_says_it_is_online_retained(mosquitto):
    async with running(bus(mosquitto.uri)):
        screen, inbox = watcher(mosquitto)  # subscribes after the booth said it: the retained message
        async with running(screen):
            await inbox.wait(ONLINE_A, b"true")


async def test_qos1_publish_returns_after_the_broker_acknowledged_and_reaches_subscribers(mosquitto):
    a, b = bus(mosquitto.uri), bus(mosquitto.uri, user="booth2", booth="boothB")
    inbox = Inbox()
    b.subscribe(f"lanectl/{PARK}/+/records/#", inbox)
    async with running(a), running(b):
        for i in range(20):
            await a.publish(f"lanectl/{PARK}/boothA/records/r{i}", f"record {i}".encode(), qos=1)
        await until(lambda: len(inbox.messages) == 20)
    assert [p for _, p in inbox.messages] == [f"record {i}".encode() for i in range(20)]  # in order


async def test_publish_raises_bus_unavailable_when_not_connected(mosquitto):
    b = bus(mosquitto.uri)
    with pytest.raises(BusUnavailable):
        await b.publish(f"lanectl/{PARK}/boothA/x", b"1")


async def test_a_wrong_password_is_refused_with_a_typed_error_logged_once(mosquitto, caplog):
    caplog.set_level(logging.INFO, "lanectl.site_bus")
    b = bus(mosquitto.uri, password="wrong")
    async with running(b, connected=False):
        await until(lambda: b.attempts >= 4)
        assert isinstance(b.last_error, BrokerRefused) and not b.connected
        # mosquitto 2.0 answers a bad password with "not authorized" (135), later ones with 134
        assert b.last_error.reason.lower() in ("not authorized", "bad user name or password")
        with pytest.raises(BusUnavailable):
            await b.publish(f"lanectl/{PARK}/boothA/x", b"1")
    refusals = [r for r in caplog.records if r.levelno == logging.ERROR and "refused" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert len([r for r in caplog.records if "site bus down" in r.getMessage()]) == 1


async def test_the_acl_keeps_a_read_only_client_from_publishing_with_a_typed_refusal(mosquitto, caplog):
    caplog.set_level(logging.ERROR, "lanectl.site_bus")
    screen, inbox = watcher(mosquitto, f"lanectl/{PARK}/forged/#")
    async with running(screen), running(bus(mosquitto.uri)) as a:
        for _ in range(2):
            with pytest.raises(PublishRefused, match="Not authorized"):
                await screen.publish(f"lanectl/{PARK}/forged/open", b"lane1")
        # the booth's message, sent after, arrives first and alone: the screen's never will
        await a.publish(f"lanectl/{PARK}/forged/ok", b"1")
        await until(lambda: inbox.messages != [])
    assert inbox.messages == [(f"lanectl/{PARK}/forged/ok", b"1")]
    assert len([r for r in caplog.records if "refused a message on lanectl/P1/forged" in r.getMessage()]) == 1


async def test_a_clean_stop_says_offline_before_disconnecting(mosquitto):
    screen, inbox = watcher(mosquitto, f"lanectl/{PARK}/+/online")
    async with running(screen):
        async with running(bus(mosquitto.uri)):
            await inbox.wait(ONLINE_A, b"true")
        await inbox.wait(ONLINE_A, b"false")
    late, late_inbox = watcher(mosquitto, f"lanectl/{PARK}/+/online")
    async with running(late):
        await late_inbox.wait(ONLINE_A, b"false")  # retained


BOOTH_PROCESS = """
import asyncio, sys
from lanectl.adapters.mqtt_bus import MqttBus
from lanectl.config.site_bus import SiteBusConfig
from lanectl.config.base import SecretRef
cfg = SiteBusConfig(enabled=True, booth_id="boothA", brokers=(sys.argv[1],), username="booth1",
                    password=SecretRef(env="UNUSED"), keepalive_s=5)
async def main():
    b = MqttBus(cfg, "P1", password=sys.argv[2])
    task = asyncio.create_task(b.run())
    while not b.connected:
        await asyncio.sleep(0.01)
    print("up", flush=True)
    await task
asyncio.run(main())
"""


async def test_the_will_says_offline_when_the_booth_process_dies(mosquitto):
    screen, inbox = watcher(mosquitto, f"lanectl/{PARK}/+/online")
    async with running(screen):
        booth = subprocess.Popen([sys.executable, "-c", BOOTH_PROCESS, mosquitto.uri, USERS["booth1"]],
                                 stdout=subprocess.PIPE)
        try:
            assert booth.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(booth.stdout.readline), 10)
            assert line == b"up\n"
            await inbox.wait(ONLINE_A, b"true")
            os.kill(booth.pid, signal.SIGKILL)  # no DISCONNECT: the broker sees the socket close
            started = time.monotonic()
            await inbox.wait(ONLINE_A, b"false")
            assert time.monotonic() - started < 5
        finally:
            booth.kill()
            booth.wait()


async def test_fail_over_to_the_second_broker_when_the_first_is_down(mosquitto_factory):
    second = mosquitto_factory()
    dead = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    b = bus(dead, second.uri)
    async with running(b):
        assert b.broker == second.uri
        await b.publish(f"lanectl/{PARK}/boothA/x", b"1")  # acknowledged by the second broker


async def test_fail_over_when_the_broker_in_use_stops(mosquitto_factory):
    first, second = mosquitto_factory(), mosquitto_factory()
    b = bus(first.uri, second.uri)
    async with running(b):
        assert b.broker == first.uri
        first.stop()
        await until(lambda: b.connected and b.broker == second.uri)


async def test_after_a_broker_restart_the_bus_reconnects_and_subscribes_again(mosquitto, caplog):
    caplog.set_level(logging.INFO, "lanectl.site_bus")
    b, inbox = bus(mosquitto.uri), Inbox()
    b.subscribe(f"lanectl/{PARK}/boothA/commands/#", inbox)
    async with running(b):
        mosquitto.stop()  # no persistence: the broker forgets the session and its subscriptions
        await until(lambda: not b.connected)
        with pytest.raises(BusUnavailable):
            await b.publish(f"lanectl/{PARK}/boothA/x", b"1")
        await until(lambda: b.attempts >= 3)  # several failed retries...
        mosquitto.start()
        await until(lambda: b.connected)
        other = bus(mosquitto.uri, user="booth2", booth="boothB")
        async with running(other):
            await other.publish(f"lanectl/{PARK}/boothA/commands/open", b"lane1")
            await inbox.wait(f"lanectl/{PARK}/boothA/commands/open", b"lane1")
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "site bus down" in m]) == 1, messages  # ...logged once
    assert len([m for m in messages if "site bus back" in m]) == 1, messages


async def test_a_handler_that_raises_is_counted_and_the_next_message_still_arrives(mosquitto):
    b, inbox = bus(mosquitto.uri), Inbox()

    async def broken(topic: str, payload: bytes) -> None:
        if payload == b"bad":
            raise ValueError("bad record")
        await inbox(topic, payload)
    b.subscribe(f"lanectl/{PARK}/boothA/in", broken)
    async with running(b):
        await b.publish(f"lanectl/{PARK}/boothA/in", b"bad")
        await b.publish(f"lanectl/{PARK}/boothA/in", b"good")
        await inbox.wait(f"lanectl/{PARK}/boothA/in", b"good")
    assert b.handler_errors == 1


async def test_telemetry_is_retained_for_a_screen_that_subscribes_later(mosquitto):
    b = bus(mosquitto.uri)

    async def figures() -> dict:
        return {"lanes": {"in1": {"phase": "idle", "faults": {}, "last_plate": "京A12345"}},
                "booth": {"outbox_pending": 3}}
    telemetry = TelemetryPublisher(b, PARK, "boothA", figures, SystemClock(ZoneInfo("Asia/Shanghai")), interval_s=0.05)
    async with running(b):
        task = asyncio.create_task(telemetry.run())
        try:
            await until(lambda: telemetry.published >= 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    screen, inbox = watcher(mosquitto, f"lanectl/{PARK}/boothA/#")
    async with running(screen):
        lane_topic = f"lanectl/{PARK}/boothA/lanes/in1/telemetry"
        await until(lambda: inbox.last(lane_topic) is not None)
        lane = json.loads(inbox.last(lane_topic))
        assert (lane["phase"], lane["last_plate"]) == ("idle", "京A12345")
        await until(lambda: inbox.last(f"lanectl/{PARK}/boothA/telemetry") is not None)
        assert json.loads(inbox.last(f"lanectl/{PARK}/boothA/telemetry"))["outbox_pending"] == 3


def tls_config(broker: Mosquitto, client: str | None) -> SiteBusConfig:
    certs = broker.certs
    tls = {"ca": certs / "ca.pem"} | ({"cert": certs / f"{client}.pem", "key": certs / f"{client}.key"}
                                      if client else {})
    return SiteBusConfig(enabled=True, booth_id="boothA", brokers=(broker.uri,), tls=tls, keepalive_s=5)


async def test_a_booth_authenticates_with_its_client_certificate_over_tls(mosquitto_factory):
    broker = mosquitto_factory(tls=True)
    b = MqttBus(tls_config(broker, "booth1"), PARK, retry_min_s=0.05, retry_max_s=0.2)
    inbox = Inbox()
    b.subscribe(f"lanectl/{PARK}/boothA/#", inbox)
    async with running(b):
        await b.publish(f"lanectl/{PARK}/boothA/x", b"over tls")
        await inbox.wait(f"lanectl/{PARK}/boothA/x", b"over tls")


async def test_without_a_client_certificate_the_tls_broker_refuses(mosquitto_factory):
    broker = mosquitto_factory(tls=True)
    b = MqttBus(tls_config(broker, None), PARK, retry_min_s=0.05, retry_max_s=0.2)
    async with running(b, connected=False):
        await until(lambda: b.attempts >= 2)
        assert not b.connected and isinstance(b.last_error, BusUnavailable)


async def test_a_qos1_publish_the_broker_does_not_acknowledge_in_time_raises_bus_unavailable(mosquitto):
    b = MqttBus(config(mosquitto.uri).model_copy(update={"publish_timeout_s": 0.3}), PARK, password=USERS["booth1"])
    async with running(b):
        assert mosquitto.process is not None
        mosquitto.process.send_signal(signal.SIGSTOP)  # alive, connected, silent
        try:
            started = time.monotonic()
            with pytest.raises(BusUnavailable, match="no PUBACK within 0.3 s"):
                await b.publish(f"lanectl/{PARK}/boothA/x", b"1")
            assert 0.3 <= time.monotonic() - started < 2
        finally:
            mosquitto.process.send_signal(signal.SIGCONT)
        await b.publish(f"lanectl/{PARK}/boothA/x", b"2")  # the broker answers again: acknowledged


@pytest.mark.parametrize("session_expiry_s, kept", [(3600, True), (0, False)])
async def test_a_persistent_session_keeps_what_was_sent_to_a_booth_while_it_was_off(mosquitto, session_expiry_s,
                                                                                 kept):
    def booth_b() -> tuple[MqttBus, Inbox]:
        cfg = config(mosquitto.uri, user="booth2", booth="boothB").model_copy(
            update={"session_expiry_s": session_expiry_s})
        b, inbox = MqttBus(cfg, PARK, password=USERS["booth2"], retry_min_s=0.05), Inbox()
        b.subscribe(f"lanectl/{PARK}/boothB/inbox/#", inbox)
        return b, inbox
    b, _ = booth_b()
    async with running(b):
        pass  # subscribed once, then a clean stop
    async with running(bus(mosquitto.uri)) as a:
        await a.publish(f"lanectl/{PARK}/boothB/inbox/r1", b"sent while B was off")
    b, inbox = booth_b()  # the same booth again (same client id), e.g. after a reboot
    async with running(b):
        await a_marker_sent_now(b, inbox, mosquitto)
    assert (inbox.last(f"lanectl/{PARK}/boothB/inbox/r1") == b"sent while B was off") is kept


async def a_marker_sent_now(b: MqttBus, inbox: Inbox, broker: Mosquitto) -> None:
    """Wait until a message published now reaches `b`: whatever its session held was delivered before it."""
    async with running(bus(broker.uri)) as a:
        await a.publish(f"lanectl/{PARK}/boothB/inbox/now", b"now")
        await inbox.wait(f"lanectl/{PARK}/boothB/inbox/now", b"now")


async def test_two_daemons_with_the_same_booth_id_back_off_instead_of_kicking_each_other_in_a_tight_loop(mosquitto):
    first, second = bus(mosquitto.uri), bus(mosquitto.uri)  # same park and booth: the same client id
    started = time.monotonic()
    async with running(first), running(second, connected=False):
        await until(lambda: first.attempts >= 6 and second.attempts >= 6)
    # at least the backoff before each retry of the 5 (0.05, 0.1, 0.2, 0.2, 0.2 s, jittered down to 3/4)
    assert time.monotonic() - started > 0.5
