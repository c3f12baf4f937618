"""Dashboard fixtures: a deployed project in a real daemon (tests/integration's `sb`), its dashboard
started with the real `stackblaze dashboard --no-open`, and headless Debian chromium driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Stackblaze, sb
from tests.tools import need

__all__ = ["sb"]  # the fixture, for the tests here

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@dataclass
class Dashboard:
    url: str  # with ?token=
    base: str  # http://127.0.0.1:PORT
    token: str

    def client(self, *, token: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)


def open_dashboard(cli: Stackblaze) -> Dashboard:
    answer = cli.run("dashboard", "--no-open", "--json").json()
    base = f"http://127.0.0.1:{answer['port']}"
    return Dashboard(url=answer["url"], base=base, token=answer["url"].partition("?token=")[2])


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each page's screenshot goes: $STACKBLAZE_SCREENSHOTS, else a tmp folder (printed)."""
    folder = Path(os.environ.get("STACKBLAZE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium per module. Not per session: Playwright's sync API keeps an event loop running in this
    thread while it is open, and every later test that calls asyncio.run() would fail."""
    path = need("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
