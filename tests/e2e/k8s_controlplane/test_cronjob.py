"""A cron service's CronJob on a real control plane: the API server accepts it as rendered (server-side
apply, strict field validation), and the real CronJob controller (kube-controller-manager) creates a Job from
it on its schedule. No kubelet runs the Job's pod here (kwok's nodes stand in): what is real is the
controller's reading of our schedule, time zone and policies."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kubernetes

from stackblaze.engine.kubernetes.manifests import render_manifests
from stackblaze.spec import load_project
from tests.integration.conftest import wait_for
from tests.k8s.controlplane import ControlPlane


def test_the_cronjob_is_accepted_and_the_controller_makes_a_job_on_schedule(
        control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    (tmp_path / "stackblaze.yaml").write_text(
        "project: shop\nservices:\n  - name: nightly\n    type: cron\n    schedule: '* * * * *'\n"
        "    timezone: Europe/Paris\n    timeout: 5m\n    retries: 1\n    history: 2\n    start: ./report\n")
    manifests = render_manifests(load_project(tmp_path), namespace=namespace, image="registry.local/report:1")
    (cronjob,) = [m for m in manifests if m["kind"] == "CronJob"]
    batch = kubernetes.client.BatchV1Api(control_plane.api_client())
    applied = batch.patch_namespaced_cron_job(
        cronjob["metadata"]["name"], namespace, cronjob, field_manager="stackblaze", force=True,
        field_validation="Strict", _content_type="application/apply-patch+yaml")
    assert applied.spec.time_zone == "Europe/Paris" and applied.spec.concurrency_policy == "Forbid"
    assert applied.spec.job_template.spec.backoff_limit == 1
    assert applied.spec.job_template.spec.active_deadline_seconds == 300
    started = time.time()

    def jobs() -> list[Any]:
        found = batch.list_namespaced_job(namespace).items
        return [job for job in found if any(ref.kind == "CronJob" and ref.name == cronjob["metadata"]["name"]
                                            for ref in job.metadata.owner_references or [])]
    (job, *_) = wait_for("a Job made by the CronJob controller", jobs, timeout=75, interval=1.0)
    assert job.spec.template.spec.restart_policy == "Never"
    assert job.spec.template.spec.containers[0].args == ["./report"]
    status = batch.read_namespaced_cron_job(cronjob["metadata"]["name"], namespace).status
    assert status.last_schedule_time is not None
    print(f"Job {job.metadata.name} after {time.time() - started:.1f}s")
