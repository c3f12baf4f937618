"""The supervisors bench/compare.py compares, behind one interface: stackblaze, supervisord, circus and PM2."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from compare_procs import TRACKER, run, spawn, wait_for

BIN = Path(sys.executable).parent
NODE_DIR = Path(os.environ.get("SB_BENCH_NODE_DIR", "/tmp/sb-bench-node"))
PM2_VERSION = os.environ.get("SB_BENCH_PM2_VERSION", "7.0.4")
WORKER_USER = os.environ.get("STACKBLAZE_WORKER_USER", "root")


def installed(distribution: str) -> str | None:
    """The installed version of a Python distribution, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Program:
    """What a peer is set up to run: `count` copies of argv, under the name `name`."""

    name: str
    argv: list[str]
    count: int



class Peer:
    name = "?"
    version = "?"
    timestamps = False  # does it stamp each captured line?
    rotates = False  # does it keep only its newest log files (the oldest lines go, by design)?

    def unavailable(self) -> str | None:
        """Why this peer cannot run here, or None."""
        return None

    def start(self, work: Path, program: Program) -> None:
        """Start the supervisor, idle, set up to run `program` when asked."""
        raise NotImplementedError

    def request(self) -> subprocess.Popen[bytes]:
        """Ask the running supervisor to start the program (the client command, not waited for)."""
        raise NotImplementedError

    def supervisor_pids(self) -> list[int]:
        raise NotImplementedError

    def parent_pid(self) -> int:
        """The process whose descendants are the workers."""
        return self.supervisor_pids()[0]

    def log_files(self) -> list[Path]:
        """The program's captured stdout, oldest file first."""
        raise NotImplementedError

    def stop(self) -> None:
        """Graceful stop of the supervisor and every child; the caller kills what is left."""
        raise NotImplementedError

    def diagnostics(self, work: Path) -> str:
        """The tails of the small logs in the work dir: what the client and the supervisor said."""
        parts = []
        for path in sorted(work.rglob("*")):
            if path.is_file() and path.suffix in (".out", ".log") and path.stat().st_size < 5_000_000 \
                    and "/logs/" not in str(path) and not path.name.startswith("log."):
                lines = path.read_text(errors="replace").splitlines()[-15:]
                if lines:
                    parts.append(f"== {path.relative_to(work)}\n" + "\n".join(lines))
        return "\n".join(parts)


class Stackblaze(Peer):
    name = "stackblaze"
    timestamps = True

    def __init__(self, *, log_max_bytes: int | None = None, label: str | None = None) -> None:
        self.log_max_bytes = log_max_bytes
        self.rotates = log_max_bytes is None  # the stock 10 MiB x 5: most of a 2,000,000-line burst goes
        if label:
            self.name = label
        self.version = installed("stackblaze") or "?"
        self.pids: list[int] = []

    def _env(self) -> dict[str, str]:
        # Workers as the daemon's user, as every peer runs its children: the same job, and the temp dirs
        # (0700) and a pyenv python under /root stay reachable (README: when the daemon runs as root).
        return {**os.environ, "STACKBLAZE_HOME": str(self.home), "STACKBLAZE_WORKER_USER": WORKER_USER}

    def start(self, work: Path, program: Program) -> None:
        self.work = work
        self.home = work / "home"
        self.program = program
        self.app = work / "app"
        self.app.mkdir(parents=True)
        logs = f"    logs: {{max_size: {self.log_max_bytes}}}\n" if self.log_max_bytes is not None else ""
        (self.app / "stackblaze.yaml").write_text(
            f"project: p\nservices:\n  - name: {program.name}\n    start: {' '.join(program.argv)}\n"
            f"    replicas: {program.count}\n    shutdown_grace: 5s\n{logs}"
        )
        run([str(BIN / "stackblaze"), "daemon", "start"], env=self._env(), timeout=60)
        def status() -> dict[str, Any] | None:
            out = run([str(BIN / "stackblaze"), "daemon", "status", "--json"], env=self._env(), check=False)
            data = json.loads(out.stdout)
            return data if data.get("pid") else None

        daemon = int(wait_for("the stackblaze daemon", status, 60)["pid"])
        TRACKER.add(daemon)
        sock = str(self.home / "run" / "runner.sock")

        def runner() -> int | None:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                cmd = proc.info["cmdline"] or []
                if "stackblaze.engine.local.runner" in cmd and sock in cmd:
                    return int(proc.info["pid"])
            return None

        self.pids = [daemon, wait_for("the stackblaze runner", runner, 30)]
        TRACKER.add(self.pids[1])

    def request(self) -> subprocess.Popen[bytes]:
        return spawn([str(BIN / "stackblaze"), "deploy", str(self.app), "--json"], env=self._env(),
                     log=self.work / "request.out")

    def scale(self, n: int) -> subprocess.Popen[bytes]:
        """`stackblaze scale` on the deployed service: the engine alone, without the deploy's build step."""
        return spawn([str(BIN / "stackblaze"), "scale", self.program.name, "--replicas", str(n)], env=self._env(),
                     log=self.work / "request.out")

    def supervisor_pids(self) -> list[int]:
        return self.pids

    def parent_pid(self) -> int:
        return self.pids[1]

    def log_files(self) -> list[Path]:
        base = self.home / "logs" / "p" / self.program.name / "1.log"
        rotated = sorted(base.parent.glob("1.log.*"), key=lambda p: -int(p.suffix[1:]))
        return [*rotated, base]

    def stop(self) -> None:
        for pid in self.pids:
            TRACKER.add_tree(pid)
        run([str(BIN / "stackblaze"), "daemon", "stop", "--all"], env=self._env(), timeout=120, check=False)


class Supervisord(Peer):
    name = "supervisord"

    def unavailable(self) -> str | None:
        self.version = installed("supervisor") or ""
        if not self.version:
            return "supervisor is not installed (pip install supervisor==4.3.0)"
        if not (BIN / "supervisord").exists():
            return f"no supervisord in {BIN}"
        return None

    def start(self, work: Path, program: Program) -> None:
        self.work = work
        self.program = program
        self.conf = work / "supervisord.conf"
        (work / "childlogs").mkdir()
        name = program.name
        if program.count > 1:
            logs = "process_name=%(program_name)s_%(process_num)d\n"
        else:
            logs = (f"stdout_logfile={work}/{name}.out.log\nstdout_logfile_maxbytes=0\n"
                    f"stderr_logfile={work}/{name}.err.log\nstderr_logfile_maxbytes=0\n")
        self.conf.write_text(textwrap.dedent(f"""\
            [unix_http_server]
            file={work}/supervisor.sock
            [supervisord]
            logfile={work}/supervisord.log
            pidfile={work}/supervisord.pid
            childlogdir={work}/childlogs
            nodaemon=true
            minfds=8192
            minprocs=2000
            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
            [supervisorctl]
            serverurl=unix://{work}/supervisor.sock
            [program:{name}]
            command={' '.join(program.argv)}
            numprocs={program.count}
            autostart=false
            autorestart=true
            startsecs=0
            stopwaitsecs=5
            """) + logs)
        self.proc = spawn([str(BIN / "supervisord"), "-c", str(self.conf)], log=work / "supervisord.out")
        wait_for("supervisord", lambda: run([str(BIN / "supervisorctl"), "-c", str(self.conf), "pid"],
                                            check=False).stdout.strip().isdigit(), 60, 0.1)

    def request(self) -> subprocess.Popen[bytes]:
        target = f"{self.program.name}:*" if self.program.count > 1 else self.program.name
        return spawn([str(BIN / "supervisorctl"), "-c", str(self.conf), "start", target],
                     log=self.work / "request.out")

    def supervisor_pids(self) -> list[int]:
        return [self.proc.pid]

    def log_files(self) -> list[Path]:
        return [self.work / f"{self.program.name}.out.log"]

    def stop(self) -> None:
        TRACKER.add_tree(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)


class Circus(Peer):
    name = "circus"

    def unavailable(self) -> str | None:
        self.version = installed("circus") or ""
        if not self.version:
            return "circus is not installed (pip install circus==0.19.0)"
        probe = subprocess.run([sys.executable, "-c", "import circus.circusd, circus.circusctl"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            return f"circus does not import on Python {platform.python_version()}: " + probe.stderr.strip()[-300:]
        return None

    def start(self, work: Path, program: Program) -> None:
        self.work = work
        self.program = program
        self.endpoint = f"ipc://{work}/circus.sock"
        conf = work / "circus.ini"
        name = program.name
        out = f"{work}/{name}.out.log"  # one file for all processes of the watcher
        conf.write_text(textwrap.dedent(f"""\
            [circus]
            endpoint = {self.endpoint}
            pubsub_endpoint = ipc://{work}/circus-pubsub.sock
            stats_endpoint = ipc://{work}/circus-stats.sock
            statsd = False
            check_delay = 5
            [watcher:{name}]
            cmd = {program.argv[0]}
            args = {' '.join(program.argv[1:])}
            numprocesses = {program.count}
            autostart = False
            copy_env = True
            graceful_timeout = 5
            stdout_stream.class = FileStream
            stdout_stream.filename = {out}
            stderr_stream.class = FileStream
            stderr_stream.filename = {work}/{name}.err.log
            """))
        self.proc = spawn([str(BIN / "circusd"), str(conf)], log=work / "circusd.out")
        wait_for("circusd", lambda: run(self._ctl("list"), check=False, timeout=20).returncode == 0, 60, 0.2)

    def _ctl(self, *args: str) -> list[str]:
        return [str(BIN / "circusctl"), "--endpoint", self.endpoint, "--timeout", "60", *args]

    def request(self) -> subprocess.Popen[bytes]:
        return spawn(self._ctl("start", self.program.name), log=self.work / "request.out")

    def supervisor_pids(self) -> list[int]:
        return [self.proc.pid]

    def log_files(self) -> list[Path]:
        return [self.work / f"{self.program.name}.out.log"]

    def stop(self) -> None:
        TRACKER.add_tree(self.proc.pid)
        run(self._ctl("quit"), check=False, timeout=60)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)


class PM2(Peer):
    name = "pm2"

    def unavailable(self) -> str | None:
        if not shutil.which("node") or not shutil.which("npm"):
            return "node/npm not found"
        pm2 = NODE_DIR / "node_modules" / ".bin" / "pm2"
        package = NODE_DIR / "node_modules" / "pm2" / "package.json"
        if not pm2.exists():
            print(f"  installing pm2@{PM2_VERSION} into {NODE_DIR} ...", flush=True)
            NODE_DIR.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(["npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund",
                                     f"pm2@{PM2_VERSION}"], capture_output=True, text=True)
            if result.returncode != 0 or not pm2.exists():
                return f"npm install pm2 failed: {result.stderr.strip()[-300:]}"
        self.version = json.loads(package.read_text())["version"]
        self.bin = pm2
        return None

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PM2_HOME": str(self.pm2_home)}

    def start(self, work: Path, program: Program) -> None:
        self.work = work
        self.program = program
        self.pm2_home = work / "pm2home"
        self.pm2_home.mkdir()
        app = {
            "name": program.name, "script": program.argv[0], "args": program.argv[1:], "interpreter": "none",
            "exec_mode": "fork", "instances": program.count, "autorestart": True, "kill_timeout": 5000,
            "out_file": str(work / f"{program.name}.out.log"),
            "error_file": str(work / f"{program.name}.err.log"),
        }
        self.ecosystem = work / "ecosystem.config.js"
        self.ecosystem.write_text("module.exports = " + json.dumps({"apps": [app]}, indent=2) + ";\n")
        self.started = True
        run([str(self.bin), "ping"], env=self._env(), timeout=60)
        self.god = int(wait_for("the PM2 daemon", lambda: (self.pm2_home / "pm2.pid").read_text().strip(), 30))
        TRACKER.add(self.god)

    def request(self) -> subprocess.Popen[bytes]:
        return spawn([str(self.bin), "start", str(self.ecosystem)], env=self._env(), log=self.work / "request.out")

    def supervisor_pids(self) -> list[int]:
        return [self.god]

    def log_files(self) -> list[Path]:
        return sorted(self.work.glob(f"{self.program.name}.out*.log"))

    def stop(self) -> None:
        TRACKER.add_tree(self.god)
        run([str(self.bin), "kill"], env=self._env(), timeout=120, check=False)
