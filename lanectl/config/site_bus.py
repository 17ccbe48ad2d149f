"""The `site_bus:` section of site.yaml: this booth on the lot's MQTT broker (issue 17, docs/site-bus.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from lanectl.config.base import SecretRef, Strict

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def _broker_uri(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not {v!r}")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError(f"{v!r}: a broker URI is only scheme, host and port (credentials go in username/password)")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{v!r}: the port must be a number 1-65535") from None
    return v


BrokerUri = Annotated[str, AfterValidator(_broker_uri)]


def broker_address(uri: str) -> tuple[str, int, bool]:
    """(host, port, tls) of a validated broker URI."""
    parts = urlsplit(uri)
    assert parts.hostname is not None
    return parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts"


class SiteBusTls(Strict):
    """TLS to the broker (mqtts:// URIs): the CA that signed the broker's certificate, and this booth's client
    certificate and key when the broker authenticates booths by certificate."""

    ca: Path
    cert: Optional[Path] = None
    key: Optional[Path] = None

    @model_validator(mode="after")
    def _pair(self) -> "SiteBusTls":
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key (a client certificate needs its key), or neither")
        return self


class SiteBusConfig(Strict):
    enabled: bool = False
    booth_id: str = Field("booth1", pattern=r"^[0-9A-Za-z_-]{1,32}$")
    # --- bus ---
    brokers: tuple[BrokerUri, ...] = ("mqtt://127.0.0.1:1883",)  # tried in this order, for fail-over
    username: Optional[str] = Field(None, min_length=1, max_length=128)
    password: Optional[SecretRef] = None
    tls: Optional[SiteBusTls] = None
    keepalive_s: int = Field(15, ge=5, le=600)  # a dead booth shows offline within about 1.5x this
    session_expiry_s: int = Field(86400, ge=0, le=30 * 86400)  # the broker keeps our subscriptions + QoS 1 backlog
    publish_timeout_s: float = Field(5.0, gt=0, le=60)  # a QoS 1 publish not acknowledged by then: BusUnavailable
    telemetry_interval_s: float = Field(1.0, ge=0.1, le=3600)  # at most one telemetry message per lane this often
    # --- commands ---
    site_key: Optional[SecretRef] = None  # signs and checks remote commands (HMAC-SHA256), the same at every booth
    site_key_id: str = Field("site", pattern=r"^[0-9A-Za-z_.-]{1,32}$")  # named in each command: keys can rotate
    command_skew_s: int = Field(30, ge=0, le=300)  # clock difference allowed between issuer and booth
    # --- replica ---
    # how often a booth asks the others for the records it may have missed (besides at start and on a gap)
    catchup_s: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> "SiteBusConfig":
        if not self.brokers:
            raise ValueError("brokers: give at least one mqtt://HOST:PORT")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password (password: {secret: KEY}), or neither")
        tls_uris = [u for u in self.brokers if broker_address(u)[2]]
        if tls_uris and self.tls is None:
            raise ValueError(f"{tls_uris[0]} is mqtts://: give tls: {{ca: PATH}} (the CA of the broker's certificate)")
        if self.tls is not None and len(tls_uris) != len(self.brokers):
            raise ValueError("tls is set but some brokers are mqtt:// (plain): use mqtts:// for every broker")
        return self
