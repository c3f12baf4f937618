"""Fixtures of the real-control-plane tier: one control plane per test session (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok's fake nodes, from tests/k8s/controlplane.py) and a namespace
per test.

Off CI, missing binaries skip the tier with the command that builds them (a cold build takes ~7 minutes on 2
cores); under CI=true the fixture runs build.sh (a no-op once .ci/run has built them) and fails if it cannot.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.k8s_controlplane.stack import cluster  # noqa: F401 (the engine tests' fixture)
from tests.integration.conftest import registry, sb  # noqa: F401 (the real CLI and daemon; a registry)
from tests.integration.test_registry_push import store  # noqa: F401 (buildah with a busybox base)
from tests.k8s.controlplane import BUILD, ControlPlane, ControlPlaneError, build, built, cache_dir, pinned
from tests.tools import in_ci


def _binaries() -> Path:
    folder = built()
    if folder is not None:
        return folder
    versions = ", ".join(f"{name} {version}" for name, version in pinned().items())
    if not in_ci():
        pytest.skip(f"no control plane built in {cache_dir()} ({versions}): build it with {BUILD} "
                    f"(Go 1.26 and the module proxy; ~7 min cold on 2 cores)")
    try:
        return build()
    except Exception as error:  # any build failure fails the tier under CI: .ci/run provides the build
        pytest.fail(f"under CI=true the control plane must build ({versions}): {error}")


@pytest.fixture(scope="package")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A started control plane, stopped when this package's tests are done (not at the end of the whole run:
    its etcd, API server, controller manager and scheduler would keep working beside every later test);
    `.kubeconfig` (admin, context `.context` == "stackblaze-test"), `.server`,
    `.node_names` (kwok-node-0..2, Ready), `.api_client()`, `.ready_seconds`."""
    binaries = _binaries()
    workdir = tmp_path_factory.mktemp("k8s")
    plane = ControlPlane(binaries, workdir)
    try:
        plane.start()
    except ControlPlaneError as error:
        plane.stop()
        pytest.fail(f"the control plane in {workdir} did not start: {error}")
    except BaseException:
        plane.stop()
        raise
    try:
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(workdir / "etcd", ignore_errors=True)  # the only big thing there


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted after it (its objects go with it, by the namespace
    controller)."""
    import kubernetes

    name = f"sb-{uuid.uuid4().hex[:8]}"
    core = control_plane.core()
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except kubernetes.client.ApiException as error:
            if error.status != 404:  # a test may delete its namespace itself
                raise
