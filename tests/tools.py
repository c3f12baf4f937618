"""System tools the tests need: skip with the install command when one is missing, fail instead under CI=true.

On a fresh machine the README's test command passes: a test whose tool is not installed is skipped, and its
reason says how to install it. `.ci/run` installs every tool and exports CI=true, so there a missing tool is a
failure, never a silent skip. INSTALL is the same list as `.ci/run`'s; keep the two together.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

INSTALL = {
    "rsyslogd": "apt-get install -y rsyslog rsyslog-gnutls",
    "redis-server": "apt-get install -y redis-server",
    "buildah": "apt-get install -y buildah",
    "docker-registry": "apt-get install -y docker-registry",
    "busybox": "apt-get install -y busybox-static",
    "debootstrap": "apt-get install -y debootstrap",
    "go": "apt-get install -y golang-go",
    "node": "apt-get install -y nodejs npm",
    "npm": "apt-get install -y nodejs npm",
    "pnpm": "npm install -g pnpm@12",
    "uv": "pip install -e '.[test]'",
    "chromium": "apt-get install -y chromium",
}
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # rsyslogd lives there, and a user's PATH may lack them


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing(what: str, fix: str) -> NoReturn:
    """Skip saying what is missing and `fix`, how to get it; under CI=true fail, since the CI machine is made
    to have everything the tests need."""
    if in_ci():
        pytest.fail(f"{what} ({fix}): required under CI=true, where .ci/run provides it")
    pytest.skip(f"{what} ({fix})")


def need(tool: str, install: str | None = None) -> str:
    """The path of `tool`; a skip with its install command when it is missing (a failure under CI=true)."""
    path = shutil.which(tool) or shutil.which(tool, path=os.pathsep.join(SBIN))
    if path is None:
        missing(f"{tool} is not installed here", install or INSTALL.get(tool, f"install {tool}"))
    return path
