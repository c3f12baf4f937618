"""Which replicas are busy, for a scale-down that stops idle ones first and counts what a kill would cost.

RQ: every worker keeps a hash `rq:worker:<name>` (its `state`, `pid`, `hostname`) listed in `rq:workers`, and
the set `rq:worker:<name>:executions` of the jobs it runs; a worker is a replica's when its pid is the
replica's process or one of its descendants on this host, so the user's start command needs no change.
Celery: its workers' heartbeats, the same pid mapping (celery_busy.py). Anything else: an optional `busy_probe`
command run with the replica's env (exit 0 busy, 1 idle; what it prints when busy, one a line, are the ids of the
jobs it holds); without one the state is unknown, and `choose_victims` then stops the highest numbers first among
the unknown. The job ids (RQ's executions, a probe's lines) name what a kill at the end of a drain cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

PROBE_TIMEOUT = 5.0  # seconds a busy_probe may take before its answer counts as unknown
MAX_DEPTH = 64  # parent links followed from a worker's pid to a replica's
MAX_IDS = 100  # job ids kept per replica (a probe's lines, RQ's executions): names for a report, not a count
# Every registered RQ worker's pid, hostname and state, and the executions (`<job id>:<execution id>`) it holds:
# one trip.
WORKERS = """
local out = {}
for _, key in ipairs(redis.call('SMEMBERS', 'rq:workers')) do
  local f = redis.call('HMGET', key, 'pid', 'hostname', 'state')
  out[#out + 1] = {f[1] or '', f[2] or '', f[3] or '', redis.call('SMEMBERS', key .. ':executions')}
end
return out
"""


@dataclass(frozen=True)
class Busy:
    busy: bool | None  # None: unknown
    jobs: int | None  # jobs it holds (None: unknown)
    source: str  # "rq", "celery", "busy_probe", "unknown"
    ids: tuple[str, ...] = ()  # the ids of the jobs it holds, where the source names them

    def to_dict(self) -> dict[str, Any]:
        return {"busy": self.busy, "jobs": self.jobs, "source": self.source, "ids": list(self.ids)}


UNKNOWN = Busy(None, None, "unknown")


def parent_of(pid: int, proc: Path = Path("/proc")) -> int | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields after its last ')' are fixed.
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else None


def owner_of(pid: int, replicas: Mapping[int, int], proc: Path = Path("/proc")) -> int | None:
    """The replica (index) whose process is `pid` or one of its ancestors; `replicas` maps index -> pid."""
    by_pid = {p: index for index, p in replicas.items()}
    current: int | None = pid
    for _ in range(MAX_DEPTH):
        if current is None or current <= 1:
            return None
        if current in by_pid:
            return by_pid[current]
        current = parent_of(current, proc)
    return None


async def run_script(url: str, script: str, *, timeout: float) -> Any:
    """One Lua script's answer on a connection of its own (decoded), closed after; raises RedisError."""
    client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                     decode_responses=True, single_connection_client=True)
    try:
        return await client.register_script(script)()
    finally:
        await client.aclose()


async def rq_busy(url: str, replicas: Mapping[int, int], *, timeout: float = 5.0) -> dict[int, Busy]:
    """Each replica's RQ worker state: busy (and the jobs it runs) or idle; replicas whose worker is not
    registered (booting, or not an RQ worker) are left out. Raises RedisError when Redis cannot be read."""
    rows = await run_script(url, WORKERS, timeout=timeout)
    here = socket.gethostname()
    found: dict[int, Busy] = {}
    for pid, host, state, executions in rows:
        if not pid or not str(pid).isdigit() or (host and host != here):
            continue
        index = owner_of(int(pid), replicas)
        if index is None:
            continue
        ids = tuple(sorted({str(e).rsplit(":", 1)[0] for e in executions or ()}))[:MAX_IDS]
        busy = state == "busy" or bool(ids)
        jobs = len(ids) or (1 if busy else 0)
        found[index] = Busy(busy, jobs, "rq", ids)
    return found


async def probe_busy(command: str, *, env: Mapping[str, str], cwd: str, user: Mapping[str, Any] | None,
                     timeout: float = PROBE_TIMEOUT) -> Busy:
    """Run a `busy_probe`: exit 0 busy (the lines it printed: the ids of the jobs it holds), 1 idle; anything else
    (or no answer in time) is unknown."""
    extra: dict[str, Any] = {}
    if user is not None and os.geteuid() == 0:  # as the replica runs: never the daemon's root
        extra = {"user": int(user["uid"]), "group": int(user["gid"]),
                 "extra_groups": [int(g) for g in user.get("groups") or []]}
    try:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, env=dict(env), cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, start_new_session=True, **extra)
    except OSError:
        return UNKNOWN
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        await process.wait()
        return UNKNOWN
    if process.returncode == 0:
        ids = tuple(dict.fromkeys(line.strip() for line in out.decode(errors="replace").splitlines() if line.strip()))
        return Busy(True, len(ids) or None, "busy_probe", ids[:MAX_IDS])
    return Busy(False, 0, "busy_probe") if process.returncode == 1 else UNKNOWN
