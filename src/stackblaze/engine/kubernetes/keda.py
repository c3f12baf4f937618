"""A worker's `autoscale:` as KEDA objects (keda.sh/v1alpha1): a ScaledObject that drives its Deployment, and
for RabbitMQ a TriggerAuthentication with the management URL in a Secret. Pure functions, as manifests.py.

Each queue kind maps to the KEDA trigger that counts what the local autoscaler counts (in-flight work too):
`rabbitmq` over the management API (protocol http counts unacknowledged messages; AMQP would not),
`nats-jetstream` (num_pending + num_ack_pending), and for the Redis-backed kinds (celery, rq, bullmq, dramatiq,
redis-list) a `metrics-api` trigger on the project's queue-metrics Service, which runs the same readers
(queue_metrics.py). The spec's defaults are the HPA's and KEDA's, so a worker scales the same on both engines.
"""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qs, urlsplit

from stackblaze.engine.kubernetes.manifests import Manifest, labels, object_name
from stackblaze.errors import UserError
from stackblaze.spec.autoscale import DEFAULT_TOLERANCE, Autoscale, Direction, Queues

API_VERSION = "keda.sh/v1alpha1"
CRD = "scaledobjects.keda.sh"
PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
FAILURE_THRESHOLD = 3  # as the local loop's (engine/autoscale/decide.py FAILURE_THRESHOLD)
MAX_WINDOW = 3600  # the HPA's limit on stabilizationWindowSeconds
# A per-replica target no queue reaches: ceil(value / NEVER_DRIVES) is 1 for any value above 0, so a trigger
# there only activates (metrics-api's wake and busy triggers) and never sizes.
NEVER_DRIVES = 1_000_000_000
NATS_ACCOUNT = "$G"  # NATS's global account: the one a server without accounts configured uses
_SELECT = {"max": "Max", "min": "Min", "disabled": "Disabled"}
_POLICY = {"pods": "Pods", "percent": "Percent"}


def auth_name(project: str, service: str) -> str:
    """The TriggerAuthentication (named as the Deployment) and its Secret `<project>-<service>-autoscale`."""
    return f"{object_name(project, service)}-autoscale"


def _seconds(value: float) -> int:
    return math.ceil(value)


def _direction(direction: Direction, tolerance: float, where: str) -> Manifest:
    window = _seconds(direction.window)
    if window > MAX_WINDOW:
        raise UserError(f"{where}.window: {direction.window:g}s is more than the HPA's limit of 1h "
                        f"(stabilizationWindowSeconds <= 3600) (e.g. window: 300s)")
    out: Manifest = {
        "stabilizationWindowSeconds": window,
        "selectPolicy": _SELECT[direction.select],
        "policies": [{"type": _POLICY[p.kind], "value": p.value, "periodSeconds": _seconds(p.period)}
                     for p in direction.policies],
    }
    if tolerance != DEFAULT_TOLERANCE:
        # behavior.*.tolerance is in KEDA's CRD (a quantity, int-or-string) and reaches the HPA, which honours it
        # with the HPAConfigurableTolerance gate (beta, on by default from Kubernetes 1.34). Left out at the
        # default: the cluster's own 10% applies then on every version.
        out["tolerance"] = f"{tolerance:g}"
    return out


def behavior(spec: Autoscale, where: str = "autoscale") -> Manifest:
    """advanced.horizontalPodAutoscalerConfig.behavior from scale_up / scale_down (the HPA's defaults when the
    spec gives none, written out so that the rendered object says what it does)."""
    return {"scaleUp": _direction(spec.scale_up, spec.tolerance, f"{where}.scale_up"),
            "scaleDown": _direction(spec.scale_down, spec.tolerance, f"{where}.scale_down")}


def _rabbitmq(queues: Queues, target: int, activation: int, auth: str) -> list[Manifest]:
    metadata = {"protocol": "http", "mode": "QueueLength", "value": str(target), "activationValue": str(activation)}
    if len(queues.names) == 1:
        metadata["queueName"] = queues.names[0]
    else:
        # One trigger over all the names, summed by the management API's own regex match (the HPA would take
        # the max of several triggers, not their sum).
        metadata |= {"queueName": "^(?:" + "|".join(re.escape(n) for n in queues.names) + ")$",
                     "useRegex": "true", "operation": "sum"}
    return [{"type": "rabbitmq", "name": "work", "metadata": metadata, "authenticationRef": {"name": auth}}]


def _nats(queues: Queues, target: int, activation: int, where: str) -> list[Manifest]:
    url = urlsplit(queues.url)
    if url.password or url.username:
        raise UserError(f"{where}.url: KEDA's nats-jetstream scaler reads the monitoring port without credentials: "
                        f"give the url without user and password (e.g. url: http://nats.internal:8222)")
    account = (parse_qs(url.query).get("acc") or [NATS_ACCOUNT])[0]
    triggers = []
    for index, name in enumerate(queues.names):
        stream, _, consumer = name.partition("/")
        metadata = {"natsServerMonitoringEndpoint": url.netloc, "account": account, "stream": stream,
                    "consumer": consumer, "lagThreshold": str(target), "activationLagThreshold": str(activation)}
        if url.scheme == "https":
            metadata["useHttps"] = "true"
        triggers.append({"type": "nats-jetstream", "name": f"q{index}", "metadata": metadata})
    return triggers


def _metrics_api(url: str, target: int, activation: int, *, latency: bool = False) -> list[Manifest]:
    """The queue-metrics server's answer as the local loop reads it. KEDA's metrics-api takes one valueLocation
    per trigger, the HPA sizes on the max over triggers, and the object is active (kept above 0, woken from 0)
    while any trigger is: so `work` (the poll's mean) sizes, `waiting` (ready + due of the latest single read)
    wakes from 0 at once when it is above `activation` (the local wake rule) with a target no count can reach
    (it asks for 1 replica at most, which the HPA's min already is), and with `activation` above 0 `in_flight`
    (the poll's mean) keeps a busy worker from being taken to 0 while the work is at most `activation` (locally
    N -> 0 needs no work at all for idle_after). With a `latency_slo`, `latency` (decide.latency_ratio: the
    local latency rule as a usage ratio) is a metricType Value trigger with target 1, which never activates: the
    HPA keeps the count for its 1.0 and adds a replica for its ratio past the tolerance. (KEDA before 2.17 refuses
    a `fallback` next to a Value trigger; 2.17 and later spread the fallback's count over the ready pods.)"""
    def trigger(name: str, location: str, target: int, activation: int) -> Manifest:
        return {"type": "metrics-api", "name": name, "metadata": {
            "url": url, "format": "json", "valueLocation": location, "targetValue": str(target),
            "activationTargetValue": str(activation)}}
    triggers = [trigger("work", "work", target, activation), trigger("wake", "waiting", NEVER_DRIVES, activation)]
    if activation > 0:
        triggers.append(trigger("busy", "in_flight", NEVER_DRIVES, 0))
    if latency:
        triggers.append(trigger("latency", "latency", 1, NEVER_DRIVES) | {"metricType": "Value"})
    return triggers


def scaled_object(project: str, service: str, namespace: str, spec: Autoscale, *, target: int,
                  metrics_url: str | None = None, paused: int | None = None, where: str = "autoscale") -> Manifest:
    """The ScaledObject of one worker. `target`: the work per replica (decide.resolve_target); `metrics_url`:
    the queue-metrics URL of this service (the metrics-api kinds); `paused`: a manual scale's count, which
    pauses autoscaling at that count (paused-replicas) until `scale --auto` takes the annotation away."""
    queues = spec.queues
    if "${{" in queues.url:
        raise ValueError(f"{where}.queues.url {queues.url!r} still holds a reference: expand it first")
    if queues.kind == "rabbitmq":
        triggers = _rabbitmq(queues, target, spec.activation, auth_name(project, service))
    elif queues.kind == "nats":
        triggers = _nats(queues, target, spec.activation, f"{where}.queues")
    else:
        assert metrics_url is not None, f"{queues.kind}: a metrics-api trigger needs the queue-metrics URL"
        triggers = _metrics_api(metrics_url, target, spec.activation, latency=spec.latency_slo is not None)
    object_spec: Manifest = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": object_name(project, service)},
        "minReplicaCount": spec.min,
        "maxReplicaCount": spec.max,
        "pollingInterval": max(1, _seconds(spec.poll)),  # KEDA's 0 <-> 1 look, as often as the local loop's
        "cooldownPeriod": _seconds(spec.idle_after),  # N -> 0 after no work for this long
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(spec, where)}},
        "triggers": triggers,
    }
    if queues.kind == "nats" and len(triggers) > 1:  # several NATS consumers: their sum is the work, as locally
        object_spec["advanced"]["scalingModifiers"] = {
            "formula": " + ".join(t["name"] for t in triggers), "target": str(target),
            "activationTarget": str(spec.activation), "metricType": "AverageValue"}
    if spec.fallback is not None:
        # After 3 failed reads in a row: at least `fallback` replicas, never fewer than are running (as locally).
        object_spec["fallback"] = {"failureThreshold": FAILURE_THRESHOLD, "replicas": spec.fallback,
                                   "behavior": "currentReplicasIfHigher"}
    metadata: Manifest = {"name": object_name(project, service), "namespace": namespace,
                          "labels": labels(project, service)}
    if paused is not None:
        metadata["annotations"] = {PAUSED_REPLICAS: str(paused)}
    return {"apiVersion": API_VERSION, "kind": "ScaledObject", "metadata": metadata, "spec": object_spec}


def rabbitmq_auth(project: str, service: str, namespace: str, url: str) -> list[Manifest]:
    """The Secret holding the management URL (it carries the password) and the TriggerAuthentication that hands
    it to the rabbitmq trigger as `host`: the ScaledObject itself, readable by more people, holds no password."""
    name = auth_name(project, service)
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": name, "namespace": namespace, "labels": labels(project, service)},
         "stringData": {"host": _without_amqp_port(url)}},
        {"apiVersion": API_VERSION, "kind": "TriggerAuthentication",
         "metadata": {"name": name, "namespace": namespace, "labels": labels(project, service)},
         "spec": {"secretTargetRef": [{"parameter": "host", "name": name, "key": "host"}]}},
    ]


def _without_amqp_port(url: str) -> str:
    """The management url without the `?amqp_port=` an earlier stackblaze read AMQP at (a url may still carry
    it; the local reader ignores it), which KEDA's http protocol has no use for."""
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("amqp_port="))
    return parts._replace(query=query).geturl()


def keda_objects(project: str, service: str, namespace: str, spec: Autoscale, *, target: int,
                 metrics_url: str | None = None, paused: int | None = None,
                 where: str = "autoscale") -> list[Manifest]:
    """What one autoscaled worker needs besides its Deployment, in apply order (the ScaledObject last: it
    refers to the others)."""
    before = rabbitmq_auth(project, service, namespace, spec.queues.url) if spec.queues.kind == "rabbitmq" else []
    return [*before, scaled_object(project, service, namespace, spec, target=target, metrics_url=metrics_url,
                                   paused=paused, where=where)]


def keda_names(project: str, service: str, spec: Autoscale | None) -> set[str]:
    """The names of the objects keda_objects makes for a service (what a prune keeps)."""
    if spec is None:
        return set()
    return {object_name(project, service)} | ({auth_name(project, service)} if spec.queues.kind == "rabbitmq"
                                              else set())


def missing_crd(kind: str) -> str:
    """The one line for a cluster without KEDA."""
    return (f"the cluster has no {kind} kind ({CRD if kind == 'ScaledObject' else 'keda.sh'} CRD): install KEDA "
            f"to autoscale workers (helm install keda kedacore/keda --namespace keda --create-namespace), then "
            f"deploy again")

