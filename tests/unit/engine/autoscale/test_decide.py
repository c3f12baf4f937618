"""One evaluation of the control loop at a time, on plain float times: the rule that fires, the count it
gives, and what `stackblaze autoscale why` will say about it."""

from __future__ import annotations

import json
from dataclasses import replace

from stackblaze.engine.autoscale.decide import (
    LoopState,
    count_for_deploy,
    decide,
    default_target,
    latency_ratio,
    pause,
    resolve_target,
    resume,
    start,
)
from stackblaze.engine.autoscale.decisions import Decision, reason
from stackblaze.engine.autoscale.hpa import Recommendation, ScaleEvent, replicas_for_ratio, replicas_for_work
from stackblaze.engine.autoscale.work import ReadError, Work
from stackblaze.spec.autoscale import SCALE_UP, Autoscale, Direction, Queues

T0 = 1_000_000.0
DOWN = ReadError("cannot read redis://127.0.0.1:6379/0: Connection refused")


def spec(**fields: object) -> Autoscale:
    base: dict[str, object] = {"min": 0, "max": 8, "queues": Queues("celery", "redis://127.0.0.1:6379/0", ("celery",))}
    return Autoscale(**{**base, **fields})  # type: ignore[arg-type]


def work(ready: int = 0, due: int = 0, in_flight: int = 0, oldest_age: float | None = None) -> Work:
    return Work(ready=ready, due=due, in_flight=in_flight, oldest_age=oldest_age)


def one(s: Autoscale, reading: Work | Exception, current: int, state: LoopState | None = None, *,
        at: float = T0, target: int = 1) -> tuple[Decision, LoopState]:
    return decide(s, state or LoopState(), reading, current=current, target=target, now=at)


def test_wakes_from_zero_on_ready_or_due_work_above_activation() -> None:
    d, _ = one(spec(), work(ready=3), 0)
    assert (d.desired, d.rule) == (1, "wake")
    assert reason(d).startswith("wake: 3 ready > activation 0")
    assert one(spec(), work(due=1), 0)[0].desired == 1          # a due delayed job wakes it: nobody else moves it
    assert one(spec(min=0, max=8), work(ready=5), 0)[0].desired == 1  # the next poll sizes up, not this one


def test_activation_is_strict_and_in_flight_alone_does_not_wake() -> None:
    d, _ = one(spec(activation=5), work(ready=5), 0)
    assert (d.desired, d.rule) == (0, "asleep")
    assert reason(d) == "stay at 0: 5 ready ≤ activation 5"
    assert one(spec(activation=5), work(ready=6), 0)[0].desired == 1
    assert one(spec(), work(in_flight=2), 0)[0].desired == 0  # the rule: ready + due wake, not in flight


def test_min_above_zero_brings_a_stopped_service_to_min() -> None:
    d, _ = one(spec(min=2), work(), 0)
    assert (d.desired, d.rule) == (2, "below-min")


def test_goes_to_zero_only_after_no_work_for_idle_after() -> None:
    s = spec(idle_after=300.0)
    state = start(2, T0 - 400)
    d, state = one(s, work(), 2, state, at=T0)
    assert (d.desired, d.rule) == (2, "down-settling")  # down window: 400 s ago is out of it; one poll to settle
    d, state = one(s, work(), 2, state, at=T0 + 5)
    assert d.desired == 1  # the HPA's floor is 1
    d, state = one(s, work(), 1, state, at=T0 + 299)
    assert (d.desired, d.rule) == (1, "idle-wait")
    assert reason(d) == "keep 1: no work for 299s, to zero after 300s"
    d, state = one(s, work(), 1, state, at=T0 + 300)
    assert (d.desired, d.rule) == (0, "to-zero")
    assert reason(d) == "to zero: no work for 300s"


def test_to_zero_bypasses_the_scale_down_window() -> None:
    """KEDA scales N -> 0 itself once cooldownPeriod has passed, without waiting for the HPA's window."""
    s = spec(idle_after=10.0)
    state = LoopState(recommendations=(Recommendation(T0, 6),))
    _, state = one(s, work(), 6, state, at=T0 + 1)
    d, _ = one(s, work(), 6, state, at=T0 + 11)
    assert (d.desired, d.rule) == (0, "to-zero")


def test_work_in_flight_restarts_the_idle_clock() -> None:
    s = spec(idle_after=10.0)
    _, state = one(s, work(), 1, at=T0)
    _, state = one(s, work(in_flight=1), 1, state, at=T0 + 5)
    d, state = one(s, work(), 1, state, at=T0 + 12)
    assert d.desired == 1 and state.idle_since == T0 + 12


def test_scale_up_is_limited_by_the_default_policy() -> None:
    d, state = one(spec(max=20), work(ready=100), 1)
    assert (d.desired, d.rule, d.raw) == (5, "up-limited", 100)
    assert reason(d) == "scale-up limited by policy pods=4/15s: 100 wanted, 5 allowed"
    d, state = one(spec(max=20), work(ready=100), 5, state, at=T0 + 5)
    assert d.desired == 5  # the period still counts the +4
    d, _ = one(spec(max=20), work(ready=100), 5, state, at=T0 + 15)
    assert d.desired == 10


def test_max_caps_and_says_so() -> None:
    d, _ = one(spec(max=3), work(ready=100), 2)
    assert (d.desired, d.rule) == (3, "up-max")
    assert reason(d) == "capped at max 3: 100 wanted"


def test_scale_down_is_held_by_the_highest_recommendation_of_the_window() -> None:
    s = spec(max=20)
    state = LoopState(recommendations=(Recommendation(T0 - 100, 6), Recommendation(T0 - 50, 4)))
    d, _ = one(s, work(ready=2), 6, state)
    assert (d.desired, d.rule, d.raw) == (6, "down-stabilized", 2)
    assert reason(d).startswith("held: scale-down stabilization window 300s keeps 6 (max seen at ")
    _, later = one(s, work(ready=2), 6, state, at=T0 + 201)  # the 6 left the window, the 4 has not
    d, _ = one(s, work(ready=2), 6, later, at=T0 + 206)  # (the poll before held to settle)
    assert (d.desired, d.rule) == (4, "down-stabilized")
    _, later = one(s, work(ready=2), 6, state, at=T0 + 251)
    d, _ = one(s, work(ready=2), 6, later, at=T0 + 256)
    assert (d.desired, d.rule) == (2, "down")


def test_a_scale_down_settles_for_one_poll_and_a_falling_window_makes_one_change() -> None:
    """The window's max falls in steps as a backlog's recommendations (10, 9, 7 at consecutive polls) leave it:
    the HPA would make a change at each; held one poll each time the allowed count moves, it makes one."""
    s = spec(max=20)
    recs = (Recommendation(T0 - 300, 10), Recommendation(T0 - 295, 9), Recommendation(T0 - 250, 7))
    state = LoopState(recommendations=recs)
    d, state = one(s, work(ready=5), 10, state, at=T0 + 1)  # the 10 left: 9 allowed
    assert (d.desired, d.rule) == (10, "down-settling")
    assert reason(d) == ("held one poll: the scale-down window 300s now allows 9; going there at the next poll "
                         "if it still does")
    d, state = one(s, work(ready=5), 10, state, at=T0 + 6)  # the 9 left too: 7 allowed, a different count
    assert (d.desired, d.rule) == (10, "down-settling")
    d, state = one(s, work(ready=5), 10, state, at=T0 + 11)  # 7 again: made
    assert (d.desired, d.rule) == (7, "down-stabilized")
    assert state.settling is None


def test_a_scale_down_that_the_next_poll_no_longer_wants_is_not_made() -> None:
    s = spec(max=20)
    d, state = one(s, work(ready=2), 6, LoopState(), at=T0)
    assert (d.desired, d.rule) == (6, "down-settling")
    d, state = one(s, work(ready=6), 6, state, at=T0 + 5)
    assert (d.desired, d.rule) == (6, "steady") and state.settling is None


def test_no_settling_without_a_scale_down_window() -> None:
    """`scale_down: {window: 0s}` asks for the HPA's immediate scale-down: no poll is added."""
    d, _ = one(spec(max=20, scale_down=Direction(0.0, SCALE_UP.policies[1:])), work(ready=2), 6)
    assert (d.desired, d.rule) == (2, "down")


def test_tolerance_keeps_the_count_and_says_why() -> None:
    d, _ = one(spec(), work(ready=1, in_flight=8), 4, target=2)  # 9 / 8 = 1.125: outside, ceil(4.5)
    assert (d.desired, d.rule) == (5, "up")
    assert reason(d) == "scale up: work 9 / target 2 = 5"
    d, _ = one(spec(), work(in_flight=17), 4, target=4)          # 17 / 16 = 1.0625: kept
    assert (d.desired, d.rule) == (4, "tolerance")
    assert reason(d) == "keep 4: work 17 is within tolerance 0.1 of 4 × 4 (ratio 1.06)"


def test_latency_over_the_slo_adds_exactly_one() -> None:
    s = spec(latency_slo=30.0)
    d, _ = one(s, work(ready=1, in_flight=3, oldest_age=45.0), 4)  # the work alone says 4
    assert (d.desired, d.rule) == (5, "latency-add")
    assert reason(d) == "one more: oldest job 45s > latency_slo 30s"


def test_latency_over_half_the_slo_blocks_a_scale_down() -> None:
    s = spec(latency_slo=30.0, scale_down=Direction(0.0, SCALE_UP.policies[1:]))
    d, _ = one(s, work(ready=1, oldest_age=20.0), 4)
    assert (d.desired, d.rule) == (4, "latency-block")
    assert reason(d) == "held: oldest job 20s > latency_slo/2 15s blocks scale-down (work 1 / target 1 = 1)"
    assert one(s, work(ready=1, oldest_age=10.0), 4)[0].desired == 1


def test_on_kubernetes_the_latency_ratio_makes_the_hpa_do_what_the_local_rule_does() -> None:
    """keda.py's latency trigger (metricType Value, target 1) carries latency_ratio; the HPA proposes
    replicas_for_ratio for it and replicas_for_work for the work trigger, and takes the max. With every pod ready
    and below 1 / tolerance replicas that is the local loop's count, for every age: one more past the slo, the
    count held past half of it, the work's count below. Past 1 / tolerance the HPA's ceil adds about tolerance × N
    instead of one, and a pod not ready yet holds the addition back (the README says both)."""
    s = spec(latency_slo=30.0, max=40, scale_down=Direction(0.0, SCALE_UP.policies[1:]))
    for current in range(1, 10):
        for age in (45.0, 31.0, 20.0, 15.5, 10.0, None):
            local, _ = one(s, work(ready=1, oldest_age=age), current)
            ratio = latency_ratio(30.0, age, 0.1)
            cluster = max(replicas_for_work(1, 1, current, 0.1)[0], replicas_for_ratio(ratio, current, current, 0.1))
            assert cluster == local.desired, (current, age, ratio, local.rule)
    assert [latency_ratio(30.0, age, 0.1) for age in (45.0, 30.0, 20.0, 15.0, None)] == [1.11, 1.0, 1.0, 0.0, 0.0]
    assert latency_ratio(None, 45.0, 0.1) == 0.0 and latency_ratio(30.0, 45.0, 0.3) == 1.31
    past = latency_ratio(30.0, 45.0, 0.1)
    assert [replicas_for_ratio(past, n, n, 0.1) for n in (9, 10, 20)] == [10, 12, 23]  # beyond 1 / tolerance
    assert replicas_for_ratio(past, 4, 2, 0.1) == 3  # two of four pods ready: no addition yet


def test_read_errors_hold_the_count_never_down_never_to_zero() -> None:
    s = spec(idle_after=10.0)
    _, state = one(s, work(), 3, start(3, T0 - 1000), at=T0)
    for failure in range(1, 7):
        d, state = one(s, DOWN, 3, state, at=T0 + 10 * failure)
        assert d.desired == 3 and d.rule == "error-hold"
    assert reason(d) == "held: broker unreachable (6 failures; on_metric_error: hold)"
    assert d.error == "cannot read redis://127.0.0.1:6379/0: Connection refused"
    d, state = one(s, work(), 3, state, at=T0 + 100)
    assert d.rule == "down-settling" and state.failures == 0  # decisions resume; the idle clock starts again
    d, state = one(s, work(), 3, state, at=T0 + 105)
    assert d.desired == 1
    assert one(s, work(), 1, state, at=T0 + 109)[0].desired == 1
    assert one(s, work(), 1, state, at=T0 + 110)[0].desired == 0


def test_first_errors_count_up_to_the_threshold() -> None:
    _, state = one(spec(fallback=4), DOWN, 2)
    d, state = one(spec(fallback=4), DOWN, 2, state)
    assert reason(d) == "held: broker unreachable (2/3 failures)"


def test_fallback_after_three_failures_goes_up_but_never_down() -> None:
    """KEDA's fallback behavior currentReplicasIfHigher: max(fallback, current)."""
    s = spec(fallback=4)
    state = LoopState()
    for _ in range(3):
        d, state = one(s, DOWN, 2, state)
    assert (d.desired, d.rule) == (4, "fallback")
    assert reason(d) == "fallback: 3 failures, going to 4"
    state = replace(state, failures=2)
    d, _ = one(s, DOWN, 6, state)
    assert d.desired == 6  # the current count is higher: kept
    d, _ = one(s, DOWN, 0, replace(state, events=()))
    assert d.desired == 4  # at 0 KEDA sets the fallback count directly


def test_fallback_is_paced_by_the_scale_up_policies() -> None:
    s = spec(fallback=8, max=8)
    d, _ = one(s, DOWN, 1, LoopState(failures=2))
    assert d.desired == 5
    assert reason(d) == "fallback: 3 failures, going to 8 (limited by policy pods=4/15s to 5 for now)"


def test_a_manual_scale_pauses_and_resume_takes_over_from_the_hand_set_count() -> None:
    s = spec(max=20)
    state = pause(LoopState(), by="alice", replicas=7, now=T0)
    d, state = one(s, work(ready=50), 7, state, at=T0 + 5)
    assert (d.desired, d.rule) == (7, "paused")
    assert reason(d).startswith("paused: scaled by hand to 7 by alice at ")
    assert reason(d).endswith("; `scale --auto` resumes")
    assert one(s, DOWN, 7, state, at=T0 + 6)[0].rule == "paused"
    state = resume(state, current=7, now=T0 + 10)
    d, _ = one(s, work(ready=1), 7, state, at=T0 + 15)
    assert (d.desired, d.rule) == (7, "down-stabilized")  # not undone before the window has seen the work


def test_resume_starts_the_idle_clock_again() -> None:
    s = spec(max=4, idle_after=60.0)
    _, state = one(s, work(), 0, LoopState(), at=T0)  # idle at 0 since T0
    state = pause(state, by="alice", replicas=2, now=T0 + 100)
    state = resume(state, current=2, now=T0 + 200)
    d, state = one(s, work(), 2, state, at=T0 + 201)  # an empty read right after: not idle for 60 s yet
    assert d.desired == 2 and d.rule != "to-zero"
    assert one(s, work(), 2, state, at=T0 + 262)[0].rule == "to-zero"


def test_start_keeps_a_restarted_daemon_from_shrinking_at_once() -> None:
    d, _ = one(spec(), work(ready=1), 6, start(6, T0))
    assert d.desired == 6
    _, lost = one(spec(), work(ready=1), 6, LoopState())  # what a lost state would have done (after one poll)
    assert one(spec(), work(ready=1), 6, lost, at=T0 + 5)[0].desired == 1


def test_state_survives_json_and_gives_the_same_next_decision() -> None:
    s = spec(max=20)
    state = LoopState(recommendations=(Recommendation(T0 - 10, 9),), events=(ScaleEvent(T0 - 5, 4),),
                      idle_since=None, failures=1)
    state = pause(state, by="bob", replicas=3, now=T0 - 1)
    state = resume(state, current=3, now=T0)
    again = LoopState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert one(s, work(ready=40), 5, again, at=T0 + 1) == one(s, work(ready=40), 5, state, at=T0 + 1)


def test_bounds_apply_before_the_metrics() -> None:
    d, _ = one(spec(max=4), work(), 6)
    assert (d.desired, d.rule) == (4, "above-max")
    d, _ = one(spec(min=3), work(ready=100), 1)
    assert (d.desired, d.rule) == (3, "below-min")


def test_target_defaults_to_the_workers_concurrency() -> None:
    assert default_target({"WORKER_CONCURRENCY": "5"}) == (5, "WORKER_CONCURRENCY=5")
    assert default_target({"CELERY_WORKER_CONCURRENCY": "3"})[0] == 3
    assert default_target({"WORKER_CONCURRENCY": "five", "CELERYD_CONCURRENCY": "2"})[0] == 2
    assert default_target({})[0] == 1
    assert default_target({"WORKER_CONCURRENCY": "0"})[0] == 1
    assert resolve_target(spec(target_per_replica=7), {"WORKER_CONCURRENCY": "5"}) == (7, "target_per_replica")


def test_a_deploy_keeps_the_autoscaled_count_within_the_bounds() -> None:
    assert count_for_deploy(spec(min=0, max=8), 6) == 6
    assert count_for_deploy(spec(min=0, max=4), 6) == 4
    assert count_for_deploy(spec(min=2, max=8), 0) == 2
    assert count_for_deploy(spec(min=0, max=8), 0) == 0
    assert count_for_deploy(spec(min=0, max=8), None) == 1
