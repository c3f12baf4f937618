"""The daemon's uvicorn servers (the unix socket's, the dashboard's TCP listener): one class for both."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal capture (the daemon's loop handles SIGTERM/SIGINT) and without its
    tick: uvicorn's main loop wakes every 0.1 s to check should_exit and refresh the Date header, which
    is most of an idle daemon's CPU. Here the loop sleeps until `stop()`; there is no Date header."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self._stopping.wait()

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()
