"""Simulations of the policy: the real decide() polled on a simulated clock against a tiny deterministic queue
(queue_model.py: Poisson or fixed arrivals, a service time per job, replicas as one-job servers that boot for
1 s and drain gracefully). They show what the HPA's loop does with a queue's work count; they say nothing
about brokers, readers or the supervisor — the real-broker acceptance tests come with the engine integration.

Profile, unless a test says otherwise: issue 16's acceptance profile (research §4.7: poll 1 s, idle_after
20 s, max 8, target 1) with the HPA's default windows (up 0 s, down 300 s).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from stackblaze.engine.autoscale.decisions import explain
from stackblaze.spec.autoscale import SCALE_UP, Autoscale, Queues
from tests.unit.engine.autoscale.queue_model import QueueModel, Run, poisson, simulate

QUEUES = Queues("rq", "redis://127.0.0.1:6379/0", ("default",))
PROFILE = Autoscale(min=0, max=8, queues=QUEUES, poll=1.0, idle_after=20.0)
# max 20 leaves room above a 4-replica load; a 10 s up window is what keeps Poisson noise from ratcheting it
HEADROOM = replace(PROFILE, max=20, scale_up=replace(SCALE_UP, window=10.0))
SEEDS = range(10)


def flips(run: Run, after: float, within: float = 300.0) -> list[tuple[float, float]]:
    """Pairs of consecutive changes in opposite directions less than `within` apart (up-down or down-up)."""
    changes = run.changes(after=after)
    return [(a[0], b[0]) for a, b in itertools.pairwise(changes)
            if (a[2] - a[1]) * (b[2] - b[1]) < 0 and b[0] - a[0] < within]


def test_burst_from_zero_wakes_at_the_first_poll_reaches_max_and_returns_to_zero() -> None:
    model = QueueModel(boot=1.0)
    model.add_jobs([(0.5, 0.01)] * 10_000)
    run = simulate(PROFILE, model, until=120.0)
    assert run.first_time(lambda n: n >= 1) == 1.0  # the first poll after the jobs arrived
    assert run.first_time(lambda n: n == 8) == 17.0  # 0 -> 1 (wake), 1 -> 5 (pods 4), 5 -> 8 15 s later
    assert [(c[1], c[2]) for c in run.changes()] == [(0, 1), (1, 5), (5, 8), (8, 0)]
    assert model.done == 10_000 and model.last_done_at is not None
    zero = run.first_time(lambda n: n == 0, after=1.0)
    assert zero is not None and model.last_done_at + 20.0 <= zero <= model.last_done_at + 20.0 + 1.0
    assert explain([d for d in run.decisions if d.rule == "to-zero"])[0].endswith(
        "8 -> 0  to zero: no work for 20s  [ready 0, due 0, in flight 0, current 8, target 1/replica]")


def test_burst_with_the_local_defaults() -> None:
    """poll 5 s, idle_after 300 s: the same steps, at the poll's pace."""
    spec = replace(PROFILE, poll=5.0, idle_after=300.0)
    model = QueueModel(boot=1.0)
    model.add_jobs([(0.5, 0.01)] * 10_000)
    run = simulate(spec, model, until=400.0)
    assert (run.first_time(lambda n: n >= 1), run.first_time(lambda n: n == 8)) == (5.0, 25.0)
    assert model.done == 10_000 and model.last_done_at is not None
    zero = run.first_time(lambda n: n == 0, after=5.0)
    assert zero is not None and model.last_done_at + 300.0 <= zero <= model.last_done_at + 305.0


def test_a_single_long_job_is_never_scaled_to_zero_while_it_runs() -> None:
    spec = replace(PROFILE, idle_after=10.0)
    model = QueueModel(boot=1.0)
    model.add_jobs([(0.5, 60.0)])
    run = simulate(spec, model, until=100.0)
    started = 2.0  # woken at 1.0, booted 1 s later
    assert all(count == 1 for at, count in run.counts if 1.0 <= at < started + 60.0)
    assert model.done == 1 and model.last_done_at == started + 60.0
    assert run.first_time(lambda n: n == 0, after=1.0) == started + 60.0 + 10.0


@pytest.mark.parametrize("seed", SEEDS)
def test_steady_poisson_load_does_not_flap(seed: int) -> None:
    """40 jobs/s x 100 ms (4 replica-equivalents) for 10 minutes. With target 1 the work count is Poisson noise
    around 4, and the 300 s window holds its rolling max, which here is max (8): stable, not frugal."""
    model = QueueModel(boot=1.0)
    model.add_jobs(poisson(40.0, 0.1, 0.0, 600.0, seed))
    run = simulate(PROFILE, model, until=600.0)
    assert len(run.changes(after=60.0)) <= 2
    assert flips(run, after=60.0) == []


@pytest.mark.parametrize("seed", SEEDS)
def test_steady_poisson_load_with_headroom_settles_near_the_need(seed: int) -> None:
    model = QueueModel(boot=1.0)
    model.add_jobs(poisson(40.0, 0.1, 0.0, 600.0, seed))
    run = simulate(HEADROOM, model, until=600.0)
    assert len(run.changes(after=60.0)) <= 2
    assert flips(run, after=60.0) == []
    settled = [count for at, count in run.counts if at > 60.0]
    assert min(settled) >= 5 and max(settled) <= 8


@pytest.mark.parametrize("seed", SEEDS)
def test_a_step_load_is_followed_within_20s_up_and_the_window_plus_10s_down(seed: int) -> None:
    """4 -> 8 -> 2 replica-equivalents (40, 80, 20 jobs/s x 100 ms), each step at a round time."""
    model = QueueModel(boot=1.0)
    model.add_jobs([*poisson(40.0, 0.1, 0.0, 400.0, seed), *poisson(80.0, 0.1, 400.0, 800.0, seed + 100),
                    *poisson(20.0, 0.1, 800.0, 1500.0, seed + 200)])
    run = simulate(HEADROOM, model, until=1500.0)
    up = run.first_time(lambda n: n >= 8, after=400.0)
    assert up is not None and up - 400.0 <= 20.0
    # down: the first step down within the window + 10 s of the load's step, and the low load's level (the most
    # it keeps once the high phase is long gone) within the window + 10 s of the last recommendation above it.
    # Measured from the load's step that last one takes longer when the low load's own noise makes a high
    # recommendation after the step (Poisson work around 2 reaches 7 now and then).
    first_down = run.changes(after=800.0)[0]
    assert first_down[2] < first_down[1] and first_down[0] - 800.0 <= 310.0
    low = max(count for at, count in run.counts if at >= 1200.0)
    last_high = max(d.at for d in run.decisions if 400.0 <= d.at < 1200.0 and (d.raw or 0) > low)
    reached = run.first_time(lambda n: n <= low, after=last_high)
    assert reached is not None and reached - last_high <= 310.0


def test_a_broker_outage_under_load_holds_the_count_and_says_why() -> None:
    model = QueueModel(boot=1.0)
    model.add_jobs(poisson(40.0, 0.1, 0.0, 600.0, 1))
    run = simulate(PROFILE, model, until=600.0, down=(300.0, 360.0))
    before = run.count_at(299.0)
    during = [d for d in run.decisions if 300.0 <= d.at < 360.0]
    assert len(during) == 60 and all(d.desired == d.current == before for d in during)
    assert {d.rule for d in during} == {"error-hold"}
    lines = explain(during[:3])
    assert "held: broker unreachable (1/3 failures)" in lines[0]
    assert "held: broker unreachable (3 failures; on_metric_error: hold)" in lines[2]
    assert "read failed: cannot read redis://127.0.0.1:6379/0: connection refused" in lines[0]
    after = next(d for d in run.decisions if d.at == 360.0)
    assert after.error is None and after.rule != "error-hold"  # decisions resume at the first poll
    assert model.done == len(poisson(40.0, 0.1, 0.0, 600.0, 1)) - len(model.queue) - run.decisions[-1].in_flight


def test_fallback_after_three_failures_raises_a_small_service_and_keeps_a_big_one() -> None:
    spec = replace(PROFILE, max=20, fallback=6)
    model = QueueModel(boot=1.0)
    model.add_jobs(poisson(10.0, 0.1, 0.0, 400.0, 2))  # 1 replica-equivalent
    run = simulate(spec, model, until=400.0, down=(330.0, 400.0))
    assert run.count_at(329.0) < 6
    assert run.count_at(331.0) == run.count_at(329.0)  # two failures: held
    assert run.count_at(332.0) == 6  # the third: fallback (KEDA's currentReplicasIfHigher)
    assert "fallback: 3 failures, going to 6" in explain([d for d in run.decisions if d.at == 332.0])[0]
    assert all(count == 6 for at, count in run.counts if 332.0 <= at < 400.0)
