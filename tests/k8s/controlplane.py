"""A real Kubernetes control plane on 127.0.0.1 for the e2e tier, started as controller-runtime's envtest
starts one: etcd and kube-apiserver (client-certificate auth, RBAC, ServiceAccount admission off), plus what
envtest leaves out and our engine relies on: kube-controller-manager (the Deployment, ReplicaSet, Job,
CronJob, namespace and garbage-collector controllers), kube-scheduler, and kwok, which plays the kubelet of a
few fake nodes (there is no kubelet here: pods are bound and marked Running, no container runs).

The binaries come from tests/k8s/controlplane/build.sh, at the versions its go.mod pins, in a cache outside
the repo. Each process is ours: started with its log in the work folder, stopped by PID (SIGTERM, then
SIGKILL).
"""

from __future__ import annotations

import base64
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.k8s.pki import Authority, Pair, service_account_keys

MODULE = Path(__file__).parent / "controlplane"
BUILD = MODULE / "build.sh"
CONTEXT = "stackblaze-test"
SERVICE_CIDR = "10.0.0.0/24"  # envtest's; its first address (10.0.0.1) is the `kubernetes` Service
POD_CIDR = "10.244.0.1/16"  # the IPs kwok hands its pods, apart from the Service range
KWOK_ANNOTATION = "kwok.x-k8s.io/node"  # nodes with it set to "fake" are kwok's to play
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
STOP_GRACE = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
T = TypeVar("T")


def pinned() -> dict[str, str]:
    """The versions build.sh builds, read from the module's go.mod (its single source of truth)."""
    wanted = {"k8s.io/kubernetes": "kubernetes", "go.etcd.io/etcd/server/v3": "etcd", "sigs.k8s.io/kwok": "kwok"}
    found = {}
    for line in (MODULE / "go.mod").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in wanted and words[1].startswith("v"):
            found[wanted[words[0]]] = words[1]
    return found


def cache_dir() -> Path:
    """Where build.sh puts this release: ${STACKBLAZE_K8S_CACHE:-~/.cache/stackblaze}/k8s-<version>."""
    root = os.environ.get("STACKBLAZE_K8S_CACHE") or str(Path.home() / ".cache" / "stackblaze")
    return Path(root) / f"k8s-{pinned()['kubernetes']}"


def built() -> Path | None:
    """The binaries' folder when a complete build of the pinned versions is there (build.sh's stamp)."""
    versions = pinned()
    stamp = " ".join(f"{name}={versions[name]}" for name in ("kubernetes", "etcd", "kwok"))
    folder = cache_dir()
    try:
        complete = (folder / "stamp").read_text().strip() == stamp
    except OSError:
        return None
    return folder if complete and all((folder / name).exists() for name in BINARIES) else None


def build(timeout: float = 3600.0) -> Path:
    """Run build.sh (a no-op when the stamp matches) and return the binaries' folder; raise with the end of
    its output when it fails."""
    result = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD} failed (exit {result.returncode}): {result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the process that started it dies. A killed pytest runs no
    teardown, and an API server left behind holds its ports and etcd's data for good."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class ControlPlaneError(RuntimeError):
    pass


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler (+ kwok with `nodes` fake nodes
    when its binary was built) under `workdir`, with an admin kubeconfig at `kubeconfig` (context CONTEXT)."""

    def __init__(self, binaries: Path, workdir: Path, nodes: int = 3) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.kwok = (binaries / "kwok").exists() and (binaries / "kwok-stages.yaml").exists()
        self.node_names = [f"kwok-node-{index}" for index in range(nodes)] if self.kwok else []
        self.kubeconfig = workdir / "kubeconfig"
        self.context = CONTEXT
        self.processes: list[Process] = []
        self.server = ""
        self.ready_seconds = 0.0
        self._pki = workdir / "pki"
        self._logs = workdir / "logs"

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- start -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        started = time.monotonic()
        deadline = started + timeout
        self._logs.mkdir(parents=True, exist_ok=True)
        ca = Authority(self._pki)
        sa = service_account_keys(self._pki)
        ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")}
        self.server = f"https://127.0.0.1:{ports['apiserver']}"
        admin = ca.client("admin", "stackblaze-admin", ("system:masters",))
        self._write_kubeconfig(self.kubeconfig, ca, admin, CONTEXT)

        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
        self._spawn("etcd", [
            f"--data-dir={self.workdir / 'etcd'}", "--name=default",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync=true",  # as envtest: a test cluster's data need not survive a power cut
        ])
        self._wait("etcd /health", deadline, lambda: b'"health":"true"' in self._get(f"{etcd_url}/health"))

        serving = ca.serving("apiserver", ["127.0.0.1", "localhost", "10.0.0.1", "kubernetes",
                                           "kubernetes.default", "kubernetes.default.svc",
                                           "kubernetes.default.svc.cluster.local"])
        kubelet_client = ca.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                   ("system:masters",))
        self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
            # The `kubernetes` Service may not point at a loopback address, and nothing in this cluster runs a
            # pod that would dial it.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.files.cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}", f"--service-account-signing-key-file={sa.key}",
            "--authorization-mode=RBAC",
            # As envtest: with it on, a pod is refused until its namespace's `default` ServiceAccount exists,
            # a race with the controller-manager that only slows tests down.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={kubelet_client.cert}", f"--kubelet-client-key={kubelet_client.key}",
        ])
        admin_tls = self._tls(ca, admin)
        self._wait("kube-apiserver /readyz", deadline,
                   lambda: self._get(f"{self.server}/readyz", admin_tls) == b"ok")

        # The controller-manager and scheduler as kubeadm runs them: their own users, which the API server's
        # bootstrap RBAC policy already grants what they need; each controller acts as its own service account.
        kcm = self._component_kubeconfig("kube-controller-manager", ca, "system:kube-controller-manager")
        kcm_serving = ca.serving("kube-controller-manager-serving", ["127.0.0.1"])
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={kcm}", "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={sa.key}", f"--root-ca-file={ca.files.cert}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['kcm']}",
            f"--tls-cert-file={kcm_serving.cert}", f"--tls-private-key-file={kcm_serving.key}",
        ])
        scheduler = self._component_kubeconfig("kube-scheduler", ca, "system:kube-scheduler")
        scheduler_serving = ca.serving("kube-scheduler-serving", ["127.0.0.1"])
        self._spawn("kube-scheduler", [
            f"--kubeconfig={scheduler}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}",
            f"--tls-cert-file={scheduler_serving.cert}", f"--tls-private-key-file={scheduler_serving.key}",
        ])
        if self.kwok:
            # kwok watches and patches every pod and node status: a kubelet fleet's powers (system:masters).
            kwok = self._component_kubeconfig("kwok", ca, "kwok", ("system:masters",))
            kwok_serving = ca.serving("kwok-serving", ["127.0.0.1"])
            self._spawn("kwok", [
                f"--kubeconfig={kwok}", f"--config={self.binaries / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--node-ip=127.0.0.1", f"--node-port={ports['kwok']}",
                f"--server-address=127.0.0.1:{ports['kwok']}",
                f"--tls-cert-file={kwok_serving.cert}", f"--tls-private-key-file={kwok_serving.key}",
                f"--cidr={POD_CIDR}", "--node-lease-duration-seconds=40",
            ])

        ca_tls = self._tls(ca)
        for name in ("kcm", "scheduler"):
            url = f"https://127.0.0.1:{ports[name]}/healthz"
            self._wait(f"{name} {url}", deadline, partial(self._healthy, url, ca_tls))
        core = self.core()
        # The serviceaccount controller made it: the controller-manager is up and acting on the API server.
        self._wait("the controller-manager to create ServiceAccount default/default", deadline,
                   lambda: self._exists(lambda: core.read_namespaced_service_account("default", "default")))
        for name in self.node_names:
            core.create_node(self._node(name))
        self._wait(f"kwok nodes {', '.join(self.node_names)} to be Ready", deadline,
                   lambda: all(self._node_ready(core, name) for name in self.node_names))
        self.ready_seconds = time.monotonic() - started

    def _node(self, name: str) -> dict[str, Any]:
        # No kwok taint (kwok's own examples add one): nothing else could run a pod here, and stackblaze's
        # Deployments carry no toleration for it.
        annotations = {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}
        labels = {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "kubernetes.io/role": "agent"}
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": annotations,
                                                                 "labels": labels}}

    @staticmethod
    def _node_ready(core: Any, name: str) -> bool:
        conditions = core.read_node(name).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    # -- clients -----------------------------------------------------------------------------------------

    def api_client(self) -> Any:
        """An admin client of the official `kubernetes` package, from the kubeconfig."""
        import kubernetes

        return kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), context=self.context, persist_config=False)

    def core(self) -> Any:
        import kubernetes

        return kubernetes.client.CoreV1Api(self.api_client())

    # -- stop --------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM each process we started, newest first (kwok before the API server, which goes before
        etcd), then SIGKILL whatever is still there after STOP_GRACE seconds."""
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
                try:
                    process.popen.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait(STOP_GRACE)
        self.processes.clear()

    def pids(self) -> dict[str, int]:
        return {process.name: process.popen.pid for process in self.processes}

    # -- helpers -----------------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self._logs / f"{name}.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            popen = subprocess.Popen([str(self.binaries / name), *args], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        self.processes.append(Process(name, popen, log))

    def _wait(self, what: str, deadline: float, check: Callable[[], object]) -> None:
        """Poll `check` until truthy; raise naming `what` and the end of any log whose process exited, or
        of every log at the deadline."""
        last: object = None
        while time.monotonic() < deadline:
            dead = [p for p in self.processes if p.popen.poll() is not None]
            if dead:
                raise ControlPlaneError("; ".join(f"{p.name} exited ({p.popen.returncode}) while waiting for {what}; "
                                                  f"{p.log}:\n{p.tail()}" for p in dead))
            try:
                last = check()
            except Exception as error:  # not up yet: refused, 5xx, not found
                last = error
            else:
                if last:
                    return
            time.sleep(0.1)
        logs = "\n".join(f"--- {p.log}:\n{p.tail(1500)}" for p in self.processes)
        raise ControlPlaneError(f"timed out waiting for {what} (last: {last!r})\n{logs}")

    @staticmethod
    def _get(url: str, context: ssl.SSLContext | None = None) -> bytes:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            body: bytes = response.read()
            return body

    @classmethod
    def _healthy(cls, url: str, context: ssl.SSLContext) -> bool:
        return cls._get(url, context) == b"ok"

    @staticmethod
    def _exists(read: Callable[[], object]) -> bool:
        import kubernetes

        try:
            read()
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    @staticmethod
    def _tls(ca: Authority, client: Pair | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca.files.cert))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        return context

    def _component_kubeconfig(self, name: str, ca: Authority, user: str, groups: tuple[str, ...] = ()) -> Path:
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, ca, ca.client(name, user, groups), name)
        return path

    def _write_kubeconfig(self, path: Path, ca: Authority, user: Pair, context: str) -> None:
        """A self-contained kubeconfig (certificates inline), readable by kubectl, client-go and the Python
        client alike."""
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.server,
                                                       "certificate-authority-data": b64(ca.pem)}}],
            "users": [{"name": context, "user": {"client-certificate-data": b64(user.cert.read_bytes()),
                                                 "client-key-data": b64(user.key.read_bytes())}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
