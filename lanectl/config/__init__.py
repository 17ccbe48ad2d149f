"""Configuration: one package, one module per section.

    site.py       the site file, the lane files and the loader (`load_config`), checks across sections
    base.py       strict model base and secrets by reference
    devices.py    lane devices: cameras, plate readers, barriers, LED boards, scanners
    payments.py   payment platforms (Bolink, XFT, tdzn)
    operators.py  who may open a barrier or top up through the control socket

Callers import from here (`from lanectl.config import load_config`); section models from their module.
"""

from __future__ import annotations

from typing import Any

# The loader's names are resolved on first use, not at import: adapters import their section models
# (`lanectl.config.devices`) and the loader imports an adapter (camera_auth) to check credentials, so an
# eager import here would make importing any section module load the loader half-way through.
__all__ = ["Config", "ConfigError", "ControlConfig", "HttpConfig", "ImagesConfig", "LanConfig", "LaneConfig",
           "LaneRulesConfig", "SiteConfig", "UploadsConfig", "WebhookUpload", "load_config", "secret_refs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lanectl.config import site
        return getattr(site, name)
    raise AttributeError(f"module 'lanectl.config' has no attribute {name!r}")
