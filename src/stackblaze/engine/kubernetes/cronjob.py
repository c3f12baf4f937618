"""A cron service as a Kubernetes CronJob (batch/v1): pure functions, from the spec (render k8s) or from a
Desired (the engine). Its pods are what the service's Deployment's would be (image, env Secret, grace,
security context), run to completion: restartPolicy Never, each retry a new pod (backoffLimit).
"""

from __future__ import annotations

import math

from stackblaze.engine.kubernetes.manifests import (
    Manifest,
    _cluster_names,
    _defaults,
    _deployment,
    _strategy,
    _Worker,
    labels,
    object_name,
    selector_labels,
    user_env,
)
from stackblaze.engine.protocol import Desired
from stackblaze.spec.cron import Cron
from stackblaze.spec.model import Project, Service
from stackblaze.spec.rollout import Rolling

# catch_up false: a tick the controller could not start within a minute is skipped, not run late (the
# controller looks every 10 s, so a shorter deadline could miss ticks it was merely slow to see). catch_up
# true: a missed tick still runs once within a day (the controller runs only the latest missed one).
DEADLINE_NO_CATCH_UP = 60
DEADLINE_CATCH_UP = 24 * 3600
CONCURRENCY_POLICY = {"forbid": "Forbid", "allow": "Allow", "replace": "Replace"}


def _cron_labels(project: str, service: str) -> dict[str, str]:
    return {**labels(project, service), "app.kubernetes.io/component": "cron"}


def _cronjob(worker: _Worker, cron: Cron, *, suspend: bool) -> Manifest:
    template = _deployment(worker)["spec"]["template"]
    template["spec"]["restartPolicy"] = "Never"  # a run ends; a failed one is retried as a new pod
    template["metadata"]["labels"] = {**template["metadata"]["labels"], "app.kubernetes.io/component": "cron"}
    job: Manifest = {"backoffLimit": cron.retries, "template": template}
    if cron.timeout is not None:
        job["activeDeadlineSeconds"] = max(1, math.ceil(cron.timeout))
    metadata: Manifest = {"name": object_name(worker.project, worker.service), "namespace": worker.namespace,
                          "labels": _cron_labels(worker.project, worker.service)}
    if worker.annotations:
        metadata["annotations"] = dict(worker.annotations)
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": cron.schedule,
            "timeZone": cron.timezone,
            "concurrencyPolicy": CONCURRENCY_POLICY[cron.concurrency],
            "startingDeadlineSeconds": DEADLINE_CATCH_UP if cron.catch_up else DEADLINE_NO_CATCH_UP,
            "suspend": suspend,
            # `history` finished runs of each outcome (the local engine keeps `history` in all)
            "successfulJobsHistoryLimit": cron.history,
            "failedJobsHistoryLimit": cron.history,
            "jobTemplate": {"metadata": {"labels": selector_labels(worker.project, worker.service)}, "spec": job},
        },
    }


def cronjob_manifest(project: Project, service: Service, *, namespace: str, image: str, release: int) -> Manifest:
    """`render k8s`'s CronJob of a cron service."""
    assert service.cron is not None
    values = user_env(project, service)
    return _cronjob(_Worker(
        project=project.name, service=service.name, namespace=namespace, image=image, release=release,
        start=service.start, replicas=0, shutdown_grace=service.shutdown_grace,
        strategy=_strategy("recreate", Rolling()),
        min_ready=0, deadline=1, has_env=bool(values), default_env=_defaults(values),
        disk=service.disk.to_dict() if service.disk else None), service.cron, suspend=False)


def cronjob_for(desired: Desired) -> Manifest:
    """The CronJob the engine applies: suspended by `cron suspend` or `stop` (replicas 0)."""
    assert desired.cron is not None and desired.image is not None
    app, namespace = _cluster_names(desired)
    return _cronjob(_Worker(
        project=app, service=desired.service, namespace=namespace, image=desired.image, release=desired.release,
        start=desired.start, replicas=0, shutdown_grace=desired.shutdown_grace,
        strategy=_strategy("recreate", Rolling()), min_ready=0, deadline=1, has_env=bool(desired.env),
        default_env=_defaults(desired.env), template_labels={"stackblaze.dev/release": str(desired.release)},
        annotations={"stackblaze.dev/config": desired.config}, disk=desired.disk), desired.cron,
        suspend=desired.suspended or desired.replicas == 0)



