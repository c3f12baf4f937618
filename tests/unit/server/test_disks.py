"""server/disks.py on real files: a disk's directory made 0700 for the workers' user and handed over when that
user changes, its size counted as `du` counts it, and `ps` never waiting on a big disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stackblaze.server.disks import DiskUsage, desired_disk, measure, prepare_disk
from stackblaze.server.worker_user import WorkerUser
from stackblaze.settings import Settings, load_settings

NOBODY = WorkerUser(uid=65534, gid=65534, groups=(65534,), name="nobody", home="/nonexistent")
SPEC = {"disk": {"name": "data", "mount_path": "/var/data", "size": "1Gi"}}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=str(tmp_path / "home"), time_scale="1")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (CI runs as root)")
def test_the_disk_belongs_to_the_workers_user_and_follows_a_change_of_user(settings: Settings) -> None:
    path = prepare_disk(settings, "acme", "data", user=NOBODY, gid=65534)
    assert path == settings.home / "disks" / "acme" / "data"
    info = path.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (65534, 65534, 0o700)
    # The worker group may traverse down to it (STACKBLAZE_DISK_PATH), and list nothing on the way.
    assert (path.parent.stat().st_mode & 0o777, path.parent.stat().st_gid) == (0o710, 65534)
    (path / "sub").mkdir()
    (path / "sub" / "kept.txt").write_text("written before the change")
    prepare_disk(settings, "acme", "data", user=None, gid=None)  # workers now run as the daemon (root)
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (path, path / "sub", path / "sub" / "kept.txt")} == {(0, 0)}
    assert (path / "sub" / "kept.txt").read_text() == "written before the change"


def test_desired_carries_the_directory_locally_and_none_on_a_cluster(settings: Settings) -> None:
    local = desired_disk(settings, "acme", SPEC, user=None, gid=None, remote=False)
    assert local == {**SPEC["disk"], "path": str(settings.home / "disks" / "acme" / "data")}
    assert Path(local["path"]).is_dir()
    assert desired_disk(settings, "acme@prod", SPEC, user=None, gid=None, remote=True) == {**SPEC["disk"], "path": None}
    assert not (settings.home / "disks" / "acme@prod").exists()
    assert desired_disk(settings, "acme", {"disk": None}, user=None, gid=None, remote=False) is None


def test_measure_counts_blocks_once_per_inode_and_no_symlink_target(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    (disk / "a" / "b").mkdir(parents=True)
    empty = measure(disk)
    (disk / "a" / "b" / "big").write_bytes(os.urandom(1 << 20))
    os.link(disk / "a" / "b" / "big", disk / "hard")  # the same blocks again: counted once, as du does
    outside = tmp_path / "outside"
    outside.write_bytes(os.urandom(1 << 20))
    (disk / "link").symlink_to(outside)
    used = measure(disk)
    assert used is not None and empty is not None
    assert (1 << 20) <= used - empty < (1 << 20) + 64 * 1024


def test_ps_shows_a_big_disk_from_a_thread_and_a_small_one_at_once(settings: Settings, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for index in range(2000):
        (big / f"f{index}").write_bytes(b"x")
    usage = DiskUsage(settings, budget=0.0)  # nothing may be measured inline: the thread does it
    assert usage.used(big) == (None, None)
    measured = None
    deadline = time.monotonic() + 20
    while measured is None and time.monotonic() < deadline:
        measured, _ = usage.used(big)
        time.sleep(0.01)
    assert measured == measure(big)
    (big / "more").write_bytes(os.urandom(1 << 20))
    assert usage.used(big)[0] == measured  # within the TTL: the cached figure, no new walk

    small = tmp_path / "small"
    small.mkdir()
    (small / "one").write_bytes(os.urandom(8192))
    found, at = DiskUsage(settings).used(small)
    assert found == measure(small) and at is not None and at <= time.time()
