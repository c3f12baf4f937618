"""The decision record of every autoscaler evaluation, a bounded log of them (memory ring + JSON lines), and
the renderer behind `stackblaze autoscale why SERVICE` — the only code that knows the words."""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

Rule = Literal[
    "paused", "error-hold", "fallback", "to-zero", "idle-wait", "wake", "asleep", "below-min", "above-max",
    "up", "down", "steady", "tolerance", "up-limited", "up-max", "up-disabled", "up-stabilized",
    "down-stabilized", "down-limited", "down-min", "down-disabled", "down-settling", "latency-add",
    "latency-block",
]
RULES: tuple[Rule, ...] = get_args(Rule)
Fact = int | float | str | None


@dataclass(frozen=True)
class Decision:
    """One evaluation: its inputs, the unstabilized recommendation, the rule that fired and the count it gave.

    `raw` is None when no recommendation was computed (paused, a read error, at zero). `facts` hold the
    numbers the rule names (window, policy, failures, ...), so that `explain` can say it in words."""

    at: float
    current: int
    desired: int
    rule: Rule
    target: int
    ready: float | None = None  # a mean over the poll's reads (sampling.py), or one read's count
    due: float | None = None
    in_flight: float | None = None
    oldest_age: float | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    raw: int | None = None
    facts: Mapping[str, Fact] = field(default_factory=dict)

    @property
    def work(self) -> float | None:
        if self.ready is None or self.due is None or self.in_flight is None:
            return None
        return self.ready + self.due + self.in_flight

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        data["facts"] = dict(self.facts)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Decision:
        rule = data["rule"]
        if rule not in RULES:
            raise ValueError(f"decision: unknown rule {rule!r}")
        facts = data.get("facts") or {}
        warnings = data.get("warnings") or []
        assert isinstance(facts, dict) and isinstance(warnings, list)
        return cls(
            at=float(_number(data["at"])), current=int(_number(data["current"])),
            desired=int(_number(data["desired"])), rule=rule, target=int(_number(data["target"])),
            ready=_maybe_number(data.get("ready")), due=_maybe_number(data.get("due")),
            in_flight=_maybe_number(data.get("in_flight")),
            oldest_age=None if data.get("oldest_age") is None else float(_number(data["oldest_age"])),
            warnings=tuple(str(w) for w in warnings),
            error=None if data.get("error") is None else str(data["error"]), raw=_maybe_int(data.get("raw")),
            facts={str(k): v for k, v in facts.items()},
        )


def _number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"decision: {value!r} is not a number")
    return value


def _maybe_int(value: object) -> int | None:
    return None if value is None else int(_number(value))


def _maybe_number(value: object) -> int | float | None:
    return None if value is None else _number(value)


class DecisionLog:
    """The last `keep` decisions of one service in memory, and each one appended to a JSON-lines file when
    a path is given (the integration chooses where; `read` brings the file back after a daemon restart)."""

    def __init__(self, keep: int = 200, path: Path | None = None) -> None:
        self._ring: deque[Decision] = deque(maxlen=keep)
        self._path = path

    def append(self, decision: Decision) -> None:
        self._ring.append(decision)
        if self._path is not None:
            with self._path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(decision.to_dict(), separators=(",", ":")) + "\n")

    def last(self, count: int | None = None) -> list[Decision]:
        """Newest first."""
        items = list(reversed(self._ring))
        return items if count is None else items[:count]

    @classmethod
    def read(cls, path: Path, keep: int = 200) -> DecisionLog:
        """The log of `path` with its last `keep` records in memory; a torn last line (a crash mid-write) is
        skipped."""
        log = cls(keep, path)
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        log._ring.append(Decision.from_dict(json.loads(line)))
                    except (ValueError, KeyError, AssertionError):
                        continue
        return log

    def trim(self, max_bytes: int) -> None:
        """Rewrite the file with only the records in memory once it passes `max_bytes` (rename over, so a
        reader sees the old file or the new one)."""
        if self._path is None or not self._path.exists() or self._path.stat().st_size <= max_bytes:
            return
        fresh = self._path.with_name(self._path.name + ".tmp")
        with fresh.open("w", encoding="utf-8") as out:
            for decision in self._ring:
                out.write(json.dumps(decision.to_dict(), separators=(",", ":")) + "\n")
        os.replace(fresh, self._path)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


def _s(seconds: Fact) -> str:
    """A duration as the spec writes it: 300s, 2.5s."""
    assert isinstance(seconds, int | float)
    return f"{seconds:g}s"


def _policy(f: Mapping[str, Fact]) -> str:
    """pods=4/15s, percent=100/15s: the spec's words for a policy."""
    return f"{f['policy_kind']}={f['policy_value']}/{_s(f['policy_period'])}"


def _n(count: float | None) -> str:
    """A count, or the mean of the poll's reads: 4, 4.3, 0 (never 4.0 or 4.300000001)."""
    if count is None:
        return "-"
    return str(int(count)) if float(count).is_integer() else f"{count:.2f}".rstrip("0")


def _inputs(d: Decision) -> str:
    if d.error is not None:
        return f"current {d.current}, read failed: {d.error}"
    parts = [f"ready {_n(d.ready)}", f"due {_n(d.due)}", f"in flight {_n(d.in_flight)}"]
    if d.oldest_age is not None:
        parts.append(f"oldest {d.oldest_age:.0f}s")
    parts += [f"current {d.current}", f"target {d.target}/replica"]
    if d.warnings:
        parts.append("warnings: " + "; ".join(d.warnings))
    return ", ".join(parts)


def reason(d: Decision) -> str:
    """The rule that fired, in plain words, and the push that asked for this evaluation (if one did)."""
    text = _rule_words(d)
    return text if d.facts.get("push") is None else f"{text} (push: {d.facts['push']})"


def _rule_words(d: Decision) -> str:
    f = d.facts
    work, raw = _n(d.work), d.raw
    sizing = f"work {work} / target {d.target} = {raw}"
    match d.rule:
        case "paused":
            return (f"paused: scaled by hand to {f['replicas']} by {f['by']} at {_clock(float(_number(f['since'])))}"
                    "; `scale --auto` resumes")
        case "error-hold":
            if int(_number(f["failures"])) < int(_number(f["threshold"])):
                return f"held: broker unreachable ({f['failures']}/{f['threshold']} failures)"
            return f"held: broker unreachable ({f['failures']} failures; on_metric_error: hold)"
        case "fallback":
            text = f"fallback: {f['failures']} failures, going to {f['to']}"
            if f.get("policy_kind") is not None and d.desired != f["to"]:
                text += f" (limited by policy {_policy(f)} to {d.desired} for now)"
            return text
        case "to-zero":
            return f"to zero: no work for {_s(f['idle'])}"
        case "idle-wait":
            return f"keep {d.desired}: no work for {_s(f['idle'])}, to zero after {_s(f['idle_after'])}"
        case "wake":
            return f"wake: {_n(_number(f['waiting']))} ready > activation {f['activation']}, going to {d.desired}"
        case "asleep":
            return f"stay at 0: {_n(_number(f['waiting']))} ready ≤ activation {f['activation']}"
        case "below-min":
            return f"below min: going to {d.desired}"
        case "above-max":
            return f"above max: going to {d.desired}"
        case "up":
            return f"scale up: {sizing}"
        case "down":
            return f"scale down: {sizing}"
        case "steady":
            return f"keep {d.desired}: {sizing}"
        case "tolerance":
            return (f"keep {d.desired}: work {work} is within tolerance {f['tolerance']:g} of {d.current} × "
                    f"{d.target} (ratio {f['ratio']:.2f})")
        case "up-limited":
            return f"scale-up limited by policy {_policy(f)}: {f['wanted']} wanted, {d.desired} allowed"
        case "up-max":
            return f"capped at max {d.desired}: {f['wanted']} wanted"
        case "up-disabled":
            return f"held: scale-up disabled (select: disabled), {f['wanted']} wanted"
        case "up-stabilized":
            return (f"held: scale-up stabilization window {_s(f['window'])} keeps {d.desired} "
                    f"(min seen at {_clock(float(_number(f['seen_at'])))})")
        case "down-stabilized":
            return (f"held: scale-down stabilization window {_s(f['window'])} keeps {d.desired} "
                    f"(max seen at {_clock(float(_number(f['seen_at'])))})")
        case "down-limited":
            return f"scale-down limited by policy {_policy(f)}: {f['wanted']} wanted, {d.desired} allowed"
        case "down-settling":
            return (f"held one poll: the scale-down window {_s(f['window'])} now allows {f['to']}; going there at "
                    f"the next poll if it still does")
        case "down-min":
            return f"held at min {d.desired}: {f['wanted']} wanted"
        case "down-disabled":
            return f"held: scale-down disabled (select: disabled), {f['wanted']} wanted"
        case "latency-add":
            return f"one more: oldest job {_s(f['age'])} > latency_slo {_s(f['slo'])}"
        case "latency-block":
            return (f"held: oldest job {_s(f['age'])} > latency_slo/2 {_s(f['half'])} blocks scale-down "
                    f"(work {work} / target {d.target} = {f['sized']})")


def explain(decisions: Iterable[Decision]) -> list[str]:
    """One line per decision, in the order given (pass `DecisionLog.last()`: newest first):
    `12:01:03  6 -> 6  held: scale-down stabilization window 300s keeps 6 (...)  [ready 0, due 0, ...]`."""
    return [f"{_clock(d.at)}  {d.current} -> {d.desired}  {reason(d)}  [{_inputs(d)}]" for d in decisions]
