"""A failed build's summary names the cause: pip's own error lines, above the last lines, then the full log.

The broken package is an sdist made here whose setup.py raises while its wheel builds, as a pinned package
that cannot build on this Python does; pip fetches setuptools from PyPI for the isolated build.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import Stackblaze, write_project
from tests.sdists import make_sdist

SETUP = """\
from setuptools import setup
from setuptools.command.build_py import build_py


class Refuse(build_py):
    def run(self):
        raise RuntimeError("broken 1.0 does not support this Python (needs < 3.8)")


setup(name="broken", version="1.0", py_modules=["broken"], cmdclass={"build_py": Refuse})
"""


def broken_sdist(directory: Path) -> Path:
    return make_sdist(directory, {"setup.py": SETUP, "broken.py": ""})


def test_a_pinned_package_that_cannot_build_is_named_in_the_summary(sb: Stackblaze, tmp_path: Path) -> None:
    sdist = broken_sdist(tmp_path / "packages")
    app = write_project(tmp_path / "app", "project: brokenpin\nservices:\n  - name: worker\n"
                        "    start: python worker.py\n", {
                            "requirements.txt": f"six==1.16.0\nbroken @ {sdist.as_uri()}\n",
                            "worker.py": "import time\ntime.sleep(1e6)\n",
                        })
    failed = sb.run("deploy", str(app), check=False, timeout=300)
    assert failed.code == 1, failed.err

    # The summary comes after the streamed build output: the error, then its cause, last lines and log.
    summary = failed.err[failed.err.index("error: worker: install failed"):].splitlines()
    assert summary[0].startswith("error: worker: install failed (exit 1): ") and "requirements.txt" in summary[0]
    cause, last = summary.index("cause:"), summary.index("last lines:")
    assert cause < last
    explained = [line.removeprefix("  | ").strip() for line in summary[cause + 1:last]]
    assert "Failed to build broken" in explained, summary
    assert "RuntimeError: broken 1.0 does not support this Python (needs < 3.8)" in explained, summary
    assert not any("setuptools/dist.py" in line for line in explained)  # not the frames above the cause
    assert summary[-1].startswith("full log: ")
    log = Path(summary[-1].removeprefix("full log: "))
    assert log.is_relative_to(sb.home) and "Failed to build broken" in log.read_text()
