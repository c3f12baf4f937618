"""stackblaze.yaml / Procfile -> Project: the one place that reads and validates a user's spec."""

from stackblaze.spec.duration import parse_duration
from stackblaze.spec.loading import load_project
from stackblaze.spec.model import Project, Service

__all__ = ["Project", "Service", "load_project", "parse_duration"]
