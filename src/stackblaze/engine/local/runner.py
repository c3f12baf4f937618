"""The runner: parent of every replica. Spawns, captures logs, signals, reaps. It keeps no policy.

Small and boring on purpose, so that it never needs to restart: standard library only, one thread, one
selector. It wakes on child exit (SIGCHLD through a wakeup fd), on pipe data, on a client request or on
a stop deadline; it never polls. A write error (a full disk) costs log lines, counted per replica, never
the runner. The daemon talks to it over a unix socket in JSON lines:

  request  {"id": 1, "op": "spawn" | "stop" | "list" | "ack" | "shutdown", ...}
  reply    {"id": 1, "ok": true, ...}  or  {"id": 1, "ok": false, "error": "...", "errno": "ENOENT",
                                            "reason": "the start command 'x' was not found on PATH (...)"}
  event    {"event": "exit", "instance": {...}}   pushed to every connected client
           {"event": "log-dropping", "instance": {...}}   a replica's log lines are being lost
           {"event": "log-resumed", "instance": {...}, "lost": N, "since": t0, "until": t1}

Exited instances are kept until a client acks them, so a daemon that was down hears of every exit.
One runner per home: it holds an exclusive flock on `<socket>.lock`, and on start it kills what a dead
predecessor left (cgroups, then the environment marker).
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
import traceback

from stackblaze.engine.local.cgroup import Cgroups, join
from stackblaze.engine.local.credentials import become
from stackblaze.engine.local.instance import Instance
from stackblaze.engine.local.listener import Listener
from stackblaze.engine.local.logwriter import LineSplitter, LogFile
from stackblaze.engine.local.mountns import enter_or_say
from stackblaze.engine.local.proctree import MARKER, RUNNER_MARKER, kill_instance, runner_token, sweep
from stackblaze.engine.local.runnerlog import RunnerLog
from stackblaze.engine.local.spawnfail import explain

TYPE_CHECKING = False  # typing and dataclasses cost the runner ~3 MB of RSS per machine; it needs neither
if TYPE_CHECKING:
    from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
READ_SIZE = 1 << 20
REPLICA_NOFILE = 1024  # a replica's soft limit on open files at least, as systemd gives its services
LOCK_WAIT = 5.0  # a predecessor killed a moment ago may still hold the lock while the kernel tears it down


class SpawnError(Exception):
    def __init__(self, error: str, *, errno: str, reason: str) -> None:
        super().__init__(error)
        self.errno = errno
        self.reason = reason


class Runner:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        # The home, as far as the runner knows it: its socket, which lives in exactly one STACKBLAZE_HOME.
        self.home = os.path.join(os.path.realpath(os.path.dirname(socket_path) or "."), os.path.basename(socket_path))
        self.selector = selectors.DefaultSelector()
        self.instances: dict[str, Instance] = {}
        self.by_pid: dict[int, Instance] = {}
        self.logs: dict[str, LogFile] = {}
        self.deadlines: list[tuple[float, str]] = []
        self.running = True
        self.log = RunnerLog()

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> bool:
        """Take the home's runner lock, clean up after a dead predecessor, listen. False: another runner
        serves this home."""
        self.pid = os.getpid()
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        self.libc: Any = None
        try:
            self.libc = ctypes.CDLL(None, use_errno=True)
            self.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except OSError:
            pass  # without it orphans go to init, but the environment marker still finds them
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:  # a pipe pair per replica, a log file per replica: the hard limit is ours to use
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        # Replicas get the usual 1024 (select() breaks above it), or the higher soft limit we were given.
        self.replica_nofile = (min(max(REPLICA_NOFILE, soft), hard), hard)
        if not self._lock():
            self.log.say(f"another runner holds {self.socket_path}.lock; exiting")
            return False
        self.token = runner_token(self.home)
        self.cgroups = Cgroups(self.home)
        held = self.cgroups.reap_stale()
        swept = sweep(self.home, keep=self.token)
        self.log.say(
            f"runner {self.pid} serving {self.socket_path}: cgroups {'on' if self.cgroups.enabled else 'off'}, "
            f"out-of-memory accounting {'on' if self.cgroups.oom_accounting else 'off'}, open files {hard} "
            f"(replicas {self.replica_nofile[0]}), pdeathsig {'on' if self.libc is not None else 'off'}"
            + (f"; killed what a dead runner left: {held} cgroups, {swept} processes" if held or swept else ""))
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)  # only an explicit shutdown request ends us
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit fails a write (EFBIG), not us
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.listener = Listener(self.socket_path, self.selector, handle=self._handle, log=self.log)
        self.listener.open()
        return True

    def _lock(self) -> bool:
        self.lock_fd = os.open(f"{self.socket_path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)

    # -- main loop ---------------------------------------------------------------------------------

    def serve(self) -> None:
        while self.running or any(not i.exited for i in self.instances.values()):
            timeout = None
            if self.deadlines:
                timeout = max(0.0, self.deadlines[0][0] - time.monotonic())
            for key, _ in self.selector.select(timeout):
                kind, data = key.data
                try:
                    if kind == "wake":
                        self._drain_wakeup()
                    elif kind == "accept":
                        self.listener.accept()
                    elif kind == "client":
                        self.listener.read(data)
                    elif kind == "pipe":
                        self._read_pipe(data, key.fd)
                except Exception:  # a bug here must cost one event, never every replica
                    self.log.say(f"unexpected error, going on: {traceback.format_exc()}")
            try:
                self._reap()
                self._fire_deadlines()
            except Exception:
                self.log.say(f"unexpected error, going on: {traceback.format_exc()}")
        self._cleanup()

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

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
        except SpawnError as exc:
            return {"id": request_id, "ok": False, "error": str(exc), "errno": exc.errno, "reason": exc.reason}
        except Exception as exc:  # a bad request must never take the runner down
            return {"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def op_list(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"instances": [i.record() for i in self.instances.values()], "runner": {
            "pid": self.pid, "cgroups": self.cgroups.enabled, "oom_accounting": self.cgroups.oom_accounting,
            "pdeathsig": self.libc is not None, "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "replica_nofile": list(self.replica_nofile), "log": self.log.status(),
        }}

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
        argv, cwd = list(request["argv"]), request["cwd"]
        env = dict(request["env"])
        env[MARKER] = key
        env[RUNNER_MARKER] = self.token
        fds: list[int] = []
        groups: list[str] = []
        try:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            fds += (out_r, out_w)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            fds += (err_r, err_w)
            for fd in (out_r, err_r):
                try:
                    fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
                except OSError:
                    pass
            groups = self.cgroups.create(key)
            popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=out_w, stderr=err_w, start_new_session=True, restore_signals=True, close_fds=True,
                preexec_fn=lambda: self._in_child(groups, request.get("user"), request.get("hosts"),
                                                  request.get("binds") or []),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            for fd in fds:
                os.close(fd)
            self.cgroups.remove(key)
            user = request.get("user")
            name, reason = explain(exc, argv=argv, cwd=cwd, env=env, user=user.get("name") if user else None)
            # Say it where the user will look: the replica's own log.
            line = f"stackblaze: cannot start {argv[0]!r}: {reason} ({name})\n"
            log.write(LineSplitter("stderr").feed(line.encode()))
            self.log.say(f"cannot spawn {key}: {name}: {reason}")
            if log.users == 0:
                log.close()
                self.logs.pop(path, None)
            raise SpawnError(f"{type(exc).__name__}: {exc}", errno=name, reason=reason) from None
        os.close(out_w)
        os.close(err_w)
        log.users += 1
        instance = Instance(key=key, pid=popen.pid, popen=popen, log=log, started_at=time.time(),
                            meta=dict(request.get("meta") or {}), oom_accounting=self.cgroups.oom_accounting)
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            instance.pipes[fd] = LineSplitter(stream)
            self.selector.register(fd, selectors.EVENT_READ, ("pipe", instance))
        self.instances[key] = instance
        self.by_pid[popen.pid] = instance
        return {"instance": instance.record()}

    def _in_child(self, groups: list[str], user: dict[str, Any] | None = None, hosts: str | None = None,
                  binds: list[dict[str, str]] | None = None) -> None:
        """Between fork and exec. Nothing here may fail the spawn: each step is best effort, and the
        marker sweep covers a replica that could not join its cgroup. Except becoming `user`: a replica
        that cannot drop root does not start."""
        if self.libc is not None:
            self.libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != self.pid:  # the runner died before the line above: die as it asked
                os.kill(os.getpid(), signal.SIGKILL)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.replica_nofile)
        except (OSError, ValueError):
            pass
        try:
            join(groups)  # before exec, so not even a process forked at once escapes it
        except OSError:
            pass
        # The project's hosts file over /etc/hosts (<name>.internal) and the disk at its mount_path, before
        # dropping root: mounting needs it. A failure is said on the replica's stderr, and it starts anyway.
        # A user namespace clears PDEATHSIG.
        if (hosts is not None or binds) and enter_or_say(hosts, self.libc, binds or []) and self.libc is not None:
            self.libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != self.pid:
                os.kill(os.getpid(), signal.SIGKILL)
        if user is not None:  # last: joining the cgroup needs root, and new credentials clear PDEATHSIG
            become(user, self.libc)
            if self.libc is not None:
                self.libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
                if os.getppid() != self.pid:
                    os.kill(os.getpid(), signal.SIGKILL)

    def op_stop(self, request: dict[str, Any]) -> dict[str, Any]:
        instance = self.instances[request["key"]]
        if instance.exited or instance.stop_deadline is not None:
            return {"instance": instance.record()}
        sig = int(request.get("signal", signal.SIGTERM))
        instance.grace = float(request.get("grace", 30.0))
        instance.stop_signal = sig
        instance.stop_deadline = time.monotonic() + instance.grace
        heapq.heappush(self.deadlines, (instance.stop_deadline, instance.key))
        try:
            os.kill(instance.pid, sig)  # the main process only, as Kubernetes does
        except ProcessLookupError:
            pass
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

    def _write(self, instance: Instance, parts: list[bytes | memoryview]) -> None:
        """Write to the replica's log; a failed write costs its lines (counted), never the runner."""
        if not parts:
            return
        lost = instance.log.write(parts)
        now = time.time()
        if lost:
            instance.dropped_lines += lost
            instance.dropped_error = f"{instance.log.error} ({instance.log.path})"
            if instance.dropped_since is None:
                instance.dropped_since = now
                instance.outage_start = instance.dropped_lines - lost
                self.log.say(f"cannot write the log of {instance.key}: {instance.dropped_error}; its lines are "
                             "dropped and counted until writing works again")
                self.listener.broadcast({"event": "log-dropping", "instance": instance.record()})
        elif instance.dropped_since is not None:
            since, instance.dropped_since = instance.dropped_since, None
            lost_now = instance.dropped_lines - instance.outage_start
            self.log.say(f"writing the log of {instance.key} again: {lost_now} lines were lost since {since:.3f}")
            self.listener.broadcast({"event": "log-resumed", "instance": instance.record(), "lost": lost_now,
                             "since": since, "until": now})

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
            self._write(instance, splitter.feed(chunk))
        else:
            self._write(instance, splitter.flush())
            self._close_pipe(instance, fd)
        if not instance.pipes and instance.acked:
            self._forget(instance)

    def _close_pipe(self, instance: Instance, fd: int) -> None:
        self.selector.unregister(fd)
        os.close(fd)
        del instance.pipes[fd]
        self.listener.keep_spare()

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
                    self._write(instance, splitter.feed(peek))
                    continue
                self._write(instance, splitter.flush())
                self._close_pipe(instance, fd)

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
            if instance.exit_signal != signal.SIGKILL:
                instance.killed_after_grace = None  # it exited by itself just as its grace ran out
            if instance.oom_accounting:
                # The kernel counts its OOM kills per group; the replica's group is new, so any is its own.
                instance.oom_killed = (self.cgroups.oom_kills(instance.key) or 0) > 0
            # The replica is over when its main process is: nothing of it may outlive it.
            self._kill(instance)
            self._drain_pipes(instance)
            self._announce(instance)

    def _announce(self, instance: Instance) -> None:
        instance.stop_deadline = None
        self.listener.broadcast({"event": "exit", "instance": instance.record()})

    def _fire_deadlines(self) -> None:
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self.deadlines)
            instance = self.instances.get(key)
            if instance is None or instance.exited or instance.stop_deadline != deadline:
                continue
            instance.killed_after_grace = instance.grace
            self._kill(instance)

    def _kill(self, instance: Instance) -> None:
        """SIGKILL every process of the instance: its v2 cgroup holds them all; without one, its group,
        descendants and environment marker find them."""
        try:
            if not self.cgroups.kill(instance.key):
                kill_instance(instance.key, main_pid=instance.pid)
        except OSError as exc:  # never let it cost the exit's announcement
            self.log.say(f"could not kill every process of {instance.key}: {exc}")

    def _forget(self, instance: Instance) -> None:
        self.cgroups.remove(instance.key)
        self.instances.pop(instance.key, None)
        instance.log.users -= 1
        if instance.log.users <= 0:
            instance.log.close()
            self.logs.pop(instance.log.path, None)
        self.listener.keep_spare()

    def _cleanup(self) -> None:
        swept = sweep(self.home)  # anything of this home's replicas that escaped its group and our eye
        if swept:
            self.log.say(f"killed {swept} processes left by replicas at shutdown")
        self.cgroups.close()
        self.listener.broadcast({"event": "shutdown"})
        self.listener.close()
        self.log.say(f"runner {self.pid} stopped")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m stackblaze.engine.local.runner SOCKET", file=sys.stderr)
        return 2
    runner = Runner(args[0])
    if not runner.setup():
        return 1
    runner.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
