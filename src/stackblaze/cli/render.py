"""Everything the CLI prints: tables, log lines, events. The only module that knows the output format."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from stackblaze.logs.record import parse_time

# Piped output is for grep: never wrap a table row there.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)
PREFIX_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
STATE_STYLES = {"running": "green", "waiting": "yellow", "stopping": "yellow", "stopped": "dim"}
# What a terminal acts on: C0 controls but tab (ESC starts colours, cursor moves, title changes...), DEL, C1.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Worker output made safe for a terminal: each control character but tab shown as `\\x1b`, so that a
    line can neither recolour the screen, move the cursor, retitle the window nor hide itself."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _for(console: Console, line: str) -> str:
    """A worker's line as `console` should print it: escaped on a terminal, as written into a pipe."""
    return escape_controls(line) if console.is_terminal else line


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


def clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


def last_exit(info: dict[str, Any] | None, now: float) -> str:
    if not info:
        return "-"
    return f"{info['meaning']} ({duration(now - info['at'])} ago, ran {duration(info['ran_for'])})"


def state_text(replica: dict[str, Any], now: float) -> Text:
    state = replica["state"]
    label = state
    if state == "waiting" and replica.get("next_restart_at"):
        loop = "crash loop, " if replica.get("crash_loop") else ""
        label = f"waiting ({loop}restart in {duration(replica['next_restart_at'] - now)})"
    if replica.get("stopping") and state == "running":
        label = f"running (+{len(replica['stopping'])} stopping)"
    return Text(label, style=STATE_STYLES.get(state, ""))


def size(count: float) -> str:
    """Bytes as `pm2 ls` shows memory: 812.0 KiB, 48.2 MiB, 1.3 GiB."""
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KiB", "MiB"):
        count /= 1024
        if count < 1024:
            return f"{count:.1f} {unit}"
    return f"{count / 1024:.1f} GiB"


def usage(replica: dict[str, Any], key: str, *, pods: bool) -> str:
    """A replica's CPU or MEM cell: `-` when it does not run (or is not sampled yet), `n/a` on a
    Kubernetes target (metrics-server is not read)."""
    value = replica.get(key)
    if replica["state"] not in ("running", "stopping"):
        return "-"
    if value is None:
        return "n/a" if pods else "-"
    return f"{value:.1f}%" if key == "cpu" else size(value)


def disk_line(disk: dict[str, Any]) -> str:
    """`disk data at /var/data: 12.0 KiB used of 1Gi (size reported, not enforced)`."""
    used = "size not measured yet" if disk.get("used_bytes") is None else f"{size(disk['used_bytes'])} used"
    if disk.get("path") is None:  # a cluster's volume: its size is the claim's, enforced by the storage
        return f"  disk {disk['name']} at {disk['mount_path']}: {disk['size']} volume"
    return f"  disk {disk['name']} at {disk['mount_path']}: {used} of {disk['size']} (size reported, not enforced)"


def ps_table(payload: dict[str, Any]) -> None:
    now = time.time()
    if not payload["services"]:
        out.print(f"project {payload['project']}: no services")
        return
    for service in payload["services"]:
        if service.get("cron"):  # runs, not replicas: one line (stackblaze cron list says more)
            cron = service["cron"]
            last = cron["last_run"]
            ended = "" if not last else f"exit {last['exit_code']}" if last["exit_code"] is not None \
                else str(last["exit_signal"])
            out.print(Text.assemble(
                (service["service"], "bold"),
                f"  cron '{cron['schedule']}' {cron['timezone']}  {cron['state']}  release {service['release']}  "
                f"next {clock(cron['next_run']) if cron['next_run'] else '-'}  last "
                + (f"run {last['run']}: {ended} after {last['duration'] or 0:.1f}s" if last else "-"),
            ))
            out.print()
            continue
        flag = "" if service["running_flag"] else "  [stopped by user]"
        counts = f"{service['running']}/{service['desired']} running" if service["desired"] or service["running"] \
            else "stopped"
        if service.get("autoscale") and service["running_flag"]:  # the autoscaler owns the count
            scaled = service["autoscale"]
            bounds = f"auto {scaled['min']}..{scaled['max']}" + (" paused" if scaled["paused"] else "")
            counts = f"{service['running']}/{service['desired']} running ({bounds})"
        out.print(Text.assemble(
            (service["service"], "bold"),
            f"  {counts}  release {service['release']}  start: {service['start']}{flag}",
        ))
        if service.get("disk"):
            out.print(disk_line(service["disk"]), markup=False)
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
        pods = any(replica.get("pod") for replica in service["replicas"])  # a Kubernetes target: pods, no pids
        for column in ("REPLICA", "STATE", "POD" if pods else "PID", "RELEASE", "UPTIME", "RESTARTS", "CPU", "MEM",
                       "LAST EXIT"):
            table.add_column(column, no_wrap=column != "LAST EXIT")
        for replica in service["replicas"]:
            running = replica["state"] == "running"
            table.add_row(
                f"{service['service']}.{replica['replica']}", state_text(replica, now),
                str(replica.get("pod") or "-") if pods else
                str(replica["pid"] or "-") if running or replica["state"] == "stopping" else "-",
                str(replica["release"] or "-"),
                duration(replica["uptime"]) if running else "-",
                str(replica["restart_count"]), usage(replica, "cpu", pods=pods), usage(replica, "memory", pods=pods),
                last_exit(replica["last_exit"], now),
            )
        out.print(table)
        for replica in service["replicas"]:  # the disk was full: say what the log is missing
            name = f"{service['service']}.{replica['replica']}"
            if replica.get("log_dropping"):
                out.print(Text(f"{name}: its log cannot be written now (disk full?); lines are counted", "red"))
            elif replica.get("log_lines_dropped"):
                out.print(Text(f"{name}: {replica['log_lines_dropped']} log lines were lost (see events)", "yellow"))
        out.print()


LEVEL_STYLES = {"trace": "dim", "debug": "dim", "info": "green", "warn": "yellow", "error": "red", "fatal": "bold red"}


def readable(record: dict[str, Any]) -> str:
    """A JSON line as `INFO  message  key=value ...`; a plain line as it is."""
    if "fields" not in record:
        return str(record["line"])
    level = (record.get("level") or "-").upper()
    parts = [f"{level:<5}", record.get("message") or ""]
    parts += [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in record["fields"].items()]
    return "  ".join(p for p in parts if p)


class LogPrinter:
    """`worker.1 | line`, the prefix coloured per replica on a terminal; JSON lines shown readably."""

    def __init__(self, *, as_json: bool, timestamps: bool = False, raw: bool = False) -> None:
        self._as_json = as_json
        self._timestamps = timestamps
        self._raw = raw
        self._tty = sys.stdout.isatty()
        self._colours: dict[str, str] = {}

    def print(self, record: dict[str, Any]) -> None:
        if self._as_json:
            sys.stdout.write(json.dumps(record) + "\n")
            return
        name = f"{record['service']}.{record['replica']}"
        stamp = f"{clock(parse_time(record['at']))} " if self._timestamps else ""
        text = str(record["line"]) if self._raw else readable(record)
        if not self._tty:
            sys.stdout.write(f"{stamp}{name} | {text}\n")
            return
        colour = self._colours.setdefault(name, PREFIX_COLOURS[len(self._colours) % len(PREFIX_COLOURS)])
        prefix = Text.assemble((stamp, "dim"), (f"{name} |", colour), " ")
        if self._raw:  # as the worker wrote it, control characters included (rich would drop some)
            out.print(prefix, end="")
            sys.stdout.write(text + "\n")
            return
        style = LEVEL_STYLES.get(record.get("level") or "", "red" if record["stream"] == "stderr" else "")
        out.print(Text.assemble(prefix, Text(escape_controls(text), style=style)))

    def flush(self) -> None:
        sys.stdout.flush()


def build_line(line: str) -> None:
    """A live build output line: our own steps bold, the installer's output dim."""
    name, _, text = line.partition(" | ")
    if not text:
        err.print(line, markup=False)
    elif text.startswith("==>"):
        err.print(Text.assemble((f"{name} ", "cyan"), (text, "bold")))
    elif text.startswith("warning:"):
        err.print(Text.assemble((f"{name} ", "cyan"), (text, "yellow")))
    else:
        err.print(Text.assemble((f"{name} ", "cyan"), (text, "dim")))


def releases_table(payload: dict[str, Any]) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
    for column in ("RELEASE", "CREATED", "STATUS", "RUNTIME", "DEPENDENCIES", "BUILD", "PATH", "START"):
        table.add_column(column, no_wrap=column != "START")
    for release in reversed(payload["releases"]):
        marker = " *" if release["number"] == payload["current"] else ""
        created = datetime.fromtimestamp(release["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
        if release.get("status") in ("build-failed", "release-failed"):
            failed = "build failed" if release["status"] == "build-failed" else "release command failed"
            table.add_row(str(release["number"]), created, Text(failed, "red"), "-", "-", "-", "-",
                          release.get("error", ""))
            continue
        status = Text("rollout failed", "red") if release.get("rollout") == "failed" else Text("ok")
        runtime = f"{release.get('runtime', '-')} {release.get('resolved_version') or ''}".strip()
        deps = "installed" if release.get("installed") else ("cached" if release.get("cache_key") else "-")
        table.add_row(f"{release['number']}{marker}", created, status, runtime, deps,
                      f"{release.get('seconds', 0):.1f}s", release.get("path") or "-", release.get("start", ""))
    out.print(table)


def event_line(event: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
        return
    when = datetime.fromtimestamp(event["at"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    kind = event["kind"]
    style = {"exit": "red", "restart-scheduled": "yellow", "start": "green", "deploy": "cyan",
             "build-failed": "bold red", "release-failed": "bold red",
             "rollout-failed": "bold red", "rollout-complete": "green"}.get(kind, "")
    out.print(Text.assemble((when, "dim"), " ", (f"{kind:<18}", style), " ", event["message"]))
    for line in event["details"].get("last_lines") or []:
        out.print(Text.assemble(" " * 24, ("| ", "dim"), _for(out, line)))


def rollout_outcome(item: dict[str, Any]) -> None:
    """One service's rollout, as `deploy` and `rollout status` end: what runs now, or why it failed."""
    rollout = item.get("rollout") or item
    service = item["service"]
    state = rollout.get("state")
    if state == "failed":
        again = "started again" if rollout.get("strategy") == "recreate" else "kept running"
        kept = f"release {rollout['from_release']} {again}" if rollout.get("restored") else "nothing earlier to keep"
        err.print(Text.assemble((f"{service}: ", "bold"), ("rollout failed: ", "bold red"),
                                rollout.get("reason") or "", f" ({kept})"))
        for line in (rollout.get("exit") or {}).get("last_lines") or []:
            err.print(Text.assemble(("    | ", "dim"), _for(err, line)))
    elif state == "complete":
        seconds = (rollout.get("finished_at") or 0) - (rollout.get("started_at") or 0)
        out.print(f"{service}: release {rollout['release']} rolled out, "
                  f"{rollout.get('new_available', 0)}/{rollout.get('replicas', 0)} available ({seconds:.1f}s)")
    elif state == "progressing":
        out.print(f"{service}: release {rollout['release']} rolling out, "
                  f"{rollout.get('new_available', 0)}/{rollout.get('replicas', 0)} new replicas available")
    else:
        out.print(f"{service}: nothing to roll out")
