"""What the local engine says of a replica in `events`, `ps` and `logs --previous`: its exit record, and the
exit, restart-scheduled and log outage events. The supervisor decides; only this module words it."""

from __future__ import annotations

from typing import Any

from stackblaze.engine.exits import describe_exit_record, signal_name
from stackblaze.engine.local.slots import EventSink, Slot


def exit_words(record: dict[str, Any]) -> str:
    """Why a replica ended, in words: the runner's reason if it gave one, else its code or signal."""
    return str(record.get("reason") or describe_exit_record(record))


def exit_details(record: dict[str, Any]) -> dict[str, Any]:
    """The exit as `ps` (last_exit), `events` and a failed rollout carry it; a crash adds its last lines."""
    sig = record.get("exit_signal")
    return {
        "code": record.get("exit_code"), "signal": signal_name(sig) if sig else None,
        "meaning": exit_words(record), "at": record["exited_at"],
        "ran_for": max(0.0, record["exited_at"] - record["started_at"]),
        "release": record.get("release"), "key": record.get("key"), "pid": record.get("pid"),
        "killed_after_grace": record.get("killed_after_grace"), "oom_killed": bool(record.get("oom_killed")),
    }


def report_exit(event: EventSink, slot: Slot, record: dict[str, Any], details: dict[str, Any], *,
                verb: str = "exited", ran_for: float | None = None) -> None:
    """An `exit` event. A crash says how long it ran and is dated when it ended; a replica that was stopped,
    or that no one counted on, is dated when the exit is heard."""
    after = f" after {ran_for:.1f}s" if ran_for is not None else ""
    at = {"at": record["exited_at"]} if ran_for is not None else {}
    event(project=slot.project, service=slot.service, replica=slot.replica, kind="exit",
          message=f"{slot.service}.{slot.replica} {verb} ({exit_words(record)}){after}", details=details, **at)


def report_restart(event: EventSink, slot: Slot, *, restart_at: float, delay: float, now: float) -> None:
    """A `restart-scheduled` event: when the replica starts again, and which restart that is."""
    event(project=slot.project, service=slot.service, replica=slot.replica, kind="restart-scheduled",
          message=f"{slot.service}.{slot.replica} restarts in {max(0.0, restart_at - now):.2f}s "
                  f"(restart #{slot.restart_count + 1})",
          details={"restart_at": restart_at, "delay": delay, "restart_count": slot.restart_count + 1})


def note_log_drops(event: EventSink, slot: Slot, message: dict[str, Any]) -> None:
    """The runner could not write the replica's log (disk full) or writes it again: the slot's figures for
    `ps`, and one event each way, with the count of lines lost."""
    instance = message.get("instance") or {}
    name = f"{slot.service}.{slot.replica}"
    if message.get("event") == "log-dropping":
        slot.dropping = True
        event(project=slot.project, service=slot.service, replica=slot.replica, kind="log-dropping",
              message=f"{name}: its log cannot be written ({instance.get('dropped_error') or 'write error'});"
                      " lines are counted until it can", details={"error": instance.get("dropped_error")})
    else:
        slot.dropping = False
        lost = int(message.get("lost") or 0)
        slot.dropped_lines += lost
        spell = max(0.0, float(message.get("until") or 0) - float(message.get("since") or 0))
        event(project=slot.project, service=slot.service, replica=slot.replica, kind="log-resumed",
              message=f"{name}: its log is written again; {lost} lines were lost over {spell:.1f}s",
              details={"lost": lost, "since": message.get("since"), "until": message.get("until")})
