"""What the daemon reads back of a stored `autoscale:` is what the spec said (every field, through the JSON
the services table keeps), and the replica numbers that fit a new count keep the ones that run."""

from __future__ import annotations

import json

import yaml

from stackblaze.server.autoscale_spec import autoscale_of, fit_indexes
from stackblaze.spec.autoscale import read_autoscale


def test_a_stored_autoscale_reads_back_equal_to_the_spec() -> None:
    raw = yaml.safe_load("""
min: 1
max: 6
queues: {kind: rq, url: "${{cache.REDIS_URL}}", names: [high, default]}
target_per_replica: 3
latency_slo: 30s
poll: 2s
idle_after: 60s
activation: 2
tolerance: 0.2
scale_up: {window: 10s, policies: [{pods: 2, period: 30s}], select: min}
scale_down: {window: 120s, policies: [{percent: 50, period: 60s}], prefer: highest}
on_metric_error: fallback:2
busy_probe: python -m app.busy
""")
    spec = read_autoscale(raw, lambda key: f"stackblaze.yaml:1: autoscale.{key}")
    stored = json.loads(json.dumps({"autoscale": spec.to_dict()}))
    assert autoscale_of(stored) == spec
    assert autoscale_of({"autoscale": None}) is None and autoscale_of({}) is None


def test_the_numbers_that_fit_a_count_keep_the_lowest_running_and_add_the_lowest_free() -> None:
    assert fit_indexes(None, 3) == (1, 2, 3)
    assert fit_indexes((2, 4), 3) == (1, 2, 4)
    assert fit_indexes((2, 4), 1) == (2,)
    assert fit_indexes((2, 4), 0) == ()
