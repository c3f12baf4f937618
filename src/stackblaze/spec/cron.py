"""Cron services' schedule settings: the dataclass, and reading it from a service's mapping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from stackblaze.spec.duration import parse_duration
from stackblaze.spec.messages import fail, show

Concurrency = Literal["forbid", "allow", "replace"]
CONCURRENCY: tuple[Concurrency, ...] = ("forbid", "allow", "replace")
MAX_RETRIES = 10  # a Job's backoffLimit is unbounded; ten retries of a scheduled run is already a lot
MAX_HISTORY = 100
DEFAULT_HISTORY = 10  # finished runs kept per cron service (Kubernetes keeps 3 successful, 1 failed)


@dataclass(frozen=True, kw_only=True)
class Cron:
    """When and how a cron service's runs happen."""

    schedule: str  # five fields, as croniter and Kubernetes take them
    timezone: str = "UTC"
    concurrency: Concurrency = "forbid"  # a tick while the last run goes on: skipped | both run | old one stopped
    timeout: float | None = None  # seconds a run may take before it is stopped (stop signal, then grace)
    catch_up: bool = False  # a tick missed while the daemon was down runs once when it is back
    retries: int = 0  # a failed run is run again this many times (a Job's backoffLimit)
    history: int = DEFAULT_HISTORY  # finished runs kept

    def to_dict(self) -> dict[str, object]:
        return {"schedule": self.schedule, "timezone": self.timezone, "concurrency": self.concurrency,
                "timeout": self.timeout, "catch_up": self.catch_up, "retries": self.retries,
                "history": self.history}


def check_schedule(value: object, *, where: str) -> str:
    """Five cron fields (minute hour day-of-month month day-of-week) or a nickname such as @hourly."""
    example = "(e.g. schedule: '*/15 * * * *', or '0 3 * * *' for 03:00 every day)"
    if not isinstance(value, str) or not value.strip():
        raise fail(where, f"{show(value)} is not a cron schedule {example}")
    text = " ".join(value.split())
    if not text.startswith("@") and len(text.split()) != 5:
        raise fail(where, f"{show(value)} has {len(text.split())} fields, a schedule has 5: minute hour "
                          f"day-of-month month day-of-week {example}")
    if not croniter.is_valid(text):
        raise fail(where, f"{show(value)} is not a valid cron schedule {example}")
    return text


def check_timezone(value: object, *, where: str) -> str:
    if isinstance(value, str) and value:
        try:
            ZoneInfo(value)
            return value
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise fail(where, f"{show(value)} is not a time zone of the IANA database (e.g. timezone: Europe/Paris, or UTC)")


def check_concurrency(value: object, *, where: str) -> Concurrency:
    for choice in CONCURRENCY:
        if value == choice:
            return choice
    raise fail(where, f"{show(value)} is not a concurrency policy (forbid: skip a tick while a run goes on, "
                      "allow: run both, replace: stop the old run; e.g. concurrency: forbid)")


def check_count(value: object, *, where: str, key: str, low: int, high: int, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise fail(where, f"{show(value)} is not a whole number from {low} to {high} (e.g. {key}: {example})")
    return value


def read_cron(raw: dict[object, object], *, at: Callable[[str], str]) -> Cron:
    """The cron settings of a `type: cron` service; `at(field)` gives the `file:line: path` of a field."""
    where = at
    schedule = check_schedule(raw.get("schedule"), where=where("schedule"))
    timeout = None
    if raw.get("timeout") is not None:
        timeout = parse_duration(raw["timeout"], where=where("timeout"))
        if timeout <= 0:
            raise fail(where("timeout"), f"{show(raw['timeout'])} must be more than 0 (e.g. timeout: 30m)")
    catch_up = raw.get("catch_up", False)
    if not isinstance(catch_up, bool):
        raise fail(where("catch_up"), f"{show(catch_up)} is not true or false (e.g. catch_up: true)")
    return Cron(
        schedule=schedule,
        timezone=check_timezone(raw.get("timezone", "UTC"), where=where("timezone")),
        concurrency=check_concurrency(raw.get("concurrency", "forbid"), where=where("concurrency")),
        timeout=timeout,
        catch_up=catch_up,
        retries=check_count(raw.get("retries", 0), where=where("retries"), key="retries", low=0,
                            high=MAX_RETRIES, example=2),
        history=check_count(raw.get("history", DEFAULT_HISTORY), where=where("history"), key="history",
                            low=1, high=MAX_HISTORY, example=DEFAULT_HISTORY),
    )
