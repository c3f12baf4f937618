"""Cron schedule math (engine/schedule.py): DST gaps and overlaps, time zones, month ends."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

from stackblaze.engine.schedule import next_tick, ticks_between

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")


def at(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()  # type: ignore[misc]


def local(when: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(when, zone).strftime("%Y-%m-%d %H:%M %Z")


def test_a_daily_time_in_a_zone_is_that_wall_time_there() -> None:
    tick = next_tick("0 3 * * *", "Europe/Paris", at(UTC, 2025, 6, 1, 12))
    assert local(tick, PARIS) == "2025-06-02 03:00 CEST"
    assert local(tick, UTC) == "2025-06-02 01:00 UTC"  # the same instant, two hours earlier in UTC
    tick = next_tick("0 3 * * *", "America/New_York", at(UTC, 2025, 6, 1, 12))
    assert local(tick, UTC) == "2025-06-02 07:00 UTC"


def test_spring_forward_runs_the_skipped_time_once_when_the_clock_jumps() -> None:
    # 2025-03-30 in Paris: 02:00 CET -> 03:00 CEST; 02:30 never shows on the clock that day.
    ticks = ticks_between("30 2 * * *", "Europe/Paris", at(PARIS, 2025, 3, 29, 12), at(PARIS, 2025, 4, 1, 12))
    assert [local(t, PARIS) for t in ticks] == [
        "2025-03-30 03:00 CEST", "2025-03-31 02:30 CEST", "2025-04-01 02:30 CEST"]
    # New York, 2025-03-09: 02:00 EST -> 03:00 EDT
    ticks = ticks_between("30 2 * * *", "America/New_York", at(NEW_YORK, 2025, 3, 8, 12),
                          at(NEW_YORK, 2025, 3, 10, 12))
    assert [local(t, NEW_YORK) for t in ticks] == ["2025-03-09 03:00 EDT", "2025-03-10 02:30 EDT"]


def test_fall_back_runs_a_fixed_time_once_in_the_repeated_hour() -> None:
    # 2025-10-26 in Paris: 03:00 CEST -> 02:00 CET; 02:30 shows twice, an hour apart.
    ticks = ticks_between("30 2 * * *", "Europe/Paris", at(PARIS, 2025, 10, 25, 12), at(PARIS, 2025, 10, 28, 0))
    assert [local(t, PARIS) for t in ticks] == [
        "2025-10-26 02:30 CEST", "2025-10-27 02:30 CET"]


def test_fall_back_keeps_the_rhythm_of_an_every_30_minutes_schedule() -> None:
    ticks = ticks_between("*/30 * * * *", "Europe/Paris", at(UTC, 2025, 10, 25, 23, 50),
                          at(UTC, 2025, 10, 26, 2, 0))
    # 00:00 to 02:00 UTC every 30 minutes: 5 ticks, the repeated 02:00 and 02:30 included, none twice.
    assert len(ticks) == 5 and len(set(ticks)) == 5
    assert all(b - a == 1800 for a, b in pairwise(ticks))
    assert [local(t, PARIS) for t in ticks][1:4] == ["2025-10-26 02:30 CEST", "2025-10-26 02:00 CET",
                                                     "2025-10-26 02:30 CET"]


def test_an_every_30_minutes_schedule_skips_the_spring_gap_without_a_double_run() -> None:
    ticks = ticks_between("*/30 * * * *", "America/New_York", at(NEW_YORK, 2025, 3, 9, 1, 10),
                          at(NEW_YORK, 2025, 3, 9, 4, 0))
    assert [local(t, NEW_YORK) for t in ticks] == [
        "2025-03-09 01:30 EST", "2025-03-09 03:00 EDT", "2025-03-09 03:30 EDT", "2025-03-09 04:00 EDT"]


def test_the_31st_runs_only_in_months_that_have_one() -> None:
    ticks = ticks_between("0 0 31 * *", "UTC", at(UTC, 2025, 1, 1), at(UTC, 2025, 12, 31, 23))
    assert [datetime.fromtimestamp(t, UTC).month for t in ticks] == [1, 3, 5, 7, 8, 10, 12]


def test_february_29th_only_in_leap_years_and_28th_every_year() -> None:
    ticks = ticks_between("0 12 29 2 *", "UTC", at(UTC, 2025, 1, 1), at(UTC, 2033, 1, 1))
    assert [local(t, UTC)[:10] for t in ticks] == ["2028-02-29", "2032-02-29"]
    ticks = ticks_between("0 12 28 2 *", "UTC", at(UTC, 2027, 1, 1), at(UTC, 2029, 1, 1))
    assert [local(t, UTC)[:10] for t in ticks] == ["2027-02-28", "2028-02-28"]
    # 'last day of February' as L: the 28th, or the 29th in a leap year
    ticks = ticks_between("0 0 L 2 *", "UTC", at(UTC, 2027, 1, 1), at(UTC, 2029, 1, 1))
    assert [local(t, UTC)[:10] for t in ticks] == ["2027-02-28", "2028-02-29"]


def test_a_tick_is_strictly_after_the_given_time() -> None:
    exactly = at(UTC, 2025, 6, 1, 3, 0)
    assert next_tick("0 3 * * *", "UTC", exactly) == at(UTC, 2025, 6, 2, 3, 0)
    assert next_tick("* * * * *", "UTC", exactly - 0.5) == exactly
