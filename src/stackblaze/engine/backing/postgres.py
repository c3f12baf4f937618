"""A project's PostgreSQL: the distribution's initdb and postgres, the cluster in its own data dir.

Made once: `initdb` (as the server's user, superuser role `app` with the stored password) into a
scratch dir, database `app` created in single-user mode, then renamed into place, so that a setup
cut short is made again rather than half used. `pg_hba.conf` is ours and written at each deploy:
`trust` with `auth: none` (the address is loopback, the socket dir is the server user's alone), else
scram-sha-256. Clients on 127.77.x.y connect from 127.0.0.1 (the kernel's source for 127/8), hence 127/8.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from stackblaze.engine.backing.disk import PrepareFailed, User, make_dir, run_as, write_private
from stackblaze.spec.backing import POSTGRES_DATABASE, POSTGRES_USER

PORT = 5432
DATA = "pgdata"
SOCKETS = "run"
SOCKET_PATH_MAX = 107  # sun_path, less its NUL


def find() -> tuple[Path, str]:
    """The directory of postgres and initdb, and the server's major version ("15")."""
    found = shutil.which("postgres") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                                                         reverse=True)), None)
    if found is None:
        raise PrepareFailed("postgres is not installed on this machine (apt-get install postgresql)")
    binary = Path(found).resolve()
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    version = re.search(r"\)\s*(\d+)", done.stdout)
    if version is None:
        raise PrepareFailed(f"{binary} --version said {done.stdout.strip() or done.stderr.strip()!r}, not a version")
    return binary.parent, version.group(1)


def hba(auth: str) -> str:
    method = "trust" if auth == "none" else "scram-sha-256"
    return (f"# written by stackblaze at each deploy (auth: {auth})\n"
            f"local all all {method}\n"
            f"host all all 127.0.0.0/8 {method}\n")


def prepare(*, data_dir: Path, address: str, password: str, auth: str, user: User) -> str:
    """Make the cluster on first use, check its version, write pg_hba.conf; return the server's command."""
    bin_dir, major = find()
    make_dir(data_dir, user)
    pgdata = data_dir / DATA
    if not (pgdata / "PG_VERSION").exists():
        _init(bin_dir, data_dir, password=password, user=user)
    made = (pgdata / "PG_VERSION").read_text().strip()
    if made != major:
        raise PrepareFailed(f"{pgdata} holds a PostgreSQL {made} cluster, but this machine's postgres is {major}: "
                            f"upgrade it with pg_upgrade, or install PostgreSQL {made} "
                            f"(or move the directory away to start empty)")
    write_private(pgdata / "pg_hba.conf", hba(auth), user)
    sockets = data_dir / SOCKETS
    make_dir(sockets, user)
    # A socket path past sun_path's size cannot be bound: then TCP only (clients use the address anyway).
    socket_dir = str(sockets) if len(f"{sockets}/.s.PGSQL.{PORT}") <= SOCKET_PATH_MAX else ""
    return shlex.join([str(bin_dir / "postgres"), "-D", str(pgdata), "-c", f"listen_addresses={address}",
                       "-p", str(PORT), "-k", socket_dir, "-c", "unix_socket_permissions=0700"])


def _init(bin_dir: Path, data_dir: Path, *, password: str, user: User) -> None:
    scratch = data_dir / f"{DATA}.init"
    shutil.rmtree(scratch, ignore_errors=True)
    pwfile = data_dir / ".pwfile"
    write_private(pwfile, password + "\n", user)
    try:
        done = run_as([str(bin_dir / "initdb"), "-D", str(scratch), "-U", POSTGRES_USER, f"--pwfile={pwfile}",
                       "-E", "UTF8", "--no-locale", "--auth=scram-sha-256"], user, cwd=data_dir)
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise PrepareFailed(f"initdb failed (exit {done.returncode}): {_last(done)}")
    done = run_as([str(bin_dir / "postgres"), "--single", "-D", str(scratch), "-c", "listen_addresses=",
                   "-c", "exit_on_error=on", "postgres"], user, cwd=data_dir,
                  stdin=f"CREATE DATABASE {POSTGRES_DATABASE} OWNER {POSTGRES_USER};\n")
    if done.returncode != 0:
        raise PrepareFailed(f"creating database {POSTGRES_DATABASE} failed (exit {done.returncode}): {_last(done)}")
    scratch.rename(data_dir / DATA)


def _last(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return " | ".join(lines[-3:]) or "no output"
