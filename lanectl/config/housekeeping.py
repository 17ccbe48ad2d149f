"""The site's `housekeeping:` section: daily backup, record retention, weekly VACUUM/ANALYZE and the daily shift
report (adapters/housekeeping/, docs/operations.md "Housekeeping"). Times are the lot's local time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator

from lanectl.config.base import Strict

HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class HousekeepingConfig(Strict):
    enabled: bool = True
    # where the backups go; relative to the configuration directory; default: `backups/` beside the database.
    # Put it on another disk when there is one: a backup on the failing disk saves nothing from that disk.
    backup_dir: Optional[Path] = None
    generations: int = Field(7, ge=1, le=366)  # newest backups kept; older ones are removed after a good backup
    backup_at: str = "03:30"
    # records older than this go, with their payments, attempts and audit rows, once nothing about them is open
    retention_days: int = Field(400, ge=31, le=36500)
    retention_batch: int = Field(500, ge=10, le=5000)  # records per transaction: lanes wait at most one batch
    vacuum_weekday: Weekday = "sun"
    vacuum_at: str = "04:00"
    report_dir: Optional[Path] = None  # the daily shift reports; default: `reports/` beside the database
    report_at: str = "00:10"  # the report of the day before is written then

    @field_validator("backup_at", "vacuum_at", "report_at")
    @classmethod
    def _hh_mm(cls, v: str) -> str:
        if not isinstance(v, str) or not HH_MM.match(v):
            raise ValueError(f"expected a time of day as \"HH:MM\" (24 h, lot time), not {v!r}")
        return v

    def directories(self, config_dir: Path, database: Path) -> tuple[Path, Path]:
        """(backup_dir, report_dir) as absolute paths."""
        def where(given: Optional[Path], default: str) -> Path:
            if given is None:
                return database.parent / default
            return given if given.is_absolute() else config_dir / given
        return where(self.backup_dir, "backups"), where(self.report_dir, "reports")
