"""What a cron service's Desired carries besides a worker's: its kind, schedule and suspension."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackblaze.spec.cron import Cron
from stackblaze.state.cron import CronStore
from stackblaze.state.store import Store


def is_cron(spec: Mapping[str, Any]) -> bool:
    return spec.get("type") == "cron" and bool(spec.get("cron"))


def cron_fields(store: Store, project: str, service: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Desired's kind/cron/suspended for a stored cron service's spec ({} for any other service)."""
    if not is_cron(spec):
        return {}
    return {"kind": "cron", "cron": Cron(**spec["cron"]),
            "suspended": CronStore.of(store).suspended(project, service)}
