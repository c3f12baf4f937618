"""The restart policy: exactly the kubelet's CrashLoopBackOff, pure and clock-injected.

Any exit is restarted. The first restart of a streak is immediate, then 10 s, 20 s, 40 s ... capped at
300 s, forever. A replica that ran for 10 minutes before it exited starts a new streak (restart at once).
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_DELAY = 10.0
MAX_DELAY = 300.0
RESET_AFTER = 600.0


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = INITIAL_DELAY
    cap: float = MAX_DELAY
    reset_after: float = RESET_AFTER
    scale: float = 1.0  # STACKBLAZE_TIME_SCALE: multiplies every duration above

    def delay_for(self, streak: int) -> float:
        """Seconds to wait before the restart that follows the `streak`-th exit in a row (1-based)."""
        if streak <= 1:
            return 0.0
        return min(self.initial * 2.0 ** (streak - 2), self.cap) * self.scale

    def next_streak(self, streak: int, ran_for: float) -> int:
        """The streak after an exit of a replica that ran `ran_for` seconds."""
        if ran_for >= self.reset_after * self.scale:
            return 1
        return streak + 1

