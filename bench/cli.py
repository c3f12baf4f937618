"""CLI start-up: `stackblaze --help` and `stackblaze ps` against a running daemon, side by side with
`supervisorctl` and `pm2` doing the same against their running supervisors, in one run.

    python bench/cli.py            # 20 runs of each command, interleaved; medians, ratios, the goals
    python bench/cli.py --why      # also: which imports `stackblaze ps` spends its time in

Each supervisor runs 2 copies of `sleep 100000` (the same set-up as bench/compare.py, whose peers this
reuses). Every run's output is checked (both replicas listed as running, both programs RUNNING / online):
a command that answered wrongly gets no time, and the script exits 1. The goals (median of 20 runs on
this machine: `--help` <= 150 ms, `ps` <= 250 ms) are printed as met or missed; `--strict` exits 1 on a
miss.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from compare_peers import BIN, PM2, Peer, Program, Stackblaze, Supervisord
from compare_procs import TRACKER, live_children, wait_for

PROGRAM = Program(name="w", argv=["sleep", "100000"], count=2)
GOALS_MS = {"stackblaze --help": 150.0, "stackblaze ps": 250.0}


@dataclass
class Command:
    label: str
    argv: list[str]
    env: dict[str, str]
    check: Callable[[str], bool]  # is this output a right answer?
    compared_to: str | None = None  # the stackblaze command it is the peer's equivalent of
    times: list[float] = field(default_factory=list)
    wrong: str | None = None  # the first wrong answer, if any

    def run_once(self) -> None:
        started = time.perf_counter()
        proc = subprocess.run(self.argv, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
        elapsed = time.perf_counter() - started
        answer = proc.stdout + proc.stderr
        if proc.returncode != 0 or not self.check(proc.stdout):
            self.wrong = self.wrong or f"exit {proc.returncode}: {answer.strip()[-300:]}"
        else:
            self.times.append(elapsed * 1000)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    parser.add_argument("--why", action="store_true", help="print where `stackblaze ps` spends its imports")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    return parser.parse_args()


def start(peer: Peer, work: Path) -> None:
    """Start the supervisor, have it run PROGRAM, and wait until both children live."""
    peer.start(work, PROGRAM)
    request = peer.request()
    if request.wait(timeout=120) != 0:
        said = (work / "request.out").read_text(errors="replace").strip()[-800:]
        raise RuntimeError(f"{peer.name}: starting the program failed:\n{said}")
    wait_for(f"{peer.name}'s 2 children", lambda: len(live_children(peer.parent_pid())) == PROGRAM.count, 60)


def stackblaze_commands(peer: Stackblaze) -> list[Command]:
    env = {**os.environ, "STACKBLAZE_HOME": str(peer.home)}
    cli = str(BIN / "stackblaze")
    return [
        Command("stackblaze --help", [cli, "--help"], env, lambda out: out.startswith("Usage: stackblaze")),
        Command("stackblaze ps", [cli, "ps"], env,
                lambda out: out.count("running") >= PROGRAM.count and "w.1" in out and "w.2" in out),
    ]


def supervisord_commands(peer: Supervisord) -> list[Command]:
    ctl = [str(BIN / "supervisorctl"), "-c", str(peer.conf)]
    return [
        Command("supervisorctl --help", [*ctl, "--help"], dict(os.environ), lambda out: "supervisorctl" in out,
                compared_to="stackblaze --help"),
        Command("supervisorctl status", [*ctl, "status"], dict(os.environ),
                lambda out: out.count("RUNNING") == PROGRAM.count, compared_to="stackblaze ps"),
    ]


def pm2_commands(peer: PM2) -> list[Command]:
    env = {**os.environ, "PM2_HOME": str(peer.pm2_home)}

    def online(out: str) -> bool:
        return [app["pm2_env"]["status"] for app in json.loads(out)] == ["online"] * PROGRAM.count

    return [
        Command("pm2 --help", [str(peer.bin), "--help"], env, lambda out: "pm2" in out,
                compared_to="stackblaze --help"),
        Command("pm2 jlist", [str(peer.bin), "jlist"], env, online, compared_to="stackblaze ps"),
    ]


def why(peer: Stackblaze) -> None:
    """`python -X importtime`, summed by top-level package: what `stackblaze ps` spends its imports on."""
    env = {**os.environ, "STACKBLAZE_HOME": str(peer.home)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "stackblaze.cli", "ps"], env=env,
                          capture_output=True, text=True, timeout=60)
    by_package: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[0].split(":")[1].strip().isdigit():
            package = parts[2].strip().split(".")[0]
            by_package[package] = by_package.get(package, 0) + int(parts[0].split(":")[1])
    print("\nimports of `stackblaze ps` by top-level package (self time, ms):")
    for package, micros in sorted(by_package.items(), key=lambda item: -item[1])[:12]:
        print(f"  {package:<24} {micros / 1000:7.1f}")
    print(f"  {'(all)':<24} {sum(by_package.values()) / 1000:7.1f}")


def report(commands: list[Command], runs: int) -> tuple[bool, bool]:
    """Print the table; return (every answer right, every goal met)."""
    medians = {c.label: statistics.median(c.times) for c in commands if c.times}
    print(f"\nmedian of {runs} runs, wall clock from exec to exit (ms); ratio = this command / stackblaze's")
    print(f"{'command':<24} {'median':>8} {'min':>8} {'max':>8}  ratio / goal")
    right = True
    met = True
    for c in commands:
        if c.wrong is not None:
            right = False
            print(f"{c.label:<24} {'-':>8} {'-':>8} {'-':>8}  WRONG ANSWER: {c.wrong}")
            continue
        note = ""
        if c.compared_to in medians:
            note = f"{medians[c.label] / medians[c.compared_to]:.2f}x {c.compared_to}"
        if c.label in GOALS_MS:
            ok = medians[c.label] <= GOALS_MS[c.label]
            met = met and ok
            note = f"goal <= {GOALS_MS[c.label]:.0f} ms: {'met' if ok else 'MISSED'}"
        print(f"{c.label:<24} {medians[c.label]:8.1f} {min(c.times):8.1f} {max(c.times):8.1f}  {note}")
    return right, met


def main() -> int:
    args = parse_args()
    peers: list[Peer] = [Stackblaze(), Supervisord(), PM2()]
    commands = [Command("python -c pass", [sys.executable, "-c", "pass"], dict(os.environ), lambda out: True)]
    started: list[Peer] = []
    with tempfile.TemporaryDirectory(prefix="sb-bench-cli-") as tmp:
        os.chmod(tmp, 0o711)  # a root daemon's workers run as an unprivileged user: they must reach the home
        try:
            for peer in peers:
                reason = peer.unavailable()
                if reason is not None:
                    print(f"{peer.name}: skipped ({reason})")
                    continue
                work = Path(tmp) / peer.name
                work.mkdir()
                started.append(peer)
                start(peer, work)
                if isinstance(peer, Stackblaze):
                    commands += stackblaze_commands(peer)
                elif isinstance(peer, Supervisord):
                    commands += supervisord_commands(peer)
                elif isinstance(peer, PM2):
                    commands += pm2_commands(peer)
            for command in commands:  # warm the page cache and .pyc files: every command starts equal
                command.run_once()
                command.times.clear()
            for _ in range(args.runs):  # interleaved, so that a slow moment of the machine hits every command
                for command in commands:
                    command.run_once()
            right, met = report(commands, args.runs)
            if args.why and isinstance(peers[0], Stackblaze) and peers[0] in started:
                why(peers[0])
        finally:
            for peer in reversed(started):
                try:
                    peer.stop()
                except Exception as exc:  # the tracker kills what a failed stop left
                    print(f"{peer.name}: stop failed: {exc}")
            TRACKER.kill_all()
    if not right:
        print("\nA command answered wrongly: its time is not reported (exit 1).")
        return 1
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
