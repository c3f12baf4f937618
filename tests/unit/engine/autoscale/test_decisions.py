"""The decision log: a bounded ring, a JSON-lines file that comes back after a restart, and the one-line
rendering `stackblaze autoscale why SERVICE` prints (newest first, inputs and the rule)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from stackblaze.engine.autoscale.decide import LoopState, decide
from stackblaze.engine.autoscale.decisions import Decision, DecisionLog, explain
from stackblaze.engine.autoscale.work import ReadError, Work
from stackblaze.spec.autoscale import Autoscale, Queues

SPEC = Autoscale(min=0, max=8, queues=Queues("rq", "redis://127.0.0.1:6379/0", ("default",)))
T0 = 1_000_000.0


def decisions(count: int) -> list[Decision]:
    """`count` real decisions: a wake, then scale-ups under a growing backlog."""
    out, state, current = [], LoopState(), 0
    for i in range(count):
        reading = Work(ready=20 * i + 3, due=0, in_flight=current, oldest_age=float(i), warnings=())
        decision, state = decide(SPEC, state, reading, current=current, target=1, now=T0 + 5 * i)
        out.append(decision)
        current = decision.desired
    return out


def test_the_ring_keeps_the_last_ones_newest_first() -> None:
    log = DecisionLog(keep=3)
    made = decisions(5)
    for d in made:
        log.append(d)
    assert log.last() == made[:1:-1][:3] == [made[4], made[3], made[2]]
    assert log.last(1) == [made[4]]


def test_the_file_brings_the_log_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "worker.decisions.jsonl"
    log = DecisionLog(keep=10, path=path)
    made = decisions(4)
    for d in made:
        log.append(d)
    with path.open("a") as out:
        out.write('{"at": 1000020.0, "curr')  # a crash in the middle of a write
    again = DecisionLog.read(path, keep=10)
    assert again.last() == log.last()
    assert explain(again.last()) == explain(log.last())


def test_trim_keeps_the_file_bounded(tmp_path: Path) -> None:
    path = tmp_path / "worker.decisions.jsonl"
    log = DecisionLog(keep=2, path=path)
    for d in decisions(6):
        log.append(d)
    log.trim(max_bytes=100)
    assert len(path.read_text().splitlines()) == 2
    assert DecisionLog.read(path).last() == log.last()


def test_explain_says_inputs_and_rule_on_one_line_each() -> None:
    made = decisions(2)
    error, _ = decide(SPEC, LoopState(failures=1), ReadError("cannot read redis://127.0.0.1:6379/0: refused"),
                      current=5, target=1, now=T0 + 10)
    lines = explain([error, made[1], made[0]])
    clock = datetime.fromtimestamp(T0).strftime("%H:%M:%S")
    assert lines[2] == (f"{clock}  0 -> 1  wake: 3 ready > activation 0, going to 1  "
                        "[ready 3, due 0, in flight 0, oldest 0s, current 0, target 1/replica]")
    assert "1 -> 5  scale-up limited by policy pods=4/15s: 24 wanted, 5 allowed" in lines[1]
    assert lines[0].endswith("5 -> 5  held: broker unreachable (2/3 failures)  "
                             "[current 5, read failed: cannot read redis://127.0.0.1:6379/0: refused]")
    assert all("\n" not in line for line in lines)


def test_warnings_of_the_read_are_shown() -> None:
    reading = Work(ready=0, due=0, in_flight=0, oldest_age=None,
                   warnings=("rq:queue:defualt is missing (no such queue yet?)",))
    d, _ = decide(SPEC, LoopState(), reading, current=0, target=1, now=T0)
    assert explain([d])[0].endswith("warnings: rq:queue:defualt is missing (no such queue yet?)]")
