"""The dashboard in headless Debian chromium (Playwright): open it with the token, see the services, a
printed line live within a second, the level filter, scale from the page (seen in `stackblaze ps`), a
crashed replica's restart and exit reason without reloading, a drain added, a leaking worker's memory
chart. A screenshot of each page goes to the `screenshots` folder (printed)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import open_dashboard
from tests.integration.conftest import Stackblaze, marker_project, wait_for, write_project

WORKER = """\
import json
say = MARKERS / "say"
i = 0
while True:
    i += 1
    if say.exists():
        print(json.dumps({"level": "warn", "msg": say.read_text(), "queue": "emails"}), flush=True)
        say.unlink()
    if i % 10 == 0:
        print(json.dumps({"level": "error" if i % 30 == 0 else "info", "msg": f"job {i}", "attempt": i}), flush=True)
    time.sleep(0.02)
"""
LEAKY = """\
project: leak
services:
  - name: leaky
    start: python3 -u leak.py
"""
LEAK = """\
import time
held = []
while True:
    if len(held) < 5:
        held.append(b"x" * (50 << 20))  # written, so resident
        print(f"holding {len(held) * 50} MB", flush=True)
    time.sleep(2)
"""


def load_ms(page: Any) -> float:
    return float(page.evaluate("performance.getEntriesByType('navigation')[0].duration"))


@pytest.mark.timeout(300)
def test_services_live_logs_filter_scale_and_crash(sb: Stackblaze, tmp_path: Path, browser: Any,
                                                   screenshots: Path) -> None:
    sb.run("deploy", str(marker_project(tmp_path, sb, WORKER, name="shop", replicas=2)))
    wait_for("two replicas running", lambda: sb.ps("worker")["services"][0]["running"] == 2)
    dash = open_dashboard(sb)
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(dash.url)
    assert "?token=" not in page.url  # redirected to the clean URL, the token now in a cookie
    page.wait_for_selector("table.services >> text=worker")
    assert page.inner_text("table.services tbody tr").split("\t")[:4] == ["worker", "worker", "1", "2/2"]
    print(f"\nservices page loaded in {load_ms(page):.0f} ms")
    page.screenshot(path=str(screenshots / "01-services.png"), full_page=True)

    page.click("table.services >> text=worker")
    page.wait_for_selector(".logs .line")
    print(f"service page loaded in {load_ms(page):.0f} ms")
    page.evaluate("window.notReloaded = true")
    said = f"hello from the test {time.time()}"
    (tmp_path / "markers" / "say").write_text(said)
    started = time.monotonic()
    # A deadline, not a speed goal (the figure is printed; tail latency is bench/tail_latency.py's): the worker
    # notices the marker on its own poll, and a loaded 2-core machine has taken over a second.
    page.wait_for_selector(f".logs .line >> text={said}", timeout=10_000)
    print(f"a printed line was on the page after {1000 * (time.monotonic() - started):.0f} ms")
    line = page.inner_text(f".logs .line:has-text('{said}')")
    assert "warn" in line and "queue=emails" in line  # JSON fields shown readably

    page.select_option(".logs [name=level]", "error")
    wait_for("only error lines", lambda: page.eval_on_selector_all(
        ".logs .line", "rows => rows.length > 0 && rows.every(r => r.classList.contains('error'))"), timeout=10)
    page.select_option(".logs [name=level]", "")
    page.click(".logs [name=pause]")
    paused = page.eval_on_selector_all(".logs .line", "rows => rows.length")
    time.sleep(0.5)  # a paused view must not move: compared after lines were certainly printed
    assert page.eval_on_selector_all(".logs .line", "rows => rows.length") == paused
    page.click(".logs [name=pause]")

    page.fill("#replicas", "3")
    page.click("button:has-text('Scale')")
    wait_for("ps saying 3 desired", lambda: sb.ps("worker")["services"][0]["desired"] == 3)
    page.wait_for_selector("table.replicas tbody tr:nth-child(3)")
    page.screenshot(path=str(screenshots / "02-service.png"), full_page=True)

    victim = next(r for r in sb.replicas("worker") if r["replica"] == 1)
    os.kill(victim["pid"], signal.SIGKILL)
    page.wait_for_selector("table.replicas >> text=killed by SIGKILL", timeout=15_000)
    page.wait_for_selector(".tail >> text=killed by SIGKILL")
    wait_for("the restart count on the page", lambda: page.inner_text(
        "table.replicas tbody tr:nth-child(1)").split("\t")[5] == "1", timeout=15)
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=str(screenshots / "03-service-after-crash.png"), full_page=True)
    page.close()


@pytest.mark.timeout(300)
def test_drains_page_and_a_memory_chart(sb: Stackblaze, tmp_path: Path, browser: Any, screenshots: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "leak", LEAKY, {"leak.py": LEAK})))
    dash = open_dashboard(sb)
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(dash.url.replace("/?token=", "/settings/drains?token="))
    page.fill("#drain-url", "https://127.0.0.1:9/ingest")
    page.click("button:has-text('Add drain')")
    page.wait_for_selector("table.drains >> text=https://127.0.0.1:9/ingest")
    assert [d["url"] for d in sb.run("drains", "list", "--project", "leak", "--json").json()["drains"]] == [
        "https://127.0.0.1:9/ingest"]
    print(f"\ndrains page loaded in {load_ms(page):.0f} ms")
    page.screenshot(path=str(screenshots / "04-drains.png"), full_page=True)

    page.goto(f"{dash.base}/services/leaky?project=leak")
    wait_for("the memory chart past 150 MB", lambda: float(
        page.get_attribute("svg[aria-label=Memory]", "data-peak") or 0) > 150 * (1 << 20), timeout=30)
    assert page.eval_on_selector_all("svg[aria-label=Memory] polyline", "lines => lines.length") >= 1
    page.screenshot(path=str(screenshots / "05-memory-chart.png"), full_page=True)
    page.close()
