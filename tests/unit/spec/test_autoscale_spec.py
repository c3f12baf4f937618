"""`autoscale:` as the spec reads it: the HPA's and KEDA's defaults, and one-line errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stackblaze.spec.autoscale import FIELDS

from .spec_dir import SpecDir

HEAD = "project: acme\nservices:\n  - name: cache\n    type: redis\n  - name: worker\n    start: celery -A app worker\n"


def test_defaults_are_the_hpa_and_keda_ones(spec_dir: SpecDir) -> None:
    """The HPA's and KEDA's, but poll 5 s and scale_up.window 10 s (spec/autoscale.py says why)."""
    spec_dir.write(HEAD + "    autoscale: {max: 8, queues: {kind: celery, url: '${{cache.REDIS_URL}}/0'}}\n")
    scale = spec_dir.load().services[1].autoscale
    assert scale is not None
    assert scale.to_dict() == {
        "min": 0, "max": 8, "queues": {"kind": "celery", "url": "${{cache.REDIS_URL}}/0", "names": ["celery"]},
        "target_per_replica": None, "latency_slo": None, "poll": 5.0, "idle_after": 300.0, "activation": 0,
        "tolerance": 0.1,
        "scale_up": {"window": 10.0, "policies": [{"pods": 4, "period": 15.0}, {"percent": 100, "period": 15.0}],
                     "select": "max", "prefer": "idle"},
        "scale_down": {"window": 300.0, "policies": [{"percent": 100, "period": 15.0}], "select": "max",
                       "prefer": "idle"},
        "on_metric_error": "hold", "busy_probe": None}


def test_the_readmes_autoscale_block_loads_and_says_the_defaults(spec_dir: SpecDir) -> None:
    """The README's reference block of every `autoscale:` field: it loads, every field is in it, and apart from
    the three it sets for the example (target_per_replica, latency_slo, busy_probe) it says the defaults."""
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Every field of a worker's `autoscale:` block"):]
    block = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml"))]
    spec_dir.write(block.replace("services:\n", "project: acme\nservices:\n  - {name: cache, type: redis}\n", 1))
    documented = spec_dir.load().services[1].autoscale
    spec_dir.write(HEAD + "    autoscale: {max: 8, queues: {kind: celery, url: '${{cache.REDIS_URL}}/0'}}\n")
    defaults = spec_dir.load().services[1].autoscale
    assert documented is not None and defaults is not None
    assert set(FIELDS) <= {line.strip().split(":")[0] for line in block.splitlines()}
    assert replace(documented, target_per_replica=None, latency_slo=None, busy_probe=None) == defaults


def test_every_setting_is_read(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + """\
    autoscale:
      min: 1
      max: 20
      queues: {kind: nats, url: 'http://127.0.0.1:8222', names: [ORDERS/workers]}
      target_per_replica: 10
      latency_slo: 30s
      poll: 1s
      idle_after: 10s
      activation: 2
      tolerance: 0
      scale_up: {window: 5s, policies: [{pods: 2, period: 10s}], select: min}
      scale_down: {window: 1m, policies: [{pods: 1, period: 30s}], prefer: highest}
      on_metric_error: fallback:3
""")
    scale = spec_dir.load().services[1].autoscale
    assert scale is not None
    assert (scale.min, scale.max, scale.queues.names, scale.target_per_replica, scale.latency_slo, scale.poll,
            scale.idle_after, scale.activation, scale.tolerance, scale.fallback) == (
        1, 20, ("ORDERS/workers",), 10, 30.0, 1.0, 10.0, 2, 0.0, 3)
    assert scale.scale_up.to_dict() == {"window": 5.0, "policies": [{"pods": 2, "period": 10.0}], "select": "min",
                                        "prefer": "idle"}
    assert scale.scale_down.prefer == "highest" and scale.scale_down.window == 60.0


@pytest.mark.parametrize(("block", "message"), [
    ("{max: 8}", "stackblaze.yaml:7: services[1].autoscale.queues: missing (e.g. queues: {kind: celery, url: "
                 "${{cache.REDIS_URL}}, names: [celery]})"),
    ("{max: 2, min: 3, queues: {kind: rq, url: 'redis://x', names: [default]}}",
     "stackblaze.yaml:7: services[1].autoscale.max: 2 is less than min (3) (e.g. max: 8)"),
    ("{max: 8, queues: {kind: sidekiqq, url: 'redis://x'}}",
     "stackblaze.yaml:7: services[1].autoscale.queues.kind: 'sidekiqq' is not a queue kind (one of celery, rq, "
     "bullmq, dramatiq, rabbitmq, nats, redis-list)"),
    ("{max: 8, queues: {kind: rabbitmq, url: 'amqp://mq:5672', names: [jobs]}}",
     "stackblaze.yaml:7: services[1].autoscale.queues.url: 'amqp://mq:5672' is not a rabbitmq URL (e.g. url: "
     "http://guest:guest@mq.internal:15672/%2F  (the management API: it counts unacked messages))"),
    ("{max: 8, queues: {kind: celery, url: '${{cach.REDIS_URL}}'}}",
     "stackblaze.yaml:7: services[1].autoscale.queues.url: ${{cach.REDIS_URL}} names no redis or postgres service "
     "of the project (did you mean cache?)"),
    ("{max: 8, on_metric_error: fallback:9, queues: {kind: rq, url: 'redis://x', names: [q]}}",
     "stackblaze.yaml:7: services[1].autoscale.on_metric_error: 'fallback:9' is not hold or fallback:N with N from "
     "min to max (e.g. on_metric_error: fallback:1)"),
    ("{max: 8, scale_down: {prefer: busy}, queues: {kind: rq, url: 'redis://x', names: [q]}}",
     "stackblaze.yaml:7: services[1].autoscale.scale_down.prefer: 'busy' is not idle or highest (idle: stop idle "
     "replicas first; e.g. prefer: idle)"),
])
def test_a_bad_block_is_one_line_naming_the_field(spec_dir: SpecDir, block: str, message: str) -> None:
    spec_dir.write(HEAD + f"    autoscale: {block}\n")
    assert spec_dir.error() == message
