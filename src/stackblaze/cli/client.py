"""The CLI's only way to the daemon: HTTP over its unix socket, starting the daemon when it is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from stackblaze.errors import StackblazeError, UnavailableError, error_from_answer
from stackblaze.settings import Settings

START_TIMEOUT = 30.0


def error_from(payload: dict[str, Any], status: int | None = None) -> StackblazeError:
    """The daemon's {"error", "kind"} answer (HTTP `status`, or the answer's own in a stream) as the error the
    CLI maps to an exit code (errors.ERROR_KINDS)."""
    return error_from_answer(payload.get("kind"), payload.get("error", "failed"), status or payload.get("status"))


class Client:
    def __init__(self, settings: Settings, *, project: str | None = None) -> None:
        self.settings = settings
        self.project = project
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(settings.api_socket)), base_url="http://stackblaze",
            timeout=httpx.Timeout(30.0, read=None),
        )

    # -- the daemon's life -------------------------------------------------------------------------

    def daemon_status(self) -> dict[str, Any] | None:
        try:
            response = self._http.get("/v1/status", timeout=5.0)
        except (httpx.TransportError, OSError):
            return None
        return dict(response.json()) if response.status_code == 200 else None

    def ensure_daemon(self) -> dict[str, Any]:
        status = self.daemon_status()
        if status is not None:
            return status
        self.settings.home.mkdir(parents=True, exist_ok=True)
        with open(self.settings.home / "daemon.out", "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "stackblaze.server.daemon"], stdin=subprocess.DEVNULL, stdout=out,
                stderr=out, start_new_session=True, close_fds=True,
                env={**os.environ, "STACKBLAZE_HOME": str(self.settings.home),
                     "STACKBLAZE_TIME_SCALE": repr(self.settings.time_scale)},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            status = self.daemon_status()
            if status is not None:
                return status
            if process.poll() is not None and process.returncode != 1:
                break  # 1 means another daemon holds the lock: keep waiting for it
            time.sleep(0.05)
        raise UnavailableError(
            f"the daemon did not start (see {self.settings.daemon_log} and {self.settings.home / 'daemon.out'})"
        )

    # -- requests ----------------------------------------------------------------------------------

    def _params(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (extra or {}).items() if v is not None}
        if self.project:
            params["project"] = self.project
        return params

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.ensure_daemon()
        try:
            response = self._http.request(method, path, params=self._params(params), json=body)
        except httpx.TransportError as exc:
            raise UnavailableError(f"lost the daemon during {method} {path}: {exc}") from None
        try:
            payload = response.json()
        except ValueError:  # not ours: a crash inside the daemon answers plain text
            raise StackblazeError(f"the daemon failed on {method} {path} (HTTP {response.status_code}; "
                                  f"see {self.settings.daemon_log})") from None
        if response.status_code >= 400:
            raise error_from(payload, response.status_code)
        return dict(payload)

    def stream(self, path: str, *, params: dict[str, Any] | None = None, method: str = "GET",
               body: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """A request whose answer is NDJSON: followed logs and events, deploy progress."""
        self.ensure_daemon()
        try:
            with self._http.stream(method, path, params=self._params(params), json=body) as response:
                if response.status_code >= 400:
                    payload = json.loads(response.read())
                    raise error_from(payload, response.status_code)
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise UnavailableError(f"lost the daemon during {method} {path}: {exc}") from None

    def deploy(self, path: str, *, on_progress: Callable[[str], None], detach: bool = False) -> dict[str, Any]:
        """Run a deploy, passing build and rollout progress on as it comes; a failed build raises with the
        lines that say why and its last lines; a failed rollout is in the result (`ok` false)."""
        final: dict[str, Any] = {}
        # The build runs with the user's PATH, not the daemon's: a tool installed since it started is found.
        body = {"path": path, "env_path": os.environ.get("PATH"), "detach": detach}
        for message in self.stream("/v1/deploy", method="POST", body=body):
            if "progress" in message:
                on_progress(message["progress"])
            else:
                final = message
        if "result" not in final:
            # One error, in a stable order: what failed, the lines that say why, the last lines, the full log.
            summary = [final.get("error", "failed")]
            cause, tail = final.get("cause") or [], final.get("tail") or []
            if set(tail) <= set(cause):
                tail = []  # a short output: the cause is already all of it
            for heading, lines in (("cause:", cause), ("last lines:", tail)):
                if lines:
                    summary += [heading, *(f"  | {line}" for line in lines)]
            if final.get("log_path"):
                summary.append(f"full log: {final['log_path']}")
            raise error_from({**final, "error": "\n".join(summary)})
        return dict(final["result"])

    def rollout_status(self, service: str | None, *, on_progress: Callable[[str], None]) -> dict[str, Any]:
        """Wait for the project's (or one service's) rollouts, as `deploy` does."""
        final: dict[str, Any] = {}
        for message in self.stream("/v1/rollout", params={"service": service}):
            if "progress" in message:
                on_progress(message["progress"])
            else:
                final = message
        return dict(final["result"])

    def shutdown(self, *, all_too: bool) -> bool:
        if self.daemon_status() is None:
            return False
        try:
            self._http.post("/v1/shutdown", json={"all": all_too})
        except httpx.TransportError:
            pass
        deadline = time.monotonic() + 700
        while time.monotonic() < deadline:
            if not self.settings.api_socket.exists() and (
                not all_too or not self.settings.runner_socket.exists()
            ):
                return True
            time.sleep(0.05)
        raise UnavailableError("the daemon did not stop in time")
