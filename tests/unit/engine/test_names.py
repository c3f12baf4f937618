"""The project's hosts file (engine/names.py) on real files, and the words mountns.explain gives a blocked
kernel. The sysctl readings in the reason tests are injected: this machine allows user namespaces, so the
Ubuntu/AppArmor and kernel.unprivileged_userns_clone cases cannot happen here for real (the integration
test makes user.max_user_namespaces=0 happen for real, in a user namespace of its own)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from stackblaze.engine.local.mountns import explain
from stackblaze.engine.names import MARK, HostsFile, hosts_path

HOST = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# a comment\n192.168.1.5 printer"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    path = tmp_path / "etc-hosts"
    path.write_text(HOST)
    return path


def test_the_file_is_the_hosts_copy_then_the_names(tmp_path: Path, host: Path) -> None:
    hosts = HostsFile(tmp_path / "hosts" / "acme", source=host)
    assert hosts.sync({"db.internal": "127.77.0.2", "cache.internal": "127.77.0.1"})
    text = hosts.path.read_text()
    assert text == HOST + "\n" + MARK + "127.77.0.1 cache.internal\n127.77.0.2 db.internal\n"
    assert os.stat(hosts.path).st_mode & 0o777 == 0o644
    assert hosts.entries() == {"cache.internal": "127.77.0.1", "db.internal": "127.77.0.2"}
    assert host.read_text() == HOST  # the host's file is only read


def test_an_added_name_is_appended_to_the_same_inode(tmp_path: Path, host: Path) -> None:
    hosts = HostsFile(tmp_path / "hosts", source=host)
    hosts.sync({"cache.internal": "127.77.0.1"})
    before = os.stat(hosts.path)
    old = hosts.path.read_bytes()
    assert hosts.sync({"cache.internal": "127.77.0.1", "queue.internal": "127.77.0.3"})
    after = os.stat(hosts.path)
    assert after.st_ino == before.st_ino
    assert hosts.path.read_bytes() == old + b"127.77.0.3 queue.internal\n"
    assert not hosts.sync({"cache.internal": "127.77.0.1", "queue.internal": "127.77.0.3"})  # nothing to do
    assert os.stat(hosts.path).st_mtime_ns == after.st_mtime_ns


def test_a_removed_name_or_a_changed_host_file_rewrites_in_place(tmp_path: Path, host: Path) -> None:
    hosts = HostsFile(tmp_path / "hosts", source=host)
    hosts.sync({"cache.internal": "127.77.0.1", "queue.internal": "127.77.0.3"})
    inode = os.stat(hosts.path).st_ino
    assert hosts.sync({"queue.internal": "127.77.0.3"})
    assert os.stat(hosts.path).st_ino == inode
    assert hosts.path.read_text() == HOST + "\n" + MARK + "127.77.0.3 queue.internal\n"
    host.write_text("127.0.0.1 localhost\n")  # shorter: the tail of the old text must not remain
    assert hosts.sync({"queue.internal": "127.77.0.3"})
    assert os.stat(hosts.path).st_ino == inode
    assert hosts.path.read_text() == "127.0.0.1 localhost\n" + MARK + "127.77.0.3 queue.internal\n"
    assert hosts.sync({"queue.internal": "127.77.0.9"})  # a moved address is a rewrite too
    assert hosts.entries() == {"queue.internal": "127.77.0.9"}


def test_a_hand_edited_block_is_repaired(tmp_path: Path, host: Path) -> None:
    hosts = HostsFile(tmp_path / "hosts", source=host)
    hosts.sync({"cache.internal": "127.77.0.1"})
    with open(hosts.path, "a") as file:
        file.write("10.0.0.1 evil.example\n")
    assert hosts.sync({"cache.internal": "127.77.0.1"})
    assert hosts.entries() == {"cache.internal": "127.77.0.1"}


@pytest.mark.parametrize(("name", "ip", "words"), [
    ("cache.internal", "::1", "not an IPv4 address"),
    ("cache.internal", "fd00::1", "not an IPv4 address"),
    ("cache.internal", "127.77.0", "not an IPv4 address"),
    ("cache", "127.77.0.1", "ending in .internal"),
    ("Cache.internal", "127.77.0.1", "lower-case"),
    ("cache.internal\n10.0.0.1 x.internal", "127.77.0.1", "ending in .internal"),
])
def test_only_ipv4_internal_names_are_written(tmp_path: Path, host: Path, name: str, ip: str, words: str) -> None:
    hosts = HostsFile(tmp_path / "hosts", source=host)
    with pytest.raises(ValueError, match=words):
        hosts.sync({name: ip})
    assert not hosts.path.exists()


def test_a_host_without_etc_hosts_still_gets_a_file(tmp_path: Path) -> None:
    hosts = HostsFile(tmp_path / "hosts", source=tmp_path / "absent")
    hosts.sync({"cache.internal": "127.77.0.1"})
    assert hosts.path.read_text() == MARK + "127.77.0.1 cache.internal\n"


def test_hosts_path_is_per_project_under_the_home(tmp_path: Path) -> None:
    assert hosts_path(tmp_path, "acme@prod") == tmp_path / "hosts" / "acme@prod"
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError, match="cannot name a file"):
            hosts_path(tmp_path, bad)


@pytest.mark.parametrize(("step", "err", "settings", "words"), [
    ("userns", errno.ENOSPC, {"user.max_user_namespaces": "0"},
     "unprivileged user namespaces are disabled (user.max_user_namespaces=0)"),
    ("userns", errno.ENOSPC, {"user.max_user_namespaces": "12"},
     "the limit of user namespaces is reached (user.max_user_namespaces=12)"),
    ("userns", errno.EPERM, {"kernel.unprivileged_userns_clone": "0"},
     "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)"),
    ("mount", errno.EPERM, {"kernel.apparmor_restrict_unprivileged_userns": "1"},
     "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)"),
    ("userns", errno.EPERM, {}, "creating a user namespace is not permitted here"),
    ("mountns", errno.EPERM, {}, "creating a mount namespace is not permitted (EPERM: the daemon lacks CAP_SYS_ADMIN"),
    ("mount", errno.ENOENT, {}, "mounting the project's hosts file over /etc/hosts failed: No such file or "
                                "directory (ENOENT)"),
])
def test_a_blocked_kernel_is_explained_in_words(step: str, err: int, settings: dict[str, str], words: str) -> None:
    assert explain(step, err, sysctl=settings.get).startswith(words)
