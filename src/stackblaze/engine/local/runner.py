"""The runner: parent of every replica. Spawns, captures logs, signals, reaps. It keeps no policy.

Small and boring on purpose, so that it never needs to restart: standard library only, one thread, one
selector. It wakes on child exit (SIGCHLD through a wakeup fd), on pipe data, on a client request or on
a stop deadline; it never polls. The daemon talks to it over a unix socket in JSON lines:

  request  {"id": 1, "op": "spawn" | "stop" | "kill" | "list" | "ack" | "ping" | "shutdown", ...}
  reply    {"id": 1, "ok": true, ...}  or  {"id": 1, "ok": false, "error": "..."}
  event    {"event": "exit", "instance": {...}}   pushed to every connected client

Exited instances are kept until a client acks them, so a daemon that was down hears of every exit.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import heapq
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

from stackblaze.engine.local.cgroup import Cgroups, join
from stackblaze.engine.local.logwriter import LineSplitter, LogFile
from stackblaze.engine.local.proctree import MARKER, kill_instance

TYPE_CHECKING = False  # typing and dataclasses cost the runner ~3 MB of RSS per machine; it needs neither
if TYPE_CHECKING:
    from typing import Any

PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
READ_SIZE = 1 << 20


class Instance:
    __slots__ = ("acked", "exit_code", "exit_signal", "exited_at", "key", "log", "meta", "pid", "pipes", "popen",
                 "started_at", "stop_deadline", "stop_signal")

    def __init__(self, *, key: str, pid: int, popen: subprocess.Popen[bytes], log: LogFile, started_at: float,
                 meta: dict[str, Any]) -> None:
        self.key = key
        self.pid = pid
        self.popen = popen
        self.log = log
        self.started_at = started_at
        self.meta = meta
        self.pipes: dict[int, LineSplitter] = {}
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.exited_at: float | None = None
        self.stop_deadline: float | None = None
        self.stop_signal: int | None = None
        self.acked = False

    @property
    def exited(self) -> bool:
        return self.exited_at is not None

    def record(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "meta": self.meta,
            "pid": self.pid,
            "started_at": self.started_at,
            "state": "exited" if self.exited else ("stopping" if self.stop_deadline else "running"),
            "stop_requested": self.stop_signal is not None,
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "exited_at": self.exited_at,
        }


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, message: dict[str, Any]) -> bool:
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
            return True
        except OSError:
            return False


class Runner:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.selector = selectors.DefaultSelector()
        self.instances: dict[str, Instance] = {}
        self.by_pid: dict[int, Instance] = {}
        self.logs: dict[str, LogFile] = {}
        self.clients: dict[int, Client] = {}
        self.deadlines: list[tuple[float, str]] = []
        self.running = True

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except OSError:
            pass  # without it orphans go to init, but the environment marker still finds them
        self.cgroups = Cgroups()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)  # only an explicit shutdown request ends us
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        staging = f"{self.socket_path}.{os.getpid()}"
        try:
            self.server.bind(staging)
        finally:
            os.umask(old)
        self.server.listen(16)
        # The socket appears under its name only once it listens: a client never meets a refused connect
        # it could take for "no runner" (and start a second one).
        os.rename(staging, self.socket_path)
        self.server.setblocking(False)
        self.selector.register(self.server, selectors.EVENT_READ, ("accept", None))

    # -- main loop ---------------------------------------------------------------------------------

    def serve(self) -> None:
        while self.running or any(not i.exited for i in self.instances.values()):
            timeout = None
            if self.deadlines:
                timeout = max(0.0, self.deadlines[0][0] - time.monotonic())
            for key, _ in self.selector.select(timeout):
                kind, data = key.data
                if kind == "wake":
                    self._drain_wakeup()
                elif kind == "accept":
                    self._accept()
                elif kind == "client":
                    self._read_client(data)
                elif kind == "pipe":
                    self._read_pipe(data, key.fd)
            self._reap()
            self._fire_deadlines()
        self._cleanup()

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        try:
            sock, _ = self.server.accept()
        except BlockingIOError:
            return
        sock.setblocking(True)
        sock.settimeout(5.0)
        client = Client(sock)
        self.clients[sock.fileno()] = client
        self.selector.register(sock, selectors.EVENT_READ, ("client", client))

    def _drop_client(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        try:
            self.selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    def _read_client(self, client: Client) -> None:
        try:
            chunk = client.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._drop_client(client)
            return
        client.buffer += chunk
        *lines, client.buffer = client.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                reply = self._handle(line)
                if not client.send(reply):
                    self._drop_client(client)
                    return

    def _broadcast(self, message: dict[str, Any]) -> None:
        for client in list(self.clients.values()):
            if not client.send(message):
                self._drop_client(client)

    # -- requests ----------------------------------------------------------------------------------

    def _handle(self, line: bytes) -> dict[str, Any]:
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            handler = getattr(self, "op_" + str(request.get("op")), None)
            if handler is None:
                raise ValueError(f"unknown op {request.get('op')!r}")
            result = handler(request)
            return {"id": request_id, "ok": True, **result}
        except Exception as exc:  # a bad request must never take the runner down
            return {"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid()}

    def op_list(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"instances": [i.record() for i in self.instances.values()]}

    def op_spawn(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request["key"]
        if not self.running:
            raise ValueError("the runner is shutting down")
        if key in self.instances:
            raise ValueError(f"instance {key} exists")
        path = request["log_path"]
        log = self.logs.get(path)
        max_bytes, max_files = int(request.get("log_max_bytes", 10 << 20)), int(request.get("log_max_files", 5))
        if log is None:
            log = self.logs[path] = LogFile(path, max_bytes=max_bytes, max_files=max_files)
        log.max_bytes, log.max_files = max_bytes, max_files  # the newest spawn's spec wins
        env = dict(request["env"])
        env[MARKER] = key
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        for fd in (out_r, err_r):
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
        group = self.cgroups.create(key)
        try:
            popen = subprocess.Popen(
                request["argv"], cwd=request["cwd"], env=env, stdin=subprocess.DEVNULL,
                stdout=out_w, stderr=err_w, start_new_session=True, restore_signals=True, close_fds=True,
                # Joined in the child before exec, so not even a process forked at once escapes it.
                preexec_fn=(lambda: join(group)) if group else None,
            )
        except OSError as exc:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            # Say it where the user will look: the replica's own log.
            log.write(LineSplitter("stderr").feed(f"stackblaze: cannot start {request['argv'][0]!r}: {exc}\n".encode()))
            if log.users == 0:
                log.close()
                self.logs.pop(path, None)
            raise
        os.close(out_w)
        os.close(err_w)
        log.users += 1
        instance = Instance(
            key=key, pid=popen.pid, popen=popen, log=log, started_at=time.time(),
            meta=dict(request.get("meta") or {}),
        )
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            instance.pipes[fd] = LineSplitter(stream)
            self.selector.register(fd, selectors.EVENT_READ, ("pipe", instance))
        self.instances[key] = instance
        self.by_pid[popen.pid] = instance
        return {"instance": instance.record()}

    def op_stop(self, request: dict[str, Any]) -> dict[str, Any]:
        instance = self.instances[request["key"]]
        if instance.exited or instance.stop_deadline is not None:
            return {"instance": instance.record()}
        sig = int(request.get("signal", signal.SIGTERM))
        grace = float(request.get("grace", 30.0))
        instance.stop_signal = sig
        instance.stop_deadline = time.monotonic() + grace
        heapq.heappush(self.deadlines, (instance.stop_deadline, instance.key))
        try:
            os.kill(instance.pid, sig)  # the main process only, as Kubernetes does
        except ProcessLookupError:
            pass
        return {"instance": instance.record()}

    def op_kill(self, request: dict[str, Any]) -> dict[str, Any]:
        instance = self.instances[request["key"]]
        if not instance.exited:
            self._kill(instance)
        return {"instance": instance.record()}

    def op_ack(self, request: dict[str, Any]) -> dict[str, Any]:
        for key in request["keys"]:
            instance = self.instances.get(key)
            if instance is not None and instance.exited:
                instance.acked = True
                if not instance.pipes:
                    self._forget(instance)
        return {}

    def op_shutdown(self, request: dict[str, Any]) -> dict[str, Any]:
        """Stop every instance (signal, grace, kill) and exit once all are gone."""
        grace = float(request.get("grace", 10.0))
        for instance in list(self.instances.values()):
            if not instance.exited:
                self.op_stop({"key": instance.key, "grace": grace, "signal": request.get("signal", 15)})
        self.running = False
        return {}

    # -- processes ---------------------------------------------------------------------------------

    def _read_pipe(self, instance: Instance, fd: int) -> None:
        splitter = instance.pipes.get(fd)
        if splitter is None:
            return
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            out = splitter.feed(chunk)
        else:
            out = splitter.flush()
            self.selector.unregister(fd)
            os.close(fd)
            del instance.pipes[fd]
        if out:
            instance.log.write(out)
        if not instance.pipes and instance.acked:
            self._forget(instance)

    def _drain_pipes(self, instance: Instance) -> None:
        """Read what the pipes hold right now, so an exit is announced after the last lines."""
        for fd in list(instance.pipes):
            for _ in range(64):
                if fd not in instance.pipes:
                    break
                try:
                    peek = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    peek = b""
                splitter = instance.pipes[fd]
                if peek:
                    instance.log.write(splitter.feed(peek))
                    continue
                instance.log.write(splitter.flush())
                self.selector.unregister(fd)
                os.close(fd)
                del instance.pipes[fd]

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            instance = self.by_pid.pop(pid, None)
            if instance is None:
                continue  # an orphaned grandchild we adopted as subreaper
            instance.exited_at = time.time()
            if os.WIFSIGNALED(status):
                instance.exit_signal = os.WTERMSIG(status)
                instance.popen.returncode = -instance.exit_signal
            else:
                instance.exit_code = os.waitstatus_to_exitcode(status)
                instance.popen.returncode = instance.exit_code
            # The replica is over when its main process is: nothing of it may outlive it.
            self._kill(instance)
            self._drain_pipes(instance)
            self._announce(instance)

    def _announce(self, instance: Instance) -> None:
        instance.stop_deadline = None
        self._broadcast({"event": "exit", "instance": instance.record()})

    def _fire_deadlines(self) -> None:
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self.deadlines)
            instance = self.instances.get(key)
            if instance is None or instance.exited or instance.stop_deadline != deadline:
                continue
            self._kill(instance)

    def _kill(self, instance: Instance) -> None:
        self.cgroups.kill(instance.key)
        kill_instance(instance.key, main_pid=instance.pid)

    def _forget(self, instance: Instance) -> None:
        self.cgroups.remove(instance.key)
        self.instances.pop(instance.key, None)
        instance.log.users -= 1
        if instance.log.users <= 0:
            instance.log.close()
            self.logs.pop(instance.log.path, None)

    def _cleanup(self) -> None:
        self.cgroups.close()
        self._broadcast({"event": "shutdown"})
        for client in list(self.clients.values()):
            self._drop_client(client)
        self.server.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m stackblaze.engine.local.runner SOCKET", file=sys.stderr)
        return 2
    runner = Runner(args[0])
    try:
        runner.setup()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return 1
        raise
    runner.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
