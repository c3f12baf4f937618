"""The runner's own messages, on its stderr: `$STACKBLAZE_HOME/runner.log` (opened by whoever started it).

That file is beside `logs/`, not in it, so a full `logs/` cannot silence it. When its own filesystem is
full, a message cannot be written: the last HELD ones are kept in memory and written, with the count of
those lost, at the next message that can be. Writing never raises. Standard library only.
"""

from __future__ import annotations

import os
import time
from collections import deque

HELD = 100


class RunnerLog:
    def __init__(self, fd: int = 2) -> None:
        self._fd = fd
        self._held: deque[bytes] = deque(maxlen=HELD)
        self._unwritten = 0  # messages not written, held or lost
        self.lost = 0  # messages never written (more than HELD piled up)

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        if self._held:
            self.flush()  # the older ones first, before this one could push one out
        self._held.append(f"{stamp}Z runner[{os.getpid()}]: {text.rstrip()}\n".encode(errors="replace"))
        self._unwritten += 1
        self.flush()

    def flush(self) -> None:
        """Write what is held, oldest first; stop at the first failure (it is tried again later)."""
        if self._unwritten > len(self._held):
            skipped = self._unwritten - len(self._held)
            note = f"runner[{os.getpid()}]: {skipped} messages were lost while this file could not be written\n"
            if not self._put(note.encode()):
                return
            self.lost += skipped
            self._unwritten -= skipped
        while self._held:
            if not self._put(self._held[0]):
                return
            self._held.popleft()
            self._unwritten -= 1

    def _put(self, data: bytes) -> bool:
        try:
            written = os.write(self._fd, data)
        except OSError:
            return False
        return written == len(data)

    def status(self) -> dict[str, int]:
        return {"held": len(self._held), "lost": self.lost + max(0, self._unwritten - len(self._held))}
