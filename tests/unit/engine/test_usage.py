"""Reading a replica's CPU and memory from real files laid out as this machine has them (Debian bookworm on a
hybrid cgroup host: cgroup v2 at /sys/fs/cgroup/unified without a memory controller, v1 memory beside it),
written to a temporary directory that stands for /proc and /sys/fs/cgroup."""

from __future__ import annotations

from pathlib import Path

from stackblaze.engine.local.sampler import Sampler, Target
from stackblaze.engine.local.usage import CLOCK_TICKS

KEY = "meters.leaker.1.0f3a9c2e"
OWN = "/process_api/a1a0a3802009c162ee6834b574cde89a"
# /proc/<pid>/stat of a `sleep` here, with the pid, command, pgid and CPU fields to be filled in.
STAT = ("{pid} ({comm}) {state} {ppid} {pgid} 27359 0 -1 4194304 140 0 1 0 {utime} {stime} {cutime} {cstime} "
        "20 0 1 0 1447367 2990080 402 18446744073709551615 94840933916672 94840933934601 140736665005776 0 0 0 0 "
        "6 0 1 0 0 17 0 0 0 0 0 0 94840933948688 94840933949952 94841056927744 140736665008841 140736665008851 "
        "140736665008851 140736665010153 0\n")
STATUS = ("Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{ppid}\n"
          "TracerPid:\t0\nVmPeak:\t    2920 kB\nVmSize:\t    2920 kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\n"
          "VmHWM:\t    {rss} kB\nVmRSS:\t    {rss} kB\nRssAnon:\t     108 kB\nRssFile:\t    1672 kB\n"
          "Threads:\t1\n")


def mounts(sys_root: Path) -> str:
    """This machine's cgroup lines of /proc/self/mounts, mounted under `sys_root` instead."""
    lines = ["tmpfs {r} tmpfs rw,relatime,mode=755 0 0"]
    lines += [f"cgroup {{r}}/{c} cgroup rw,relatime,{c} 0 0" for c in ("cpu", "cpuacct", "cpuset", "memory", "pids")]
    lines += ["cgroup {r}/systemd cgroup rw,relatime,name=systemd 0 0", "cgroup2 {r}/unified cgroup2 rw,relatime 0 0"]
    return "\n".join(line.format(r=sys_root) for line in lines) + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def process(proc: Path, pid: int, *, ppid: int, pgid: int, ticks: tuple[int, int, int, int] = (0, 0, 0, 0),
            rss_kb: int = 1780, cgroup: str = "0::/\n", comm: str = "sleep", state: str = "S") -> None:
    utime, stime, cutime, cstime = ticks
    write(proc / str(pid) / "stat", STAT.format(pid=pid, comm=comm, state=state, ppid=ppid, pgid=pgid, utime=utime,
                                                stime=stime, cutime=cutime, cstime=cstime))
    write(proc / str(pid) / "status", STATUS.format(pid=pid, ppid=ppid, rss=rss_kb))
    write(proc / str(pid) / "cgroup", cgroup)


def replica_cgroup(key: str) -> str:
    """/proc/<pid>/cgroup of a replica the runner put in its own v2 group and v1 memory group."""
    runner = "stackblaze-af31ae6c-28330"
    return (f"9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:{OWN}/{runner}/{key}\n"
            f"3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/{runner}/{key}\n")


def sampler(proc: Path, targets: list[Target]) -> Sampler:
    return Sampler(targets=lambda: targets, sink=None, scale=1.0, proc_root=str(proc))


def test_cgroup_files_give_cpu_percent_over_the_interval_and_memory_bytes(tmp_path: Path) -> None:
    """v2 cpu.stat's usage_usec for CPU and v1 memory.usage_in_bytes for memory (no memory.current where
    v2 has no memory controller): 0.5 s of CPU in 2 s of wall time is 25%."""
    proc, sys_root = tmp_path / "proc", tmp_path / "sys"
    write(proc / "self" / "mounts", mounts(sys_root))
    process(proc, 4242, ppid=1, pgid=4242, cgroup=replica_cgroup(KEY), ticks=(900, 900, 0, 0), rss_kb=1)
    v2 = sys_root / "unified" / "stackblaze-af31ae6c-28330" / KEY
    memory = sys_root / "memory" / OWN.lstrip("/") / "stackblaze-af31ae6c-28330" / KEY
    write(v2 / "cpu.stat", "usage_usec 1019038\nuser_usec 1007093\nsystem_usec 11945\nnice_usec 0\n"
                           "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n")
    write(memory / "memory.usage_in_bytes", "50593792\n")
    target = Target("meters", "leaker", 1, KEY, 4242, started_at=1000.0)
    meter = sampler(proc, [target])

    _, readings = meter.read([target])
    first = meter.record([target], 1004.0, readings)
    assert first[0]["memory"] == 50593792  # the group's figure, not the tree's VmRSS (1 kB here)
    assert round(first[0]["cpu"] or 0, 2) == round(1.019038 / 4.0 * 100, 2)  # since it started: 25.48%

    write(v2 / "cpu.stat", "usage_usec 1519038\nuser_usec 1500000\nsystem_usec 19038\nnice_usec 0\n")
    write(memory / "memory.usage_in_bytes", "103022592\n")
    _, readings = meter.read([target])
    second = meter.record([target], 1006.0, readings)
    assert second == [{"project": "meters", "service": "leaker", "replica": 1, "at": 1006.0, "cpu": 25.0,
                       "memory": 103022592}]
    assert meter.figures(KEY) == (25.0, 103022592)  # what `ps` shows


def test_without_a_group_of_its_own_the_process_tree_is_summed(tmp_path: Path) -> None:
    """No replica group (cgroups off): the main process, its group and its descendants (one in a session
    of its own) are summed from stat and status; a zombie, the daemon's group and a stranger are not."""
    proc = tmp_path / "proc"
    write(proc / "self" / "mounts", mounts(tmp_path / "sys"))
    daemon_group = f"4:memory:{OWN}\n0::/\n"  # shared with the daemon: says nothing of the replica
    process(proc, 500, ppid=1, pgid=500, ticks=(100, 20, 30, 0), rss_kb=10_000, cgroup=daemon_group,
            comm="python3 (worker) x")  # a command with spaces and parentheses
    process(proc, 501, ppid=500, pgid=500, ticks=(40, 10, 0, 0), rss_kb=20_000)
    process(proc, 502, ppid=501, pgid=502, ticks=(0, 0, 0, 0), rss_kb=5_000)  # called setsid()
    process(proc, 503, ppid=500, pgid=500, ticks=(999, 999, 0, 0), rss_kb=999_999, state="Z")
    process(proc, 600, ppid=1, pgid=600, ticks=(5000, 0, 0, 0), rss_kb=777_000)
    target = Target("meters", "sleeper", 1, KEY, 500, started_at=0.0)
    meter = sampler(proc, [target])

    _, readings = meter.read([target])
    reading = readings[KEY]
    assert reading.memory == (10_000 + 20_000 + 5_000) * 1024
    assert reading.cpu_seconds == (100 + 20 + 30 + 40 + 10) / CLOCK_TICKS

    process(proc, 500, ppid=1, pgid=500, ticks=(100, 20, 30, 0), rss_kb=10_000, cgroup=daemon_group)
    (proc / "501" / "stat").unlink()  # a child exited and was not reaped by the replica: its time is gone
    _, readings = meter.read([target])
    meter.record([target], 10.0, {KEY: reading})
    meter.record([target], 20.0, readings)
    assert meter.figures(KEY)[0] == 0.0  # idle, never negative


def test_a_replica_that_is_gone_is_not_sampled_and_is_forgotten(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    write(proc / "self" / "mounts", mounts(tmp_path / "sys"))
    process(proc, 700, ppid=1, pgid=700, rss_kb=2_000)
    alive = Target("meters", "sleeper", 1, "k1", 700, started_at=0.0)
    gone = Target("meters", "sleeper", 2, "k2", 701, started_at=0.0)
    meter = sampler(proc, [alive, gone])
    now, readings = meter.read([alive, gone])
    assert [s["replica"] for s in meter.record([alive, gone], now, readings)] == [1]
    meter.record([], now + 1, {})
    assert meter.figures("k1") == (None, None)
