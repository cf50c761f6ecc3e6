"""The state machine alone: pure functions, an explicit clock, no I/O."""

from dataclasses import replace

import pytest

from auditq.alerts.rules import Rule, RuleState, reset, step

T0 = 1_800_000_000.0


def rule(**kw) -> Rule:
    base = {"id": "r1", "name": "queue", "metric": "queue_length", "op": ">", "threshold": 100}
    return Rule(**(base | kw))


def run(r: Rule, values, state: RuleState | None = None, start=T0, dt=10.0, can_notify=True):
    """Feed values at start, start+dt, ...; return the final state and every notification."""
    state = state or RuleState()
    notes = []
    for i, value in enumerate(values):
        result = step(r, state, value, start + i * dt, can_notify)
        state = result.state
        notes += [n.kind for n in result.notifications]
    return state, notes


def test_a_breach_waits_for_the_for_duration_then_fires_once():
    r = rule(for_seconds=30)
    state, notes = run(r, [150, 150, 150])  # t = 0, 10, 20
    assert state.state == "pending" and notes == []
    state, notes = run(r, [150, 150], state, start=T0 + 30)
    assert state.state == "firing" and notes == ["trigger"]
    assert state.firing_at == T0 + 30 and state.episode == 1


def test_a_clear_value_while_pending_goes_back_to_normal_silently():
    state, notes = run(rule(for_seconds=30), [150, 150, 50, 150, 150])
    assert state.state == "pending" and state.pending_at == T0 + 30 and notes == []


def test_for_zero_fires_on_the_first_breach():
    state, notes = run(rule(), [150])
    assert state.state == "firing" and notes == ["trigger"]


@pytest.mark.parametrize(
    ("op", "threshold", "clear", "values", "expected"),
    [
        (">", 100, 80, [150, 90, 101, 85, 99, 79], ["trigger", "resolve"]),
        (">=", 100, 80, [100, 80, 100, 79], ["trigger", "resolve"]),
        ("<", 1, 3, [0, 2, 0, 2, 3], ["trigger", "resolve"]),
        ("<=", 1, 3, [1, 3, 1, 4], ["trigger", "resolve"]),
    ],
)
def test_values_inside_the_hysteresis_band_neither_resolve_nor_refire(
    op, threshold, clear, values, expected
):
    state, notes = run(rule(op=op, threshold=threshold, clear_threshold=clear), values)
    assert notes == expected and state.state == "normal"


def test_a_value_in_the_band_does_not_start_pending():
    state, notes = run(rule(clear_threshold=80, for_seconds=10), [90, 95, 99])
    assert state.state == "normal" and notes == []


def test_keep_firing_holds_the_alert_through_a_short_dip():
    r = rule(keep_firing_seconds=25)
    state, notes = run(r, [150, 50, 50, 150, 50, 50, 50])
    # t=10 recovering, t=30 firing again (same episode), t=40 recovering, t=60 (+20) still
    assert state.state == "recovering" and notes == ["trigger"] and state.episode == 1
    state, notes = run(r, [50], state, start=T0 + 65)
    assert state.state == "normal" and notes == ["resolve"]


def test_repeat_sends_again_while_firing():
    state, notes = run(rule(repeat_seconds=25), [150] * 7)  # t = 0 .. 60
    assert notes == ["trigger", "repeat", "repeat"]
    assert state.repeats == 2


def test_send_resolved_false_sends_no_resolve():
    _, notes = run(rule(send_resolved=False), [150, 50])
    assert notes == ["trigger"]


@pytest.mark.parametrize(
    ("no_data", "state_after", "notes"),
    [
        ("ok", "normal", ["trigger", "resolve"]),
        ("alerting", "firing", ["trigger"]),
        ("keep", "firing", ["trigger"]),
    ],
)
def test_no_data(no_data, state_after, notes):
    state, sent = run(rule(no_data=no_data), [150, None, None])
    assert state.state == state_after and sent == notes


def test_no_data_alerting_fires_without_any_value():
    state, notes = run(rule(no_data="alerting", for_seconds=15), [None, None, None])
    assert state.state == "firing" and notes == ["trigger"]


def test_no_data_keep_does_not_advance_a_pending_timer_into_firing_by_itself():
    state, _ = run(rule(for_seconds=30), [150])
    state, notes = run(rule(for_seconds=30), [None, None, None, None], state, start=T0 + 10)
    assert state.state == "pending" and notes == []


def test_silenced_alerts_notify_late_and_resolve_only_what_was_sent():
    r = rule()
    state, notes = run(r, [150, 150], can_notify=False)
    assert state.state == "firing" and notes == [] and not state.notified
    # the silence ends while it still fires: the trigger goes out then
    state, notes = run(r, [150], state, start=T0 + 20)
    assert notes == ["trigger"]
    # a silence does not hold back the resolve of a trigger that went out
    state, notes = run(r, [50], state, start=T0 + 30, can_notify=False)
    assert notes == ["resolve"] and state.state == "normal"


def test_an_alert_silenced_from_start_to_end_sends_nothing():
    _, notes = run(rule(), [150, 150, 50], can_notify=False)
    assert notes == []


def test_state_survives_a_round_trip_through_its_row():
    state, _ = run(rule(for_seconds=60), [150, 150])
    restored = RuleState.from_row({"rule_id": "r1", "updated_at": 1.0, **state.to_row()})
    assert restored == state
    # a restarted evaluator continues the same timer
    after, notes = run(rule(for_seconds=60), [150], restored, start=T0 + 60)
    assert after.state == "firing" and notes == ["trigger"]


def test_disabling_a_firing_rule_resolves_it():
    state, _ = run(rule(), [150])
    result = reset(rule(enabled=False), state, T0 + 5)
    assert result.state.state == "normal"
    assert [n.kind for n in result.notifications] == ["resolve"]
    assert reset(rule(), RuleState(), T0).notifications == []


def test_each_episode_is_numbered_and_resolves_carry_their_start():
    r = rule()
    state, _ = run(r, [150, 50, 150])
    assert state.episode == 2
    result = step(r, state, 50, T0 + 100)
    (note,) = result.notifications
    assert (note.kind, note.episode, note.started_at) == ("resolve", 2, T0 + 20)


def test_fingerprints_are_stable_per_rule():
    assert rule().fingerprint == rule(threshold=5).fingerprint != rule(id="r2").fingerprint
    assert len(rule().fingerprint) == 16


def test_clear_defaults_to_the_threshold():
    r = rule()
    assert r.breaches(101) and not r.clears(101)
    assert r.clears(100) and not r.breaches(100)
    assert replace(r, op=">=").breaches(100)
