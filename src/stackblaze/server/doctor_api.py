"""GET /v1/doctor: what this machine gives projects, checked by the daemon that runs them.

Internal hostnames (the mode found by the probe at daemon start, or why there is none), nscd and the
nsswitch `hosts:` line (either can make /etc/hosts not be read first), the backing servers' binaries, and
the sysctl Redis warns about. A `fail` is something a project cannot do here; a `warn` may bite later.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from stackblaze.server.control import Control

Status = Literal["ok", "warn", "fail"]
SBIN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NSSWITCH = Path("/etc/nsswitch.conf")
NSCD_SOCKETS = (Path("/run/nscd/socket"), Path("/var/run/nscd/socket"))
OVERCOMMIT = Path("/proc/sys/vm/overcommit_memory")
POSTGRES_ROOT = Path("/usr/lib/postgresql")


class Check(BaseModel):
    name: str
    status: Status = Field(description="ok, warn (works, with a caveat) or fail (a project cannot do this here)")
    summary: str
    fix: str | None = Field(default=None, description="What to do about a warn or a fail.")
    mode: str | None = Field(default=None, description="internal hostnames: mount, userns, or null (unavailable)")
    path: str | None = None
    version: str | None = None


class DoctorAnswer(BaseModel):
    ok: bool = Field(description="False when any check failed (warnings do not count).")
    checks: list[Check]


def check_names(control: Control) -> Check:
    names = control.names
    if names.mode is None:
        return Check(name="internal hostnames", status="fail", mode=None,
                     summary=f"unavailable: {names.reason}; ${{{{service.URL}}}} references fall back to IP URLs "
                             "(redis://127.77.x.y:6379), and a literal <name>.internal does not resolve",
                     fix="run the daemon as root, or allow unprivileged user namespaces "
                         "(sysctl user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns=0)")
    return Check(name="internal hostnames", status="ok", mode=names.mode,
                 summary=f"<name>.internal resolves in each project's replicas: {names.mode}, {names.reason}")


def check_nscd(control: Control) -> Check:
    socket = next((path for path in NSCD_SOCKETS if path.exists()), None)
    if socket is None:
        return Check(name="nscd", status="ok", summary="not running (nothing caches the host's /etc/hosts)")
    if control.names.mode is not None:
        return Check(name="nscd", status="ok", path=str(socket),
                     summary=f"running ({socket}), hidden from replicas by an empty /run/nscd in their namespace")
    return Check(name="nscd", status="warn", path=str(socket),
                 summary=f"running ({socket}) and not hidden (no namespaces here): lookups may be served from "
                         "its cache of the host's files", fix="disable its hosts cache (enable-cache hosts no)")


def check_nsswitch(path: Path = NSSWITCH) -> Check:
    try:
        text = path.read_text()
    except OSError:
        return Check(name="nsswitch", status="ok", summary=f"no {path}: glibc reads files, then DNS")
    line = next((" ".join(raw.split("#")[0].split()) for raw in text.splitlines()
                 if re.match(r"\s*hosts\s*:", raw)), None)
    if line is None:
        return Check(name="nsswitch", status="ok", summary=f"{path} has no hosts: line: glibc reads files, then DNS")
    sources = line.split(":", 1)[1].split()
    if sources and sources[0] == "files":
        return Check(name="nsswitch", status="ok", summary=line)
    return Check(name="nsswitch", status="warn", summary=f"{line}: files is not first, so another source may "
                 "answer <name>.internal before /etc/hosts", fix=f"put files first on the hosts: line of {path}")


def _version(command: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


def check_redis() -> Check:
    path = shutil.which("redis-server") or shutil.which("redis-server", path=SBIN)
    if path is None:
        return Check(name="redis-server", status="warn", summary="not installed: type: redis services cannot run",
                     fix="apt-get install redis-server")
    version = _version([path, "--version"], r"v=(\S+)")
    return Check(name="redis-server", status="ok", path=path, version=version, summary=f"{path} ({version})")


def check_postgres() -> Check:
    on_path = shutil.which("initdb")
    found = [Path(on_path).resolve()] if on_path else sorted(
        POSTGRES_ROOT.glob("*/bin/initdb"), key=lambda path: _major(path.parent.parent.name), reverse=True)
    postgres = found[0].with_name("postgres") if found else None
    if postgres is None or not postgres.exists():
        return Check(name="postgresql", status="warn", summary="initdb/postgres not found (on PATH or under "
                     f"{POSTGRES_ROOT}/*/bin): type: postgres services cannot run", fix="apt-get install postgresql")
    version = _version([str(postgres), "--version"], r"\)\s*(\S+)")
    folder = str(postgres.parent)
    return Check(name="postgresql", status="ok", path=folder, version=version, summary=f"{folder} ({version})")


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


def check_overcommit(path: Path = OVERCOMMIT) -> Check:
    try:
        value = path.read_text().strip()
    except OSError:
        return Check(name="vm.overcommit_memory", status="ok", summary="not readable here")
    if value == "1":
        return Check(name="vm.overcommit_memory", status="ok", summary="1")
    return Check(name="vm.overcommit_memory", status="warn",
                 summary=f"{value}: Redis warns that a background save or AOF rewrite may fail under low memory",
                 fix="sysctl vm.overcommit_memory=1 (stackblaze does not change sysctls)")


def doctor(control: Control) -> DoctorAnswer:
    """Every check; blocking (it runs two --version commands)."""
    checks = [check_names(control), check_nscd(control), check_nsswitch(), check_redis(), check_postgres(),
              check_overcommit()]
    return DoctorAnswer(ok=all(check.status != "fail" for check in checks), checks=checks)


def router(control: Control) -> APIRouter:
    routes = APIRouter()

    @routes.get("/v1/doctor")
    async def get_doctor() -> DoctorAnswer:
        """What this machine gives projects: internal hostnames, resolver set-up, backing servers, sysctls."""
        return await asyncio.to_thread(doctor, control)

    return routes

