"""A worker's disk on the local engine: a real daemon and runner, a real worker writing to its disk at its
mount_path (a bind mount in the replica's own mount namespace) through a restart, a redeploy, a rollback and a
destroy without --disks; `scale` to 2 refused; `ps` showing what the disk holds; `destroy --disks` removing it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PRELUDE, Stackblaze, wait_for, write_project
from tests.integration.test_internal_names import NOBODY, nobody_runner, said, spawn
from tests.reliability.conftest import RunnerConnection

__all__ = ["nobody_runner"]  # the fixture, imported for pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a bind mount in the replica's mount namespace needs a "
                                "root runner (CI runs as root)")

WORKER = PRELUDE + """\
import json
mount = os.environ["MOUNT_AT"]
with open(os.path.join(mount, "lines.txt"), "a") as file:
    file.write(f"release {os.environ['STACKBLAZE_RELEASE']} pid {os.getpid()}\\n")
with open(os.path.join(mount, "lines.txt")) as file:
    count = len(file.read().splitlines())
mark(f"start-{count}", json.dumps({
    "count": count, "release": int(os.environ["STACKBLAZE_RELEASE"]), "pid": os.getpid(),
    # A bind mount from the same filesystem has the same st_dev: os.path.ismount cannot tell, mountinfo can.
    "mounted": any(line.split()[4] == mount for line in open("/proc/self/mountinfo")),
    "disk_path": os.environ.get("STACKBLAZE_DISK_PATH"),
}))
while True:
    time.sleep(1)
"""


def _project(tmp_path: Path, sb: Stackblaze, mount: Path, *, version: int = 1) -> Path:
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    spec = f"""\
project: diskapp
env:
  MARKERS: "{markers}"
  MOUNT_AT: "{mount}"
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: worker
    start: python3 -u worker.py
    shutdown_grace: 100s
    disk: {{name: data, mount_path: "{mount}", size: 2Gi}}
"""
    return write_project(tmp_path / "app", spec, {"worker.py": WORKER + f"# version {version}\n"})


def _started(tmp_path: Path, count: int) -> dict[str, Any]:
    """The report of the worker start that found `count` lines on its disk (its own included)."""
    path = tmp_path / "markers" / f"start-{count}"
    found = wait_for(f"a worker start that reads {count} lines from its disk", lambda: path.exists(), timeout=30)
    assert found
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_a_disk_keeps_what_the_worker_wrote(tmp_path: Path, sb: Stackblaze) -> None:
    mount = tmp_path / "mnt" / "data"  # not there: stackblaze makes the empty mount point
    app = _project(tmp_path, sb, mount)
    sb.run("deploy", str(app))
    disk = sb.home / "disks" / "diskapp" / "data"
    first = _started(tmp_path, 1)
    # What the worker wrote at its mount_path is in the disk's directory; the host's mount point stays empty.
    assert first["mounted"] is True and first["disk_path"] == str(disk)
    assert mount.is_dir() and os.listdir(mount) == []
    assert (disk / "lines.txt").read_text().count("\n") == 1
    assert (disk.stat().st_mode & 0o777) == 0o700
    assert sb.ps("worker")["services"][0]["strategy"] == "recreate"  # the disk's one writer at a time

    sb.run("restart", "worker", cwd=app)
    assert _started(tmp_path, 2)["release"] == 1

    app = _project(tmp_path, sb, mount, version=2)  # a new build: release 2
    sb.run("deploy", str(app))
    assert _started(tmp_path, 3)["release"] == 2

    sb.run("rollback", "worker", cwd=app)
    back = _started(tmp_path, 4)
    assert back["release"] == 1 and back["mounted"] is True
    assert os.listdir(mount) == []

    refused = sb.run("scale", "worker", "--replicas", "2", cwd=app, check=False)
    assert refused.code != 0
    assert "worker has a disk (data at " in refused.err and "runs at most 1" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert [r["state"] for r in sb.replicas("worker")] == ["running"]

    shown = wait_for("ps showing the disk's used bytes",
                     lambda: (sb.ps("worker")["services"][0].get("disk") or {}).get("used_bytes"))
    view = sb.ps("worker")["services"][0]["disk"]
    assert shown >= 4096 and view["size"] == "2Gi" and view["mount_path"] == str(mount)
    assert view["path"] == str(disk) and view["enforced"] is False
    assert "disk data at " in sb.run("ps", "worker", cwd=app).out

    sb.run("destroy", "--yes", cwd=app)
    assert (disk / "lines.txt").read_text().count("\n") == 4  # kept without --disks
    sb.run("deploy", str(app))  # the same project again: the same disk, five starts on it
    assert _started(tmp_path, 5)["release"] == 1
    sb.run("destroy", "--disks", "--yes", cwd=app)
    assert not disk.exists()


def test_a_non_root_runner_mounts_the_disk_where_it_may_and_says_why_where_it_may_not(
        nobody_runner: RunnerConnection) -> None:
    """A runner as uid 65534 (its replicas get a user namespace): a mount_path it can create is made and
    bind-mounted; one under /var/lib it cannot create leaves the replica running with one line on its stderr,
    its STACKBLAZE_DISK_PATH still writable."""
    runner = nobody_runner
    disk = runner.home / "disks" / "acme" / "data"
    disk.mkdir(parents=True)
    for path in (disk.parent.parent, disk.parent, disk):
        os.chown(path, NOBODY, NOBODY)
    reachable = runner.home / "mnt" / "data"
    script = 'echo "$(id -u) $1" > "$1/hello" && echo WROTE $(cat "$1/hello") && exec sleep 600'
    spawn(runner, "inside", ["sh", "-c", script, "sh", str(reachable)], None, env={"STACKBLAZE_DISK_PATH": str(disk)},
          binds=[{"source": str(disk), "target": str(reachable)}])
    wait_for("the replica to write at its mount_path", lambda: said(runner, "inside"))
    assert said(runner, "inside") == [f"WROTE {NOBODY} {reachable}"]
    assert (disk / "hello").read_text() == f"{NOBODY} {reachable}\n"  # through the bind mount, into the disk
    assert os.listdir(reachable) == [] and not said(runner, "inside", "stderr")

    blocked = Path("/var/lib") / f"sb-disk-test-{os.getpid()}"
    assert not blocked.exists()
    script = 'echo "$STACKBLAZE_DISK_PATH" && echo fallback > "$STACKBLAZE_DISK_PATH/fallback" && exec sleep 600'
    spawn(runner, "outside", ["sh", "-c", script], None, env={"STACKBLAZE_DISK_PATH": str(disk)},
          binds=[{"source": str(disk), "target": str(blocked)}])
    wait_for("the replica to run", lambda: said(runner, "outside"))
    assert said(runner, "outside", "stderr") == [
        f"stackblaze: the disk is not mounted at {blocked} in this replica ({blocked} does not exist and a daemon "
        "that is not root may not create it: Permission denied; create it as root): its files are at "
        "$STACKBLAZE_DISK_PATH"]
    wait_for("the fallback write", lambda: (disk / "fallback").exists())
    assert not blocked.exists()


def test_a_cron_run_writes_to_the_disk_at_its_mount_path(tmp_path: Path, sb: Stackblaze) -> None:
    """Cron runs are spawned by the scheduler (engine/local/cron.py), through the same spawn fields."""
    mount = tmp_path / "reports"
    spec = f"""\
project: cronapp
env:
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: nightly
    type: cron
    schedule: "0 3 1 1 *"
    start: sh -c 'echo "$STACKBLAZE_RUN $STACKBLAZE_DISK_PATH" >> {mount}/runs.txt'
    disk: {{mount_path: "{mount}"}}
"""
    app = write_project(tmp_path / "cronapp", spec)
    sb.run("deploy", str(app))
    disk = sb.home / "disks" / "cronapp" / "nightly"
    for number in (1, 2):
        sb.run("cron", "run", "nightly", cwd=app)
        wait_for(f"run {number} to write to the disk",
                 lambda n=number: (disk / "runs.txt").exists() and (disk / "runs.txt").read_text().count("\n") >= n)
    assert (disk / "runs.txt").read_text() == f"1 {disk}\n2 {disk}\n"
    assert os.listdir(mount) == []
