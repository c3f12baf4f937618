"""Where stackblaze keeps its state and how fast platform time runs: one place, flags > env > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stackblaze.errors import UserError


@dataclass(frozen=True)
class Settings:
    home: Path
    time_scale: float

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


def load_settings(*, home: str | None = None, time_scale: str | None = None) -> Settings:
    raw_home = home or os.environ.get("STACKBLAZE_HOME") or str(Path.home() / ".stackblaze")
    raw_scale = time_scale or os.environ.get("STACKBLAZE_TIME_SCALE") or "1"
    try:
        scale = float(raw_scale)
    except ValueError:
        raise UserError(
            f"STACKBLAZE_TIME_SCALE: {raw_scale!r} is not a number (e.g. STACKBLAZE_TIME_SCALE=0.01)"
        ) from None
    if not scale > 0:
        raise UserError(f"STACKBLAZE_TIME_SCALE: {raw_scale!r} must be above 0 (e.g. 1 or 0.01)")
    return Settings(home=Path(raw_home).expanduser().absolute(), time_scale=scale)
