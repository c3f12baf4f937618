"""A real SMTP server (aiosmtpd) on a free loopback port that counts the mails it accepts by their job id."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller


class MailCounter:
    """aiosmtpd's handler: counts each accepted mail under its `X-Job-Id` header. `delay` seconds per mail stand
    in for a relay's latency, so that a run lasts long enough to scale, redeploy and kill in the middle of it."""

    def __init__(self, *, delay: float) -> None:
        self._delay = delay
        self._lock = threading.Lock()
        self._by_id: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls handle_<COMMAND>
        if self._delay:
            await asyncio.sleep(self._delay)
        job_id = message_from_bytes(envelope.original_content or envelope.content).get("X-Job-Id", "")
        with self._lock:
            self._by_id[job_id] += 1
        return "250 OK"

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._by_id)

    def distinct(self) -> int:
        with self._lock:
            return len(self._by_id)


class SmtpSink:
    """The server and its counter; `port` is where it listens on 127.0.0.1."""

    def __init__(self, *, port: int, delay: float) -> None:
        self.counter = MailCounter(delay=delay)
        self.port = port
        self._controller = Controller(self.counter, hostname="127.0.0.1", port=port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
