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
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field

from lanectl.config.base import SecretRef, Strict
from lanectl.core.money import DEFAULT_MAX_FEN

PROVIDERS = ("bolink", "xft", "tdzn")
ProviderName = Literal["bolink", "bolink_etc", "xft", "tdzn"]
NEEDS = {"bolink": "bolink", "bolink_etc": "bolink", "xft": "xft", "tdzn": "tdzn"}  # provider -> credentials


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


def _base_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return v.rstrip("/")


def _route(v: str) -> str:
    if not v.startswith("/"):
        raise ValueError("must start with /")
    return v


Url = Annotated[str, AfterValidator(_base_url)]
Route = Annotated[str, AfterValidator(_route)]  # a path on the lane's public listener


class BolinkConfig(Strict):
    base_url: Url = "https://s.bolink.club"  # test platform: https://beta.bolink.club
    union_id: int = Field(gt=0)  # 厂商平台账户
    park_id: str = Field(min_length=1, max_length=32)
    key: SecretRef  # vendor key (厂商平台密钥)
    downlink: Literal["callback", "http_mode"] = "callback"
    uplink: Literal["api", "sdk"] = "api"  # sdk: entries/exits over /bpd/upload.do (a lot only on the SDK channel)
    callback_path: Route = "/bolink"  # where the platform POSTs on our public listener (callback mode)
    local_id: str = ""  # HTTP-mode login id (default: park_id)
    rate_per_s: float = Field(8.0, gt=0, lt=10)  # the platform refuses 10 order uploads/s and more
    timeout_s: float = Field(5.0, gt=0, le=60)
    free_out_minutes: int = Field(10, ge=0, le=240)  # answered in query_price: time to leave after paying ahead
    empty_plot: int = Field(0, ge=0)  # free spaces reported with uploads when no counter is wired
    etc_pay_type: Literal["my", "cj", "jyyh", "ystx"] = "jyyh"  # the lot's ETC service (3.7 etcPayApi)




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




class TdznConfig(Strict):
    """The preLeaveNotify platform ("HTTP 对接文档")."""

    url: Url  # the platform's endpoint the lane POSTs every serviceName to
    pid: str = Field(min_length=1)
    key: SecretRef
    park_code: str = Field(min_length=1)
    callback_path: Route = "/tdzn"  # where the platform reaches the lane (queryParkFee, payNotify, remoteDev)
    timestamp_window_s: int = Field(300, ge=10, le=3600)  # platform calls older or newer than this are refused
    pre_leave_timeout_s: float = Field(3.0, gt=0, le=30)  # preLeaveNotify is synchronous: a timeout is "not paid"
    timeout_s: float = Field(5.0, gt=0, le=60)
    rate_per_s: float = Field(5.0, gt=0, le=100)
    total_spaces: int = Field(0, ge=0)  # totalParkNum reported with entries/exits




class PaymentsConfig(Strict):
    settlement: SettlementConfig = SettlementConfig()
    # The largest amount (fen) a platform callback may carry; a bigger one is refused in the platform's own
    # error form. Default ¥100 000; the bound above keeps it a parking fee, not an arbitrary number.
    max_amount_fen: int = Field(DEFAULT_MAX_FEN, gt=0, le=10 ** 12)
    bolink: Optional[BolinkConfig] = None
    xft: Optional[XftConfig] = None
    tdzn: Optional[TdznConfig] = None

    def configured(self) -> tuple[str, ...]:
        return tuple(name for name in PROVIDERS if getattr(self, name, None) is not None)

