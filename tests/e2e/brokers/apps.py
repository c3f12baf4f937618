"""The example apps of examples/ deployed by the real CLI, with what a test reads back from Redis."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.integration.conftest import Stackblaze, wait_for


@dataclass
class DeployedApp:
    sb: Stackblaze
    path: Path  # the user's copy of the example: where they stand for every command

    def run(self, *args: str, timeout: float = 60) -> Any:
        return self.sb.run(*args, cwd=self.path, timeout=timeout)

    def deploy(self) -> None:
        # First deploys install the dependencies (npm ci, pip): minutes on a cold cache, seconds from npm's and
        # pip's own caches.
        self.run("deploy", timeout=600)

    def release(self) -> dict[str, Any]:
        """The current release: its build tree (`path`) and the dependency layer (`deps_dir`)."""
        listing = self.run("releases", "worker", "--json").json()
        return next(r for r in listing["releases"] if r["number"] == listing["current"])  # type: ignore[no-any-return]

    def release_env(self) -> dict[str, str]:
        """The environment a one-off command of the release gets, as `heroku run` would: the runtime's PATH."""
        path = self.release()["runtime_env"]["PATH"].replace("$PATH", os.environ["PATH"])
        return {**os.environ, "PATH": path}

    def replicas(self) -> list[dict[str, Any]]:
        return self.sb.replicas("worker")

    def scale(self, count: int) -> None:
        self.run("scale", "worker", "--replicas", str(count))
        wait_for(f"{count} running replicas", lambda: self._running(count), timeout=60)

    def _running(self, count: int) -> bool:
        replicas = self.replicas()
        return len(replicas) == count and all(r["state"] == "running" for r in replicas)

    def log_lines(self) -> list[dict[str, Any]]:
        """Every line of every replica (the current and earlier runs of each replica number share its file)."""
        out = self.run("logs", "worker", "-n", "1000000", "--json", timeout=120).out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def replicas_logging(self, text: str) -> Counter[int]:
        """How many lines containing `text` each replica number wrote."""
        return Counter(line["replica"] for line in self.log_lines() if text in line["line"])

    def touch(self) -> None:
        """An edit of the code, so that the next deploy builds a new release."""
        notes = self.path / "CHANGES.md"
        notes.write_text(notes.read_text() + "- another release\n" if notes.exists() else "- a release\n")


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def run_in_release(app: DeployedApp, *command: str, env: dict[str, str]) -> str:
    """A one-off command in the release's tree with its dependencies and `env` (the example's enqueue program)."""
    proc = subprocess.run(command, cwd=app.release()["path"], env={**app.release_env(), **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
    return proc.stdout
