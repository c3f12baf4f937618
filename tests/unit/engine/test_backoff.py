"""The restart policy is the kubelet's CrashLoopBackOff: checked with a fake clock, no sleeping."""

from __future__ import annotations

from dataclasses import dataclass

from stackblaze.engine.backoff import BackoffPolicy


@dataclass
class FakeClock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


def run_crash_loop(policy: BackoffPolicy, clock: FakeClock, runs: list[float]) -> list[float]:
    """Replica runs for each duration in `runs`, exits, waits its delay: the delays it got."""
    streak = 0
    delays = []
    for ran in runs:
        started = clock()
        clock.now += ran
        streak = policy.next_streak(streak, clock() - started)
        delay = policy.delay_for(streak)
        delays.append(delay)
        clock.now += delay
    return delays


def test_first_restart_is_immediate_then_doubles_from_ten_seconds() -> None:
    delays = run_crash_loop(BackoffPolicy(), FakeClock(), [0.1] * 6)
    assert delays == [0, 10, 20, 40, 80, 160]


def test_delay_is_capped_at_five_minutes_and_never_gives_up() -> None:
    delays = run_crash_loop(BackoffPolicy(), FakeClock(), [1.0] * 40)
    assert delays[6:] == [300.0] * 34


def test_ten_minutes_of_running_starts_the_curve_again() -> None:
    clock = FakeClock()
    delays = run_crash_loop(BackoffPolicy(), clock, [1, 1, 1, 1, 600, 1, 1])
    assert delays == [0, 10, 20, 40, 0, 10, 20]


def test_just_under_ten_minutes_does_not_reset() -> None:
    delays = run_crash_loop(BackoffPolicy(), FakeClock(), [1, 1, 1, 599.9])
    assert delays == [0, 10, 20, 40]


def test_time_scale_multiplies_every_duration() -> None:
    policy = BackoffPolicy(scale=0.01)
    delays = run_crash_loop(policy, FakeClock(), [0.01] * 8)
    assert delays == [0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.0, 3.0]
    # the reset window is scaled too: 6 s is ten minutes at 1/100 speed
    assert run_crash_loop(policy, FakeClock(), [0.01, 0.01, 6.0]) == [0, 0.1, 0]
