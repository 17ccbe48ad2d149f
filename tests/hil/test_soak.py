"""The kill campaign at CI size: about 20 SIGKILLs of the daemon process while cars stream through an entry
and an exit lane on the rig. Every figure is measured from the rig's emulators and the daemon's database
(hil/soak.py, hil/soak_analysis.py). A correct daemon loses no command, never opens twice for one car, opens
only with an authority, records every car that passes and leaves no arm up without a car."""

from __future__ import annotations

import pytest

from hil.soak import Campaign, Options, parse_lanes, report

pytestmark = [pytest.mark.hil, pytest.mark.soak]

KILLS = 20
SEED = 12


@pytest.mark.timeout(420)
async def test_twenty_kills_lose_no_command_and_open_only_for_a_car_with_authority(tmp_path):
    opts = Options(KILLS, SEED, parse_lanes("in1:entry:1,out1:exit:2"), baud=9600, keep=tmp_path / "soak",
                   progress_every=5)
    outcome = await Campaign(opts).run()
    text = report(outcome) + "\ndaemon log (warnings, errors):\n" + "\n".join(outcome.log_excerpt)
    print(text)  # shown when the test fails, with the findings and where the daemon's log is
    f = outcome.figures

    # the campaign itself did what it says: kills, restarts, a stream of cars of every kind
    assert outcome.kills == KILLS and outcome.restarts == KILLS and outcome.restart_failures == 0, text
    assert {"entry", "free_exit", "paid_exit", "plateless"} <= set(outcome.cars), text
    assert f.decided > 2 * KILLS and f.acknowledged > 0, text

    assert f.lost_commands == 0, f"acknowledged commands the barrier never saw:\n{text}"
    assert f.double_opens == 0, f"two OPENs for one car:\n{text}"
    assert f.opens_without_authority == 0, f"OPEN with no authority:\n{text}"
    assert f.cars_without_record == 0, f"cars through the barrier without a record of their own:\n{text}"
    assert f.arm_up_no_car_s == 0, f"arm left up with no car:\n{text}"
    assert (outcome.close_refused, outcome.arm_hits) == (0, 0), text
    assert (outcome.integrity, outcome.foreign_key_violations) == ("ok", 0), text
    assert not outcome.bad
