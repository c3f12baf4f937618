"""`ClusterApi` over a real API server with the official `kubernetes` client: the only module that imports it.

The client blocks, so every call runs in a worker thread (a followed log in its own thread: a follow lasts as
long as the pod, and would otherwise hold one of the loop's few default workers for good). Objects come back
as the API's own camelCase dicts; the client's errors become ours at this boundary.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import kubernetes.client
import kubernetes.config
import kubernetes.config.incluster_config
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from stackblaze.engine.kubernetes.api import FIELD_MANAGER, RESTARTED_AT, Manifest
from stackblaze.errors import NotFoundError, StackblazeError, UnavailableError, UserError

T = TypeVar("T")

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
# never a PVC: data outlives its service. RoleBinding before Role and ServiceAccount: no moment grants a gone Role.
PRUNED_KINDS = ("Deployment", "Secret", "Service", "StatefulSet", "CronJob", "RoleBinding", "Role", "ServiceAccount")
# KEDA's kinds (an autoscaled worker's, kubernetes/keda.py), served only where KEDA's CRDs are installed.
KEDA_GROUP, KEDA_VERSION = "keda.sh", "v1alpha1"
KEDA_PLURALS = {"ScaledObject": "scaledobjects", "TriggerAuthentication": "triggerauthentications"}
_END = object()  # what the log pump puts on the queue when the stream ends


def selector_string(selector: dict[str, str]) -> str:
    """A labelSelector as the API takes it: `k=v,k2=v2` (sorted, so a request is the same every time)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def kubeconfig_paths(kubeconfig: str | None) -> str:
    """The kubeconfig kubectl would read: the one given, else $KUBECONFIG (a `:`-separated list), else
    ~/.kube/config. Read at each call: the client library reads $KUBECONFIG once, at import."""
    return kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"


class KubeClient:
    """The cluster of one kubeconfig context (the current one when `context` is None)."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        self.kubeconfig = kubeconfig_paths(kubeconfig)
        self.context = _check_context(self.kubeconfig, context)
        try:
            # persist_config=False: refreshed tokens stay in memory; the user's kubeconfig is never rewritten.
            self._api_client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=self.kubeconfig, context=self.context, persist_config=False)
        except (ConfigException, OSError, ValueError) as error:
            raise UserError(f"kubeconfig {self.kubeconfig}, context {self.context!r}: {_one_line(error)} "
                            f"(check it with: kubectl --context {self.context} cluster-info)") from error
        self._bind()

    @classmethod
    def in_cluster(cls, account_dir: str = "/var/run/secrets/kubernetes.io/serviceaccount",
                   environ: Mapping[str, str] = os.environ) -> KubeClient:
        """The cluster this process runs in, as its pod's service account (the token and CA the kubelet mounts in
        `account_dir`, the API server from KUBERNETES_SERVICE_HOST/PORT): the queue-metrics server's client."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=f"{account_dir}/token", cert_filename=f"{account_dir}/ca.crt",
                environ=environ).load_and_set(configuration)
        except (ConfigException, OSError, ValueError) as error:
            raise UserError(f"in-cluster kubernetes config ({account_dir}): {_one_line(error)} (the pod needs a "
                            f"service account token: automountServiceAccountToken: true)") from error
        client = cls.__new__(cls)  # no kubeconfig to check: __init__'s work is not this one's
        client.kubeconfig, client.context = "", "in-cluster"
        client._api_client = kubernetes.client.ApiClient(configuration)
        client._bind()
        return client

    def _bind(self) -> None:
        self.server = str(self._api_client.configuration.host)
        self._core = kubernetes.client.CoreV1Api(self._api_client)
        self._apps = kubernetes.client.AppsV1Api(self._api_client)
        self._batch = kubernetes.client.BatchV1Api(self._api_client)  # cron services' CronJobs
        self._custom = kubernetes.client.CustomObjectsApi(self._api_client)  # KEDA's ScaledObjects
        self._rbac = kubernetes.client.RbacAuthorizationV1Api(self._api_client)  # the queue-metrics server's Role

    # -- writes ------------------------------------------------------------------------------------------

    async def apply(self, manifest: Manifest) -> Manifest:
        kind, name = manifest.get("kind"), manifest.get("metadata", {}).get("name")
        namespace = manifest.get("metadata", {}).get("namespace")
        options: dict[str, Any] = {"body": manifest, "field_manager": FIELD_MANAGER, "force": True,
                                   "_content_type": APPLY}
        if kind == "Namespace":
            return await self._call("apply", f"namespace {name}", self._core.patch_namespace, name, **options)
        if kind == "Secret":
            return await self._call("apply", f"secret {namespace}/{name}", self._core.patch_namespaced_secret,
                                    name, namespace, **options)
        if kind == "Deployment":
            return await self._call("apply", f"deployment {namespace}/{name}",
                                    self._apps.patch_namespaced_deployment, name, namespace, **options)
        if kind == "Service":
            return await self._call("apply", f"service {namespace}/{name}", self._core.patch_namespaced_service,
                                    name, namespace, **options)
        if kind == "StatefulSet":
            return await self._call("apply", f"statefulset {namespace}/{name}",
                                    self._apps.patch_namespaced_stateful_set, name, namespace, **options)
        if kind == "CronJob":
            return await self._call("apply", f"cronjob {namespace}/{name}", self._batch.patch_namespaced_cron_job,
                                    name, namespace, **options)
        if kind == "PersistentVolumeClaim":  # a disk (kubernetes/disks.py): applied, never pruned or deleted
            return await self._call("apply", f"persistentvolumeclaim {namespace}/{name}",
                                    self._core.patch_namespaced_persistent_volume_claim, name, namespace, **options)
        if kind == "ServiceAccount":  # the queue-metrics server's, with its Role and RoleBinding (pod_access.py)
            return await self._call("apply", f"serviceaccount {namespace}/{name}",
                                    self._core.patch_namespaced_service_account, name, namespace, **options)
        if kind == "Role":
            return await self._call("apply", f"role {namespace}/{name}", self._rbac.patch_namespaced_role, name,
                                    namespace, **options)
        if kind == "RoleBinding":
            return await self._call("apply", f"rolebinding {namespace}/{name}",
                                    self._rbac.patch_namespaced_role_binding, name, namespace, **options)
        if manifest.get("apiVersion") == f"{KEDA_GROUP}/{KEDA_VERSION}" and kind in KEDA_PLURALS:
            what, plural = f"{str(kind).lower()} {namespace}/{name}", KEDA_PLURALS[str(kind)]
            try:
                stored = await self._call("apply", what, self._custom.patch_namespaced_custom_object, KEDA_GROUP,
                                          KEDA_VERSION, namespace, plural, name, **options)
            except NotFoundError as error:  # an apply creates: a 404 means the kind itself is unknown
                from stackblaze.engine.kubernetes.keda import missing_crd

                raise UserError(f"kubernetes context {self.context}: {missing_crd(str(kind))}") from error
            if stored is None:  # the generated client decodes a 200 only, not the 201 of a first apply
                stored = await self._call("get", what, self._custom.get_namespaced_custom_object, KEDA_GROUP,
                                          KEDA_VERSION, namespace, plural, name)
            return stored
        raise ValueError(f"apply: kind {kind!r} is not one stackblaze applies (Namespace, Secret, Deployment, "
                         f"Service, StatefulSet, CronJob, PersistentVolumeClaim, ServiceAccount, Role, RoleBinding, "
                         f"ScaledObject, TriggerAuthentication)")

    async def scale(self, name: str, namespace: str, replicas: int) -> Manifest:
        return await self._call("scale", f"deployment {namespace}/{name}",
                                self._apps.patch_namespaced_deployment_scale, name, namespace,
                                body={"spec": {"replicas": replicas}}, field_manager=FIELD_MANAGER,
                                _content_type=MERGE)

    async def annotate_pod(self, name: str, namespace: str, annotations: dict[str, str]) -> Manifest:
        """A JSON merge patch of the pod's metadata.annotations: the keys given set, every other one kept."""
        return await self._call("patch", f"pod {namespace}/{name}", self._core.patch_namespaced_pod, name, namespace,
                                body={"metadata": {"annotations": annotations}}, field_manager=FIELD_MANAGER,
                                _content_type=MERGE)

    async def restart(self, name: str, namespace: str, at: str) -> Manifest:
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}}
        return await self._call("restart", f"deployment {namespace}/{name}", self._apps.patch_namespaced_deployment,
                                name, namespace, body=patch, field_manager=FIELD_MANAGER, _content_type=STRATEGIC)

    async def delete(self, kind: str, name: str, namespace: str) -> bool:
        calls = {"Deployment": self._apps.delete_namespaced_deployment, "Secret": self._core.delete_namespaced_secret,
                 "Service": self._core.delete_namespaced_service,
                 "StatefulSet": self._apps.delete_namespaced_stateful_set,
                 "CronJob": self._batch.delete_namespaced_cron_job,
                 "RoleBinding": self._rbac.delete_namespaced_role_binding, "Role": self._rbac.delete_namespaced_role,
                 "ServiceAccount": self._core.delete_namespaced_service_account}
        if kind in KEDA_PLURALS:
            calls[kind] = lambda name, namespace, **options: self._custom.delete_namespaced_custom_object(
                KEDA_GROUP, KEDA_VERSION, namespace, KEDA_PLURALS[kind], name, **options)
        if kind not in calls:
            raise ValueError(f"delete: kind {kind!r} is not one stackblaze deletes ({', '.join(calls)})")
        try:
            # Foreground: the Deployment is gone only once its ReplicaSets and pods are.
            await self._call("delete", f"{kind.lower()} {namespace}/{name}", calls[kind], name, namespace,
                             propagation_policy="Foreground")
        except NotFoundError:
            return False
        return True

    async def prune(self, selector: dict[str, str], keep: set[str], namespace: str) -> list[str]:
        listed = await asyncio.gather(self.deployments(namespace, selector), self._secrets(namespace, selector),
                                      self._list("services", self._core.list_namespaced_service, namespace, selector),
                                      self._list("statefulsets", self._apps.list_namespaced_stateful_set, namespace,
                                                 selector),
                                      self._list("cronjobs", self._batch.list_namespaced_cron_job, namespace, selector),
                                      self._list("rolebindings", self._rbac.list_namespaced_role_binding, namespace,
                                                 selector),
                                      self._list("roles", self._rbac.list_namespaced_role, namespace, selector),
                                      self._list("serviceaccounts", self._core.list_namespaced_service_account,
                                                 namespace, selector))
        stale = [(kind, item["metadata"]["name"])
                 for kind, items in zip(PRUNED_KINDS, listed, strict=True)
                 for item in items if item["metadata"]["name"] not in keep]
        for kind, plural in KEDA_PLURALS.items():
            try:
                found = await self._call("list", f"{plural} in namespace {namespace}",
                                         self._custom.list_namespaced_custom_object, KEDA_GROUP, KEDA_VERSION,
                                         namespace, plural, label_selector=selector_string(selector))
            except NotFoundError:  # no KEDA on this cluster: nothing of its kinds to prune
                continue
            # First: a ScaledObject left behind would go on scaling a Deployment of the same name made later.
            stale[:0] = [(kind, item["metadata"]["name"]) for item in found.get("items") or []
                         if item["metadata"]["name"] not in keep]
        return [f"{kind}/{name}" for kind, name in stale if await self.delete(kind, name, namespace)]

    # -- reads -------------------------------------------------------------------------------------------

    async def deployment(self, name: str, namespace: str) -> Manifest | None:
        try:
            return await self._call("get", f"deployment {namespace}/{name}", self._apps.read_namespaced_deployment,
                                    name, namespace)
        except NotFoundError:
            return None

    async def service(self, name: str, namespace: str) -> Manifest | None:
        try:
            return await self._call("get", f"service {namespace}/{name}", self._core.read_namespaced_service,
                                    name, namespace)
        except NotFoundError:
            return None

    async def stateful_set(self, name: str, namespace: str) -> Manifest | None:
        try:
            return await self._call("get", f"statefulset {namespace}/{name}",
                                    self._apps.read_namespaced_stateful_set, name, namespace)
        except NotFoundError:
            return None

    async def deployments(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        return await self._list("deployments", self._apps.list_namespaced_deployment, namespace, selector)

    async def _secrets(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        return await self._list("secrets", self._core.list_namespaced_secret, namespace, selector)

    async def replica_sets(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        return await self._list("replicasets", self._apps.list_namespaced_replica_set, namespace, selector)

    async def pods(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        return await self._list("pods", self._core.list_namespaced_pod, namespace, selector)

    async def events(self, namespace: str) -> list[Manifest]:
        return await self._list("events", self._core.list_namespaced_event, namespace, None)

    async def logs(self, pod: str, namespace: str, *, previous: bool = False, timestamps: bool = True,
                   tail_lines: int | None = None, since_time: str | None = None) -> str:
        query = [("previous", previous), ("timestamps", timestamps), ("tailLines", tail_lines),
                 ("sinceTime", since_time)]

        def read() -> str:
            response = self._log_response(pod, namespace, query)
            try:
                return bytes(response.data).decode(errors="replace")
            finally:
                response.release_conn()

        return await self._blocking("get", f"log of pod {namespace}/{pod}", read)

    async def follow(self, pod: str, namespace: str, *, since_time: str | None = None) -> AsyncIterator[str]:
        """Each line without its newline (a last line the container did not end comes as it is)."""
        query = [("follow", True), ("timestamps", True), ("sinceTime", since_time)]
        response = await self._blocking("follow", f"log of pod {namespace}/{pod}",
                                        lambda: self._log_response(pod, namespace, query))
        loop = asyncio.get_running_loop()
        # Bounded: a consumer that falls behind slows the pump, and so the API server, instead of filling memory.
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1000)
        stopped = threading.Event()

        def put(item: object) -> None:
            if not stopped.is_set():
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        def pump() -> None:
            try:
                for line in _lines(response.stream(None, decode_content=True)):
                    put(line.decode(errors="replace"))
                put(_END)
            except BaseException as error:  # handed to the consumer, raised there
                if not stopped.is_set():  # a stop shuts the socket down under the read: that error is ours
                    put(error)

        thread = threading.Thread(target=pump, name=f"follow {namespace}/{pod}", daemon=True)
        thread.start()
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise self._translate(item, "follow", f"log of pod {namespace}/{pod}") from item
                assert isinstance(item, str)
                yield item
        finally:
            stopped.set()
            try:
                response.shutdown()  # wakes a pump blocked in a read (closing from this thread need not)
            except (RuntimeError, ValueError, OSError):
                pass  # the log had ended: the connection is back in the pool, nothing is blocked
            while not queue.empty():  # and from a put on a full queue
                queue.get_nowait()
            response.close()  # a half-read follow's connection cannot go back to the pool

    async def close(self) -> None:
        await asyncio.to_thread(self._api_client.close)

    # -- the calls ---------------------------------------------------------------------------------------

    def _log_response(self, pod: str, namespace: str, query: Sequence[tuple[str, object]]) -> urllib3.BaseHTTPResponse:
        """GET .../pods/{pod}/log, unread. Built by hand: the generated read_namespaced_pod_log has no sinceTime."""
        client = self._api_client
        method, url, headers, body, post = client.param_serialize(
            method="GET", resource_path="/api/v1/namespaces/{namespace}/pods/{name}/log",
            path_params={"namespace": namespace, "name": pod},
            query_params=[(key, str(value).lower() if isinstance(value, bool) else value)
                          for key, value in query if value is not None and value is not False],
            header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"])
        response = client.call_api(method, url, header_params=headers, body=body, post_params=post)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return cast(urllib3.BaseHTTPResponse, response.response)

    async def _list(self, resource: str, call: Callable[..., Any], namespace: str,
                    selector: dict[str, str] | None) -> list[Manifest]:
        options = {"label_selector": selector_string(selector)} if selector else {}
        listed = await self._call("list", f"{resource} in namespace {namespace}", call, namespace, **options)
        items: list[Manifest] = listed.get("items") or []
        return items

    async def _call(self, verb: str, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Manifest:
        """One typed API call in a thread, its model as the API's JSON shape (camelCase, not to_dict's)."""
        model = await self._blocking(verb, what, lambda: call(*args, **kwargs))
        shaped: Manifest = self._api_client.sanitize_for_serialization(model)
        return shaped

    async def _blocking(self, verb: str, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise self._translate(error, verb, what) from error

    def _translate(self, error: BaseException, verb: str, what: str) -> BaseException:
        """The client's error as ours, one line: what the user does about it decides the class."""
        if isinstance(error, urllib3.exceptions.HTTPError):
            return UnavailableError(f"kubernetes API server {self.server} (context {self.context}) is unreachable: "
                                    f"{_reason(error)} (is the cluster up? check: kubectl --context {self.context} "
                                    f"cluster-info)")
        if not isinstance(error, ApiException):
            return error
        status, message = int(error.status or 0), _api_message(error)
        if status == 0:  # the client's own failure before any answer: TLS, mostly
            return UnavailableError(f"kubernetes API server {self.server} (context {self.context}): {message}")
        if status == 404:
            return NotFoundError(f"kubernetes: {what} not found ({message})")
        if status in (401, 403):
            return UserError(f"kubernetes context {self.context} may not {verb} {what} ({status} {error.reason}: "
                             f"{message}): grant it with RBAC or use a context that may")
        if status in (400, 409, 422):
            return UserError(f"kubernetes refused to {verb} {what}: {message}")
        if status >= 500:
            return UnavailableError(f"kubernetes API server {self.server} failed to {verb} {what}: {status} "
                                    f"{message}")
        return StackblazeError(f"kubernetes: {verb} {what}: {status} {message}")


def _check_context(paths: str, context: str | None) -> str:
    """The context to use, after checking the kubeconfig exists and has it (the library's own errors name
    neither the file nor the fix)."""
    files = [os.path.expanduser(path) for path in paths.split(os.pathsep) if path]
    if not any(os.path.isfile(path) for path in files):
        raise UserError(f"kubeconfig {paths} not found: point KUBECONFIG at your cluster's kubeconfig "
                        f"(kind, k3d and managed clusters write one; kubectl config view shows it)")
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=paths)
    except (ConfigException, OSError, ValueError) as error:
        raise UserError(f"kubeconfig {paths}: {_one_line(error)}") from error
    names = [entry["name"] for entry in contexts or []]
    if context is None:
        if not current:
            raise UserError(f"kubeconfig {paths} has no current context: pass --context "
                            f"(one of: {', '.join(names) or 'none'}) or run kubectl config use-context NAME")
        return str(current["name"])
    if context not in names:
        raise UserError(f"kubernetes context {context!r} is not in {paths} (contexts: {', '.join(names) or 'none'}): "
                        f"pass one of them as --context or set the target's context in stackblaze.yaml")
    return context


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Chunks as they arrive, cut into lines (split as bytes, so a character cut between chunks survives)."""
    rest = b""
    for chunk in chunks:
        *lines, rest = (rest + chunk).split(b"\n")
        yield from lines
    if rest:
        yield rest


def _api_message(error: ApiException) -> str:
    """The `message` of the API's Status body, else the HTTP reason."""
    try:
        body = json.loads(error.body or "")
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return _one_line(message or error.reason or "no message")


def _reason(error: urllib3.exceptions.HTTPError) -> str:
    """`Connection refused` rather than urllib3's nested retry story."""
    cause = getattr(error, "reason", None) or error
    text = str(cause)
    return text.rsplit(": ", 1)[-1] if "Errno" in text else _one_line(text)


def _one_line(error: object) -> str:
    return " ".join(str(error).split())
