"""What a payment platform's package registers: its name, its config section and how to build it.

A platform is assembled in two steps, because the settlement service sits between them (providers/wiring.py):

    platform = provider.build(site, section)          clients, exit providers (charges), outbox publisher
    settlement = SettlementService(..., every platform's charges, ...)
    inbound = platform.attach(settlement, app_hooks)   callback handlers, their routes, background loops
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol

from lanectl.providers.ports import AppHooks, InboundStore, Results
from lanectl.service.ports import Clock

if TYPE_CHECKING:
    import aiohttp

    from lanectl.adapters.callback_server import BodyHandler
    from lanectl.adapters.image_links import LinkFn
    from lanectl.config import Config, LaneConfig, SiteConfig
    from lanectl.service.outbox import Publisher
    from lanectl.service.settlement import PaymentProvider


class HasCounts(Protocol):
    counts: dict[str, int]


@dataclass
class Inbound:
    """What a platform takes from outside once the settlement exists."""

    handler: Optional[HasCounts] = None  # its callback handler; its counts show in the control status
    routes: list[tuple[str, "BodyHandler"]] = field(default_factory=list)  # POST routes on the public listener
    loops: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)  # background tasks
    status: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)  # more status entries


@dataclass
class Platform:
    """One configured platform before its callbacks are attached."""

    charges: dict[str, "PaymentProvider"]  # lane `payments:` name -> the exit provider charging under it
    publisher: Optional["Publisher"]  # uploads entries / exits from the outbox (destination = provider name)
    rate_per_s: float  # uploads per second the platform allows
    attach: Callable[[Optional[Results], AppHooks], Inbound]


@dataclass(frozen=True)
class SiteContext:
    """What every platform is built from: the configuration and the adapters it may use."""

    config: "Config"
    store: Any  # the SQLite store: the inbox (InboundStore) and what a platform's messages keep
    session: "aiohttp.ClientSession"
    clock: Clock
    links: "LinkFn"  # a record's picture -> the URL platforms fetch it by (adapters/image_links.py)

    @property
    def inbox(self) -> InboundStore:
        return self.store  # type: ignore[no-any-return]

    @property
    def tz(self) -> tzinfo:
        return self.config.site.tz

    @property
    def max_fen(self) -> int:
        return self.config.site.payments.max_amount_fen

    def channels(self) -> dict[str, str]:
        """lane id -> the platform channel id of that lane."""
        return {lane.id: lane.channel for lane in self.config.lanes}

    def lanes_by_channel(self) -> dict[str, str]:
        return {lane.channel: lane.id for lane in self.config.lanes}

    def secret(self, ref: Any, name: str) -> str:
        """A credential of `payments.<name>` resolved (environment or secrets file)."""
        return self.config.secret(ref, f"payments.{name}.key")


# (the provider's section or None when missing, the site, one lane, that lane's file) -> problems (each naming
# file and key)
LaneCheck = Callable[[Any, "SiteConfig", "LaneConfig", str], list[str]]


@dataclass(frozen=True)
class SignRequest:
    """`lanectl sign <platform>`: what to sign, as the integrator gave it."""

    key: str
    data: Optional[str] = None  # the exact text of a signed message body part (Bolink's `data`)
    params: Optional[str] = None  # a parameter set as a JSON object (XFT, tdzn)
    charset: str = "utf-8"

    def params_object(self, platform: str) -> dict[str, Any]:
        if self.params is None or self.data is not None:
            raise ValueError(f"{platform} signs a parameter set: give --params '<JSON object>'")
        try:
            params = json.loads(self.params)
        except ValueError as exc:
            raise ValueError(f"--params is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise ValueError("--params must be a JSON object")
        return params


# -> (signature, the string that was hashed or ""); ValueError: the request does not fit this platform
SignFn = Callable[[SignRequest], tuple[str, str]]


@dataclass(frozen=True)
class Provider:
    """A payment platform as its package registers it (lanectl/providers/__init__.py lists them)."""

    name: str  # its section under the site's `payments:`, its outbox destination, its inbox namespace
    config_model: type  # that section's model
    build: Callable[[SiteContext, Any], Platform]
    # what a lane may list in its `payments:` for this platform (default: its name); each needs this section
    charges: tuple[str, ...] = ()
    check_lane: Optional[LaneCheck] = None  # checks across sections, for a lane charging with this platform
    sign: Optional[SignFn] = None  # `lanectl sign <name>`: integrators debug signature errors with it

    @property
    def lane_names(self) -> tuple[str, ...]:
        return self.charges or (self.name,)
