"""The site YAML `payments: bolink:` section (lanectl/config/payments.py assembles the sections)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from lanectl.config.base import Route, SecretRef, Strict, Url


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


def check_lane(cfg: Optional[BolinkConfig], site: Any, lane: Any, where: str) -> list[str]:
    """A lane charging with Bolink ETC needs its ETC box id; with etc_pay_type my, both pictures as links."""
    problems = []
    if "bolink_etc" in lane.payments and not lane.etc_lane_no:
        problems.append(f"{where}: etc_lane_no: required with bolink_etc (the lane's ETC box id)")
    if "bolink_etc" in lane.payments and cfg is not None and cfg.etc_pay_type == "my":
        camera = lane.devices.camera
        if not site.images.public_url:
            problems.append(f"{where}: payments: bolink_etc with etc_pay_type my sends both pictures "
                            "as links: set images.public_url in site.yaml")
        if camera is None or not camera.save_images:
            problems.append(f"{where}: devices.camera: bolink_etc with etc_pay_type my needs the exit "
                            "picture: a camera that saves pictures (save_images: true)")
    return problems
