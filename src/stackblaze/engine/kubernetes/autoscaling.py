"""An autoscaled worker's objects besides its Deployment, from the spec (render k8s) or from a Desired (the
engine): its KEDA objects (keda.py) and the project's queue-metrics server (queue_metrics.py) when a worker's
queues are of a kind KEDA cannot count itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from stackblaze.engine.autoscale.decide import resolve_target
from stackblaze.engine.kubernetes.keda import keda_objects
from stackblaze.engine.kubernetes.manifests import Manifest, _cluster_names, expand_offline, user_env
from stackblaze.engine.kubernetes.queue_metrics import (
    QUEUE_METRICS_IMAGE,
    check_no_clash,
    metrics_url,
    queue_metrics_manifests,
)
from stackblaze.engine.protocol import Desired
from stackblaze.spec.autoscale import METRICS_API_KINDS, Autoscale, Queues
from stackblaze.spec.model import Project, Service


def _offline_queues(project: Project, service: Service) -> Queues:
    assert service.autoscale is not None
    queues = service.autoscale.queues
    url = expand_offline(project, {"url": queues.url}, f"services.{service.name}.autoscale.queues")["url"]
    return Queues(queues.kind, url, queues.names)


def render_autoscale(project: Project, service: Service, *, namespace: str) -> list[Manifest]:
    """render k8s's KEDA objects of an autoscaled worker."""
    spec = service.autoscale
    assert spec is not None
    queues = _offline_queues(project, service)
    target, _ = resolve_target(spec, user_env(project, service))
    url = metrics_url(project.name, namespace, service.name) if queues.kind in METRICS_API_KINDS else None
    return keda_objects(project.name, service.name, namespace, replace(spec, queues=queues), target=target,
                        metrics_url=url, where=f"services.{service.name}.autoscale")


def _polls(specs: Mapping[str, Autoscale]) -> dict[str, float]:
    return {name: spec.poll for name, spec in specs.items()}


def _latency(specs: Mapping[str, Autoscale]) -> dict[str, tuple[float, float]]:
    """service -> (latency_slo, tolerance) for the workers with a latency_slo (the server's `latency` ratio)."""
    return {name: (spec.latency_slo, spec.tolerance) for name, spec in specs.items() if spec.latency_slo is not None}


def render_queue_metrics(project: Project, *, namespace: str) -> list[Manifest]:
    """render k8s's queue-metrics server, when a worker needs it (else nothing)."""
    services = {service.name: _offline_queues(project, service) for service in project.services
                if service.autoscale is not None and service.autoscale.queues.kind in METRICS_API_KINDS}
    if not services:
        return []
    check_no_clash(project.name, [service.name for service in project.services])
    specs = {service.name: service.autoscale for service in project.services
             if service.autoscale is not None and service.name in services}
    return queue_metrics_manifests(project.name, namespace, services, polls=_polls(specs), latency=_latency(specs))


def autoscale_for(desired: Desired) -> list[Manifest]:
    """The KEDA objects the engine applies after an autoscaled worker's Deployment ([] when not autoscaled)."""
    spec = desired.autoscale
    if spec is None:
        return []
    app, namespace = _cluster_names(desired)
    target, _ = resolve_target(spec, desired.env)
    url = metrics_url(app, namespace, desired.service) if spec.queues.kind in METRICS_API_KINDS else None
    return keda_objects(app, desired.service, namespace, spec, target=target, metrics_url=url,
                        paused=desired.autoscale_paused, where=f"service {desired.service}: autoscale")


def uses_queue_metrics(desired: Desired | None) -> bool:
    return (desired is not None and desired.autoscale is not None
            and desired.autoscale.queues.kind in METRICS_API_KINDS)


def queue_metrics_for(desireds: Iterable[Desired], host_aliases: list[Manifest]) -> list[Manifest]:
    """The project's queue-metrics objects for the engine, over every worker of the project that needs them
    (`desireds`: one project's, namespace and app alike); [] when none does."""
    desireds = list(desireds)
    wanted = [desired for desired in desireds if uses_queue_metrics(desired)]
    if not wanted:
        return []
    app, namespace = _cluster_names(wanted[0])
    check_no_clash(app, [desired.service for desired in desireds])
    services = {desired.service: desired.autoscale.queues for desired in wanted if desired.autoscale is not None}
    specs = {desired.service: desired.autoscale for desired in wanted if desired.autoscale is not None}
    # The first's: the worker being applied, whose deploy pushed the image last (the others may be older rows)
    image = next((d.queue_metrics_image for d in wanted if d.queue_metrics_image), QUEUE_METRICS_IMAGE)
    return queue_metrics_manifests(app, namespace, services, polls=_polls(specs), latency=_latency(specs),
                                   image=image, host_aliases=host_aliases)
