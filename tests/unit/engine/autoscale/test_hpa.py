"""The HPA's arithmetic against the Kubernetes HPA's documented behaviour.

Sources: kubernetes/website content/en/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale.md
("Algorithm details": 200m/100m doubles, 50m/100m halves, within tolerance 0.1 nothing happens; "Scaling
policies": Pods 4/60s + Percent 10/60s from 80 replicas removes 8, then 10% of 72 = 7.2 "rounded up to 8",
Pods below 40; "Default behavior": up 4 pods or 100% per 15 s whichever is higher, no up window, down window
300 s taking the highest recommendation; "selectPolicy: Disabled"); KEDA's docs (concepts/scaling-deployments:
20 messages with a target of 5 give 4 replicas); and kubernetes/kubernetes
pkg/controller/podautoscaler/horizontal.go for what the docs leave out (a policy counts from the count at the
start of its period, added and removed events both; an event counts while strictly newer than the cutoff).
"""

from __future__ import annotations

import pytest

from stackblaze.engine.autoscale.hpa import (
    Recommendation,
    ScaleEvent,
    replicas_for_work,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)
from stackblaze.spec.autoscale import SCALE_DOWN, SCALE_UP, Direction, Policy

DOC_DOWN = Direction(window=300.0, policies=(Policy("pods", 4, 60.0), Policy("percent", 10, 60.0)))


@pytest.mark.parametrize(("work", "target", "current", "expected"), [
    (800, 100, 4, 8),    # 200 per replica for a target of 100: doubled
    (200, 100, 4, 2),    # 50 per replica: halved
    (420, 100, 4, 4),    # ratio 1.05: within tolerance, kept
    (360, 100, 4, 4),    # ratio 0.9 exactly: still within (the bounds are inclusive, as isWithin's)
    (440, 100, 4, 4),    # ratio 1.1 exactly: within
    (441, 100, 4, 5),    # ratio 1.1025: ceil(4.41)
    (20, 5, 1, 4),       # KEDA: 20 messages, target 5 -> 4 replicas, whatever the current count
    (20, 5, 9, 4),
    (0, 1, 3, 0),        # no work: the HPA recommends 0 (its minReplicas, >= 1, clamps it later)
])
def test_replicas_for_work_is_ceil_of_work_over_target_outside_tolerance(work: int, target: int, current: int,
                                                                          expected: int) -> None:
    assert replicas_for_work(work, target, current, 0.1)[0] == expected


def test_default_scale_up_is_four_pods_or_double_every_15s_whichever_is_higher() -> None:
    assert scale_up_limit(1, (), SCALE_UP, 100.0) == (5, Policy("pods", 4, 15.0))        # +4 beats x2
    assert scale_up_limit(10, (), SCALE_UP, 100.0) == (20, Policy("percent", 100, 15.0))  # x2 beats +4


def test_scale_up_counts_the_changes_made_in_the_period() -> None:
    went_up = (ScaleEvent(100.0, 4),)  # 1 -> 5 at t=100
    assert scale_up_limit(5, went_up, SCALE_UP, 110.0)[0] == 5   # the period's start count is 1: 5 at most
    assert scale_up_limit(5, went_up, SCALE_UP, 115.0)[0] == 10  # strictly older than 15 s: out, 5 -> 10 (x2)
    went_down = (ScaleEvent(100.0, -3),)  # 8 -> 5 in the period: a scale-up counts from 8
    assert scale_up_limit(5, went_down, SCALE_UP, 110.0)[0] == 16


def test_select_min_takes_the_policy_allowing_the_smallest_change() -> None:
    slow = Direction(0.0, (Policy("pods", 4, 15.0), Policy("percent", 100, 15.0)), select="min")
    assert scale_up_limit(10, (), slow, 0.0)[0] == 14
    assert scale_down_limit(80, (), Direction(300.0, DOC_DOWN.policies, select="min"), 0.0)[0] == 76


def test_select_disabled_stops_that_direction() -> None:
    assert scale_up_limit(3, (), Direction(0.0, SCALE_UP.policies, select="disabled"), 0.0) == (3, None)
    assert scale_down_limit(3, (), Direction(300.0, SCALE_DOWN.policies, select="disabled"), 0.0) == (3, None)


def test_documented_scale_down_policies_from_80_replicas() -> None:
    assert scale_down_limit(80, (), DOC_DOWN, 0.0) == (72, Policy("percent", 10, 60.0))  # 8 removed
    assert scale_down_limit(72, (ScaleEvent(0.0, -8),), DOC_DOWN, 30.0)[0] == 72   # same period: no more
    assert scale_down_limit(72, (ScaleEvent(0.0, -8),), DOC_DOWN, 60.0)[0] == 64    # 7.2 "rounded up to 8"
    assert scale_down_limit(30, (), DOC_DOWN, 0.0) == (26, Policy("pods", 4, 60.0))  # below 40: Pods wins


def test_default_scale_down_may_remove_everything_in_one_period() -> None:
    assert scale_down_limit(8, (), SCALE_DOWN, 0.0)[0] == 0


def test_scale_down_window_takes_the_highest_recommendation_in_the_window() -> None:
    recs = (Recommendation(0.0, 10), Recommendation(100.0, 6))
    assert stabilize(recs, 3, 10, 250.0, up_window=0.0, down_window=300.0) == 10
    assert stabilize(recs, 3, 10, 300.0, up_window=0.0, down_window=300.0) == 6  # t=0 is no longer newer
    assert stabilize(recs, 3, 10, 400.0, up_window=0.0, down_window=300.0) == 3
    # a rolling max never raises the count: it only holds a shrink
    assert stabilize(recs, 3, 4, 250.0, up_window=0.0, down_window=300.0) == 4


def test_scale_up_window_takes_the_lowest_recommendation_in_the_window() -> None:
    recs = (Recommendation(0.0, 2), Recommendation(10.0, 9))
    assert stabilize(recs, 9, 2, 20.0, up_window=30.0, down_window=300.0) == 2   # a 2 was seen: no rise
    assert stabilize(recs, 9, 2, 31.0, up_window=30.0, down_window=300.0) == 9
    assert stabilize((), 9, 2, 0.0, up_window=0.0, down_window=300.0) == 9       # window 0: at once
