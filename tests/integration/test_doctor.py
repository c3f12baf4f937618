"""`stackblaze doctor` against a real daemon: as root it finds internal hostnames by mount namespace; as a
non-root daemon where user namespaces are disabled it says why and exits 1.

The disabled case is real, not simulated: the CLI (and so the daemon it starts) runs as uid 65534 inside a
user namespace of this test whose user.max_user_namespaces is 0 (the sysctl is per user namespace, so the
machine's own stays as it was)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest

from tests.integration.conftest import Stackblaze, wait_for
from tests.integration.test_internal_names import NOBODY, python_for_nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root): the probe's mount mode, "
                                "and a user namespace with two mapped uids")


def test_doctor_reports_internal_hostnames_by_mount_namespace_as_root(sb: Stackblaze) -> None:
    answer = sb.run("doctor", "--json").json()
    checks = {check["name"]: check for check in answer["checks"]}
    assert checks["internal hostnames"]["status"] == "ok"
    assert checks["internal hostnames"]["mode"] == "mount"
    assert answer["ok"] is True
    assert set(checks) == {"internal hostnames", "nscd", "nsswitch", "redis-server", "postgresql",
                           "vm.overcommit_memory"}
    if shutil.which("redis-server"):
        assert checks["redis-server"]["path"] == shutil.which("redis-server")
    text = sb.run("doctor").out
    assert "ok    internal hostnames: <name>.internal resolves in each project's replicas: mount" in text


def test_a_non_root_daemon_without_user_namespaces_says_why() -> None:
    base = Path(tempfile.mkdtemp(prefix="sb-doctor-"))
    os.chown(base, NOBODY, NOBODY)
    home = base / "home"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {"PATH": os.environ["PATH"], "HOME": str(base), "STACKBLAZE_HOME": str(home), "STACKBLAZE_TIME_SCALE": "0.01",
           "PYTHONPATH": os.pathsep.join([src, sysconfig.get_paths()["purelib"]])}
    # Maps are written from here (root in the parent namespace may map two uids); the child waits for them,
    # then execs so that it has its capabilities in the new namespace, sets the sysctl and drops to nobody.
    inner = (f"echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid {NOBODY} --regid {NOBODY} "
             f"--clear-groups {python_for_nobody()} -m stackblaze.cli doctor --json")
    process = subprocess.Popen(["unshare", "--user", "sh", "-c", 'read _ && exec sh -c "$0"', inner],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd="/")
    try:
        ours = os.readlink("/proc/self/ns/user")
        wait_for("unshare to enter its user namespace", lambda: os.readlink(f"/proc/{process.pid}/ns/user") != ours)
        for kind in ("uid", "gid"):
            Path(f"/proc/{process.pid}/{kind}_map").write_text(f"0 0 1\n{NOBODY} {NOBODY} 1\n")
        out, err = process.communicate("\n", timeout=120)
        assert process.returncode == 1, err
        answer = json.loads(out)
        names = {check["name"]: check for check in answer["checks"]}["internal hostnames"]
        assert answer["ok"] is False
        assert names["status"] == "fail"
        assert names["mode"] is None
        assert names["summary"].startswith(
            "unavailable: unprivileged user namespaces are disabled (user.max_user_namespaces=0); "
            "${{service.URL}} references fall back to IP URLs")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        Stackblaze(home=home, env={**os.environ, "STACKBLAZE_HOME": str(home)}).tear_down()
        shutil.rmtree(base, ignore_errors=True)
