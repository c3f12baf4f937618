"""stackblaze.yaml / Procfile -> Project: the one place that reads and validates a user's spec."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stackblaze.spec.duration import parse_duration
    from stackblaze.spec.loading import load_project
    from stackblaze.spec.model import Project, Service

__all__ = ["Project", "Service", "load_project", "parse_duration"]
# Loaded on first use: the CLI imports stackblaze.spec.naming on every command, and the YAML stack
# behind load_project is 50 ms it rarely needs.
_WHERE = {"parse_duration": "duration", "load_project": "loading", "Project": "model", "Service": "model"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'stackblaze.spec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"stackblaze.spec.{_WHERE[name]}"), name)
