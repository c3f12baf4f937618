"""A runner with no processes, for the supervisor's unit tests: the same ops and exit reports as the real one.

It implements the runner's behaviour rather than canned answers: `spawn` makes an instance with a pid,
`stop` asks it to stop and it exits (at once, or after the grace with SIGKILL if told to ignore the stop
signal), an exit is reported through `on_exit` from a task of its own as the real client does, and exited
instances stay listed until acknowledged. Time comes from the same Clock as the supervisor's.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from stackblaze.engine.clock import Clock
from stackblaze.engine.local.runner_client import SpawnFailed
from stackblaze.errors import UnavailableError


@dataclass
class FakeInstance:
    key: str
    pid: int
    argv: list[str]
    env: dict[str, str]
    meta: dict[str, Any]
    started_at: float
    stop_signal: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    exited_at: float | None = None
    acked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        state = "exited" if self.exited_at is not None else ("stopping" if self.stop_signal else "running")
        return {"key": self.key, "meta": self.meta, "pid": self.pid, "started_at": self.started_at,
                "state": state, "stop_requested": self.stop_signal is not None, "exit_code": self.exit_code,
                "exit_signal": self.exit_signal, "exited_at": self.exited_at, **self.extra}


class FakeRunner:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pids = itertools.count(1000)
        self.instances: dict[str, FakeInstance] = {}
        self.on_exit: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.on_lost: Callable[[], Awaitable[None]] | None = None
        self.on_log_drops: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.connected = True
        self.ignores_stop: set[str] = set()  # start commands whose processes ignore the stop signal
        self.missing: set[str] = set()  # executables that do not exist: spawn fails as execve would
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what a test does to the "processes" ---------------------------------------------------------

    def running(self, service: str | None = None) -> list[FakeInstance]:
        return [i for i in self.instances.values() if i.exited_at is None
                and (service is None or i.meta.get("service") == service)]

    def exit(self, key: str, *, code: int | None = 0, sig: int | None = None) -> None:
        """The process ends by itself (or is killed from outside): reported as the runner would."""
        instance = self.instances[key]
        if instance.exited_at is not None:
            return
        instance.exit_code, instance.exit_signal = (None, sig) if sig is not None else (code, None)
        instance.exited_at = self._clock.time()
        if self.on_exit is not None:
            task = asyncio.ensure_future(self.on_exit(instance.record()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def lose(self) -> None:
        """The runner dies: every process with it; the supervisor hears of it as from the real client."""
        for instance in self.running():
            instance.exit_signal, instance.exited_at = signal.SIGKILL, self._clock.time()
        self.instances.clear()
        self.connected = False
        if self.on_lost is not None:
            await self.on_lost()

    # -- the runner's ops ----------------------------------------------------------------------------

    async def connect(self) -> None:
        self.connected = True

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        if not self.connected:
            raise UnavailableError("not connected to the runner")
        self.calls.append((op, fields))
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise UnavailableError(f"runner refused {op}: unknown op")
        result: dict[str, Any] = handler(**fields)
        return {"ok": True, **result}

    def _op_list(self) -> dict[str, Any]:
        return {"instances": [i.record() for i in self.instances.values()]}

    def _op_spawn(self, *, key: str, argv: list[str], env: dict[str, str], meta: dict[str, Any],
                  **_: Any) -> dict[str, Any]:
        if argv[0] in self.missing:
            raise SpawnFailed(f"runner refused spawn: [Errno 2] No such file or directory: {argv[0]!r}",
                              errno="ENOENT", reason=f"{argv[0]!r} was not found")
        instance = FakeInstance(key, next(self._pids), list(argv), dict(env), dict(meta), self._clock.time())
        self.instances[key] = instance
        return {"instance": instance.record()}

    def _op_stop(self, *, key: str, signal: int = 15, grace: float = 30.0) -> dict[str, Any]:
        instance = self.instances[key]
        if instance.exited_at is None and instance.stop_signal is None:
            instance.stop_signal = signal
            if " ".join(instance.argv) in self.ignores_stop:
                instance.extra["killed_after_grace"] = grace
                self._clock.call_at(self._clock.time() + grace, lambda: self.exit(key, sig=9))
            else:
                asyncio.get_running_loop().call_soon(lambda: self.exit(key, sig=signal))
        return {"instance": instance.record()}

    def _op_ack(self, *, keys: list[str]) -> dict[str, Any]:
        for key in keys:
            instance = self.instances.get(key)
            if instance is not None and instance.exited_at is not None:
                del self.instances[key]
        return {}

    def _op_shutdown(self, *, grace: float = 10.0, **_: Any) -> dict[str, Any]:
        for instance in self.running():
            self._op_stop(key=instance.key, grace=grace)
        return {}
