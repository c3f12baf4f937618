"""The CLI's only way to the daemon: HTTP over its unix socket, starting the daemon when it is not there.

Every request has a connect timeout; questions and changes also have a read timeout, so a daemon that is
stopped (SIGSTOP) or hung gets a one-line error naming its PID instead of a CLI that waits forever. Streams
(followed logs and events, deploy, rollout status) have no read timeout: silence is what they wait for.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from stackblaze.errors import StackblazeError, UnavailableError, UserError, error_from_answer
from stackblaze.settings import Settings
from stackblaze.spec.fields import check_name
from stackblaze.state.daemon_lock import held_by

START_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
STATUS_TIMEOUT = 10.0  # /v1/status does no work: a daemon that takes longer is stopped or hung
READ_TIMEOUT = 60.0  # a question (GET)
# A change (POST, DELETE) may wait for replicas to stop: up to their shutdown grace (600 s at most).
CHANGE_TIMEOUT = 700.0
WRITE_TIMEOUT = 30.0


def error_from(payload: dict[str, Any], status: int | None = None) -> StackblazeError:
    """The daemon's {"error", "kind"} answer (HTTP `status`, or the answer's own in a stream) as the error the
    CLI maps to an exit code (errors.ERROR_KINDS)."""
    return error_from_answer(payload.get("kind"), payload.get("error", "failed"), status or payload.get("status"))


# The routes that carry a service name in their path; the action is the last segment and never has a "/".
_SERVICE_PATH = re.compile(r"/v1/services/(?P<name>.*)/(?P<action>[a-z-]+)", re.DOTALL)


def checked_path(path: str) -> str:
    """The request path with its service name checked against the name grammar and quoted: a name is never
    a path (`stackblaze stop '../destroy?'` must not reach /v1/destroy). Every request passes here, so no
    command can forget; everything after the fixed prefix up to the action is the name, whatever it holds."""
    match = _SERVICE_PATH.fullmatch(path)
    if match is None:
        return path
    check_name(match["name"], where="service", key="service")
    return f"/v1/services/{quote(match['name'], safe='')}/{match['action']}"


def _timeout(read: float | None) -> httpx.Timeout:
    return httpx.Timeout(connect=CONNECT_TIMEOUT, read=read, write=WRITE_TIMEOUT, pool=CONNECT_TIMEOUT)


class Client:
    def __init__(self, settings: Settings, *, project: str | None = None) -> None:
        self.settings = settings
        self.project = project
        self._pid: int | None = None  # the daemon's, once it answered
        self._http = httpx.Client(
            # verify=False: a unix socket has no TLS, and the default loads the CA bundle (50 ms a command).
            transport=httpx.HTTPTransport(uds=str(settings.api_socket), verify=False), base_url="http://stackblaze",
            timeout=_timeout(READ_TIMEOUT),
        )

    # -- the daemon's life -------------------------------------------------------------------------

    @property
    def _lock(self) -> Path:
        return self.settings.run_dir / "daemon.lock"

    def _not_answering(self, pid: int | None) -> UnavailableError:
        who = f"the daemon (pid {pid})" if pid else "the daemon"
        return UnavailableError(f"{who} is not answering on {self.settings.api_socket}; "
                                f"see {self.settings.daemon_log}")

    def daemon_status(self) -> dict[str, Any] | None:
        """The daemon's status, or None when no daemon listens. A daemon that listens but does not answer
        within STATUS_TIMEOUT (stopped, hung) raises UnavailableError naming the PID holding the lock."""
        try:
            response = self._http.get("/v1/status", timeout=_timeout(STATUS_TIMEOUT))
        except httpx.TimeoutException:
            raise self._not_answering(held_by(self._lock)) from None
        except (httpx.TransportError, OSError):
            return None
        try:
            status = response.json() if response.status_code == 200 else None
        except ValueError:
            status = None
        if not isinstance(status, dict):
            raise UnavailableError(f"the daemon answered HTTP {response.status_code} to /v1/status on "
                                   f"{self.settings.api_socket}; see {self.settings.daemon_log}")
        self._pid = status.get("pid")
        return status

    def ensure_daemon(self) -> dict[str, Any]:
        status = self.daemon_status()
        if status is not None:
            return status
        process = None
        try:
            # While a process holds the lock a daemon runs (or is starting): wait for it, never start a second.
            if held_by(self._lock) is None:
                self.settings.home.mkdir(parents=True, exist_ok=True)
                with open(self.settings.home / "daemon.out", "ab") as out:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "stackblaze.server.daemon"], stdin=subprocess.DEVNULL, stdout=out,
                        stderr=out, start_new_session=True, close_fds=True,
                        env={**os.environ, "STACKBLAZE_HOME": str(self.settings.home),
                             "STACKBLAZE_TIME_SCALE": repr(self.settings.time_scale)},
                    )
        except OSError as exc:  # the home cannot be made or written: no daemon can start there
            where = exc.filename or self.settings.home
            raise UnavailableError(f"cannot start the daemon: {where}: {exc.strerror or exc} (STACKBLAZE_HOME is "
                                   f"{self.settings.home}; set it to a directory you can write)") from None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            status = self.daemon_status()
            if status is not None:
                return status
            if process is not None and process.poll() is not None and process.returncode != 1:
                break  # 1 means another daemon holds the lock: keep waiting for it
            time.sleep(0.05)
        holder = held_by(self._lock)
        if holder is not None:
            raise self._not_answering(holder)
        raise UnavailableError(
            f"the daemon did not start (see {self.settings.daemon_log} and {self.settings.home / 'daemon.out'})"
        )

    # -- requests ----------------------------------------------------------------------------------

    def _params(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The query parameters; a service or project name among them is checked here as the daemon would
        (a name too long for a URL must not become an httpx error)."""
        params = {k: v for k, v in (extra or {}).items() if v is not None}
        if self.project:
            params["project"] = self.project
        for key in ("service", "project"):
            if isinstance(params.get(key), str):
                name = params[key].partition("@")[0] if key == "project" else params[key]  # acme@prod: on prod
                if name or key == "service":
                    check_name(name, where=key if key == "service" else "--project", key=key)
        return params

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None) -> dict[str, Any]:
        path, query = checked_path(path), self._params(params)  # refused before any daemon starts
        self.ensure_daemon()
        read = READ_TIMEOUT if method == "GET" else CHANGE_TIMEOUT
        try:
            response = self._http.request(method, path, params=query, json=body,
                                          timeout=_timeout(read))
        except httpx.TimeoutException:
            raise self._not_answering(self._pid) from None
        except httpx.InvalidURL as exc:  # e.g. a --grep of 100,000 characters
            raise UserError(f"the request is too long to send ({exc}): shorten the arguments") from None
        except httpx.TransportError as exc:
            raise UnavailableError(f"lost the daemon during {method} {path}: {exc}") from None
        if response.status_code >= 400:
            raise self._failure(method, path, response.status_code, response.content)
        try:
            return dict(response.json())
        except ValueError:
            raise self._failure(method, path, response.status_code, response.content) from None

    def _failure(self, method: str, path: str, status: int, content: bytes) -> StackblazeError:
        """The error a failed answer stands for: the daemon's own {"error", "kind"}, or, for anything else
        (a crash inside the daemon answers plain text), where to look."""
        try:
            payload = json.loads(content)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            return error_from(payload, status)
        return StackblazeError(f"the daemon failed on {method} {path} (HTTP {status}; see {self.settings.daemon_log})")

    def stream(self, path: str, *, params: dict[str, Any] | None = None, method: str = "GET",
               body: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """A request whose answer is NDJSON: followed logs and events, deploy progress."""
        path, query = checked_path(path), self._params(params)  # refused before any daemon starts
        self.ensure_daemon()
        try:
            with self._http.stream(method, path, params=query, json=body,
                                   timeout=_timeout(None)) as response:
                if response.status_code >= 400:
                    raise self._failure(method, path, response.status_code, response.read())
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.TimeoutException:
            raise self._not_answering(self._pid) from None
        except httpx.InvalidURL as exc:  # e.g. a --grep of 100,000 characters
            raise UserError(f"the request is too long to send ({exc}): shorten the arguments") from None
        except httpx.TransportError as exc:
            raise UnavailableError(f"lost the daemon during {method} {path}: {exc}") from None

    def deploy(self, path: str, *, on_progress: Callable[[str], None], detach: bool = False,
               target: dict[str, str | None] | None = None) -> dict[str, Any]:
        """Run a deploy, passing build and rollout progress on as it comes; a failed build raises with the
        lines that say why and its last lines; a failed rollout is in the result (`ok` false)."""
        final: dict[str, Any] = {}
        # The build runs with the user's PATH, not the daemon's: a tool installed since it started is found.
        body = {"path": path, "env_path": os.environ.get("PATH"), "detach": detach, **(target or {})}
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
        if "result" not in final:  # the stream ended with an error (or was cut short)
            raise error_from({"error": "the rollout stream ended without a result", **final})
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
            # Gone means its lock is free too: a command right after must not find it still held.
            if not self.settings.api_socket.exists() and (
                not all_too or not self.settings.runner_socket.exists()
            ) and held_by(self._lock) is None:
                return True
            time.sleep(0.05)
        raise UnavailableError("the daemon did not stop in time")
