"""The soak's analyser on small synthetic timelines: each failure it is meant to catch is caught, and a clean
run counts nothing."""

from __future__ import annotations

from hil.soak_analysis import (Action, ArmState, CarTrace, Edge, LaneTiming, Record, Timeline, analyse,
                               match_edges)

TIMING = {"in1": LaneTiming(pass_timeout_s=8.0, fall_s=1.0, slack_s=1.0)}


def _open_row(action_id: str, t: float, status: str = "sent", authority: str = "rules", operator: str = "",
              done: float | None = None) -> Action:
    return Action(action_id, "in1", "open", authority, operator, "temporary", status, t,
                  done if done is not None else (t + 0.05 if status in ("sent", "confirmed", "unconfirmed") else None))


def _close_row(action_id: str, t: float, status: str = "sent") -> Action:
    return Action(action_id, "in1", "close", "", "", "passed", status, t, t + 0.05)


def _clean_cycle(t0: float, plate: str, n: int) -> tuple[list[Edge], list[Action], list[Record], CarTrace,
                                                      list[ArmState], list[Edge]]:
    """One car at in1: arrives at t0, OPEN at t0+0.2, arm up t0+1.2, passes t0+1.5, gone t0+2.1, CLOSE at
    t0+2.2, arm down at t0+3.2."""
    edges = [Edge("in1", "open", t0 + 0.22), Edge("in1", "close", t0 + 2.22)]
    actions = [_open_row(f"a{n}o", t0 + 0.2), _close_row(f"a{n}c", t0 + 2.2)]
    records = [Record(f"r{n}", "in1", "entry", plate, "inside", t0 + 0.2)]
    car = CarTrace("in1", plate, "entry", t0, t_pass=t0 + 1.5, t_gone=t0 + 2.1)
    arm = [ArmState("in1", t0 + 0.22, False), ArmState("in1", t0 + 3.2, True)]
    downs = [Edge("in1", "down_limit", t0 + 3.2)]
    return edges, actions, records, car, arm, downs


def _timeline(*cycles, t_end: float = 100.0, kills=(), downtimes=()) -> Timeline:
    tl = Timeline([], [], [], [], [ArmState("in1", 0.0, True)], [], list(downtimes), list(kills), TIMING, t_end)
    for edges, actions, records, car, arm, downs in cycles:
        tl.edges += edges
        tl.actions += actions
        tl.records += records
        tl.cars.append(car)
        tl.arm += arm
        tl.down_limits += downs
    tl.arm.sort(key=lambda s: s.t)
    return tl


def _bad(fig) -> tuple:
    return (fig.lost_commands, fig.double_opens, fig.opens_without_authority, fig.cars_without_record,
            fig.arm_up_no_car_s)


def test_clean_cycles_count_nothing():
    fig = analyse(_timeline(_clean_cycle(10, "粤A10001", 1), _clean_cycle(20, "粤A10002", 2)))
    assert _bad(fig) == (0, 0, 0, 0, 0.0)
    assert (fig.decided, fig.acknowledged, fig.confirmed) == (4, 4, 0)
    assert fig.findings == []


def test_decided_acknowledged_confirmed_follow_the_status_vocabulary():
    tl = _timeline(_clean_cycle(10, "粤A10001", 1))
    tl.actions = [_open_row("x1", 10.2, "confirmed"), _close_row("x2", 12.2, "unconfirmed"),
                  _open_row("x3", 30, "interrupted"), _open_row("x4", 40, "failed"), _open_row("x5", 50, "requested")]
    fig = analyse(tl)
    assert (fig.decided, fig.acknowledged, fig.confirmed) == (5, 2, 1)
    assert fig.statuses == {"confirmed": 1, "unconfirmed": 1, "interrupted": 1, "failed": 1, "requested": 1}


def test_an_acknowledged_command_with_no_edge_is_lost():
    """Killed inside a pulse: the OPEN coil stays ON, the next OPEN writes ON onto ON and the module answers,
    but the barrier sees no rising edge."""
    edges, actions, records, car, arm, downs = _clean_cycle(10, "粤A10001", 1)
    interrupted = _open_row("k1", 5.0, "interrupted")  # the edge at 5.02 belongs to it (the kill came at 5.1)
    stuck = CarTrace("in1", "粤A10003", "entry", 20.0)  # its OPEN was written onto a coil left ON: no edge
    tl = _timeline((edges + [Edge("in1", "open", 5.02)], actions + [interrupted, _open_row("lost", 20.2)],
                    records + [Record("r3", "in1", "entry", "粤A10003", "inside", 20.2)], car,
                    arm + [ArmState("in1", 5.02, False), ArmState("in1", 6.5, True)],
                    downs + [Edge("in1", "down_limit", 6.5)]), kills=[5.1], downtimes=[(5.1, 6.0)])
    tl.cars.append(stuck)
    fig = analyse(tl)
    assert fig.lost_commands == 1
    assert [f.what for f in fig.findings if f.what != "open_with_no_car"] == ["lost_command"]
    assert "lost" in [f for f in fig.findings if f.what == "lost_command"][0].detail
    assert fig.opens_without_authority == 0, "the edge inside the killed pulse is explained by its interrupted row"


def test_an_unanswered_row_cannot_claim_an_edge_after_the_kill_that_ended_its_process():
    rows = [_open_row("old", 5.0, "interrupted"), _open_row("new", 9.0, "sent")]
    matched, used = match_edges([Edge("in1", "open", 9.02)], rows, kills=[5.5])
    assert matched[0].action_id == "new" and used == {"new"}


def test_two_opens_for_one_car_are_a_double_open():
    edges, actions, records, car, arm, downs = _clean_cycle(10, "粤A10001", 1)
    # after a restart the daemon re-sends OPEN for the same car before it passed (both rows authorised)
    edges.append(Edge("in1", "open", 11.0))
    actions.append(_open_row("again", 10.98))
    fig = analyse(_timeline((edges, actions, records, car, arm, downs)))
    assert fig.double_opens == 1 and fig.opens_without_authority == 0 and fig.lost_commands == 0
    assert fig.findings[0].what == "double_open"


def test_opens_separated_by_a_passing_car_or_a_closed_arm_are_not_double():
    fig = analyse(_timeline(_clean_cycle(10, "粤A10001", 1), _clean_cycle(14, "粤A10002", 2)))
    assert fig.double_opens == 0


def test_an_open_edge_without_a_row_or_without_authority_is_counted():
    edges, actions, records, car, arm, downs = _clean_cycle(10, "粤A10001", 1)
    edges += [Edge("in1", "open", 30.0), Edge("in1", "open", 40.0), Edge("in1", "open", 50.0)]
    actions += [_open_row("noauth", 39.9, authority=""), _open_row("anon", 49.9, authority="operator", operator=" ")]
    arm += [ArmState("in1", 30.0, False), ArmState("in1", 31.0, True), ArmState("in1", 40.0, False),
            ArmState("in1", 41.0, True), ArmState("in1", 50.0, False), ArmState("in1", 51.0, True)]
    downs += [Edge("in1", "down_limit", 31.0), Edge("in1", "down_limit", 41.0)]
    fig = analyse(_timeline((edges, actions, records, car, arm, downs)))
    assert fig.opens_without_authority == 3
    assert [f.t for f in fig.findings if f.what == "open_without_authority"] == [30.0, 40.0, 50.0]
    assert fig.double_opens == 0


def test_an_edge_before_its_row_was_written_is_not_authorised():
    """Write ahead: a row stamped after the edge does not explain it."""
    edges, actions, records, car, arm, downs = _clean_cycle(10, "粤A10001", 1)
    actions[0] = _open_row("late", 11.0)
    fig = analyse(_timeline((edges, actions, records, car, arm, downs)))
    assert fig.opens_without_authority == 1


def test_a_tailgating_car_without_its_own_record_is_counted():
    """The arm is left up after a restart; the next car drives straight through and the lane never records
    it."""
    cycle = _clean_cycle(10, "粤A10001", 1)
    arm = [ArmState("in1", 10.22, False), ArmState("in1", 16.0, True)]  # stays up until 16
    tailgater = CarTrace("in1", "粤A10002", "entry", 12.5, t_pass=12.7, t_gone=13.3, arm_up_on_arrival=True)
    tl = _timeline((cycle[0], cycle[1], cycle[2], cycle[3], arm, [Edge("in1", "down_limit", 16.0)]))
    tl.cars.append(tailgater)
    fig = analyse(tl)
    assert fig.cars_without_record == 1
    assert "粤A10002" in [f for f in fig.findings if f.what == "car_without_record"][0].detail
    # the same car with a record of its own (the daemon read its plate) is fine
    tl.records.append(Record("r2", "in1", "entry", "粤A10002", "inside", 12.6))
    assert analyse(tl).cars_without_record == 0


def test_a_refused_record_or_another_lane_is_not_the_car_s_own_record():
    cycle = _clean_cycle(10, "粤B66666", 1)
    records = [Record("r1", "in1", "entry", "粤B66666", "refused", 10.2), Record("x", "out1", "exit", "粤B66666",
                                                                               "released", 10.3)]
    fig = analyse(_timeline((cycle[0], cycle[1], records, cycle[3], cycle[4], cycle[5])))
    assert fig.cars_without_record == 1


def test_an_operator_release_record_stands_for_a_car_without_plate():
    cycle = _clean_cycle(10, "", 1)
    records = [Record("rel", "in1", "release", "", "released", 11.0)]
    fig = analyse(_timeline((cycle[0], cycle[1], records, cycle[3], cycle[4], cycle[5])))
    assert fig.cars_without_record == 0


def test_a_car_that_came_and_went_while_the_daemon_was_down_is_not_held_against_it():
    cycle = _clean_cycle(10, "粤A10001", 1)
    ghost = CarTrace("in1", "粤A10002", "entry", 12.5, t_pass=12.7, t_gone=13.3, arm_up_on_arrival=True,
                     daemon_down_on_arrival=True)
    tl = _timeline(cycle, kills=[12.0], downtimes=[(12.0, 14.0)])
    tl.cars.append(ghost)
    fig = analyse(tl)
    assert (fig.cars_without_record, fig.passed_while_down) == (0, 1)


def test_an_arm_left_up_with_no_car_counts_the_time_beyond_the_close_delay():
    cycle = _clean_cycle(10, "粤A10001", 1)
    arm = [ArmState("in1", 10.22, False), ArmState("in1", 30.1, True)]  # never closed after the car: 28 s alone
    fig = analyse(_timeline((cycle[0], cycle[1], cycle[2], cycle[3], arm, [])))
    # up 10.22 .. 30.1; car present 10 .. 12.1: 18 s alone, 10 s allowed (8 + 1 + 1)
    assert fig.arm_up_no_car_s == 8.0
    assert fig.findings[-1].what == "arm_up_no_car"


def test_downtime_and_an_arriving_car_are_not_arm_up_without_car():
    cycle = _clean_cycle(10, "粤A10001", 1)
    arm = [ArmState("in1", 10.22, False), ArmState("in1", 40.0, True)]
    later = CarTrace("in1", "粤A10002", "entry", 25.0, t_pass=25.1, t_gone=26.0, arm_up_on_arrival=True)
    tl = _timeline((cycle[0], cycle[1], cycle[2], cycle[3], arm, []), downtimes=[(13.0, 16.0)])
    tl.cars.append(later)
    tl.records.append(Record("r2", "in1", "entry", "粤A10002", "inside", 25.05))
    fig = analyse(tl)
    # alone 12.1 .. 25.0 (12.9 s, 3 s of it down: 9.9 - 10 allowed = 0) and 26.0 .. 40.0 (14 s: 4 s beyond)
    assert fig.arm_up_no_car_s == 4.0
    assert len([f for f in fig.findings if f.what == "arm_up_no_car"]) == 1


def test_a_tailgater_cannot_claim_the_release_made_for_the_plateless_car_behind_it():
    cycle = _clean_cycle(10, "粤A10001", 1)
    arm = [ArmState("in1", 10.22, False), ArmState("in1", 30.0, True)]
    tailgater = CarTrace("in1", "粤A10002", "entry", 12.5, t_pass=12.7, t_gone=13.3, arm_up_on_arrival=True)
    plateless = CarTrace("in1", "", "plateless", 16.0, t_pass=18.0, t_gone=18.6)
    tl = _timeline((cycle[0], cycle[1], cycle[2], cycle[3], arm, []))
    tl.cars += [tailgater, plateless]
    tl.records.append(Record("rel", "in1", "release", "", "released", 17.0))  # the operator, for the plateless car
    fig = analyse(tl)
    assert fig.cars_without_record == 1
    assert "粤A10002" in [f for f in fig.findings if f.what == "car_without_record"][0].detail


def test_a_regular_without_a_record_cannot_claim_the_record_of_its_next_visit():
    """粤B00001 tailgates at 12.5 (no record), comes back at 20 and is recorded then: one car without record,
    and it is the first visit."""
    cycle = _clean_cycle(10, "粤A10001", 1)
    arm = [ArmState("in1", 10.22, False), ArmState("in1", 14.0, True)]
    first = CarTrace("in1", "粤B00001", "entry", 12.5, t_pass=12.7, t_gone=13.3, arm_up_on_arrival=True)
    tl = _timeline((cycle[0], cycle[1], cycle[2], cycle[3], arm, [Edge("in1", "down_limit", 14.0)]),
                   _clean_cycle(20, "粤B00001", 2))
    tl.cars.append(first)
    fig = analyse(tl)
    assert fig.cars_without_record == 1
    assert [f.t for f in fig.findings if f.what == "car_without_record"] == [12.5]


def test_a_car_read_while_the_daemon_was_up_is_not_excused_by_a_downtime():
    cycle = _clean_cycle(10, "粤A10001", 1)
    arm = [ArmState("in1", 10.22, False), ArmState("in1", 20.0, True)]
    late = CarTrace("in1", "粤A10002", "entry", 12.5, t_pass=14.2, t_gone=14.8, arm_up_on_arrival=True,
                    daemon_down_on_arrival=True, reads=[12.55, 13.9])  # re-read after the daemon came back
    tl = _timeline((cycle[0], cycle[1], cycle[2], cycle[3], arm, []), kills=[12.0], downtimes=[(12.0, 13.5)])
    tl.cars.append(late)
    fig = analyse(tl)
    assert (fig.cars_without_record, fig.passed_while_down) == (1, 0)
    late.reads = [12.55]  # only read while the daemon was down, passed just after it came back
    fig = analyse(tl)
    assert (fig.cars_without_record, fig.passed_while_down) == (0, 1)


def test_an_open_for_a_car_that_has_gone_is_listed_but_not_a_bad_count():
    """A plate held while the arm was up is decided after the cycle, when its car has already driven through:
    the OPEN raises the arm for nobody."""
    cycle = _clean_cycle(10, "粤A10001", 1)
    edges = cycle[0] + [Edge("in1", "open", 15.0)]
    actions = cycle[1] + [_open_row("gone", 14.98)]
    arm = cycle[4] + [ArmState("in1", 15.0, False), ArmState("in1", 20.0, True)]
    fig = analyse(_timeline((edges, actions, cycle[2], cycle[3], arm, cycle[5] + [Edge("in1", "down_limit", 20.0)])))
    assert fig.opens_with_no_car == 1
    assert _bad(fig) == (0, 0, 0, 0, 0.0)
    assert analyse(_timeline(cycle)).opens_with_no_car == 0
