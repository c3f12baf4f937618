"""The daemon's side of the runner: start it if it is not there, then talk JSON lines over its socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from stackblaze.errors import UnavailableError

ExitHandler = Callable[[dict[str, Any]], Awaitable[None]]


class SpawnFailed(UnavailableError):
    """The runner could not start a replica's process. `errno` names the reason for programs (ENOENT,
    EACCES, ENOEXEC, E2BIG, EMFILE, ENFILE, EAGAIN, EINVAL...); `reason` says it in plain words."""

    def __init__(self, message: str, *, errno: str, reason: str) -> None:
        super().__init__(message)
        self.errno = errno
        self.reason = reason


class RunnerClient:
    def __init__(self, socket_path: Path, *, log_file: Path) -> None:
        self._socket_path = socket_path
        self._log_file = log_file
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_exit: ExitHandler | None = None
        self.on_lost: Callable[[], Awaitable[None]] | None = None  # the runner went away (not by close())
        # A replica's log lines started being lost ({"event": "log-dropping", "instance": ...}) or are
        # written again ({"event": "log-resumed", "instance": ..., "lost": N, "since": t0, "until": t1}).
        self.on_log_drops: ExitHandler | None = None
        self._exits: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # None: the runner is gone
        self._exit_task: asyncio.Task[None] | None = None

    async def connect(self, *, start: bool = True, timeout: float = 10.0) -> None:
        """Connect to the running runner; start one first if none answers."""
        try:
            await self._open()
            return
        except OSError:
            if not start:
                raise UnavailableError(f"runner not reachable at {self._socket_path}") from None
        self._spawn()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await self._open()
                return
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise UnavailableError(
                        f"runner did not start within {timeout:.0f}s (see {self._log_file})"
                    ) from None
                await asyncio.sleep(0.02)

    def _spawn(self) -> None:
        # The socket is not removed first: a new runner replaces it (rename) once it holds the home's
        # runner lock, so a live runner that did not answer in time is never cut off from its clients.
        self._socket_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            log: Any = open(self._log_file, "ab")
        except OSError:  # no room even for an empty file: the runner writes to the daemon's stderr
            log = None
        try:
            # Its own session: a signal to the daemon's terminal or group never reaches the workers.
            subprocess.Popen(
                [sys.executable, "-m", "stackblaze.engine.local.runner", str(self._socket_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            )
        finally:
            if log is not None:
                log.close()

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(
            str(self._socket_path), limit=16 << 20
        )
        self._task = asyncio.create_task(self._read_loop())
        if self._exit_task is None:
            self._exit_task = asyncio.create_task(self._dispatch_exits())

    async def _dispatch_exits(self) -> None:
        # Handled one at a time, in order, outside the read loop: a handler may call the runner.
        while True:
            instance = await self._exits.get()
            if instance is None:
                if self.on_lost is not None:
                    await self.on_lost()
            elif "log_drops" in instance:
                if self.on_log_drops is not None:
                    await self.on_log_drops(instance["log_drops"])
            elif self.on_exit is not None:
                await self.on_exit(instance)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        while True:
            try:
                line = await self._reader.readline()
            except OSError:
                line = b""
            if not line:
                break
            message = json.loads(line)
            if "id" in message:
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
            elif message.get("event") == "exit":
                self._exits.put_nowait(message["instance"])
            elif message.get("event") in ("log-dropping", "log-resumed") and self.on_log_drops is not None:
                self._exits.put_nowait({"log_drops": message})
        for future in self._pending.values():
            if not future.done():
                future.set_exception(UnavailableError("the runner closed its connection"))
        self._pending.clear()
        self._writer = None
        self._exits.put_nowait(None)  # after the exits it announced: they are handled first

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        if self._writer is None:
            raise UnavailableError("not connected to the runner")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(json.dumps({"id": request_id, "op": op, **fields}).encode() + b"\n")
        await self._writer.drain()
        reply = await future
        if not reply.get("ok"):
            message = f"runner refused {op}: {reply.get('error')}"
            if reply.get("errno"):
                raise SpawnFailed(message, errno=str(reply["errno"]), reason=str(reply.get("reason") or ""))
            raise UnavailableError(message)
        return reply

    async def close(self) -> None:
        self.on_lost = None  # closing on purpose: the end of the connection is no loss
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        for task in (self._task, self._exit_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
