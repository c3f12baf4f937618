"""`<name>.internal` resolves inside a project's replicas and nowhere else: real runners spawn real
replicas with a project's hosts file (engine/names.py), and Python (getaddrinfo), Node (dns.lookup), a Go
binary built with CGO_ENABLED=0 (Go's own resolver) and one built with cgo (GODEBUG=netdns=cgo, glibc)
each print what the names resolve to, five times a second, into their logs.

As root the runner uses a mount namespace; the non-root path (a user namespace) runs a runner as uid 65534
with setpriv. A blocked kernel is made for real in a user namespace of the test's own, where
user.max_user_namespaces=0 (the sysctl is per user namespace, so the machine's setting is untouched).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stackblaze.engine.names import HostsFile, probe
from tests.integration.conftest import wait_for
from tests.reliability.conftest import RunnerConnection, _connect, kill_marked, runner_socket, start_runner
from tests.tools import need

__all__ = ["start_runner"]  # the fixture, imported for pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces for replicas need a root runner "
                                "(CI runs as root); the non-root path is tested from root with setpriv")

NOBODY = 65534
PYTHON = """\
import os, socket, sys, time
print(f"PID {os.getpid()} UID {os.getuid()}", flush=True)
while True:
    for name in sys.argv[1:]:
        try:
            found = sorted({info[4][0] for info in socket.getaddrinfo(name, 6379, proto=socket.IPPROTO_TCP)})
            print("RESOLVED", name, ",".join(found), flush=True)
        except OSError:
            print("FAILED", name, flush=True)
    time.sleep(0.2)
"""
NODE = """\
const dns = require('dns');
const names = process.argv.slice(2);
setInterval(() => {
  for (const name of names) {
    dns.lookup(name, (err, address) => console.log(err ? `FAILED ${name}` : `RESOLVED ${name} ${address}`));
  }
}, 200);
"""
GO = """\
package main

import (
\t"context"
\t"fmt"
\t"net"
\t"os"
\t"strings"
\t"time"
)

func main() {
\tfor {
\t\tfor _, name := range os.Args[1:] {
\t\t\taddrs, err := net.DefaultResolver.LookupHost(context.Background(), name)
\t\t\tif err != nil {
\t\t\t\tfmt.Printf("FAILED %s\\n", name)
\t\t\t} else {
\t\t\t\tfmt.Printf("RESOLVED %s %s\\n", name, strings.Join(addrs, ","))
\t\t\t}
\t\t}
\t\ttime.Sleep(200 * time.Millisecond)
\t}
}
"""


@dataclass(frozen=True)
class Programs:
    folder: Path  # world-readable, so a replica running as nobody can run them
    python: list[str]
    node: list[str]
    go_pure: list[str]
    go_cgo: list[str]


@pytest.fixture(scope="module")
def programs() -> Iterator[Programs]:
    go, node = need("go"), need("node")
    need("gcc", "apt-get install -y gcc")
    folder = Path(tempfile.mkdtemp(prefix="sb-names-"))
    folder.chmod(0o755)
    (folder / "resolve.py").write_text(PYTHON)
    (folder / "resolve.js").write_text(NODE)
    source = folder / "go"
    source.mkdir()
    (source / "go.mod").write_text("module resolve\n\ngo 1.21\n")
    (source / "main.go").write_text(GO)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "GOPROXY": "off"}
    for name, cgo in (("pure", "0"), ("cgo", "1")):
        subprocess.run([go, "build", "-o", str(folder / name), "."], cwd=source, check=True, timeout=300,
                       env={**env, "CGO_ENABLED": cgo})
    for path in folder.iterdir():
        path.chmod(0o755)
    yield Programs(folder, [python_for_nobody(), str(folder / "resolve.py")], [node, str(folder / "resolve.js")],
                   [str(folder / "pure")], [str(folder / "cgo")])
    shutil.rmtree(folder)


def python_for_nobody() -> str:
    """A Python 3 that uid 65534 can exec from a shell: this venv's may sit under a 0700 /root."""
    for candidate in (sys.executable, shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"):
        done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sh", "-c",
                               'exec "$0" -c pass', candidate], capture_output=True, cwd="/")
        if done.returncode == 0:
            return candidate
    need("a python3 that uid 65534 can run", "apt-get install -y python3")
    raise AssertionError("unreachable")


def said(runner: RunnerConnection, key: str, stream: str = "stdout") -> list[str]:
    """The lines a replica wrote, from its CRI log file (`<time> <stream> <F|P> <line>`)."""
    try:
        text = (runner.home / "logs" / f"{key}.log").read_text()
    except FileNotFoundError:
        return []
    return [parts[3] for parts in (line.split(" ", 3) for line in text.splitlines())
            if len(parts) == 4 and parts[1] == stream]


def resolves(runner: RunnerConnection, key: str, name: str, address: str, timeout: float = 20.0) -> None:
    wait_for(f"{key} to resolve {name} to {address}",
             lambda: f"RESOLVED {name} {address}" in said(runner, key)[-40:], timeout=timeout)


def spawn(runner: RunnerConnection, key: str, argv: list[str], hosts: Path | None, **fields: Any) -> int:
    reply = runner.spawn(key, argv, hosts=str(hosts) if hosts else None, **fields)
    assert reply["ok"], reply
    return int(reply["instance"]["pid"])


def host_lookup(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["getent", "hosts", name], capture_output=True, text=True)


def test_every_runtime_resolves_internal_names_and_sees_new_ones_without_a_restart(
        start_runner: Any, programs: Programs, tmp_path: Path) -> None:
    etc_hosts = hashlib.sha256(Path("/etc/hosts").read_bytes()).hexdigest()
    hosts = HostsFile(tmp_path / "hosts" / "acme")
    hosts.sync({"cache.internal": "127.77.3.1"})
    inode = hosts.path.stat().st_ino
    runner = start_runner()
    names = ["cache.internal", "queue.internal"]
    pids = {
        "python": spawn(runner, "python", [*programs.python, *names], hosts.path),
        "node": spawn(runner, "node", [*programs.node, *names], hosts.path),
        "go-pure": spawn(runner, "go-pure", [*programs.go_pure, *names], hosts.path, env={"GODEBUG": "netdns=2"}),
        "go-cgo": spawn(runner, "go-cgo", [*programs.go_cgo, *names], hosts.path,
                        env={"GODEBUG": "netdns=cgo+2"}),
    }
    for key in pids:
        resolves(runner, key, "cache.internal", "127.77.3.1")
        # not there yet: the failed lookup (after the files, DNS) is said once it gives up
        wait_for(f"{key} to fail queue.internal", lambda key=key: "FAILED queue.internal" in said(runner, key), 20)
    # The Go binaries really used the resolver they are named for.
    assert "go package net: hostLookupOrder(cache.internal) = files,dns" in said(runner, "go-pure", "stderr")
    assert "go package net: hostLookupOrder(cache.internal) = cgo" in said(runner, "go-cgo", "stderr")
    # The PID the replica sees is the one the runner recorded (no fork for the namespace).
    assert f"PID {pids['python']} UID 0" in said(runner, "python")

    # The host sees none of it.
    assert hashlib.sha256(Path("/etc/hosts").read_bytes()).hexdigest() == etc_hosts
    assert host_lookup("cache.internal").returncode != 0

    # A service added while they run: the same file, appended in place, resolves in each within seconds.
    hosts.sync({"cache.internal": "127.77.3.1", "queue.internal": "127.77.3.2"})
    assert hosts.path.stat().st_ino == inode
    for key in pids:
        resolves(runner, key, "queue.internal", "127.77.3.2")  # Go re-reads /etc/hosts every 5 s at most
    listed = {item["key"]: item for item in runner.call("list")["instances"]}
    assert {key: listed[key]["pid"] for key in pids} == pids  # nobody restarted
    assert not any(listed[key].get("exited_at") for key in pids)
    assert host_lookup("queue.internal").returncode != 0
    assert hashlib.sha256(Path("/etc/hosts").read_bytes()).hexdigest() == etc_hosts


def test_two_projects_get_two_answers_for_the_same_name(start_runner: Any, programs: Programs,
                                                        tmp_path: Path) -> None:
    acme, beta = HostsFile(tmp_path / "hosts" / "acme"), HostsFile(tmp_path / "hosts" / "beta")
    acme.sync({"cache.internal": "127.77.1.1"})
    beta.sync({"cache.internal": "127.77.2.1"})
    runner = start_runner()
    spawn(runner, "acme", [*programs.python, "cache.internal"], acme.path)
    spawn(runner, "beta", [*programs.python, "cache.internal"], beta.path)
    spawn(runner, "plain", [*programs.python, "cache.internal"], None)  # a spawn without hosts: the host's view
    resolves(runner, "acme", "cache.internal", "127.77.1.1")
    resolves(runner, "beta", "cache.internal", "127.77.2.1")
    wait_for("the replica without a hosts file to try", lambda: "FAILED cache.internal" in said(runner, "plain"))
    assert "RESOLVED cache.internal 127.77.2.1" not in said(runner, "acme")
    assert "RESOLVED cache.internal 127.77.1.1" not in said(runner, "beta")
    assert not any(line.startswith("RESOLVED") for line in said(runner, "plain"))


def test_a_worker_user_resolves_names_and_cannot_unmount_them(start_runner: Any, programs: Programs,
                                                              tmp_path: Path) -> None:
    """A root runner dropping to nobody (as it drops to stackblaze-worker): the hosts file sits under the
    test's 0700 tmp dir, which nobody cannot traverse; it reads it through the mount made before the drop."""
    hosts = HostsFile(tmp_path / "home" / "hosts" / "acme")
    hosts.sync({"cache.internal": "127.77.4.1"})
    runner = start_runner()
    user = {"uid": NOBODY, "gid": NOBODY, "groups": [NOBODY], "name": "nobody"}
    script = f"id -u; umount /etc/hosts 2>/dev/null && echo UNMOUNTED; exec {' '.join(programs.python)} cache.internal"
    spawn(runner, "worker", ["sh", "-c", script], hosts.path, cwd=programs.folder, user=user)
    resolves(runner, "worker", "cache.internal", "127.77.4.1")
    lines = said(runner, "worker")
    assert lines[0] == str(NOBODY)
    assert "UNMOUNTED" not in lines


def test_a_replica_without_its_hosts_file_starts_and_says_why(start_runner: Any, programs: Programs,
                                                              tmp_path: Path) -> None:
    runner = start_runner()
    missing = tmp_path / "hosts" / "gone"
    pid = spawn(runner, "worker", [*programs.python, "cache.internal"], missing)
    wait_for("the replica to run", lambda: f"PID {pid} UID 0" in said(runner, "worker"))
    assert said(runner, "worker", "stderr")[0] == (
        f"stackblaze: <name>.internal names unavailable in this replica: the project's hosts file {missing} "
        "does not exist")


@pytest.fixture
def nobody_runner(tmp_path: Path) -> Iterator[RunnerConnection]:
    """A runner started as uid 65534 (setpriv), in a home it owns: its replicas get a user namespace."""
    home = Path(tempfile.mkdtemp(prefix="sb-names-home-"))
    (home / "run").mkdir()
    (home / "logs").mkdir()
    for path in (home, home / "run", home / "logs"):
        os.chown(path, NOBODY, NOBODY)
    with open(tmp_path / "runner.log", "ab") as log:
        process = subprocess.Popen(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-m",
             "stackblaze.engine.local.runner", str(runner_socket(home))],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        connection = wait_for("the runner to answer", lambda: _connect(home, process))
        assert isinstance(connection, RunnerConnection), (tmp_path / "runner.log").read_text()
        yield connection
        with contextlib.suppress(OSError, AssertionError):
            connection.call("shutdown", grace=0.5)
        connection.sock.close()
    finally:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        kill_marked(home)
        shutil.rmtree(home, ignore_errors=True)


def test_a_non_root_runner_gives_replicas_names_through_a_user_namespace(
        nobody_runner: RunnerConnection, programs: Programs) -> None:
    runner = nobody_runner
    hosts = HostsFile(runner.home / "hosts" / "acme")
    hosts.sync({"cache.internal": "127.77.5.1"})
    os.chown(hosts.path.parent, NOBODY, NOBODY)
    os.chown(hosts.path, NOBODY, NOBODY)
    script = f"id -u; umount /etc/hosts 2>/dev/null && echo UNMOUNTED; exec {' '.join(programs.python)} cache.internal"
    spawn(runner, "python", ["sh", "-c", script], hosts.path, cwd=programs.folder)
    spawn(runner, "go-pure", [*programs.go_pure, "cache.internal"], hosts.path, cwd=programs.folder)
    resolves(runner, "python", "cache.internal", "127.77.5.1")
    resolves(runner, "go-pure", "cache.internal", "127.77.5.1")
    lines = said(runner, "python")
    assert lines[0] == str(NOBODY)  # its real uid, not the namespace's 0
    assert "UNMOUNTED" not in lines
    record = {item["key"]: item for item in runner.call("list")["instances"]}["python"]
    assert f"PID {record['pid']} UID {NOBODY}" in lines  # sh exec'd python: the recorded pid
    assert not said(runner, "python", "stderr")
    assert host_lookup("cache.internal").returncode != 0


def test_probe_finds_the_mode_this_machine_allows() -> None:
    assert probe().mode == "mount"  # as root
    assert probe(userns=True).mode == "userns"
    assert host_lookup("stackblaze-probe.internal").returncode != 0


def test_probe_says_why_when_user_namespaces_are_disabled() -> None:
    """For real: inside a user namespace of this test where user.max_user_namespaces=0, the probe's child
    cannot create one (ENOSPC), and the reason names the sysctl."""
    code = ("import json; from stackblaze.engine.names import probe; "
            "print(json.dumps(probe(userns=True).to_dict()))")
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c",
         f"echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} -c '{code}'"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "mode": None, "reason": "unprivileged user namespaces are disabled (user.max_user_namespaces=0)"}

