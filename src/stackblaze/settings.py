"""Where stackblaze keeps its state and how fast platform time runs: one place, flags > env > defaults."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from stackblaze.errors import UserError

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.ASCII)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"\s*(\d+)\s*([KMG]i?B?)?\s*", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@dataclass(frozen=True)
class EventLimits:
    """How many events the store keeps per project, whichever limit comes first, and how big one may be.
    Retention is wall-clock time (STACKBLAZE_TIME_SCALE does not shorten it)."""

    max_count: int = 10_000
    max_age: float = 7 * 86400.0
    max_bytes: int = 24 << 20  # message and details of one project's events together
    lines: int = 20  # an exit event's last_lines
    line_bytes: int = 1024
    details_bytes: int = 16 << 10


@dataclass(frozen=True)
class Settings:
    home: Path
    time_scale: float
    events: EventLimits = field(default_factory=EventLimits)

    @property
    def state_db(self) -> Path:
        return self.home / "state.db"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def releases_dir(self) -> Path:
        return self.home / "releases"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def disks_dir(self) -> Path:
        """Backing services' data (disks/<project>/<service>/, owned by whoever runs the server) and workers'
        disks (disks/<project>/<disk>/, owned by the workers' user; never named like a backing service)."""
        return self.home / "disks"

    @property
    def api_socket(self) -> Path:
        return self.home / "api.sock"

    @property
    def runner_socket(self) -> Path:
        return self.run_dir / "runner.sock"

    @property
    def daemon_log(self) -> Path:
        return self.home / "daemon.log"

    @property
    def secret_key(self) -> Path:
        return self.home / "secret.key"

    def scaled(self, seconds: float) -> float:
        """A platform duration (backoff, grace, reset window) as it runs under the time scale."""
        return seconds * self.time_scale


ROOT_HOME = Path("/var/lib/stackblaze")


def default_home() -> Path:
    """~/.stackblaze; for root /var/lib/stackblaze (as Docker's), because its workers run as another user
    and must reach the releases in it, which a 0700 /root forbids. A root that already has ~/.stackblaze
    keeps it (a deploy then says what to change)."""
    own = Path.home() / ".stackblaze"
    return ROOT_HOME if os.geteuid() == 0 and not own.exists() else own


def load_settings(*, home: str | None = None, time_scale: str | None = None) -> Settings:
    raw_home = home or os.environ.get("STACKBLAZE_HOME") or str(default_home())
    raw_scale = time_scale or os.environ.get("STACKBLAZE_TIME_SCALE") or "1"
    try:
        scale = float(raw_scale)
    except ValueError:
        raise UserError(
            f"STACKBLAZE_TIME_SCALE: {raw_scale!r} is not a number (e.g. STACKBLAZE_TIME_SCALE=0.01)"
        ) from None
    if not scale > 0 or scale == float("inf"):
        raise UserError(f"STACKBLAZE_TIME_SCALE: {raw_scale!r} must be above 0 (e.g. 1 or 0.01)")
    return Settings(home=Path(raw_home).expanduser().absolute(), time_scale=scale, events=load_event_limits())


def load_event_limits() -> EventLimits:
    """STACKBLAZE_EVENTS_MAX (a count), STACKBLAZE_EVENTS_MAX_AGE (e.g. 7d, 12h) and STACKBLAZE_EVENTS_MAX_BYTES
    (e.g. 24MiB) over the defaults."""
    defaults = EventLimits()
    count = os.environ.get("STACKBLAZE_EVENTS_MAX")
    age = os.environ.get("STACKBLAZE_EVENTS_MAX_AGE")
    size = os.environ.get("STACKBLAZE_EVENTS_MAX_BYTES")
    return EventLimits(
        max_count=defaults.max_count if count is None else _whole("STACKBLAZE_EVENTS_MAX", count, "10000"),
        max_age=defaults.max_age if age is None else _duration("STACKBLAZE_EVENTS_MAX_AGE", age),
        max_bytes=defaults.max_bytes if size is None else _size("STACKBLAZE_EVENTS_MAX_BYTES", size),
    )


def _whole(name: str, raw: str, example: str) -> int:
    if re.fullmatch(r"\s*\d+\s*", raw, re.ASCII) is None or int(raw) < 1:
        raise UserError(f"{name}: {raw!r} is not a whole number above 0 (e.g. {name}={example})")
    return int(raw)


def _duration(name: str, raw: str) -> float:
    found = _DURATION.fullmatch(raw)
    if found is None or float(found[1]) <= 0:
        raise UserError(f"{name}: {raw!r} is not a duration above 0 (e.g. {name}=7d, 12h, 30m or 90s)")
    return float(found[1]) * _UNITS[found[2]]


def _size(name: str, raw: str) -> int:
    found = _SIZE.fullmatch(raw)
    if found is None or int(found[1]) < 1:
        raise UserError(f"{name}: {raw!r} is not a size above 0 (e.g. {name}=24MiB)")
    return int(found[1]) * _SIZE_UNITS[(found[2] or "")[:1].upper()]
