"""How the daemon's log lines look: lot time with its offset (the records' time, not the machine's UTC), no time
at all under journald (the journal stamps every line itself), or one JSON object per line (--log-format json)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, tzinfo
from typing import Any, Mapping, Optional, TextIO

FORMATS = ("text", "json")
DECISION = "decision"  # LogRecord attribute with a lane decision's fields (lane, plate, record, reason ...)
_RESERVED = ("time", "level", "logger", "message")


class LotTimeFormatter(logging.Formatter):
    """`2026-11-22T08:00:00.123+08:00 INFO lanectl.lane: ...`, or without the time under journald."""

    def __init__(self, tz: Optional[tzinfo], *, with_time: bool = True) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.tz = tz
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return f"{lot_time(record, self.tz)} {line}" if self.with_time else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (lot time with offset), level, logger, message, and a decision's fields."""

    def __init__(self, tz: Optional[tzinfo]) -> None:
        super().__init__()
        self.tz = tz

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": lot_time(record, self.tz), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, DECISION, None)
        if isinstance(fields, Mapping):
            entry.update((str(k), v) for k, v in fields.items() if k not in _RESERVED)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def lot_time(record: logging.LogRecord, tz: Optional[tzinfo]) -> str:
    return datetime.fromtimestamp(record.created, tz).astimezone(tz).isoformat(timespec="milliseconds")


def under_journald(stream: TextIO, env: Optional[Mapping[str, str]] = None) -> bool:
    """True when `stream` is the journal: JOURNAL_STREAM names its device:inode (systemd.exec(5))."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def formatter(fmt: str, tz: Optional[tzinfo] = None, *, stream: TextIO = sys.stdout,
              env: Optional[Mapping[str, str]] = None) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(tz)
    return LotTimeFormatter(tz, with_time=not under_journald(stream, env))


def use_zone(tz: tzinfo) -> None:
    """Once the configuration is read: stamp lines in the lot's zone (before that: the machine's)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, (LotTimeFormatter, JsonFormatter)):
            handler.formatter.tz = tz
