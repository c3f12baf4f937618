"""A real image: buildah builds our Containerfile FROM a busybox base made here, then we look inside it.

No registry is reachable, so the base is a static busybox tarred into a rootfs. Each test has its own
buildah storage (`--root`/`--runroot` under tmp_path), so nothing leaks and tests can run in parallel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackblaze.build.image import build_image
from stackblaze.build.plan import BuildPlan
from tests.tools import need

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BASE = "localhost/stackblaze-test-busybox:latest"
APPLETS = ("sh", "ls", "cat", "echo", "mkdir", "cp", "chmod", "test", "wc", "id", "env", "rm", "ln", "printf", "[")


class Buildah:
    """buildah with a private storage: every image and container of one test lives under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.flags = ["--storage-driver", "vfs", "--root", str(root / "storage"), "--runroot", str(root / "run")]

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(["buildah", *self.flags, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"buildah {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        return proc.stdout.strip()

    def inspect(self, image: str) -> dict[str, Any]:
        return json.loads(self("inspect", "--type", "image", image))["OCIv1"]["config"]  # type: ignore[no-any-return]


@pytest.fixture
def buildah(tmp_path: Path) -> Iterator[Buildah]:
    yield from busybox_buildah(tmp_path)


def busybox_buildah(tmp_path: Path) -> Iterator[Buildah]:
    """A private buildah storage under tmp_path holding the static-busybox base, removed afterwards."""
    need("buildah")
    busybox = need("busybox")
    if b"ld-linux" in Path(busybox).read_bytes()[:65536]:
        pytest.fail(f"{busybox} is dynamically linked: a scratch image needs busybox-static")
    tool = Buildah(tmp_path / "buildah")
    try:
        make_base(tool, Path(busybox), tmp_path / "base")
        yield tool
    finally:
        subprocess.run(["buildah", *tool.flags, "rm", "--all"], capture_output=True, timeout=60)
        shutil.rmtree(tool.root, ignore_errors=True)


def make_base(tool: Buildah, busybox: Path, work: Path) -> None:
    rootfs = work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir(mode=0o1777)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    tarball = work / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(rootfs, arcname=".")
    container = tool("from", "scratch")
    tool("add", container, str(tarball), "/")
    tool("config", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", container)
    tool("commit", "--quiet", container, BASE)
    tool("rm", container)


def write_app(root: Path) -> BuildPlan:
    root.mkdir()
    (root / "deps.lock").write_text("greeting==1.0\n")
    (root / "worker.sh").write_text("#!/bin/sh\necho working on \"$1\"\n")
    (root / "worker.sh").chmod(0o755)
    (root / "vendor").mkdir()  # replaced by a link to the dependency layer's vendor/
    (root / "vendor" / "stale.txt").write_text("from the source tree\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return BuildPlan(
        service="mailer", root=".", runtime="procfile", version=None, version_source=None,
        resolved_version=None, package_manager=None, tool_version=None,
        # The install sees only the lockfile; it proves it, counts the CA bundle's bytes and makes a tool.
        install=(
            'test ! -e worker.sh && echo "install-$((40 + 2))" && mkdir -p "$DEPS/bin" && cp -R ./. "$DEPS/"'
            ' && { if [ -n "${SSL_CERT_FILE:-}" ]; then wc -c < "$SSL_CERT_FILE" > "$DEPS/ca-bytes"; fi; }'
            " && printf '#!/bin/sh\\necho greeting 1.0\\n' > \"$DEPS/bin/greet\" && chmod +x \"$DEPS/bin/greet\""
            ' && mkdir -p "$DEPS/vendor" && echo installed > "$DEPS/vendor/lib.txt"'
        ),
        build="greet > built.txt", start="./worker.sh emails", lockfiles=("deps.lock", "missing.lock"),
        env={"PATH": "$DEPS/bin:$PATH", "APP_MODE": "image", "PRICE": '$5 \\ "x"'}, links=("vendor",),
    )


def test_a_built_image_has_the_config_and_the_files(buildah: Buildah, tmp_path: Path) -> None:
    plan = write_app(tmp_path / "app")
    lines: list[str] = []
    environ = {**os.environ, "STACKBLAZE_BUILDAH_ARGS": " ".join([*buildah.flags, "--isolation", "chroot"])}
    ca = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    if not ca.is_file():  # the CA mount is tested either way
        ca = tmp_path / "ca.pem"
        ca.write_text("-----BEGIN CERTIFICATE-----\nnot a real one\n-----END CERTIFICATE-----\n")
        environ["STACKBLAZE_CA_BUNDLE"] = str(ca)
    tag = "localhost/acme-mailer:test"
    result = build_image(plan, tmp_path / "app", tag=tag, builder="buildah", base=BASE, stop_signal="SIGQUIT",
                         project="acme", release="r1", environ=environ, output=lines.append)
    assert "install-42" in lines, "\n".join(lines)

    config = buildah.inspect(tag)
    assert config["Cmd"] == ["./worker.sh", "emails"]
    assert config["User"] == "10001:10001"
    assert config["StopSignal"] == "SIGQUIT"
    assert config["WorkingDir"] == "/app"
    assert "PATH=/app/.deps/bin:/usr/local/bin:/usr/bin:/bin" in config["Env"]
    assert "APP_MODE=image" in config["Env"]
    assert 'PRICE=$5 \\ "x"' in config["Env"]  # only $DEPS and $PATH are placeholders
    assert not [item for item in config["Env"] if "CERT" in item or "CA_" in item or item.startswith("DEPS=")]
    assert config["Labels"]["dev.stackblaze.service"] == "mailer"
    assert config["Labels"]["dev.stackblaze.release"] == "r1"
    assert "ENTRYPOINT" not in result.containerfile and config.get("Entrypoint") in (None, [])

    container = buildah("from", "--quiet", tag)
    rootfs = Path(buildah("mount", container))
    app = rootfs / "app"
    assert (app / "worker.sh").read_text().startswith("#!/bin/sh")
    assert (app / "built.txt").read_text() == "greeting 1.0\n"  # the build ran with the deps on PATH
    assert (app / ".deps" / "deps.lock").read_text() == "greeting==1.0\n"
    assert int((app / ".deps" / "ca-bytes").read_text()) == ca.stat().st_size  # the CA reached the install
    assert not (app / ".git").exists()
    assert os.readlink(app / "vendor") == "/app/.deps/vendor"
    assert (app / ".deps" / "vendor" / "lib.txt").read_text() == "installed\n"
    # the CA bundle was mounted, never stored (buildah may leave the empty mount point's directory)
    assert not [path for path in (rootfs / "run").rglob("*") if not path.is_dir()]
    ran = buildah("run", "--isolation", "chroot", container, "--", "./worker.sh", "emails")
    assert ran == "working on emails"
    assert buildah("run", "--isolation", "chroot", container, "--", "id", "-u") == "10001"


def test_a_code_edit_reuses_the_dependency_layer(buildah: Buildah, tmp_path: Path) -> None:
    plan = write_app(tmp_path / "app")
    environ = {**os.environ, "STACKBLAZE_BUILDAH_ARGS": " ".join([*buildah.flags, "--isolation", "chroot"]),
               "STACKBLAZE_CA_BUNDLE": "none"}
    first: list[str] = []
    build_image(plan, tmp_path / "app", tag="localhost/m:1", builder="buildah", base=BASE, environ=environ,
                output=first.append)
    (tmp_path / "app" / "worker.sh").write_text("#!/bin/sh\necho edited\n")
    second: list[str] = []
    build_image(plan, tmp_path / "app", tag="localhost/m:2", builder="buildah", base=BASE, environ=environ,
                output=second.append)
    assert "install-42" in first and "install-42" not in second, "\n".join(second)
    container = buildah("from", "--quiet", "localhost/m:2")
    assert buildah("run", "--isolation", "chroot", container, "--", "./worker.sh") == "edited"


def test_the_cli_prints_and_builds_an_image_per_service(buildah: Buildah, tmp_path: Path) -> None:
    app = tmp_path / "shop"
    app.mkdir()
    (app / "Procfile").write_text("worker: ./worker.sh emails\nmailer: ./worker.sh $QUEUE\n")
    (app / "worker.sh").write_text("#!/bin/sh\necho working on \"$1\"\n")
    (app / "worker.sh").chmod(0o755)
    env = {**os.environ, "STACKBLAZE_HOME": str(tmp_path / "home"), "STACKBLAZE_CA_BUNDLE": "none",
           "STACKBLAZE_BUILDAH_ARGS": " ".join([*buildah.flags, "--isolation", "chroot"])}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stackblaze.cli", "build", str(app), "--image", *args],
                              capture_output=True, text=True, env=env, timeout=120)

    dry = cli("--dry-run", "--json", "--base", BASE)
    assert dry.returncode == 0, dry.stderr
    images = {item["service"]: item for item in json.loads(dry.stdout)["images"]}
    assert 'CMD ["./worker.sh", "emails"]' in images["worker"]["containerfile"].splitlines()
    assert 'CMD ["/bin/sh", "-c", "exec ./worker.sh $QUEUE"]' in images["mailer"]["containerfile"].splitlines()
    assert images["worker"]["tag"] == "shop-worker:latest"

    same = cli("--tag", "localhost/shop:1")
    assert same.returncode == 2 and "put {service} in it" in same.stderr

    built = cli("--builder", "buildah", "--base", BASE, "--tag", "localhost/{project}-{service}:cli")
    assert built.returncode == 0, built.stderr
    assert "worker: built localhost/shop-worker:cli with buildah" in built.stdout
    assert "COMMIT localhost/shop-mailer:cli" in built.stderr  # the builder's output, streamed
    assert buildah.inspect("localhost/shop-worker:cli")["Cmd"] == ["./worker.sh", "emails"]
    container = buildah("from", "--quiet", "localhost/shop-mailer:cli")
    ran = buildah("run", "--isolation", "chroot", "--env", "QUEUE=billing", container, "--",
                  "/bin/sh", "-c", "exec ./worker.sh $QUEUE")
    assert ran == "working on billing"

