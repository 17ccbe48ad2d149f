"""The site bus over MQTT (paho-mqtt 2.x, MQTT 5): implements lanectl/service/site_bus.py's SiteBus.

One paho client per daemon, kept for its whole life so its persistent session (clean_start false, a session
expiry) and its unacknowledged QoS 1 messages survive reconnects. paho's network loop runs in its own thread
(loop_start); everything it reports comes back to the event loop with call_soon_threadsafe, so the loop never
blocks on the broker. The blocking TCP/TLS connect runs in a worker thread too.

Fail-over: the configured brokers are tried in turn, starting with the last one that worked; after a whole
round fails, the next round waits (backoff doubling up to a ceiling). The outage is logged when it starts and
when it ends, and a broker's refusal (bad password, not authorized) once per broker and reason.

Presence: `lanectl/<park>/<booth>/online` is retained "true" once connected; the last will is "false" (the
broker publishes it when the connection dies without a DISCONNECT), and a clean stop publishes "false"
itself before disconnecting.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from lanectl.config.site_bus import SiteBusConfig, broker_address
from lanectl.service.site_bus import BusUnavailable, MessageHandler, topic

log = logging.getLogger("lanectl.site_bus")
ONLINE, OFFLINE = b"true", b"false"
STABLE_S = 10.0  # a connection that held this long resets the backoff


class BrokerRefused(BusUnavailable):
    """The broker answered the CONNECT with a refusal (bad username or password, not authorized, banned...)."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri, self.reason = uri, reason
        super().__init__(f"{uri} refused the connection: {reason}")


class PublishRefused(BusUnavailable):
    """The broker acknowledged a QoS 1 message with a refusal (MQTT 5 reason code >= 0x80; Mosquitto's ACL
    answers "Not authorized"): it was not delivered. A configuration problem (the broker's ACL or the topic),
    logged once per topic and reason; a BusUnavailable so a caller keeps the message as for any outage."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic, self.reason = topic, reason
        super().__init__(f"the broker refused a message on {topic}: {reason}")


@dataclass
class _Session:
    """One network connection: its CONNACK and its end, reported by paho's thread."""

    connack: asyncio.Future[ReasonCode]
    closed: asyncio.Event
    close_reason: str = ""


class MqttBus:
    def __init__(self, config: SiteBusConfig, park_id: str, *, password: Optional[str] = None,
                 retry_min_s: float = 0.5, retry_max_s: float = 30.0, client_id: Optional[str] = None,
                 presence: bool = True) -> None:
        self.config = config
        self.park_id = park_id
        # a booth's daemon says it is online (retained) with a last will; a passing client (`lanectl remote`) does not
        self.online_topic: Optional[str] = topic(park_id, config.booth_id, "online") if presence else None
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.handlers: list[tuple[str, MessageHandler]] = []
        self.broker: Optional[str] = None  # the URI of the current (or last) connection
        self.last_error: Optional[BusUnavailable] = None  # why the last attempt failed (BrokerRefused: a refusal)
        self.handler_errors = 0  # messages a handler raised on: counted and skipped
        self.attempts = 0  # connection attempts so far (every broker of every round)
        self._connected = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._session: Optional[_Session] = None
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        # QoS 1 acknowledgements: paho's thread may report a PUBACK before publish() has registered its mid
        self._acks_lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[ReasonCode]] = {}
        self._early: collections.OrderedDict[int, ReasonCode] = collections.OrderedDict()
        self._refusals_logged: set[tuple[str, str]] = set()
        self._client = self._make_client(client_id or f"lanectl-{park_id}-{config.booth_id}", password)

    # --- SiteBus --------------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        self.handlers.append((topic_filter, handler))

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if not self._connected:
            raise BusUnavailable(self._why_down())
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BusUnavailable(f"not sent: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        assert self._loop is not None
        fut: asyncio.Future[ReasonCode] = self._loop.create_future()
        with self._acks_lock:
            early = self._early.pop(info.mid, None)  # acknowledged already?
            if early is None:
                self._pending[info.mid] = fut
        if early is not None:
            reason = early
        else:
            try:
                async with asyncio.timeout(self.config.publish_timeout_s):
                    reason = await fut
            except TimeoutError:
                raise BusUnavailable(f"no PUBACK within {self.config.publish_timeout_s:g} s") from None
            finally:
                with self._acks_lock:
                    self._pending.pop(info.mid, None)
        if reason.is_failure:
            refused = PublishRefused(topic, str(reason))
            if (topic, refused.reason) not in self._refusals_logged:
                self._refusals_logged.add((topic, refused.reason))
                log.error("site bus: %s (check the broker's ACL for user %s)", refused, self.config.username)
            raise refused

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        dispatcher = asyncio.create_task(self._dispatch(), name="site-bus-dispatch")
        down_since: Optional[float] = None  # an outage in progress (logged once when it began)
        delay = self.retry_min_s
        start = 0
        try:
            while True:
                brokers = self.config.brokers
                for i in range(len(brokers)):
                    uri = brokers[(start + i) % len(brokers)]
                    try:
                        session = await self._connect(uri)
                    except BusUnavailable as exc:
                        self.last_error = exc
                        if isinstance(exc, BrokerRefused):
                            self._log_refusal(exc)
                        if down_since is None:
                            down_since = time.monotonic()
                            log.warning("site bus down: %s; retrying (publishes raise BusUnavailable meanwhile)", exc)
                        continue
                    start = (start + i) % len(brokers)  # next time, begin with the broker that worked
                    if down_since is None:
                        log.info("site bus connected to %s as booth %s", uri, self.config.booth_id)
                    else:
                        log.info("site bus back: connected to %s after %.1f s down", uri,
                                 time.monotonic() - down_since)
                    down_since = None
                    up_since = time.monotonic()
                    await self._serve(session)
                    down_since = time.monotonic()
                    log.warning("site bus down: lost %s (%s); reconnecting", uri, session.close_reason)
                    # one dropped at once (another daemon with this booth id took the session over...) backs off
                    held = down_since - up_since >= STABLE_S
                    break
                else:
                    held = False
                if held:  # retried at once, from the same broker
                    delay = self.retry_min_s
                    continue
                # every broker failed, or the connection did not hold: wait, a little randomly (the booths of a lot
                # do not retry in step), longer each time
                await asyncio.sleep(delay * random.uniform(0.75, 1.0))
                delay = min(delay * 2, self.retry_max_s)
        except asyncio.CancelledError:
            await self._stop_cleanly()
            raise
        finally:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)

    # --- connection -----------------------------------------------------------------------------------------
    def _make_client(self, client_id: str, password: Optional[str]) -> paho.Client:
        cfg = self.config
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5,
                             reconnect_on_failure=False)  # reconnects are ours: they go through the broker list
        client.connect_timeout = min(5.0, float(cfg.keepalive_s))
        if cfg.username is not None:
            client.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            client.tls_set(ca_certs=str(cfg.tls.ca), certfile=str(cfg.tls.cert) if cfg.tls.cert else None,
                           keyfile=str(cfg.tls.key) if cfg.tls.key else None, cert_reqs=ssl.CERT_REQUIRED)
        if self.online_topic is not None:
            client.will_set(self.online_topic, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_socket_open = _no_delay
        return client

    async def _connect(self, uri: str) -> _Session:
        """A connection to `uri` with its CONNACK accepted and paho's thread running it; BusUnavailable if not."""
        assert self._loop is not None
        host, port, _tls = broker_address(uri)
        self.attempts += 1
        session = _Session(self._loop.create_future(), asyncio.Event())
        self._session = session
        self.broker = uri
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        connecting = asyncio.ensure_future(asyncio.to_thread(
            self._client.connect, host, port, self.config.keepalive_s, clean_start=False, properties=props))
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # stopping: let the thread finish (connect_timeout at most); a socket it opened is then closed by the
            # stop's DISCONNECT, which needs paho's loop running
            [outcome] = await asyncio.gather(connecting, return_exceptions=True)
            if not isinstance(outcome, BaseException):
                self._client.loop_start()
            raise
        except (OSError, ssl.SSLError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BusUnavailable(f"cannot reach {uri}: {why}") from None
        self._client.loop_start()
        try:
            async with asyncio.timeout(self._client.connect_timeout + 1.0):
                reason = await session.connack
        except (TimeoutError, BusUnavailable) as exc:
            await self._drop()
            raise BusUnavailable(f"{uri}: {exc or 'no CONNACK in time'}") from None
        except asyncio.CancelledError:
            await self._drop()
            raise
        if reason.is_failure:
            await self._drop()
            raise BrokerRefused(uri, str(reason))
        return session

    async def _serve(self, session: _Session) -> None:
        """Subscribe (again: the session may be new), say we are online, then wait until the connection ends."""
        for topic_filter, _ in self.handlers:
            self._client.subscribe(topic_filter, options=SubscribeOptions(qos=1))
        self._connected = True
        try:
            if self.online_topic is not None:
                await self.publish(self.online_topic, ONLINE, qos=1, retain=True)
        except BusUnavailable:
            pass  # the connection went already: seen below
        await session.closed.wait()
        self._connected = False
        self._fail_pending(f"connection to {self.broker} lost before the broker acknowledged")
        await asyncio.to_thread(self._client.loop_stop)

    async def _stop_cleanly(self) -> None:
        """A clean stop: "false" retained on the online topic, then DISCONNECT (so the will is not sent)."""
        if self._connected and self.online_topic is not None:
            try:
                async with asyncio.timeout(2.0):
                    await self.publish(self.online_topic, OFFLINE, qos=1, retain=True)
            except (BusUnavailable, TimeoutError):
                log.warning("site bus: could not say offline before stopping; the broker's will says it")
        self._connected = False
        await self._drop()
        log.info("site bus stopped")

    async def _drop(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._fail_pending("the bus stopped")

    def _fail_pending(self, why: str) -> None:
        with self._acks_lock:
            pending, self._pending = self._pending, {}
            self._early.clear()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(BusUnavailable(why))

    def _why_down(self) -> str:
        return f"site bus not connected ({self.last_error})" if self.last_error else "site bus not connected"

    def _log_refusal(self, exc: BrokerRefused) -> None:
        key = (exc.uri, exc.reason)
        if key not in self._refusals_logged:  # once per broker and reason, not every retry
            self._refusals_logged.add(key)
            log.error("site bus: %s (check site_bus.username / password / certificate and the broker's ACL)", exc)

    async def _dispatch(self) -> None:
        """Received messages, in order, to every matching handler; a handler's error is counted, not fatal."""
        while True:
            msg_topic, payload = await self._inbox.get()
            for topic_filter, handler in self.handlers:
                if paho.topic_matches_sub(topic_filter, msg_topic):
                    try:
                        await handler(msg_topic, payload)
                    except Exception:
                        self.handler_errors += 1
                        log.exception("site bus: handler for %s failed on a message on %s; skipped",
                                      topic_filter, msg_topic)

    # --- paho's thread --------------------------------------------------------------------------------------
    def _call(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        session = self._session
        if session is not None:
            self._call(lambda: session.connack.done() or session.connack.set_result(reason))

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        session = self._session
        if session is None:
            return

        def closed() -> None:
            session.close_reason = str(reason)
            if not session.connack.done():
                session.connack.set_exception(BusUnavailable(f"connection closed before CONNACK ({reason})"))
            session.closed.set()
        self._call(closed)

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        try:
            name = message.topic
        except UnicodeDecodeError:  # not a topic any of ours could match; raising here would end paho's loop
            self._call(self._count_bad_topic)
            return
        self._call(self._inbox.put_nowait, (name, bytes(message.payload)))

    def _count_bad_topic(self) -> None:
        self.handler_errors += 1

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _props: Any) -> None:
        with self._acks_lock:
            fut = self._pending.pop(mid, None)
            if fut is None:
                self._early[mid] = reason  # publish() has not registered it yet (or it was QoS 0)
                while len(self._early) > 1024:
                    self._early.popitem(last=False)
                return
        self._call(lambda: fut.done() or fut.set_result(reason))


def _no_delay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    """Small packets go out at once. With Nagle's algorithm on, the PUBACK we owe for a message just received
    holds back our next PUBLISH until the broker's delayed ACK (~40 ms on Linux): the replication lag doubled."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (a test double, a unix socket): nothing to tune
        pass

