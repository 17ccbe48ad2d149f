"""Composition of the payment platforms (part of the composition root, kept out of app.py and bootstrap.py).

Two steps, because the settlement service sits between them:

    wiring = PlatformWiring.build(config, store, session, clock)     clients, exit providers, publishers
    settlement = SettlementService(store, wiring.providers, ...)
    wiring.attach(settlement, app_hooks)                              callback handlers, routes, downlinks

Each platform is optional; a lane uses the providers it lists (`payments: [...]` in its lane file).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Protocol

import aiohttp

from lanectl.adapters.bolink_downlink import BolinkDownlink
from lanectl.adapters.bolink_http import BolinkClient, BolinkEtcProvider, BolinkProvider, BolinkPublisher
from lanectl.adapters.callback_server import BodyHandler
from lanectl.adapters.image_links import LinkFn, no_links
from lanectl.adapters.store import SqliteStore
from lanectl.adapters.tdzn_http import TdznClient, TdznProvider, TdznPublisher
from lanectl.adapters.xft_http import XftClient, XftProvider, XftPublisher
from lanectl.config import Config
from lanectl.service.bolink_inbound import AdmitFn, BolinkInbound, QuoteFn, RenewFn
from lanectl.service.outbox import Publisher
from lanectl.service.ports import Clock
from lanectl.service.settlement import PaymentProvider, SettlementService
from lanectl.service.tdzn_inbound import ReleaseFn, TdznInbound
from lanectl.service.xft_inbound import XftInbound

log = logging.getLogger("lanectl")


class AppHooks(Protocol):
    """What the platforms' callbacks may ask of the app (they never touch a lane themselves)."""

    quote: QuoteFn
    renew_card: RenewFn
    release: ReleaseFn  # (lane id, operator, reason): an audited operator release asked for by a platform
    admit_plateless: AdmitFn  # (channel id, platform car id): a plate-less car scanned an entry QR


@dataclass
class PlatformWiring:
    config: Config
    store: SqliteStore
    session: aiohttp.ClientSession
    clock: Clock
    providers: dict[str, PaymentProvider] = field(default_factory=dict)
    publishers: dict[str, Publisher] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # outbox destination -> uploads per second
    routes: list[tuple[str, BodyHandler]] = field(default_factory=list)  # public listener POST routes
    loops: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)  # background tasks
    inbound: dict[str, Any] = field(default_factory=dict)  # platform -> its callback handler (counts)
    downlinks: dict[str, BolinkDownlink] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, config: Config, store: SqliteStore, session: aiohttp.ClientSession, clock: Clock, *,
              links: LinkFn = no_links) -> "PlatformWiring":
        """`links` turns a record's picture into the URL platforms fetch it by (adapters/image_links.py)."""
        w = cls(config, store, session, clock)
        payments = config.site.payments
        channels = {lane.id: lane.channel for lane in config.lanes}
        tz = config.site.tz
        if payments.bolink is not None:
            cfg = payments.bolink
            client = w._clients["bolink"] = BolinkClient(cfg, config.secret(cfg.key, "payments.bolink.key"), session)
            wallet = BolinkProvider(client, store, channels, links=links)
            w.providers["bolink"] = wallet
            w.providers["bolink_etc"] = BolinkEtcProvider(wallet, {lane.id: lane.etc_lane_no for lane in config.lanes})
            w.publishers["bolink"] = BolinkPublisher(client, channels, links=links)
            w.rates["bolink"] = cfg.rate_per_s
        if payments.xft is not None:
            cfg_x = payments.xft
            xclient = w._clients["xft"] = XftClient(cfg_x, config.secret(cfg_x.key, "payments.xft.key"), session)
            w.providers["xft"] = XftProvider(xclient, {}, tz)  # every lane charges on the configured channel
            w.publishers["xft"] = XftPublisher(xclient, {}, tz)
            w.rates["xft"] = cfg_x.rate_per_s
        if payments.tdzn is not None:
            cfg_t = payments.tdzn
            tclient = TdznClient(cfg_t, config.secret(cfg_t.key, "payments.tdzn.key"), session, tz)
            w.providers["tdzn"] = TdznProvider(tclient, channels)
            w.publishers["tdzn"] = TdznPublisher(tclient, channels, tz, total_spaces=cfg_t.total_spaces,
                                                 links=links)
            w.rates["tdzn"] = cfg_t.rate_per_s
        return w

    def attach(self, settlement: Optional[SettlementService], app: AppHooks) -> None:
        """Callback handlers (they report results to the settlement), their routes, and downlink loops."""
        config, payments = self.config, self.config.site.payments
        lanes_by_channel = {lane.channel: lane.id for lane in config.lanes}
        if payments.bolink is not None:
            cfg = payments.bolink
            bolink = BolinkInbound(config.secret(cfg.key, "payments.bolink.key"), cfg.park_id, self.store, settlement,
                                   self.clock, lanes_by_channel=lanes_by_channel, quote=app.quote,
                                   renew=app.renew_card, admit=app.admit_plateless,
                                   free_out_minutes=cfg.free_out_minutes, max_fen=payments.max_amount_fen)
            self.inbound["bolink"] = bolink
            if cfg.downlink == "http_mode":
                downlink = BolinkDownlink(cfg, config.secret(cfg.key, "payments.bolink.key"), self.session,
                                          bolink.handle_downlink, login=self._clients["bolink"].sdk_login)
                self.downlinks["bolink"] = downlink
                self.loops.append(("bolink-downlink", downlink.run))
            else:
                async def bolink_route(body: bytes, content_type: str) -> tuple[bytes, str]:
                    return await bolink.handle_body(body), "application/json"
                self.routes.append((cfg.callback_path, bolink_route))
        if payments.xft is not None:
            cfg_x = payments.xft
            xft = XftInbound(config.secret(cfg_x.key, "payments.xft.key"), self.store, settlement, self.clock,
                             require_signature=cfg_x.require_notify_signature, store_code=cfg_x.store_code,
                             max_fen=payments.max_amount_fen)
            self.inbound["xft"] = xft
            self.routes.append((cfg_x.notify_path, xft.handle_body))
        if payments.tdzn is not None:
            cfg_t = payments.tdzn
            tdzn = TdznInbound(config.secret(cfg_t.key, "payments.tdzn.key"), cfg_t.pid, cfg_t.park_code, self.store,
                               settlement, self.clock, config.site.tz, window_s=cfg_t.timestamp_window_s,
                               lanes_by_channel=lanes_by_channel, quote=app.quote, release=app.release,
                               max_fen=payments.max_amount_fen)
            self.inbound["tdzn"] = tdzn

            async def tdzn_route(body: bytes, content_type: str) -> tuple[bytes, str]:
                return await tdzn.handle_body(body), "application/json"
            self.routes.append((cfg_t.callback_path, tdzn_route))

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: dict(handler.counts) for name, handler in self.inbound.items()}
        for name, downlink in self.downlinks.items():
            out[f"{name}_downlink"] = downlink.status()
        return out
