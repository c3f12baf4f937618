"""How a new release replaces the old one: min_ready, progress_deadline and rolling: {max_surge, max_unavailable}.

The meanings are a Deployment's (minReadySeconds, progressDeadlineSeconds, maxSurge, maxUnavailable), so a
service rolls out the same way on both engines.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from stackblaze.spec.duration import parse_duration
from stackblaze.spec.messages import fail, show

DEFAULT_MIN_READY = 10.0
MAX_MIN_READY = 600.0
DEFAULT_PROGRESS_DEADLINE = 600.0
MAX_PROGRESS_DEADLINE = 3600.0
_PERCENT = re.compile(r"\s*(\d{1,3})\s*%\s*")


@dataclass(frozen=True)
class Rolling:
    """maxSurge / maxUnavailable: a whole number of replicas, or a percentage of the desired count."""

    max_surge: int | str = 1
    max_unavailable: int | str = 0

    def surge(self, replicas: int) -> int:
        """Replicas allowed above the desired count; a percentage rounds up (as Kubernetes does)."""
        return _resolve(self.max_surge, replicas, round_up=True)

    def unavailable(self, replicas: int) -> int:
        """Replicas allowed below the desired count; a percentage rounds down (as Kubernetes does)."""
        return _resolve(self.max_unavailable, replicas, round_up=False)

    def to_dict(self) -> dict[str, int | str]:
        return {"max_surge": self.max_surge, "max_unavailable": self.max_unavailable}


def _resolve(value: int | str, replicas: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = int(value.rstrip("%")) * replicas / 100
    return math.ceil(share) if round_up else math.floor(share)


def check_min_ready(value: object, *, where: str) -> float:
    seconds = parse_duration(value, where=where)
    if seconds > MAX_MIN_READY:
        raise fail(where, f"{show(value)} is longer than the 600 seconds allowed (e.g. min_ready: 10s)")
    return seconds


def check_progress_deadline(value: object, *, where: str, min_ready: float) -> float:
    seconds = parse_duration(value, where=where)
    if seconds > MAX_PROGRESS_DEADLINE:
        raise fail(where, f"{show(value)} is longer than the 1 hour allowed (e.g. progress_deadline: 10m)")
    if seconds <= min_ready:
        raise fail(where, f"{show(value)} must be longer than min_ready ({min_ready:g}s), or no replica could "
                          f"ever become available in time (e.g. progress_deadline: 10m)")
    return seconds


def check_amount(value: object, *, where: str, key: str) -> int | str:
    """A whole number of replicas (0 or more) or a percentage ("25%")."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000:
        return value
    if isinstance(value, str) and (match := _PERCENT.fullmatch(value)) and int(match.group(1)) <= 100:
        return f"{int(match.group(1))}%"
    raise fail(where, f"{show(value)} is not a number of replicas or a percentage (e.g. {key}: 1 or {key}: 25%)")


def check_rolling(surge: int | str, unavailable: int | str, *, where: str) -> Rolling:
    if surge in (0, "0%") and unavailable in (0, "0%"):
        raise fail(where, "max_surge and max_unavailable are both 0: no replica could ever be replaced "
                          "(e.g. rolling: {max_surge: 1, max_unavailable: 0})")
    return Rolling(max_surge=surge, max_unavailable=unavailable)
