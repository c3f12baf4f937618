"""Fixtures of the GOPATH + PostgreSQL tier: the real CLI and daemon (`sb`) and a real PostgreSQL of the test's own
(`database_url`, Debian's `postgresql`, the same server tests/integration/test_release_phase.py starts)."""

from tests.integration.conftest import sb  # noqa: F401 (the real CLI and daemon)
from tests.integration.test_release_phase import database_url  # noqa: F401 (a real PostgreSQL on loopback)
