"""Log lines: lot time with its offset, no time under journald (JOURNAL_STREAM), or one JSON object per line
carrying a lane decision's fields (issue 19 item 5)."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from lanectl.adapters import log_format

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 22, 8, 0, 5, 250000, tzinfo=TZ)


def _record(msg: str = "lane %s: entry", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("lanectl.lane", logging.INFO, __file__, 1, msg, args or ("in1",), None)
    record.created = AT.timestamp()
    record.__dict__.update(extra)
    return record


def test_text_lines_carry_lot_time_with_its_offset():
    line = log_format.LotTimeFormatter(TZ).format(_record())
    assert line == "2026-11-22T08:00:05.250+08:00 INFO lanectl.lane: lane in1: entry"


def test_under_journald_lines_carry_no_time(tmp_path: Path):
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert log_format.formatter("text", TZ, stream=stream, env=env).format(_record()) == \
            "INFO lanectl.lane: lane in1: entry"
        # another stream (stdout redirected elsewhere by hand): the journal is not this one, keep the time
        other = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}
        assert log_format.formatter("text", TZ, stream=stream, env=other).format(_record()).startswith("2026-")


def test_json_is_one_object_per_line_with_the_decision_fields():
    record = _record("entry decided plate=%s", "粤B12345",
                     decision={"lane": "in1", "plate": "粤B12345", "record": "in1_7", "reason": "temporary",
                               "message": "not this one"})
    line = log_format.JsonFormatter(TZ).format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry == {"time": "2026-11-22T08:00:05.250+08:00", "level": "INFO", "logger": "lanectl.lane",
                     "message": "entry decided plate=粤B12345", "lane": "in1", "plate": "粤B12345",
                     "record": "in1_7", "reason": "temporary"}


def test_json_keeps_a_traceback_inside_the_object():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = _record()
        record.exc_info = sys.exc_info()
    entry = json.loads(log_format.JsonFormatter(TZ).format(record))
    assert "ValueError: boom" in entry["exception"]


def test_use_zone_switches_the_root_handlers_to_the_lot_zone():
    handler = logging.StreamHandler()
    handler.setFormatter(log_format.LotTimeFormatter(None))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        log_format.use_zone(TZ)
        assert handler.formatter.format(_record()).startswith("2026-11-22T08:00:05.250+08:00 ")
    finally:
        root.removeHandler(handler)


def test_a_lane_decision_reaches_the_log_with_its_fields(caplog):
    from lanectl.core import effects as fx
    from tests.unit.test_lane_runner_storage import Lane

    lane = Lane()
    with caplog.at_level(logging.INFO, logger="lanectl"):
        lane.runner._act(fx.Log("info", "entry decided", (("plate", "粤B12345"), ("record", "l1_1"),
                                                          ("reason", "temporary"))))
    [record] = [r for r in caplog.records if r.getMessage().startswith("entry decided")]
    assert record.decision == {"lane": "l1", "plate": "粤B12345", "record": "l1_1", "reason": "temporary"}
    assert json.loads(log_format.JsonFormatter(TZ).format(record))["record"] == "l1_1"
