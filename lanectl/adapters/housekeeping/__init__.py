"""Scheduled housekeeping of the local store (docs/operations.md "Housekeeping"):

    backup.py        daily online backup through SQLite's backup API, N generations kept; restore
    retention.py     records older than retention_days go, never one whose upload or settlement is still open
    vacuum.py        weekly VACUUM + ANALYZE
    shift_report.py  the daily shift report (CSV)
    scheduler.py     when each runs (apscheduler cron triggers), a missed run at start, the last results
"""

from lanectl.adapters.housekeeping.scheduler import Housekeeping

__all__ = ["Housekeeping"]
