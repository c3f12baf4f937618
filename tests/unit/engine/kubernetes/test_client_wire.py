"""engine/kubernetes/client.py on the wire: the real `kubernetes` client, through a real kubeconfig, against
kmock (an HTTP server on 127.0.0.1 that records every request). What these tests prove is the exact request
each KubeClient call sends (method, path, query, content type, body) and what it makes of the answer.

What kmock cannot prove, for every test here: it is not an API server. It validates nothing (a body the real
server would reject passes), has no server-side apply (no field ownership, no conflicts, no merge by schema:
the answers below are what the test tells it to send), no /scale or /log subresources of its own, and its
stateful mode ignores labelSelector. The real API server's answers are the e2e suite's to check.
"""

from __future__ import annotations

import asyncio
import socket
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio

from stackblaze.engine.kubernetes.api import FIELD_MANAGER, RESTARTED_AT
from stackblaze.engine.kubernetes.client import KubeClient
from stackblaze.engine.kubernetes.manifests import render_manifests
from stackblaze.errors import NotFoundError, UnavailableError, UserError
from stackblaze.spec import load_project

pytestmark = pytest.mark.asyncio
# Stateless: only the answers each test declares (the default, stateful emulator answers a PATCH of an object
# it does not hold with 404 before any declared answer: it has no server-side apply to create one).
SCAFFOLD = pytest.mark.kmock(cls=kmock.KubernetesScaffold)
EMULATOR = pytest.mark.kmock(cls=kmock.KubernetesEmulator)

NS = "shop"
DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"
SELECTOR = {"app.kubernetes.io/part-of": "shop", "app.kubernetes.io/managed-by": "stackblaze"}


def write_kubeconfig(path: Path, server: str, context: str = "wire") -> Path:
    path.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Config
        clusters: [{{name: kmock, cluster: {{server: "{server}"}}}}]
        users: [{{name: deployer, user: {{token: wire-token}}}}]
        contexts: [{{name: {context}, context: {{cluster: kmock, user: deployer, namespace: {NS}}}}}]
        current-context: {context}
        """), encoding="utf-8")
    return path


@pytest_asyncio.fixture
async def kube(kmock: kmock.RawHandler, tmp_path: Path) -> AsyncIterator[KubeClient]:
    """KubeClient as the daemon makes it: a context of a kubeconfig file, here pointing at kmock."""
    server = str(kmock.url).rstrip("/")
    client = KubeClient(context="wire", kubeconfig=str(write_kubeconfig(tmp_path / "kubeconfig", server)))
    yield client
    await client.close()


def only(reaction: Any) -> kmock.Request:
    """The one request a declared answer served (and there was exactly one)."""
    requests = list(reaction)
    assert len(requests) == 1, requests
    request: kmock.Request = requests[0]
    return request


def echo(request: kmock.Request) -> Any:
    """An apply's answer, as if the server stored exactly what was sent (kmock has no SSA to do better)."""
    return request.data


def deployment(name: str) -> dict[str, Any]:
    labels = {**SELECTOR, "app.kubernetes.io/name": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": name, "image": f"{name}:1"}]}}}}


@SCAFFOLD
async def test_apply_is_a_forced_server_side_apply_of_each_kind(kmock: kmock.RawHandler, kube: KubeClient,
                                                                 tmp_path: Path) -> None:
    """Proves: the rendered Namespace, Secret and Deployment each go out as one PATCH to their own path
    (the Namespace cluster-scoped) with `application/apply-patch+yaml`, fieldManager=stackblaze and force=true,
    the manifest as the body unchanged (the Secret's stringData included), and the answer comes back in the
    API's camelCase. Cannot prove: that a real server accepts these bodies or merges them as SSA does."""
    (tmp_path / "stackblaze.yaml").write_text(textwrap.dedent("""\
        project: shop
        env: {STRIPE_KEY: sk_test_wire}
        services:
          - {name: mailer, start: python mailer.py}
        """), encoding="utf-8")
    namespace, secret, dep = render_manifests(load_project(tmp_path), image="registry.local/shop-{service}@sha256:"
                                              + "ab" * 32)
    answers = {
        "Namespace": kmock["patch /api/v1/namespaces/shop"] << echo,
        "Secret": kmock["patch /api/v1/namespaces/shop/secrets/shop-mailer-env"] << echo,
        "Deployment": kmock[f"patch {DEPLOYMENTS}/shop-mailer"] << echo,
    }

    stored = [await kube.apply(manifest) for manifest in (namespace, secret, dep)]

    for manifest, answer in zip((namespace, secret, dep), stored, strict=True):
        request = only(answers[manifest["kind"]])
        assert request.method == "PATCH"
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        assert request.params == {"fieldManager": FIELD_MANAGER, "force": "true"}
        assert request.headers["Authorization"] == "Bearer wire-token"
        assert request.data == manifest
        assert answer == manifest
    assert secret["stringData"] == {"STRIPE_KEY": "sk_test_wire"}
    assert stored[2]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True  # camelCase, not to_dict's
    assert len(list(kmock)) == 3


@SCAFFOLD
async def test_scale_patches_the_scale_subresource(kmock: kmock.RawHandler, kube: KubeClient) -> None:
    """Proves: scale is a merge PATCH of `.../deployments/NAME/scale` with only spec.replicas and
    fieldManager=stackblaze (no force: that is for apply only), and the Scale answer is returned. Cannot prove:
    that the real /scale leaves the rest of the Deployment alone (kmock serves no subresource of its own)."""
    answer = kmock[f"patch {DEPLOYMENTS}/shop-mailer/scale"] << (lambda request: {
        "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "shop-mailer", "namespace": NS},
        "spec": request.data["spec"], "status": {"replicas": 1, "selector": "app.kubernetes.io/name=mailer"}})

    scale = await kube.scale("shop-mailer", NS, 3)

    request = only(answer)
    assert (request.method, request.url.path) == ("PATCH", f"{DEPLOYMENTS}/shop-mailer/scale")
    assert request.headers["Content-Type"] == "application/merge-patch+json"
    assert request.params == {"fieldManager": FIELD_MANAGER}
    assert request.data == {"spec": {"replicas": 3}}
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"]["replicas"] == 1


@SCAFFOLD
async def test_restart_patches_the_pod_template_annotation(kmock: kmock.RawHandler, kube: KubeClient) -> None:
    """Proves: restart is what `kubectl rollout restart` sends: a strategic-merge PATCH of the Deployment whose
    only content is the pod template's restartedAt annotation. Cannot prove: the strategic merge itself (that
    other annotations survive) or the rollout the real controller starts on it."""
    at = "2026-01-02T03:04:05Z"
    answer = kmock[f"patch {DEPLOYMENTS}/shop-mailer"] << (lambda request: deployment("shop-mailer"))

    await kube.restart("shop-mailer", NS, at)

    request = only(answer)
    assert request.method == "PATCH"
    assert request.headers["Content-Type"] == "application/strategic-merge-patch+json"
    assert request.params == {"fieldManager": FIELD_MANAGER}
    assert request.data == {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}}


@SCAFFOLD
async def test_logs_reads_the_current_or_previous_container(kmock: kmock.RawHandler, kube: KubeClient) -> None:
    """Proves: logs is GET .../pods/NAME/log with previous=true, timestamps=true, tailLines and sinceTime as
    asked (sinceTime, which the generated client lacks, included), and the text comes back as sent. Cannot
    prove: that the real kubelet has a previous container to read."""
    text = "2026-01-02T03:04:05.000000001Z crashed: KeyError 'x'\n"
    answer = kmock[f"get /api/v1/namespaces/{NS}/pods/shop-mailer-7d4b9-x2x5q/log"] << text.encode()

    got = await kube.logs("shop-mailer-7d4b9-x2x5q", NS, previous=True, tail_lines=20,
                          since_time="2026-01-02T03:00:00Z")
    plain = await kube.logs("shop-mailer-7d4b9-x2x5q", NS, timestamps=False)

    first, second = list(answer)
    assert first.method == "GET"
    assert first.params == {"previous": "true", "timestamps": "true", "tailLines": "20",
                            "sinceTime": "2026-01-02T03:00:00Z"}
    assert second.params == {}  # previous=false and timestamps=false are the API's defaults: left out
    assert got == plain == text


@SCAFFOLD
async def test_follow_yields_each_line_as_it_arrives_and_hangs_up(kmock: kmock.RawHandler,
                                                                  kube: KubeClient) -> None:
    """Proves: follow is GET .../log with follow=true and timestamps=true; a line split across chunks comes
    whole; a line written later arrives while the stream stays open (not at its end); stopping the iteration
    ends the reading thread. Cannot prove: the real server's chunking or the end of a follow when the
    container exits (kmock ends a stream only when told)."""
    pod = "shop-mailer-7d4b9-x2x5q"
    answer = kmock[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"] << (
        b"2026-01-02T03:04:05Z started\n2026-01-02T03:04:06Z job ", b"1 done\n", ...)

    lines = aiter(kube.follow(pod, NS))
    assert await asyncio.wait_for(anext(lines), 10) == "2026-01-02T03:04:05Z started"
    assert await asyncio.wait_for(anext(lines), 10) == "2026-01-02T03:04:06Z job 1 done"
    kmock[...] << b"2026-01-02T03:05:00Z job 2 done\n" << ...  # written while the stream is open
    assert await asyncio.wait_for(anext(lines), 10) == "2026-01-02T03:05:00Z job 2 done"
    request = only(answer)
    assert request.params == {"follow": "true", "timestamps": "true"}

    pump = next(thread for thread in threading.enumerate() if thread.name == f"follow {NS}/{pod}")
    await lines.aclose()  # type: ignore[attr-defined]
    await asyncio.to_thread(pump.join, 10)
    assert not pump.is_alive()


@SCAFFOLD
async def test_follow_ends_when_the_log_does(kmock: kmock.RawHandler, kube: KubeClient) -> None:
    """Proves: when the server ends the stream (the container exited), follow yields the last line, even one
    without its newline, and then stops. Cannot prove: when a real API server ends a follow."""
    kmock[f"get /api/v1/namespaces/{NS}/pods/shop-mailer-1/log"] << (b"2026-01-02T03:04:05Z bye\n", b"no newline")

    lines = [line async for line in kube.follow("shop-mailer-1", NS)]

    assert lines == ["2026-01-02T03:04:05Z bye", "no newline"]


@EMULATOR
async def test_prune_deletes_only_what_the_spec_no_longer_has(kmock: kmock.KubernetesEmulator,
                                                              kube: KubeClient) -> None:
    """Proves: prune lists Deployments, Secrets, Services, StatefulSets, CronJobs, KEDA's objects and the
    queue-metrics server's ServiceAccount, Role and RoleBinding with the project's labelSelector,
    then sends a foreground DELETE for each one not kept, and none for the kept; it reports `Kind/name`; it
    lists no PersistentVolumeClaims (a removed backing service's data stays). Cannot prove: the selector's
    filtering (kmock's emulator ignores labelSelector, so only labelled objects are stored here) or the
    foreground cascade to ReplicaSets and pods."""
    for name in ("shop-mailer", "shop-old"):
        kmock.objects["apps/v1/deployments", NS, name] = deployment(name)
    for name in ("shop-mailer-env", "shop-old-env"):
        kmock.objects["v1/secrets", NS, name] = {"apiVersion": "v1", "kind": "Secret",
                                                 "metadata": {"name": name, "namespace": NS, "labels": SELECTOR}}
    for name in ("shop-cache", "shop-queue"):
        kmock.objects["v1/services", NS, name] = {"apiVersion": "v1", "kind": "Service",
                                                  "metadata": {"name": name, "namespace": NS, "labels": SELECTOR}}
        kmock.objects["apps/v1/statefulsets", NS, name] = {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": NS,
                                                                         "labels": SELECTOR},
            "spec": {"selector": {"matchLabels": SELECTOR}, "template": {"metadata": {"labels": SELECTOR}}}}
    for name in ("shop-nightly", "shop-hourly"):  # cron services' CronJobs
        kmock.objects["batch/v1/cronjobs", NS, name] = {
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "namespace": NS, "labels": SELECTOR},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}
    for name in ("shop-mailer", "shop-old"):  # autoscaled workers' KEDA ScaledObjects (kubernetes/keda.py)
        kmock.objects["keda.sh/v1alpha1/scaledobjects", NS, name] = {
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": NS, "labels": SELECTOR}, "spec": {"scaleTargetRef": {"name": name}}}

    for path, kind in (("v1/serviceaccounts", "ServiceAccount"), ("rbac.authorization.k8s.io/v1/roles", "Role"),
                       ("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding")):  # pod_access.py's
        kmock.objects[path, NS, "shop-queue-metrics"] = {"apiVersion": path.rsplit("/", 1)[0], "kind": kind,
                                                         "metadata": {"name": "shop-queue-metrics", "namespace": NS,
                                                                      "labels": SELECTOR},
                                                         **({"roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                                         "kind": "Role", "name": "shop-queue-metrics"}}
                                                            if kind == "RoleBinding" else {})}

    pruned = await kube.prune(SELECTOR, {"shop-mailer", "shop-mailer-env", "shop-cache", "shop-nightly"}, NS)

    assert sorted(pruned) == ["CronJob/shop-hourly", "Deployment/shop-old", "Role/shop-queue-metrics",
                              "RoleBinding/shop-queue-metrics", "ScaledObject/shop-old", "Secret/shop-old-env",
                              "Service/shop-queue", "ServiceAccount/shop-queue-metrics", "StatefulSet/shop-queue"]
    lists = sorted((request.url.path, request.params["labelSelector"]) for request in kmock
                   if request.method == "GET")
    selector = "app.kubernetes.io/managed-by=stackblaze,app.kubernetes.io/part-of=shop"
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}"
    assert lists == [(f"/api/v1/namespaces/{NS}/secrets", selector),
                     (f"/api/v1/namespaces/{NS}/serviceaccounts", selector),
                     (f"/api/v1/namespaces/{NS}/services", selector),
                     (DEPLOYMENTS, selector), (f"/apis/apps/v1/namespaces/{NS}/statefulsets", selector),
                     (f"/apis/batch/v1/namespaces/{NS}/cronjobs", selector),
                     (f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects", selector),
                     (f"/apis/keda.sh/v1alpha1/namespaces/{NS}/triggerauthentications", selector),
                     (f"{rbac}/rolebindings", selector), (f"{rbac}/roles", selector)]
    deletes = sorted((request.url.path, request.params.get("propagationPolicy")) for request in kmock
                     if request.method == "DELETE")
    assert deletes == [(f"/api/v1/namespaces/{NS}/secrets/shop-old-env", "Foreground"),
                       (f"/api/v1/namespaces/{NS}/serviceaccounts/shop-queue-metrics", "Foreground"),
                       (f"/api/v1/namespaces/{NS}/services/shop-queue", "Foreground"),
                       (f"{DEPLOYMENTS}/shop-old", "Foreground"),
                       (f"/apis/apps/v1/namespaces/{NS}/statefulsets/shop-queue", "Foreground"),
                       (f"/apis/batch/v1/namespaces/{NS}/cronjobs/shop-hourly", "Foreground"),
                       (f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects/shop-old", "Foreground"),
                       (f"{rbac}/rolebindings/shop-queue-metrics", "Foreground"),
                       (f"{rbac}/roles/shop-queue-metrics", "Foreground")]
    assert kmock.objects["apps/v1/deployments", NS, "shop-old"].deleted
    assert not kmock.objects["apps/v1/deployments", NS, "shop-mailer"].deleted
    assert not kmock.objects["apps/v1/statefulsets", NS, "shop-cache"].deleted


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason,
            "message": message}


@SCAFFOLD
async def test_api_errors_become_ours(kmock: kmock.RawHandler, kube: KubeClient) -> None:
    """Proves: a 404 is None from deployment(), False from delete() and NotFoundError elsewhere; a 403 is a
    one-line UserError naming the context and the verb and object denied; a 422 is a UserError carrying the
    API's own message. Cannot prove: which requests a real RBAC policy or validation would refuse (the
    statuses here are the test's)."""
    kmock[f"get {DEPLOYMENTS}/gone"] << 404 << status(404, "NotFound", 'deployments.apps "gone" not found')
    kmock[f"delete {DEPLOYMENTS}/gone"] << 404 << status(404, "NotFound", 'deployments.apps "gone" not found')
    kmock[f"patch {DEPLOYMENTS}/gone/scale"] << 404 << status(404, "NotFound", 'deployments.apps "gone" not found')
    denied = 'deployments.apps "web" is forbidden: User "deployer" cannot patch resource "deployments/scale"'
    kmock[f"patch {DEPLOYMENTS}/web/scale"] << 403 << status(403, "Forbidden", denied)
    invalid = 'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    kmock[f"patch {DEPLOYMENTS}/web"] << 422 << status(422, "Invalid", invalid)

    assert await kube.deployment("gone", NS) is None
    assert await kube.delete("Deployment", "gone", NS) is False
    with pytest.raises(NotFoundError, match="deployment shop/gone not found"):
        await kube.scale("gone", NS, 1)
    with pytest.raises(UserError) as forbidden:
        await kube.scale("web", NS, 2)
    assert str(forbidden.value) == (f"kubernetes context wire may not scale deployment shop/web (403 Forbidden: "
                                    f"{denied}): grant it with RBAC or use a context that may")
    with pytest.raises(UserError) as unprocessable:
        await kube.apply(deployment("web"))
    assert str(unprocessable.value) == f"kubernetes refused to apply deployment shop/web: {invalid}"
    assert "\n" not in str(forbidden.value) + str(unprocessable.value)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_server_that_is_not_there_is_one_line_naming_it(tmp_path: Path) -> None:
    """Proves: connection refused (nothing listens on the port) is an UnavailableError of one line that names
    the server's URL and the context, with no urllib3 retry story. No kmock: there is no server at all."""
    server = f"http://127.0.0.1:{free_port()}"
    kube = KubeClient(kubeconfig=str(write_kubeconfig(tmp_path / "kubeconfig", server)))
    try:
        with pytest.raises(UnavailableError) as refused:
            await kube.pods(NS, SELECTOR)
    finally:
        await kube.close()
    message = str(refused.value)
    assert message.startswith(f"kubernetes API server {server} (context wire) is unreachable: ")
    assert "Connection refused" in message
    assert "\n" not in message


async def test_a_missing_kubeconfig_or_context_says_which_and_the_fix(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: no kubeconfig where KUBECONFIG points, and a context the kubeconfig lacks, are one-line
    UserErrors naming the file or the context (with the contexts there are) and what to do. No network."""
    missing = tmp_path / "nowhere" / "config"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(UserError, match=f"kubeconfig {missing} not found: point KUBECONFIG at"):
        KubeClient()

    config = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:1")
    with pytest.raises(UserError) as unknown:
        KubeClient(context="prod", kubeconfig=str(config))
    assert str(unknown.value) == (f"kubernetes context 'prod' is not in {config} (contexts: wire): pass one of them "
                                  f"as --context or set the target's context in stackblaze.yaml")
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert KubeClient().context == "wire"  # KUBECONFIG read now, not when the library was imported

