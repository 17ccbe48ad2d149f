"""The site YAML `payments: xft:` section (lanectl/config/payments.py assembles the sections)."""

from __future__ import annotations

from pydantic import Field

from lanectl.config.base import Route, SecretRef, Strict, Url


class XftConfig(Strict):
    """XFT aggregation parking API v2 (sign-free / 无感)."""

    base_url: Url = "https://xlink.91xft.cn/parking/aggegation"  # sic: aggegation
    app_id: str = Field(min_length=1)
    merchant_code: str = Field(min_length=1)
    store_code: str = Field(min_length=1)
    key: SecretRef  # merchant key
    channel: str = "WECHAT"
    notify_url: Url  # the lane's public notify URL as XFT must call it (NAT / proxy address), ending in notify_path
    notify_path: Route = "/xft/notify"  # where our listener takes the notify
    require_notify_signature: bool = True  # seed 000 lists no sign on the notify; unsigned ones are then checked
    relation_cache_s: float = Field(300.0, ge=0, le=86400)  # signed-relation answers are reused this long
    # the signed-relation query before a charge: its own timeout, not the charge's. No answer in time is "not
    # known to be signed up": the next provider or the booth, and nothing was charged.
    relation_timeout_s: float = Field(8.0, gt=0, le=60)
    # false: no relation query before the charge; entrance/v2 itself answers FAIL for a car without a contract.
    # For a platform that refuses the plate-only query a WECHAT lane must send (seed 000 wants sub_openid there).
    relation_check: bool = True
    client_ip: str = "127.0.0.1"
    timeout_s: float = Field(5.0, gt=0, le=60)
    rate_per_s: float = Field(5.0, gt=0, le=100)
