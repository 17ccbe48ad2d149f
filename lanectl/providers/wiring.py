"""Composition of the payment platforms (part of the composition root, kept out of app.py and bootstrap.py).

Two steps, because the settlement service sits between them:

    wiring = PlatformWiring.build(config, store, session, clock)     clients, exit providers, publishers
    settlement = SettlementService(store, wiring.providers, ...)
    wiring.attach(settlement, app_hooks)                              callback handlers, routes, downlinks

Each platform is optional (its section under the site's `payments:`); a lane uses the providers it lists
(`payments: [...]` in its lane file). Which platforms exist is lanectl.providers.REGISTRY's business alone:
nothing here names one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Optional

import aiohttp

from lanectl.adapters.callback_server import BodyHandler
from lanectl.adapters.image_links import LinkFn, no_links
from lanectl.config import Config
from lanectl.providers import REGISTRY
from lanectl.providers.ports import AppHooks, Results
from lanectl.providers.provider import Inbound, Platform, Provider, SiteContext
from lanectl.service.outbox import Publisher
from lanectl.service.ports import Clock
from lanectl.service.settlement import PaymentProvider

log = logging.getLogger("lanectl")

__all__ = ["AppHooks", "PlatformWiring"]


@dataclass
class PlatformWiring:
    site: SiteContext
    registry: Mapping[str, Provider] = field(default_factory=lambda: REGISTRY)
    platforms: dict[str, Platform] = field(default_factory=dict)  # configured platform name -> what it built
    providers: dict[str, PaymentProvider] = field(default_factory=dict)
    publishers: dict[str, Publisher] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # outbox destination -> uploads per second
    routes: list[tuple[str, BodyHandler]] = field(default_factory=list)  # public listener POST routes
    loops: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)  # background tasks
    inbound: dict[str, Any] = field(default_factory=dict)  # platform -> its callback handler (counts)
    _status: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def build(cls, config: Config, store: Any, session: aiohttp.ClientSession, clock: Clock, *,
              links: LinkFn = no_links, registry: Optional[Mapping[str, Provider]] = None) -> "PlatformWiring":
        """`links` turns a record's picture into the URL platforms fetch it by (adapters/image_links.py).
        `registry`: the platforms to choose from (default: lanectl.providers.REGISTRY)."""
        w = cls(SiteContext(config, store, session, clock, links), registry if registry is not None else REGISTRY)
        payments = config.site.payments
        for name, provider in w.registry.items():
            section = getattr(payments, name, None)
            if section is None:
                continue
            platform = w.platforms[name] = provider.build(w.site, section)
            w.providers.update(platform.charges)
            if platform.publisher is not None:
                w.publishers[name] = platform.publisher
                w.rates[name] = platform.rate_per_s
        return w

    def attach(self, settlement: Optional[Results], app: AppHooks) -> None:
        """Callback handlers (they report results to the settlement), their routes, and downlink loops."""
        for name, platform in self.platforms.items():
            inbound: Inbound = platform.attach(settlement, app)
            if inbound.handler is not None:
                self.inbound[name] = inbound.handler
            self.routes += inbound.routes
            self.loops += inbound.loops
            self._status.update(inbound.status)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: dict(handler.counts) for name, handler in self.inbound.items()}
        for name, status in self._status.items():
            out[name] = status()
        return out
