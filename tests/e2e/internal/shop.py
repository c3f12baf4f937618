"""The project the internal-services suite deploys, and what its tests read back.

`shop` is one project as the issue pictures it: its own Redis (`cache`) and PostgreSQL (`db`), and three workers
that reach them by name only: `orders`, the Celery example (examples/celery-orders, REDIS_URL
`${{cache.REDIS_URL}}/0`), `email`, the BullMQ example (examples/bullmq-email, unchanged: its default host is
the literal `cache.internal`, no REDIS_HOST anywhere), and `counter`, a Go worker (counter_go.py) built by
stackblaze's Go build with CGO_ENABLED=0. The test reaches each server at its 127.77.x.y address, as an operator
on the machine would (`ps --json` says it).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from tests.e2e.brokers.conftest import copy_example
from tests.e2e.internal.counter_go import GO_MOD, MAIN_GO
from tests.integration.conftest import Stackblaze, alive, wait_for

WORKERS = ("orders", "email", "counter")
SPEC = """\
project: {name}
services:
  - {{name: cache, type: redis}}
  - {{name: db, type: postgres}}
{extra}  - name: orders
    root: orders
    start: celery -A worker worker --loglevel=info --concurrency=2
    env:
      REDIS_URL: ${{{{cache.REDIS_URL}}}}/0
      DATABASE_URL: ${{{{db.DATABASE_URL}}}}
      VISIBILITY_TIMEOUT: "30"
      ORDER_WORK_SECONDS: "0.01"
  - name: email
    root: email
    start: node worker.js
    env: {{SMTP_PORT: "{smtp_port}", WORKER_CONCURRENCY: "5"}}
  - name: counter
    root: counter
    env: {{CGO_ENABLED: "0"}}
"""
QUEUE = "  - {name: queue, type: redis}\n"


def make_shop(root: Path, *, name: str, smtp_port: int, queue: bool = False) -> Path:
    """The monorepo: the two examples as their users have them, the Go worker, and the spec above."""
    root.mkdir(parents=True, exist_ok=True)
    for example, folder in (("celery-orders", "orders"), ("bullmq-email", "email")):
        copy_example(example, root).rename(root / folder)
        (root / folder / "stackblaze.yaml").unlink()  # the monorepo's spec says how each runs
    (root / "counter").mkdir()
    (root / "counter" / "go.mod").write_text(GO_MOD)
    (root / "counter" / "main.go").write_text(MAIN_GO)
    write_spec(root, name=name, smtp_port=smtp_port, queue=queue)
    return root


def write_spec(root: Path, *, name: str, smtp_port: int, queue: bool) -> None:
    (root / "stackblaze.yaml").write_text(SPEC.format(name=name, smtp_port=smtp_port, extra=QUEUE if queue else ""))


@dataclass
class Project:
    """One deployed project: where its user stands (`root`) and what `ps` says about it."""

    sb: Stackblaze
    root: Path

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> Any:
        return self.sb.run(*args, cwd=self.root, timeout=timeout, check=check)

    def deploy(self) -> str:
        done = self.run("deploy", timeout=600)
        return str(done.out + done.err)

    def ps(self) -> dict[str, dict[str, Any]]:
        return {s["service"]: s for s in self.run("ps", "--json").json()["services"]}

    def address(self, service: str) -> str:
        """The server's own 127.77.x.y (no port)."""
        return str(self.ps()[service]["address"]).rsplit(":", 1)[0]

    def pid(self, service: str) -> int | None:
        """The running pid of the service's replica 1 (a server's, or a worker's main process)."""
        replicas = self.ps()[service]["replicas"]
        return replicas[0]["pid"] if replicas and replicas[0]["state"] == "running" else None

    def pids(self) -> dict[str, int | None]:
        services = self.ps()
        return {name: next((r["pid"] for r in services[name]["replicas"] if r["state"] == "running"), None)
                for name in services}

    def release_of(self, service: str) -> int:
        return int(self.ps()[service]["release"])

    def redis(self, service: str = "cache") -> redis.Redis:
        return redis.Redis(host=self.address(service), port=6379, decode_responses=True, socket_timeout=10)

    def release_dir(self, service: str) -> tuple[Path, dict[str, str]]:
        """The current release's tree and the env a one-off command of it gets (its runtime's PATH)."""
        listing = self.run("releases", service, "--json").json()
        release = next(r for r in listing["releases"] if r["number"] == listing["current"])
        path = release["runtime_env"].get("PATH", "$PATH").replace("$PATH", os.environ["PATH"])
        return Path(release["path"]), {**os.environ, "PATH": path}

    def one_off(self, service: str, *command: str, env: dict[str, str]) -> str:
        """A command in the service's release (its dependencies), as a web process would enqueue."""
        cwd, base = self.release_dir(service)
        done = subprocess.run(command, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
        return done.stdout

    def wait_running(self, *services: str, timeout: float = 60) -> dict[str, int]:
        def check() -> dict[str, int] | None:
            pids = self.pids()
            found = {name: pids.get(name) for name in services}
            return found if all(found.values()) else None  # type: ignore[return-value]
        return wait_for(f"{services} running", check, timeout=timeout)  # type: ignore[no-any-return]


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def in_worker(pid: int, *command: str, env: dict[str, str] | None = None, stdin: Any = None,
              **popen: Any) -> subprocess.Popen[str]:
    """`command` inside the worker's own mount namespace (its /etc/hosts), with `env`: what the worker would
    get running it. The network is the host's: the replicas share it."""
    return subprocess.Popen(["nsenter", f"--target={pid}", "--mount", "--", *command], env=env, text=True,
                            stdin=stdin, **popen)


def getent(pid: int | None, name: str) -> str | None:
    """What `name` resolves to for `pid` (its mount namespace), or on the host with None; None if it fails."""
    argv = ["getent", "ahostsv4", name]
    command = ["nsenter", f"--target={pid}", "--mount", "--", *argv] if pid else argv
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout.strip() else None


def family(pid: int) -> set[int]:
    """The worker's main process and everything under it (Celery's pool processes)."""
    try:
        proc = psutil.Process(pid)
        return {pid, *(child.pid for child in proc.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def connected_pids(address: str, port: int) -> set[int]:
    """The pids holding an established TCP connection to address:port, by `ss -tnp` (the kernel's view)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", "dst", f"{address}:{port}"],
                         capture_output=True, text=True, check=True).stdout
    return {int(part.split("=", 1)[1]) for line in out.splitlines() for part in line.replace(")", ",").split(",")
            if part.startswith("pid=")}


def listeners(port: int) -> list[tuple[str, int | None]]:
    """(local address, pid) of every socket listening on `port`, by `ss -ltnp`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        local = parts[3]
        if local.rsplit(":", 1)[1] != str(port):
            continue
        pid = next((int(p.split("=", 1)[1]) for p in line.replace(")", ",").split(",") if p.startswith("pid=")), None)
        found.append((local.rsplit(":", 1)[0], pid))
    return found


def gone(pid: int) -> bool:
    try:
        return not alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return True


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
