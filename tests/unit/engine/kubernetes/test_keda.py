"""engine/kubernetes/keda.py and autoscaling.py: an autoscaled worker's `autoscale:` as KEDA objects. Every
rendered ScaledObject and TriggerAuthentication validates against KEDA's own CRD schema (v2.20.2, vendored in
tests/k8s/crds, strict); each spec field lands where KEDA reads it; the spec's defaults are KEDA's and the HPA's;
the autoscaled Deployment has no spec.replicas; passwords stay in Secrets."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from stackblaze.build.queue_metrics_image import how_to_publish
from stackblaze.cli.render_k8s import queue_metrics_notes
from stackblaze.engine.autoscale.decide import kubernetes_notes
from stackblaze.engine.autoscale.metrics_server import Served, load_config
from stackblaze.engine.kubernetes.autoscaling import autoscale_for, queue_metrics_for
from stackblaze.engine.kubernetes.keda import PAUSED_REPLICAS
from stackblaze.engine.kubernetes.manifests import deployment_for, render_manifests
from stackblaze.engine.kubernetes.queue_metrics import QUEUE_METRICS_IMAGE
from stackblaze.engine.protocol import Desired
from stackblaze.errors import UserError
from stackblaze.spec import Project, load_project
from stackblaze.spec.autoscale import Queues, read_autoscale
from tests.k8s import keda_crd

K8S = "1.35.0"
QUEUES = {
    "celery": "{kind: celery, url: '${{cache.REDIS_URL}}/0', names: [celery, priority]}",
    "rq": "{kind: rq, url: 'redis://redis.example:6379/0', names: [default]}",
    "bullmq": "{kind: bullmq, url: '${{cache.REDIS_URL}}', names: [email]}",
    "dramatiq": "{kind: dramatiq, url: 'redis://redis.example:6379/0', names: [default]}",
    "redis-list": "{kind: redis-list, url: 'redis://redis.example:6379/0', names: [jobs]}",
    "rabbitmq": "{kind: rabbitmq, url: 'http://guest:mq-s3cret@mq.example:15672/%2F', names: [orders]}",
    "nats": "{kind: nats, url: 'http://nats.example:8222', names: [ORDERS/workers]}",
}


def load(tmp_path: Path, services: str, cache: str = "{name: cache, type: redis}") -> Project:
    """`services`: more entries of the services list, each line indented by two spaces."""
    (tmp_path / "stackblaze.yaml").write_text(f"project: shop\nservices:\n  - {cache}\n{services}",
                                              encoding="utf-8")
    return load_project(tmp_path)


def worker(kind: str, extra: str = "") -> str:
    """An autoscaled worker; `extra`: more fields of its autoscale block, one per line."""
    lines = "".join(f"      {line}\n" for line in textwrap.dedent(extra).splitlines() if line.strip())
    return (f"  - name: work\n    start: python -m work\n    env: {{WORKER_CONCURRENCY: \"4\"}}\n"
            f"    autoscale:\n      max: 8\n      queues: {QUEUES[kind]}\n{lines}")


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def scaled(tmp_path: Path, kind: str = "celery", extra: str = "") -> dict[str, Any]:
    [found] = of_kind(render_manifests(load(tmp_path, worker(kind, extra))), "ScaledObject")
    return found


@pytest.mark.parametrize("kind", list(QUEUES))
def test_every_kind_renders_keda_objects_valid_against_kedas_crd(tmp_path: Path, kind: str) -> None:
    manifests = render_manifests(load(tmp_path, worker(kind, """\
        min: 1
        tolerance: 0.05
        on_metric_error: fallback:2
        scale_down: {window: 60s, policies: [{pods: 1, period: 30s}, {percent: 50, period: 1m}], select: min}
        """)))
    keda = [m for m in manifests if m["apiVersion"] == "keda.sh/v1alpha1"]
    assert [m["kind"] for m in keda] == (["TriggerAuthentication", "ScaledObject"] if kind == "rabbitmq"
                                         else ["ScaledObject"])
    for manifest in keda:
        keda_crd.validate(manifest)
    for manifest in manifests:  # the rest, Secret and queue-metrics objects included, as ever
        if manifest["apiVersion"] != "keda.sh/v1alpha1":
            kubernetes_validate.validate(manifest, K8S, strict=True)


def test_the_crd_check_can_fail() -> None:
    """A misspelt field, a trigger without metadata, a string where KEDA wants an integer: each refused, so a
    passing check above means something."""
    good = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
            "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"type": "cpu", "metadata": {"value": "50"}}]}}
    keda_crd.validate(good)
    for path, value in ((("spec", "pollingInteval"), 5), (("spec", "triggers"), [{"type": "cpu"}]),
                        (("spec", "maxReplicaCount"), "8"), (("spec", "fallback"), {"replicas": 2})):
        bad = json.loads(json.dumps(good))
        bad[path[0]][path[1]] = value
        with pytest.raises(jsonschema.ValidationError):
            keda_crd.validate(bad)


def test_the_spec_fields_land_where_keda_reads_them(tmp_path: Path) -> None:
    whole = scaled(tmp_path, "celery", """\
        min: 2
        poll: 2500ms
        idle_after: 90s
        activation: 3
        target_per_replica: 10
        tolerance: 0.2
        on_metric_error: fallback:5
        scale_up: {window: 30s, policies: [{pods: 2, period: 20s}], select: disabled}
        scale_down: {window: 10m, policies: [{percent: 10, period: 1m}], select: min}
        """)
    keda_crd.validate(whole)
    found = whole["spec"]
    assert found["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-work"}
    assert (found["minReplicaCount"], found["maxReplicaCount"]) == (2, 8)
    assert (found["pollingInterval"], found["cooldownPeriod"]) == (3, 90)  # whole seconds, rounded up
    behavior = found["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"] == {"stabilizationWindowSeconds": 30, "selectPolicy": "Disabled", "tolerance": "0.2",
                                   "policies": [{"type": "Pods", "value": 2, "periodSeconds": 20}]}
    assert behavior["scaleDown"] == {"stabilizationWindowSeconds": 600, "selectPolicy": "Min", "tolerance": "0.2",
                                     "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}
    assert found["fallback"] == {"failureThreshold": 3, "replicas": 5, "behavior": "currentReplicasIfHigher"}
    url = "http://shop-queue-metrics.shop.svc:8080/metrics/work"
    # The poll's mean work sizes; the latest read's ready + due wakes from 0 above the activation; with an
    # activation above 0, work in flight keeps the worker above 0 (locally only W == 0 for idle_after takes it
    # to 0). The HPA takes the max over triggers: the two others ask for 1 replica at most.
    assert [(t["type"], t["name"], t["metadata"]) for t in found["triggers"]] == [
        ("metrics-api", "work", {"url": url, "format": "json", "valueLocation": "work", "targetValue": "10",
                                 "activationTargetValue": "3"}),
        ("metrics-api", "wake", {"url": url, "format": "json", "valueLocation": "waiting",
                                 "targetValue": "1000000000", "activationTargetValue": "3"}),
        ("metrics-api", "busy", {"url": url, "format": "json", "valueLocation": "in_flight",
                                 "targetValue": "1000000000", "activationTargetValue": "0"})]
    assert "scalingModifiers" not in found["advanced"]  # a formula would sum them: each trigger stands alone


def test_a_latency_slo_is_a_value_trigger_on_the_ratio_the_server_reports(tmp_path: Path) -> None:
    """latency_slo on a kind the queue-metrics server reads: a fourth metrics-api trigger, metricType Value with
    target 1 on `latency` (decide.latency_ratio: test_decide checks that the HPA then does what the local rule
    does), which never activates (the wake stays ready + due > activation); the server's config carries the slo
    and the tolerance the ratio must pass. On rabbitmq and nats, KEDA's own scalers read no age: no trigger, and
    render and deploy say so."""
    found = scaled(tmp_path, "rq", "latency_slo: 45s\ntolerance: 0.2")
    keda_crd.validate(found)
    url = "http://shop-queue-metrics.shop.svc:8080/metrics/work"
    assert found["spec"]["triggers"][-1] == {
        "type": "metrics-api", "name": "latency", "metricType": "Value", "metadata": {
            "url": url, "format": "json", "valueLocation": "latency", "targetValue": "1",
            "activationTargetValue": "1000000000"}}
    manifests = render_manifests(load(tmp_path, worker("rq", "latency_slo: 45s\ntolerance: 0.2")))
    [config] = [s for s in of_kind(manifests, "Secret") if s["metadata"]["name"] == "shop-queue-metrics"]
    assert load_config(config["stringData"]["queues.json"], "c")["work"] == Served(
        Queues("rq", "redis://redis.example:6379/0", ("default",)), poll=5.0, latency_slo=45.0, tolerance=0.2)
    assert "latency" not in {t["name"] for t in scaled(tmp_path, "rq")["spec"]["triggers"]}
    for kind in ("rabbitmq", "nats"):
        native = scaled(tmp_path, kind, "latency_slo: 45s")
        assert all(t["type"] != "metrics-api" for t in native["spec"]["triggers"]), kind
        project = load(tmp_path, worker(kind, "latency_slo: 45s"))
        assert kubernetes_notes(project) == [
            f"work: autoscale.latency_slo 45s has no effect on Kubernetes for {kind} queues (KEDA's own {kind} "
            f"trigger reads no job age); the local engine adds a replica while the oldest job is older than it"]
    assert kubernetes_notes(load(tmp_path, worker("rq", "latency_slo: 45s"))) == []


def test_a_bad_latency_slo_in_the_servers_config_is_one_line() -> None:
    for field, value, said in (("latency_slo", -3, "-3 is not a number of seconds above 0 (e.g. 30.0)"),
                               ("latency_slo", "soon", "'soon' is not a number of seconds (e.g. 30.0)"),
                               ("tolerance", 1.5, "1.5 is not a fraction from 0 to below 1 (e.g. 0.1)")):
        text = json.dumps({"services": {"work": {"kind": "rq", "url": "redis://r:6379/0", "names": ["default"],
                                                 field: value}}})
        with pytest.raises(SystemExit) as refused:
            load_config(text, "queues.json")
        assert str(refused.value) == f"queues.json: services.work.{field}: {said}"


def test_the_specs_defaults_are_kedas_and_the_hpas(tmp_path: Path) -> None:
    """KEDA: minReplicaCount 0, cooldownPeriod 300, no fallback; the HPA (autoscaling/v2 defaults.go): up after
    stackblaze's 10 s window (the HPA's is 0: spec/autoscale.py's SCALE_UP says why; written out, so the cluster
    does as the local loop), 4 pods or 100% per 15 s, the larger; down after a 300 s window, 100% per 15 s;
    the cluster's tolerance (so none written). pollingInterval is the spec's 5 s rather than KEDA's 30 s: wake
    from zero as fast as on the local engine."""
    found = scaled(tmp_path)["spec"]
    assert found["minReplicaCount"] == 0 and found["cooldownPeriod"] == 300 and "fallback" not in found
    assert found["pollingInterval"] == 5
    assert found["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 10, "selectPolicy": "Max", "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]},
        "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15}]}}
    # target_per_replica unset: the worker's concurrency, as locally; activation 0: KEDA's "at least one", and
    # then `work` > 0 already covers work in flight: no busy trigger
    work, wake = found["triggers"]
    assert work["metadata"]["targetValue"] == "4"
    assert work["metadata"]["activationTargetValue"] == "0"
    assert (wake["metadata"]["valueLocation"], wake["metadata"]["activationTargetValue"]) == ("waiting", "0")


def test_rabbitmq_is_read_over_http_and_its_password_stays_in_a_secret(tmp_path: Path) -> None:
    project = load(tmp_path, worker("rabbitmq", "activation: 2"))
    manifests = render_manifests(project)
    [found] = of_kind(manifests, "ScaledObject")
    [trigger] = found["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"] == {"protocol": "http", "mode": "QueueLength", "value": "4", "activationValue": "2",
                                   "queueName": "orders"}
    [auth] = of_kind(manifests, "TriggerAuthentication")
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    [ref] = auth["spec"]["secretTargetRef"]
    [secret] = [s for s in of_kind(manifests, "Secret") if s["metadata"]["name"] == ref["name"]]
    assert ref["parameter"] == "host" and secret["stringData"][ref["key"]] == (
        "http://guest:mq-s3cret@mq.example:15672/%2F")
    assert "mq-s3cret" not in json.dumps([m for m in manifests if m["kind"] != "Secret"])


def test_the_local_readers_amqp_port_is_not_handed_to_keda(tmp_path: Path) -> None:
    project = load(tmp_path, worker("rabbitmq").replace("/%2F'", "/%2F?amqp_port=5673'"))
    hosts = [s["stringData"]["host"] for s in of_kind(render_manifests(project), "Secret") if "host" in s["stringData"]]
    assert hosts == ["http://guest:mq-s3cret@mq.example:15672/%2F"]


def test_several_rabbitmq_queues_are_summed_by_one_regex_trigger(tmp_path: Path) -> None:
    project = load(tmp_path, worker("rabbitmq").replace("names: [orders]", "names: [orders, orders.retry]"))
    [trigger] = of_kind(render_manifests(project), "ScaledObject")[0]["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == r"^(?:orders|orders\.retry)$"
    assert (trigger["metadata"]["useRegex"], trigger["metadata"]["operation"]) == ("true", "sum")


def test_nats_consumers_map_to_nats_jetstream_summed_by_a_formula(tmp_path: Path) -> None:
    one = scaled(tmp_path, "nats", "activation: 1")["spec"]
    [trigger] = one["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"] == {"natsServerMonitoringEndpoint": "nats.example:8222", "account": "$G",
                                   "stream": "ORDERS", "consumer": "workers", "lagThreshold": "4",
                                   "activationLagThreshold": "1"}
    assert "scalingModifiers" not in one["advanced"]
    project = load(tmp_path, worker("nats").replace(
        "'http://nats.example:8222', names: [ORDERS/workers]",
        "'https://nats.example:8222?acc=APP', names: [ORDERS/workers, EVENTS/workers]"))
    two = of_kind(render_manifests(project), "ScaledObject")[0]["spec"]
    assert [(t["metadata"]["stream"], t["metadata"]["account"], t["metadata"]["useHttps"]) for t in two["triggers"]] \
        == [("ORDERS", "APP", "true"), ("EVENTS", "APP", "true")]
    assert two["advanced"]["scalingModifiers"] == {"formula": "q0 + q1", "target": "4", "activationTarget": "0",
                                                   "metricType": "AverageValue"}
    keda_crd.validate(of_kind(render_manifests(project), "ScaledObject")[0])


def test_the_autoscaled_deployment_has_no_replicas_and_the_others_keep_theirs(tmp_path: Path) -> None:
    project = load(tmp_path, worker("celery") + "  - {name: fixed, start: ./fixed, replicas: 3}\n")
    deployments = {d["metadata"]["name"]: d for d in of_kind(render_manifests(project), "Deployment")}
    assert "replicas" not in deployments["shop-work"]["spec"]
    assert deployments["shop-fixed"]["spec"]["replicas"] == 3
    assert deployments["shop-queue-metrics"]["spec"]["replicas"] == 1


def test_the_queue_metrics_server_is_rendered_only_for_the_kinds_keda_cannot_count(tmp_path: Path) -> None:
    manifests = render_manifests(load(tmp_path, worker("celery")))
    [config] = [s for s in of_kind(manifests, "Secret") if s["metadata"]["name"] == "shop-queue-metrics"]
    # What the server will read: the queues, the reference to the cache expanded to its in-cluster name
    assert load_config(config["stringData"]["queues.json"], "config") == {
        "work": Served(Queues("celery", "redis://cache.internal:6379/0", ("celery", "priority")), poll=5.0)}
    [service] = [s for s in of_kind(manifests, "Service") if s["metadata"]["name"] == "shop-queue-metrics"]
    [deployment] = [d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"] == "shop-queue-metrics"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "-m", "stackblaze.engine.autoscale.metrics_server"]
    # Each worker's poll is the span the server takes its mean over (KEDA's pollingInterval for that worker)
    two = render_manifests(load(tmp_path, worker("celery", "poll: 2500ms")
                                + worker("rq").replace("name: work", "name: mails")))
    [config] = [s for s in of_kind(two, "Secret") if s["metadata"]["name"] == "shop-queue-metrics"]
    assert {name: served.poll for name, served in load_config(config["stringData"]["queues.json"], "c").items()} \
        == {"work": 2.5, "mails": 5.0}
    for kind in ("rabbitmq", "nats"):
        others = render_manifests(load(tmp_path, worker(kind)))
        assert not [m for m in others if "queue-metrics" in m["metadata"]["name"]], kind


def test_a_password_made_at_deploy_cannot_be_rendered_into_the_queue_url(tmp_path: Path) -> None:
    project = load(tmp_path, worker("celery"), cache="{name: cache, type: redis, auth: password}")
    with pytest.raises(UserError, match=r"services.work.autoscale.queues url: .*exists only once deployed"):
        render_manifests(project)


def test_a_service_named_queue_metrics_is_refused_in_one_line(tmp_path: Path) -> None:
    project = load(tmp_path, worker("rq") + "  - {name: queue-metrics, start: ./m}\n")
    with pytest.raises(UserError, match=r"^service queue-metrics: .*rename the service") as refused:
        render_manifests(project)
    assert "\n" not in str(refused.value)


def test_a_window_past_the_hpas_hour_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"scale_down.window: 7200s is more than the HPA's limit of 1h"):
        scaled(tmp_path, "rq", "scale_down: {window: 2h}")


def test_nats_credentials_are_refused_since_keda_cannot_send_them(tmp_path: Path) -> None:
    project = load(tmp_path, worker("nats").replace("http://nats.example", "http://u:p@nats.example"))
    with pytest.raises(UserError, match="without credentials"):
        render_manifests(project)


def _desired(**changes: Any) -> Desired:
    fields: dict[str, Any] = dict(
        project="shop@prod", service="work", replicas=2, release=3, cwd="/", start="python -m work",
        env={"WORKER_CONCURRENCY": "5"}, stop_signal=15, shutdown_grace=30.0, strategy="rolling", config="abc",
        app="shop", namespace="jobs", image="registry.local/shop-work@sha256:" + "0" * 64,
        autoscale=read_autoscale({"max": 6, "queues": {"kind": "rq", "url": "redis://10.0.0.7:6379/0",
                                                        "names": ["default"]}}, lambda key: key))
    fields.update(changes)
    return Desired(**fields)


def test_the_engines_objects_follow_the_desired_and_a_manual_scale_pauses_keda() -> None:
    desired = _desired()
    assert "replicas" not in deployment_for(desired)["spec"]
    assert deployment_for(_desired(autoscale=None))["spec"]["replicas"] == 2
    [found] = autoscale_for(desired)
    keda_crd.validate(found)
    assert found["metadata"]["namespace"] == "jobs" and "annotations" not in found["metadata"]
    assert found["spec"]["triggers"][0]["metadata"]["targetValue"] == "5"  # the Desired's env's concurrency
    assert found["spec"]["triggers"][0]["metadata"]["url"] == "http://shop-queue-metrics.jobs.svc:8080/metrics/work"
    [paused] = autoscale_for(_desired(autoscale_paused=3))
    assert paused["metadata"]["annotations"] == {PAUSED_REPLICAS: "3"}
    keda_crd.validate(paused)
    assert autoscale_for(_desired(autoscale=None)) == []
    aliases = [{"ip": "10.0.0.9", "hostnames": ["cache.internal"]}]
    objects = queue_metrics_for([desired, _desired(service="fixed", autoscale=None)], aliases)
    # rq has a busy source: the server may write its pods' deletion costs (pod_access.py, test_pod_access.py)
    assert [m["kind"] for m in objects] == ["ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment",
                                            "Service"]
    assert objects[4]["spec"]["template"]["spec"]["hostAliases"] == aliases
    # the image: the name form until a deploy pushed it, then by digest (what the deploy put in the Desired)
    assert objects[4]["spec"]["template"]["spec"]["containers"][0]["image"] == QUEUE_METRICS_IMAGE
    pushed = "127.0.0.1:5000/acme/stackblaze-queue-metrics@sha256:" + "b" * 64
    pinned = queue_metrics_for([_desired(queue_metrics_image=pushed), desired], aliases)
    assert pinned[4]["spec"]["template"]["spec"]["containers"][0]["image"] == pushed
    assert queue_metrics_notes(objects) == [how_to_publish(QUEUE_METRICS_IMAGE)]  # render k8s says how to make it
    assert "stackblaze queue-metrics image --registry" in how_to_publish(QUEUE_METRICS_IMAGE)
    assert list(json.loads(objects[3]["stringData"]["queues.json"])["services"]) == ["work"]
    for manifest in objects:
        kubernetes_validate.validate(manifest, K8S, strict=True)
    assert queue_metrics_for([_desired(autoscale=None)], aliases) == []
