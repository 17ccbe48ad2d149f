"""The site YAML `payments: tdzn:` section (lanectl/config/payments.py assembles the sections)."""

from __future__ import annotations

from pydantic import Field

from lanectl.config.base import Route, SecretRef, Strict, Url


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
