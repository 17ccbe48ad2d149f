"""The site YAML `payments:` section: how exits are settled, and each platform's credentials.

    payments:
      settlement: {poll_interval_s: 2, window_s: 120}
      max_amount_fen: 10000000             # the largest amount a callback may carry (default ¥100 000)
      bolink:
        base_url: https://s.bolink.club
        union_id: 200208
        park_id: "21835"
        key: {secret: bolink_key}          # the vendor key (厂商平台密钥), by reference, never inline
        downlink: callback                 # or http_mode (SDK HTTP mode: login + long-poll, for NAT)

A lane lists the providers that charge at it, in order: `payments: [bolink]` in its lane file.

The shared settings are here; each platform's section model lives in its package (lanectl/providers/<name>/
config.py) and is a field of PaymentsConfig because the platform is in lanectl.providers.REGISTRY.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, Field, create_model

from lanectl.config.base import Route, Strict, Url  # noqa: F401 (Url, Route: re-exported for the sections)
from lanectl.core.money import DEFAULT_MAX_FEN
from lanectl.providers import REGISTRY
from lanectl.providers.provider import Provider

PROVIDERS = tuple(REGISTRY)  # the platforms, each an optional section of `payments:`
# what a lane may list in its `payments:` -> the platform (section, credentials) it needs
NEEDS = {charge: p.name for p in REGISTRY.values() for charge in p.lane_names}
ProviderName = Literal[tuple(NEEDS)]  # type: ignore[valid-type]


class SettlementConfig(Strict):
    """How long a waiting car's payment is chased (service/settlement.py)."""

    charge_timeout_s: float = Field(5.0, gt=0, le=60)  # one platform call; no answer = not paid yet
    poll_interval_s: float = Field(2.0, gt=0, le=60)
    window_s: float = Field(120.0, gt=0, le=3600)  # then scan-to-pay / the booth
    reconcile_interval_s: float = Field(30.0, gt=0, le=3600)
    reconcile_for_s: float = Field(3600.0, gt=0, le=7 * 86400)
    # a charge that was never answered, for an order the platform says it does not have: asked again this many
    # times over at least this long, then booked as not charged (the next provider or the booth takes the car)
    absent_checks: int = Field(3, ge=1, le=20)
    absent_span_s: float = Field(10.0, ge=0, le=600)
    absent_late_check_s: float = Field(60.0, ge=0, le=3600)  # one last query after that (0: none)


class PaymentsBase(Strict):
    settlement: SettlementConfig = SettlementConfig()
    # The largest amount (fen) a platform callback may carry; a bigger one is refused in the platform's own
    # error form. Default ¥100 000; the bound above keeps it a parking fee, not an arbitrary number.
    max_amount_fen: int = Field(DEFAULT_MAX_FEN, gt=0, le=10 ** 12)

    def configured(self) -> tuple[str, ...]:
        """The platforms this site uses (their sections are present), in the registry's order."""
        return tuple(name for name in type(self).model_fields
                     if name not in PaymentsBase.model_fields and getattr(self, name) is not None)

    def section(self, name: str) -> Optional[BaseModel]:
        """A platform's section, None when the site does not use it."""
        return getattr(self, name, None)


def payments_model(registry: Mapping[str, Provider]) -> type[PaymentsBase]:
    """The `payments:` model: the shared settings plus one optional section per registered platform
    (`payments: bolink: {...}`), each its package's model."""
    sections: dict[str, Any] = {name: (Optional[p.config_model], None) for name, p in registry.items()}
    return create_model("PaymentsConfig", __base__=PaymentsBase, __module__=__name__, **sections)


PaymentsConfig = payments_model(REGISTRY)
