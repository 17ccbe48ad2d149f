"""The site's `site_bus:` section: the lot's MQTT broker, shared by the booths (issue 17). Semantics:
docs/site-bus.md."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from lanectl.config.base import SecretRef, Strict


class SiteBusConfig(Strict):  # from lanectl.config.base import SecretRef, Strict
    enabled: bool = False
    booth_id: str = Field("booth1", pattern=r"^[0-9A-Za-z_-]{1,32}$")
    # --- commands ---
    # signs and checks remote commands (HMAC-SHA256); the same key at every booth and console of the lot
    site_key: Optional[SecretRef] = None
    site_key_id: str = Field("site", pattern=r"^[0-9A-Za-z_.-]{1,32}$")  # named in each command: keys can rotate
    command_skew_s: int = Field(30, ge=0, le=300)  # clock difference allowed between issuer and booth
    # --- replica ---
    # how often a booth asks the others for the records it may have missed (besides at start and on a gap)
    catchup_s: float = Field(30.0, gt=0, le=3600)
