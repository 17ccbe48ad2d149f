"""The site's `site_bus:` section: the lot's MQTT broker, shared by the booths (issue 17). Semantics:
docs/site-bus.md."""

from __future__ import annotations

from pydantic import Field

from lanectl.config.base import SecretRef, Strict  # noqa: F401  (SecretRef: the bus's credentials)


class SiteBusConfig(Strict):  # from lanectl.config.base import SecretRef, Strict
    enabled: bool = False
    booth_id: str = Field("booth1", pattern=r"^[0-9A-Za-z_-]{1,32}$")
    # --- replica ---
    # how often a booth asks the others for the records it may have missed (besides at start and on a gap)
    catchup_s: float = Field(30.0, gt=0, le=3600)
