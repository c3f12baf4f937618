"""The autoscaler's control loop as one pure function: a reading of the work and the current count in, a
decision and the next state out. The caller owns the clock, the reads, the replicas and the state.

One evaluation is KEDA's two phases in one place: at 0 replicas the activation step (wake when ready + due >
activation), from 1 up the HPA (hpa.py), and N -> 0 directly once the work has been 0 for `idle_after`
(KEDA's cooldownPeriod, which bypasses the HPA's window). Read errors hold the count; after
FAILURE_THRESHOLD in a row a configured fallback applies as KEDA's `behavior: currentReplicasIfHigher`.

One addition to the HPA, the settling poll: a scale-down the window allows is held for one poll and made at the
next if that poll allows the same count ("down-settling"). The window's max falls in steps as the
recommendations that held it leave, and after a backlog those are consecutive polls' (10, 9, 7): the HPA makes a
change at each step, this waits until the steps stop and makes one. It costs a scale-down one poll; with no
scale-down window (`window: 0s`, "scale down at once") nothing waits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from stackblaze.engine.autoscale.decisions import Decision, Fact, Rule
from stackblaze.engine.autoscale.hpa import (
    Recommendation,
    ScaleEvent,
    extreme_in_window,
    keep_events,
    keep_recommendations,
    replicas_for_work,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)
from stackblaze.engine.autoscale.sampling import MeanWork
from stackblaze.spec.autoscale import KEDA_NATIVE_KINDS, Autoscale, Policy
from stackblaze.spec.model import Project

FAILURE_THRESHOLD = 3  # KEDA's fallback.failureThreshold as the spec maps it (research §4.6)
# Where a worker's concurrency is read when target_per_replica is not set, first match wins. The DESIGN's own
# example sets WORKER_CONCURRENCY; the Celery names are the ones Django-style settings read from the env.
CONCURRENCY_NAMES = ("WORKER_CONCURRENCY", "CELERY_WORKER_CONCURRENCY", "CELERYD_CONCURRENCY")


class WorkLike(Protocol):
    """What one poll read: counts over the service's queues, one read's (the readers' `Work`) or the mean of
    the poll's reads (sampling.py's `MeanWork`, which is why they may be fractions)."""

    @property
    def ready(self) -> float: ...
    @property
    def due(self) -> float: ...
    @property
    def in_flight(self) -> float: ...
    @property
    def oldest_age(self) -> float | None: ...
    @property
    def warnings(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Pause:
    """A manual `scale` stopped autoscaling: who, when, to how many. `scale --auto` resumes."""

    by: str
    since: float
    replicas: int


@dataclass(frozen=True)
class LoopState:
    """Everything decide() remembers between polls; persist it (to_dict) so a daemon restart keeps the
    windows, the policies' periods, the idle clock, the failure count and a pause."""

    recommendations: tuple[Recommendation, ...] = ()
    events: tuple[ScaleEvent, ...] = ()
    idle_since: float | None = None  # since when the work has been 0 in every reading (None: not idle)
    failures: int = 0  # consecutive failed reads
    paused: Pause | None = None
    settling: Recommendation | None = None  # a scale-down seen at the last poll, not yet made (_settle)

    def to_dict(self) -> dict[str, object]:
        return {"recommendations": [[r.at, r.replicas] for r in self.recommendations],
                "events": [[e.at, e.change] for e in self.events], "idle_since": self.idle_since,
                "failures": self.failures,
                "settling": None if self.settling is None else [self.settling.at, self.settling.replicas],
                "paused": None if self.paused is None else
                {"by": self.paused.by, "since": self.paused.since, "replicas": self.paused.replicas}}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LoopState:
        recs, events, paused = data.get("recommendations") or [], data.get("events") or [], data.get("paused")
        idle, failures = data.get("idle_since"), data.get("failures", 0)
        assert isinstance(recs, list) and isinstance(events, list) and isinstance(failures, int)
        assert idle is None or isinstance(idle, int | float)
        pause, settling = None, data.get("settling")
        if isinstance(paused, dict):
            pause = Pause(str(paused["by"]), float(paused["since"]), int(paused["replicas"]))
        return cls(tuple(Recommendation(float(at), int(n)) for at, n in recs),
                   tuple(ScaleEvent(float(at), int(n)) for at, n in events), idle, failures, pause,
                   Recommendation(float(settling[0]), int(settling[1])) if isinstance(settling, list) else None)


def start(current: int, now: float) -> LoopState:
    """The state of a loop that has no saved one (first deploy, or the saved state was lost): `current` is
    taken as a recommendation made now, so a restart can never shrink faster than the scale-down window."""
    return LoopState(recommendations=(Recommendation(now, current),))


def pause(state: LoopState, *, by: str, replicas: int, now: float) -> LoopState:
    """A manual `scale --replicas N`: decide() holds whatever count the engine has until `resume`."""
    return replace(state, paused=Pause(by, now, replicas))


def resume(state: LoopState, *, current: int, now: float) -> LoopState:
    """`scale --auto`: the loop takes over from the hand-set count, which counts as a recommendation made now
    (as `start` does), so it is not undone before the scale-down window has seen the work. The idle clock starts
    again: a paused loop does not follow the work, so an idle_since from before the pause would take busy
    hand-set replicas to zero at the first empty read."""
    return replace(state, paused=None, idle_since=None,
                   recommendations=(*state.recommendations, Recommendation(now, current)))


def default_target(env: Mapping[str, str]) -> tuple[int, str]:
    """The work one replica takes with no backlog: its concurrency, from the first of CONCURRENCY_NAMES that
    holds a whole number >= 1, else 1 (RQ and a plain loop take one job at a time); and where it came from."""
    for name in CONCURRENCY_NAMES:
        value = env.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value), f"{name}={value}"
    return 1, "default 1 (no " + " / ".join(CONCURRENCY_NAMES) + ")"


def resolve_target(spec: Autoscale, env: Mapping[str, str]) -> tuple[int, str]:
    if spec.target_per_replica is not None:
        return spec.target_per_replica, "target_per_replica"
    return default_target(env)


def count_for_deploy(spec: Autoscale, current: int | None) -> int:
    """How many replicas a deploy runs: the autoscaled count it finds, kept within the (maybe new) bounds; on
    a first deploy max(1, min), so the deploy proves the release starts (idle_after takes it to 0 later)."""
    if current is None:
        return max(1, spec.min)
    return min(max(current, spec.min), spec.max)


# The latency trigger's ratio above the tolerance: what the metric reports, rounded as KEDA's milli-quantities are.
LATENCY_MARGIN = 0.01


def latency_ratio(slo: float | None, age: float | None, tolerance: float) -> float:
    """The latency rule of _hpa (one more replica while the oldest job is older than `slo`, no shrink while it is
    older than half of it) as a number the HPA can act on: the queue-metrics server reports it (`latency`) to a
    metricType Value trigger with target 1 (keda.py), so it is the usage ratio itself. The HPA proposes the count
    unchanged for a ratio within the tolerance (1.0: the block) and ceil(ratio × ready pods) beyond it (just
    past the tolerance: one more below 1 / tolerance replicas, about tolerance × N more from there), and sizes on
    the max over the triggers, as _hpa takes the work's count when that is higher. 0: the rule does not apply."""
    if slo is None or age is None or age <= slo / 2:
        return 0.0
    if age > slo:
        return round(1.0 + tolerance + LATENCY_MARGIN, 3)
    return 1.0


def kubernetes_notes(project: Project) -> list[str]:
    """What of a worker's `autoscale:` KEDA cannot say, one note per worker: `latency_slo` on rabbitmq and nats
    queues, whose triggers are KEDA's own scalers, which read no job age (on the other kinds the queue-metrics
    server reports latency_ratio)."""
    return [f"{service.name}: autoscale.latency_slo {service.autoscale.latency_slo:g}s has no effect on "
            f"Kubernetes for {service.autoscale.queues.kind} queues (KEDA's own {service.autoscale.queues.kind} "
            f"trigger reads no job age); the local engine adds a replica while the oldest job is older than it"
            for service in project.services
            if service.autoscale is not None and service.autoscale.latency_slo is not None
            and service.autoscale.queues.kind in KEDA_NATIVE_KINDS]


def _policy_facts(policy: Policy | None) -> dict[str, Fact]:
    if policy is None:
        return {}
    return {"policy_kind": policy.kind, "policy_value": policy.value, "policy_period": policy.period}


@dataclass(frozen=True)
class _Verdict:
    desired: int
    rule: Rule
    raw: int | None = None
    facts: Mapping[str, Fact] | None = None


def decide(spec: Autoscale, state: LoopState, reading: WorkLike | Exception, *, current: int, target: int,
           now: float) -> tuple[Decision, LoopState]:
    """One evaluation. `current`: the service's active (non-draining) replica count as the engine holds it,
    starting ones included (the HPA's scale.spec.replicas); `reading`: the poll's Work, or the ReadError.

    The contract for the engine integration: every `spec.poll` seconds (and at once on a push wake) read the
    queues, call decide() with `resolve_target(spec, env)[0]`, append the Decision to the service's
    DecisionLog and save `state.to_dict()` with the service (a restart reads it back, or calls `start`). When
    `desired != current`, apply it now: a change is counted against the policies' periods as made. A
    scale-down stops `choose_victims(..., current - desired, spec.scale_down.prefer)`, each leaving the desired
    set before it is signalled. A manual scale calls `pause`, `scale --auto` calls `resume`; a deploy runs
    `count_for_deploy(spec, current)` replicas and keeps the state."""
    settling, state = state.settling, replace(state, settling=None)  # only _hpa's hold keeps it
    if isinstance(reading, Exception):
        verdict, state = _on_error(spec, state, current, now, reading)
    elif state.paused is not None:
        verdict = _Verdict(current, "paused", facts={"by": state.paused.by, "since": state.paused.since,
                                                     "replicas": state.paused.replicas})
    else:
        verdict, state = _on_work(spec, state, reading, current, target, now, settling)
    decision = Decision(at=now, current=current, desired=verdict.desired, rule=verdict.rule, target=target,
                        raw=verdict.raw, facts=dict(verdict.facts or {}))
    if isinstance(reading, Exception):
        decision = replace(decision, error=str(reading) or type(reading).__name__)
    else:
        decision = replace(decision, ready=reading.ready, due=reading.due, in_flight=reading.in_flight,
                           oldest_age=reading.oldest_age, warnings=tuple(reading.warnings))
    return decision, state


def _record(state: LoopState, spec: Autoscale, now: float, current: int, desired: int) -> LoopState:
    """Keep a change the HPA made for the policies' periods (as storeScaleEvent does)."""
    events = keep_events(state.events, now, up=spec.scale_up, down=spec.scale_down)
    if desired != current:
        events = (*events, ScaleEvent(now, desired - current))
    return replace(state, events=events)


def _on_error(spec: Autoscale, state: LoopState, current: int, now: float, error: Exception
              ) -> tuple[_Verdict, LoopState]:
    # An unknown reading is not a reading of 0: the idle clock starts again, and nothing is recommended.
    failures = state.failures + 1
    state = replace(state, failures=failures, idle_since=None)
    facts: dict[str, Fact] = {"failures": failures, "threshold": FAILURE_THRESHOLD}
    if state.paused is not None:
        return _Verdict(current, "paused", facts={"by": state.paused.by, "since": state.paused.since,
                                                  "replicas": state.paused.replicas}), state
    if failures < FAILURE_THRESHOLD or spec.fallback is None:
        return _Verdict(current, "error-hold", facts=facts), state
    # KEDA's currentReplicasIfHigher: the fallback count, or the current one when that is higher (a broker
    # outage never shrinks the service). KEDA feeds it to the HPA as a metric, so the scale-up policies
    # still pace it; at 0 KEDA's executor sets it directly.
    to = max(current, spec.fallback)
    facts["to"] = to
    if current == 0:
        return _Verdict(to, "fallback", raw=to, facts=facts), state
    limit, policy = scale_up_limit(current, state.events, spec.scale_up, now)
    desired = min(to, limit, spec.max)
    facts.update(_policy_facts(policy))
    recs = keep_recommendations(state.recommendations, now, up_window=spec.scale_up.window,
                                down_window=spec.scale_down.window)
    state = replace(state, recommendations=(*recs, Recommendation(now, to)))
    return _Verdict(desired, "fallback", raw=to, facts=facts), _record(state, spec, now, current, desired)


def _on_work(spec: Autoscale, state: LoopState, work: WorkLike, current: int, target: int, now: float,
             settling: Recommendation | None = None) -> tuple[_Verdict, LoopState]:
    # rounded: three 2-decimal means may add up to 4.000000000000001, whose ceil is 5
    total = round(work.ready + work.due + work.in_flight, 6)
    # The poll's mean (sampling.py) knows how long its last reads found no work: the idle clock starts there,
    # and again there when a job came and went within the poll (the work was not 0 all along).
    zero_for = (work.zero_for if isinstance(work, MeanWork) else 0.0 if total == 0 else None)
    if zero_for is None:
        idle_since = None
    elif total == 0 and state.idle_since is not None:
        idle_since = state.idle_since
    else:
        idle_since = now - zero_for
    state = replace(state, failures=0, idle_since=idle_since)
    waiting = work.ready + work.due
    hpa_min = max(1, spec.min)  # KEDA gives the HPA min 1 when min is 0: the zero step is its own
    if current == 0:
        if spec.min >= 1:
            return _Verdict(spec.min, "below-min"), state
        facts: dict[str, Fact] = {"waiting": waiting, "activation": spec.activation}
        if waiting > spec.activation:
            return _Verdict(hpa_min, "wake", facts=facts), state
        return _Verdict(0, "asleep", facts=facts), state
    if current > spec.max or current < hpa_min:
        desired = spec.max if current > spec.max else hpa_min
        verdict = _Verdict(desired, "above-max" if current > spec.max else "below-min")
        return _to_zero(spec, verdict, state, total, current, now), _record(state, spec, now, current, desired)
    verdict, state = _hpa(spec, state, work, total, current, target, now, settling)
    return _to_zero(spec, verdict, state, total, current, now), state


def _to_zero(spec: Autoscale, verdict: _Verdict, state: LoopState, total: float, current: int, now: float
             ) -> _Verdict:
    if spec.min != 0 or state.idle_since is None:
        return verdict
    idle = now - state.idle_since
    if idle >= spec.idle_after:
        return replace(verdict, desired=0, rule="to-zero", facts={"idle": round(idle, 3)})
    if total == 0 and verdict.desired == current == 1:
        return replace(verdict, rule="idle-wait", facts={"idle": round(idle, 3), "idle_after": spec.idle_after})
    return verdict


def _hpa(spec: Autoscale, state: LoopState, work: WorkLike, total: float, current: int, target: int,
         now: float, settling: Recommendation | None = None) -> tuple[_Verdict, LoopState]:
    raw, ratio = replicas_for_work(total, target, current, spec.tolerance)
    # The oldest job's age lags the backlog (it keeps rising until the backlog clears), so it may only add
    # one replica, or hold a shrink while it is still high.
    latency: Rule | None = None
    slo, age = spec.latency_slo, work.oldest_age
    if slo is not None and age is not None and age > slo and raw <= current:
        raw, latency = current + 1, "latency-add"
    elif slo is not None and age is not None and age > slo / 2 and raw < current:
        raw, latency = current, "latency-block"
    up_window, down_window = spec.scale_up.window, spec.scale_down.window
    stabilized = stabilize(state.recommendations, raw, current, now, up_window=up_window, down_window=down_window)
    hpa_min = max(1, spec.min)
    facts: dict[str, Fact] = {"wanted": stabilized}
    rule: Rule | None = None
    hold: Recommendation | None = None
    if stabilized > current:
        limit, policy = scale_up_limit(current, state.events, spec.scale_up, now)
        desired = min(stabilized, limit, spec.max)
        if desired < stabilized:
            rule = "up-max" if spec.max <= limit else "up-disabled" if policy is None else "up-limited"
            facts.update(_policy_facts(policy) if rule == "up-limited" else {})
    elif stabilized < current:
        floor, policy = scale_down_limit(current, state.events, spec.scale_down, now)
        desired = max(stabilized, floor, hpa_min)
        if desired > stabilized:
            rule = "down-min" if hpa_min >= floor else "down-disabled" if policy is None else "down-limited"
            facts.update(_policy_facts(policy) if rule == "down-limited" else {})
        if desired < current and down_window > 0 and not _settled(settling, desired, now):
            # the settling poll (module docstring): hold, and make it at the next poll if that wants the same
            hold = Recommendation(now, desired)
            desired, rule, facts = current, "down-settling", {"to": hold.replicas, "window": down_window}
    else:
        desired = current
    if rule is None:
        if stabilized != raw:  # a window moved it
            highest = raw < stabilized
            window = down_window if highest else up_window
            seen = extreme_in_window(state.recommendations, now, window, highest=highest)
            rule = "down-stabilized" if highest else "up-stabilized"
            facts = {"window": window, "seen_at": None if seen is None else seen.at}
        elif latency is not None:
            rule = latency
            facts = {"age": round(age or 0.0, 3), "slo": slo, "half": None if slo is None else slo / 2,
                     "sized": math.ceil(total / target)}
        elif raw != current:
            rule, facts = ("up" if raw > current else "down"), {}
        elif math.ceil(total / target) != current:
            rule, facts = "tolerance", {"tolerance": spec.tolerance, "ratio": round(ratio, 4)}
        else:
            rule, facts = "steady", {}
    recs = keep_recommendations(state.recommendations, now, up_window=up_window, down_window=down_window)
    state = replace(state, recommendations=(*recs, Recommendation(now, raw)),
                    settling=hold if rule == "down-settling" else None)
    return _Verdict(desired, rule, raw=raw, facts=facts), _record(state, spec, now, current, desired)


def _settled(settling: Recommendation | None, desired: int, now: float) -> bool:
    """Whether the last poll already wanted this scale-down to `desired` (and held for it)."""
    return settling is not None and settling.replicas == desired and settling.at < now
