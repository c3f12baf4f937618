"""The queue-metrics server's access to its workers' pods (pod_access.py, through queue_metrics.py): only when a
worker's queues have a busy source (rq, celery), a ServiceAccount whose Role may get, list and patch pods and
nothing else, the server's pod running as it with its token mounted, and each such worker's pod labels in the
server's config, the very labels its Deployment selects its pods by. Strictly valid on Kubernetes 1.31..1.35.
That the Role is enough, and the token can do nothing more, is checked on a real API server in
tests/e2e/k8s_controlplane/test_deletion_cost.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from stackblaze.engine.autoscale.deletion_cost import targets
from stackblaze.engine.kubernetes.manifests import render_manifests
from stackblaze.spec import load_project

VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")
QUEUES = {"rq": "{kind: rq, url: 'redis://cache.internal:6379/0', names: [default]}",
          "celery": "{kind: celery, url: 'redis://cache.internal:6379/1', names: [celery]}",
          "bullmq": "{kind: bullmq, url: 'redis://cache.internal:6379/2', names: [email]}"}


def render(tmp_path: Path, *kinds: str) -> list[dict[str, Any]]:
    services = "".join(f"  - name: {kind}-work\n    start: python -m work\n    autoscale:\n      max: 4\n"
                       f"      queues: {QUEUES[kind]}\n" for kind in kinds)
    (tmp_path / "stackblaze.yaml").write_text(f"project: shop\nservices:\n  - {{name: cache, type: redis}}\n"
                                              f"{services}", encoding="utf-8")
    return render_manifests(load_project(tmp_path))


def server(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == "shop-queue-metrics"]


@pytest.mark.parametrize("version", VERSIONS)
def test_rq_and_celery_workers_give_the_server_a_role_on_pods_and_nothing_more(tmp_path: Path, version: str) -> None:
    manifests = render(tmp_path, "rq", "celery", "bullmq")
    [account], [role], [binding] = (server(manifests, kind) for kind in ("ServiceAccount", "Role", "RoleBinding"))
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "shop-queue-metrics"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "shop-queue-metrics", "namespace": "shop"}]
    [deployment] = server(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("shop-queue-metrics", True)
    assert account["automountServiceAccountToken"] is False  # only the server's own pod spec mounts its token
    for manifest in manifests:
        if manifest["apiVersion"] != "keda.sh/v1alpha1":  # KEDA's CRD schemas are test_keda.py's
            kubernetes_validate.validate(manifest, version, strict=True)


def test_the_config_names_the_pods_of_each_worker_with_a_busy_source_by_its_deployments_selector(
        tmp_path: Path) -> None:
    manifests = render(tmp_path, "rq", "celery", "bullmq")
    [secret] = server(manifests, "Secret")
    text = secret["stringData"]["queues.json"]
    selectors = {name: raw.get("pods") for name, raw in json.loads(text)["services"].items()}
    deployments = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Deployment"}
    for kind in ("rq", "celery"):
        assert selectors[f"{kind}-work"] == deployments[f"shop-{kind}-work"]["spec"]["selector"]["matchLabels"]
    assert selectors["bullmq-work"] is None  # no busy source: its pods are left alone
    assert [(t.service, t.kind, t.url) for t in targets(text, "queues.json", default_poll=5.0)] == [
        ("celery-work", "celery", "redis://cache.internal:6379/1"),
        ("rq-work", "rq", "redis://cache.internal:6379/0")]


def test_without_a_busy_source_the_server_has_no_account_and_no_token(tmp_path: Path) -> None:
    manifests = render(tmp_path, "bullmq")
    assert [m["kind"] for m in manifests if "queue-metrics" in m["metadata"]["name"]] == [
        "Secret", "Deployment", "Service"]
    [deployment] = server(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
