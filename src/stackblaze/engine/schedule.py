"""Cron schedule math, pure: the ticks of a five-field schedule in a time zone, as Unix times.

croniter walks the wall clock of the zone. Two rules on top of it, as Vixie cron has them:
- a time the clock skips (spring forward: 02:30 on a day that jumps from 02:00 to 03:00) runs when the
  clock jumps, once (croniter gives 03:00);
- a time the clock shows twice (fall back: 02:30 in a repeated hour) runs once, at its first occurrence,
  for a fixed-time schedule (neither minute nor hour starts with `*`); a schedule of every N minutes or
  every hour keeps running through the repeated hour, since what it promises is a rhythm, not a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

MAX_TICKS = 100_000  # ticks_between never walks further than this (a catch-up over years of `* * * * *`)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=256)
def _fixed_time(schedule: str) -> bool:
    if schedule.startswith("@"):
        return schedule != "@hourly"  # @daily, @weekly, @monthly, @yearly: a time of day
    minute, hour = schedule.split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


def _second_occurrence(when: float, zone: ZoneInfo) -> bool:
    """True when the wall time at `when` happened once already that day (a fall-back hour's repeat)."""
    local = datetime.fromtimestamp(when, zone)
    return local.replace(fold=0).timestamp() != when


def ticks_after(schedule: str, timezone: str, after: float) -> Iterator[float]:
    """The schedule's ticks strictly after `after` (Unix time), in order, forever."""
    zone = _zone(timezone)
    fixed = _fixed_time(schedule)
    walker = croniter(schedule, datetime.fromtimestamp(after, zone))
    last = after
    while True:
        tick = float(walker.get_next(float))
        if tick <= last:  # croniter can land on the jump instant twice around a gap: one run
            continue
        if fixed and _second_occurrence(tick, zone):
            continue
        last = tick
        yield tick


def next_tick(schedule: str, timezone: str, after: float) -> float:
    """The first tick strictly after `after`."""
    return next(ticks_after(schedule, timezone, after))


def ticks_between(schedule: str, timezone: str, start: float, end: float) -> list[float]:
    """Ticks in (start, end], at most MAX_TICKS of them (the latest ones are what a catch-up needs)."""
    found: list[float] = []
    for tick in ticks_after(schedule, timezone, start):
        if tick > end:
            break
        found.append(tick)
        if len(found) > MAX_TICKS:
            del found[: len(found) - MAX_TICKS]
    return found


def describe(schedule: str, timezone: str) -> str:
    """`'0 3 * * *' Europe/Paris` as `cron list` and events say it."""
    return f"'{schedule}' {timezone}"
