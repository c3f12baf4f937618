"""Why a replica could not be spawned, in plain words and with the errno name (EMFILE, E2BIG, ENOENT...).

The runner answers a failed spawn with both, so the daemon can tell "not found" from "too many open
files" instead of guessing. Standard library only: the runner imports this.
"""

from __future__ import annotations

import errno
import os

MAX_ARG_STRLEN = 32 * 4096  # Linux: one argument or NAME=value string may be at most this long
# A spawn that failed as a shell would report its exit: 127 not found, 126 found but not runnable; other
# reasons (too many open files, an environment too big for execve) are said in words, not as a made-up code.
SHELL_EXIT_CODES = {"ENOENT": 127, "EACCES": 126, "ENOEXEC": 126}


def _find(program: str, path: str) -> str | None:
    if "/" in program:
        return program if os.path.exists(program) else None
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", program)
        if os.path.isfile(candidate):
            return candidate
    return None


def _interpreter(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0].decode(errors="replace") if words else None


def _exec_size(argv: list[str], env: dict[str, str]) -> int:
    return sum(len(a.encode()) + 1 for a in argv) + sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())


def explain(exc: BaseException, *, argv: list[str], cwd: str, env: dict[str, str],
            user: str | None = None) -> tuple[str, str]:
    """(errno name, reason) for an error raised while spawning `argv` in `cwd` with `env` (as `user`)."""
    program = argv[0] if argv else ""
    if type(exc).__name__ == "SubprocessError":  # raised in the child before exec: only switching user may
        who = f"the user {user}" if user else "its user"
        return "EPERM", f"could not switch to {who} before starting (setgroups, setresuid or no_new_privs failed)"
    if isinstance(exc, ValueError):  # refused by Python before any system call
        text = str(exc)
        if "null byte" in text:
            where = next((k for k, v in env.items() if "\0" in k or "\0" in v), None)
            what = f"the environment variable {where!r}" if where else "an argument of the start command"
            return "EINVAL", f"{what} contains a NUL byte, which no process can receive"
        if "environment variable name" in text:
            bad = next((k for k in env if "=" in k or not k), "")
            return "EINVAL", f"the environment variable name {bad!r} is not valid (empty, or contains '=')"
        return "EINVAL", text
    code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
    name = errno.errorcode.get(code, "EINVAL")
    filename = getattr(exc, "filename", None)
    on_cwd = filename is not None and os.path.abspath(str(filename)) == os.path.abspath(cwd)
    if code == errno.ENOENT:
        if on_cwd:
            return name, f"the working directory {cwd} does not exist"
        found = _find(program, env.get("PATH", os.defpath))
        interpreter = _interpreter(found) if found else None
        if found and interpreter:
            return name, f"{program!r} starts with #!{interpreter}, and {interpreter} does not exist"
        where = "" if "/" in program else f" on PATH ({env.get('PATH', os.defpath)})"
        return name, f"the start command {program!r} was not found{where}"
    if code == errno.EACCES:
        if on_cwd:
            return name, f"the working directory {cwd} cannot be entered (permission denied)"
        return name, (f"{program!r} is not executable (chmod +x it), or a directory on its path cannot be "
                      "entered")
    if code == errno.ENOEXEC:
        return name, (f"{program!r} is not a program this machine can run (a script without a #! line, or a "
                      "binary for another architecture)")
    if code == errno.E2BIG:
        size = _exec_size(argv, env)
        long = next((k for k, v in env.items() if len(k.encode()) + len(v.encode()) + 1 > MAX_ARG_STRLEN), None)
        if long is not None:
            return name, (f"the environment variable {long!r} is longer than the 128 KiB a single value may "
                          "have")
        try:
            limit = f" (the limit here is {os.sysconf('SC_ARG_MAX') // 1024} KiB)"
        except (ValueError, OSError):
            limit = ""
        return name, f"the environment and arguments ({size // 1024} KiB) are more than execve accepts{limit}"
    if code == errno.EMFILE:
        try:
            open_now = len(os.listdir("/proc/self/fd"))
        except OSError:
            open_now = -1
        import resource  # only on this rare path: the runner keeps its imports few

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return name, (f"the runner has too many open files ({open_now} open, limit {soft}, hard limit {hard}); "
                      "raise the hard limit (ulimit -Hn, or LimitNOFILE= in a systemd unit)")
    if code == errno.ENFILE:
        return name, "the machine's table of open files is full (sysctl fs.file-max)"
    if code in (errno.EAGAIN, errno.ENOMEM):
        return name, "cannot create a process: out of memory, or over the process limit (ulimit -u, pids cgroup)"
    if code == errno.ENOTDIR:
        return name, f"a part of {filename or program!r} is not a directory"
    return name, os.strerror(code)
