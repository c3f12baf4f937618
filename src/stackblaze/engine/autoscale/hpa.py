"""The HPA's arithmetic, as pure functions over plain numbers: replicas for a work count, the stabilization
windows and the scaling policies.

Transcribed from kubernetes/kubernetes pkg/controller/podautoscaler: replica_calculator.go
(GetExternalPerPodMetricReplicas, the AverageValue target a queue metric uses; GetExternalMetricReplicas, the
Value target of the latency trigger) and horizontal.go
(stabilizeRecommendationWithBehaviors, convertDesiredReplicasWithBehaviorRate,
calculateScaleUpLimitWithScalingRules, calculateScaleDownLimitWithBehaviors, getReplicasChangePerPeriod), so
that a worker scales here as it does under KEDA. Times are seconds on whatever clock the caller uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from stackblaze.spec.autoscale import Direction, Policy


@dataclass(frozen=True)
class Recommendation:
    """One evaluation's unstabilized count (what the HPA keeps in `recommendations[key]`)."""

    at: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A change the autoscaler made: `change` > 0 added replicas, < 0 removed them."""

    at: float
    change: int


def replicas_for_work(work: float, target: int, current: int, tolerance: float) -> tuple[int, float]:
    """`ceil(work / target)`, or `current` when work / (target × current) is within `tolerance` of 1; and that
    ratio. `current` must be at least 1 (at 0 the HPA does not run: KEDA's activation step decides)."""
    ratio = work / (target * current)
    if 1.0 - tolerance <= ratio <= 1.0 + tolerance:
        return current, ratio
    return math.ceil(work / target), ratio


def replicas_for_ratio(ratio: float, current: int, ready: int, tolerance: float) -> int:
    """A Value target's proposal (GetExternalMetricReplicas through getUsageRatioReplicaCount): `current` when
    `ratio` (the metric over its target) is within `tolerance` of 1, else `ceil(ratio × ready)`, the ready pods
    being what the metric is taken to be spread over; at 0 replicas `ceil(ratio)`."""
    if current == 0:
        return math.ceil(ratio)
    if abs(1.0 - ratio) <= tolerance:
        return current
    return math.ceil(ratio * ready)


def stabilize(recommendations: Sequence[Recommendation], raw: int, current: int, now: float, *,
              up_window: float, down_window: float) -> int:
    """The count the windows allow: up to the lowest recommendation of the up window (raw included), down
    to the highest of the down window (a rolling max). A recommendation counts when it is strictly newer
    than `now - window`, as `timestamp.After(cutoff)` does."""
    up = min([raw, *(r.replicas for r in recommendations if r.at > now - up_window)])
    down = max([raw, *(r.replicas for r in recommendations if r.at > now - down_window)])
    if current < up:
        return up
    if current > down:
        return down
    return current


def extreme_in_window(recommendations: Sequence[Recommendation], now: float, window: float, *, highest: bool
                      ) -> Recommendation | None:
    """The highest (or lowest) recommendation of the window, the newest of equals: what a held count rests on."""
    best: Recommendation | None = None
    for rec in recommendations:
        if rec.at > now - window and (best is None or (rec.replicas >= best.replicas if highest
                                                       else rec.replicas <= best.replicas)):
            best = rec
    return best


def keep_recommendations(recommendations: Sequence[Recommendation], now: float, *, up_window: float,
                         down_window: float) -> tuple[Recommendation, ...]:
    """Those that can still matter (the HPA reuses the slot of one older than both windows)."""
    cutoff = now - max(up_window, down_window)
    return tuple(rec for rec in recommendations if rec.at >= cutoff)


def _changed(events: Sequence[ScaleEvent], period: float, now: float) -> tuple[int, int]:
    added = sum(e.change for e in events if e.change > 0 and e.at > now - period)
    removed = sum(-e.change for e in events if e.change < 0 and e.at > now - period)
    return added, removed


def scale_up_limit(current: int, events: Sequence[ScaleEvent], direction: Direction, now: float
                   ) -> tuple[int, Policy | None]:
    """The most replicas the policies allow now, and the policy that allows it (None: select is disabled).

    Each policy counts from the count at the start of its period (current − added + removed in the period);
    `select: max` takes the policy allowing the largest change, `min` the smallest."""
    if direction.select == "disabled" or not direction.policies:
        return current, None
    best: tuple[int, Policy] | None = None
    for policy in direction.policies:
        added, removed = _changed(events, policy.period, now)
        start = current - added + removed
        # a percent is rounded up, or a small count could never grow
        proposed = start + policy.value if policy.kind == "pods" else math.ceil(start * (1 + policy.value / 100))
        if best is None or (proposed > best[0] if direction.select == "max" else proposed < best[0]):
            best = (proposed, policy)
    assert best is not None
    return max(best[0], current), best[1]  # below current: no scale-up until the period's events age out


def scale_down_limit(current: int, events: Sequence[ScaleEvent], direction: Direction, now: float
                     ) -> tuple[int, Policy | None]:
    """The fewest replicas the policies allow now, and the policy that allows it (None: select is disabled).

    `select: max` takes the policy allowing the largest change (the lowest count), `min` the smallest; a
    percent policy truncates, as int32(float) does."""
    if direction.select == "disabled" or not direction.policies:
        return current, None
    best: tuple[int, Policy] | None = None
    for policy in direction.policies:
        added, removed = _changed(events, policy.period, now)
        start = current - added + removed
        proposed = start - policy.value if policy.kind == "pods" else int(start * (1 - policy.value / 100))
        if best is None or (proposed < best[0] if direction.select == "max" else proposed > best[0]):
            best = (proposed, policy)
    assert best is not None
    return min(best[0], current), best[1]


def keep_events(events: Sequence[ScaleEvent], now: float, *, up: Direction, down: Direction) -> tuple[ScaleEvent, ...]:
    """Those inside the longest policy period of either direction (older ones can no longer limit anything)."""
    longest = max((p.period for p in (*up.policies, *down.policies)), default=0.0)
    return tuple(e for e in events if e.at > now - longest)
