"""explain: from a failed command's output, the lines that say why — on outputs of real failures.

Each fixture under fixtures/build_failures/ is the merged stdout and stderr of a real run on Debian bookworm,
x86_64, Python 3.11.7 (long tracebacks cut to their first and last frames), named <tool>-<version>-<case>:
pip 23.2.1 (the pip a Python 3.11 venv gets) and 26.3, pipenv 2026.10.3, poetry 2.5.1, uv 0.5.31 and 0.13.9,
npm 11.19.1 with Node 20, pnpm 9.15.9 and 12.23.0, yarn 1.22.22 and 4.18.1, go 1.26.8, bundler 2.3.7 (Ruby 3.1).
The broken packages were made locally: an sdist whose setup.py raises while its wheel builds, a C extension
that includes a missing header, an npm tarball whose postinstall exits 1, a gem whose extconf.rb aborts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackblaze.build.builder import TAIL_LINES, BuildFailed
from stackblaze.build.explain import LIMIT, clean, explain
from tests.sdists import make_sdist
from tests.unit.build.test_builder import make_builder, plan

FIXTURES = Path(__file__).parent / "fixtures" / "build_failures"

# fixture: (text of the lines that say why — each must be shown), (text that must not be shown)
CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pip-23-broken-sdist.txt": (
        ("Failed to build broken", "RuntimeError: broken 1.0 does not support this Python",
         'File "<string>", line 5, in run'),
        ("[end of output]", "Downloading six", "setuptools/dist.py", "[58 lines of output]")),
    "pip-23-broken-sdist-requires.txt": (
        ("× Getting requirements to build wheel did not run successfully.", "RuntimeError: broken 1.0"),
        ("build_meta.py", "See above for output")),
    "pip-26-broken-sdist.txt": (
        ("Failed to build broken", "RuntimeError: broken 1.0", "Failed to build installable wheels"),
        ("_in_process.py", "[end of output]")),
    "pip-26-broken-sdist-requires.txt": (
        ("ERROR: Failed to build 'broken' when getting requirements to build wheel", "RuntimeError: broken 1.0"),
        ("_in_process.py",)),
    "pip-26-no-matching-version.txt": (
        ("Could not find a version that satisfies the requirement six==99.0",
         "ERROR: No matching distribution found for six==99.0"),
        ("Looking in links",)),
    "pip-26-hash-mismatch.txt": (
        ("THESE PACKAGES DO NOT MATCH THE HASHES", "Expected sha256 0000", "Got        8abb2f"), ()),
    "pip-23-c-extension-missing-header.txt": (
        ("fastjson.c:2:10: fatal error: yajl/yajl_parse.h: No such file or directory", "Failed to build fastjson"),
        ("running build_ext",)),
    "pipenv-2026-broken-sdist.txt": (
        ("Failed to build broken", "RuntimeError: broken 1.0", "ERROR: Couldn't install package(s)",
         "Package installation failed"),
        ("--hash=sha256", "build_meta.py", "with pip.")),
    "pipenv-2026-lock-out-of-date.txt": (
        ("Your Pipfile.lock", "is out of", "ERROR:: Aborting deploy"), ("[DeployException]", "do_install")),
    "poetry-2-broken-sdist.txt": (
        ("PEP517 build of a dependency failed", "RuntimeError: broken 1.0", 'File "<string>", line 5, in run'),
        ('_in_process.py", line', "not specifying PEP 517 build requirements")),
    "poetry-2-no-solution.txt": (
        ("Because app depends on six (99.0) which doesn't match any versions, version solving failed.",), ()),
    "poetry-2-stale-lock.txt": (("pyproject.toml changed significantly since poetry.lock",), ()),
    "uv-0.13-broken-sdist.txt": (
        ("error: Failed to build `broken @ file:///tmp/cap/wheel/broken-1.0.tar.gz`",
         "cause: Call to `setuptools.build_meta:__legacy__.build_wheel` failed", "RuntimeError: broken 1.0",
         "hint: `broken` was included because `app` (v0.1.0) depends on `broken`"),
        ("[stderr]", "build_meta.py")),
    "uv-0.13-no-solution-color.txt": (
        ("error: No solution found when resolving dependencies", "there is no version of six==99.0"), ("\x1b[",)),
    "uv-0.5-broken-sdist.txt": (
        ("× Failed to build `broken @ file:///tmp/cap/wheel/broken-1.0.tar.gz`",
         "├─▶ The build backend returned an error", "RuntimeError: broken 1.0"),
        ("[stdout]", "build_meta.py")),
    "uv-0.5-no-solution.txt": (
        ("× No solution found when resolving dependencies:", "╰─▶ Because there is no version of six==99.0",
         "unsatisfiable."), ()),
    "npm-11-e404.txt": (
        ("npm error code E404", "npm error 404 Not Found - GET https://registry.npmjs.org/stackblaze-no-such"),
        ("A complete log of this run", "Note that you can also install")),
    "npm-11-etarget.txt": (
        ("npm error code ETARGET", "No matching version found for is-number@99.0.0."), ("A complete log",)),
    "npm-11-eresolve.txt": (
        ("npm error code ERESOLVE", 'peer react@"17.0.2" from react-dom@17.0.2', "Found: react@18.2.0"),
        ("For a full report see", "eresolve-report.txt")),
    "npm-11-ci-out-of-sync.txt": (
        ("npm error code EUSAGE", "`npm ci` can only install packages when your package.json and package-lock.json",
         "Missing: is-odd@3.0.1 from lock file"),
        ("--install-strategy", "Usage:", "aliases:", "Sets the strategy")),
    "npm-11-warnings-then-postinstall.txt": (
        ("app needs Node 22 or later (this is v20.20.2)", "npm error command sh -c node scripts/postinstall.js"),
        ("npm warn", "Could not resolve dependency", "Conflicting peer dependency")),
    "npm-11-dependency-script.txt": (
        ("npm error command failed", "npm error broken: cannot build the native addon: python2 not found"), ()),
    "npm-11-run-build-node-error.txt": (
        ("Error: ENOENT: no such file or directory, open 'config.json'", "build.js:2:30"), ("Node.js v20",)),
    "pnpm-12-fetch-404.txt": (
        ("Error: ERR_PNPM_FETCH_404", "╰─▶ Failed to resolve dependency tree: GET https://registry.npmjs.org/",
         "help: stackblaze-no-such-package-zz is not in the npm registry"), ()),
    "pnpm-12-no-matching-version.txt": (
        ("ERR_PNPM_NO_MATCHING_VERSION", "No matching version found for is-number@99.0.0"), ()),
    "pnpm-12-outdated-lockfile.txt": (
        ("ERR_PNPM_OUTDATED_LOCKFILE", 'Cannot install with "frozen-lockfile" because pnpm-lock.yaml is not up'),
        ()),
    "pnpm-12-run-build.txt": (
        ("Error: ENOENT: no such file or directory, open 'config.json'", "[ELIFECYCLE] Command failed"),
        ("Node.js v20",)),
    "pnpm-9-fetch-404.txt": (  # pnpm 9 sets its error code between thin spaces
        ("ERR_PNPM_FETCH_404\u2009 GET https://registry.npmjs.org/stackblaze-no-such-package-zz: Not Found - 404",),
        ()),
    "pnpm-9-outdated-lockfile.txt": (("ERR_PNPM_OUTDATED_LOCKFILE\u2009 Cannot install with \"frozen-lockfile\"",), ()),
    "yarn-1-not-found.txt": (
        ('error Couldn\'t find package "stackblaze-no-such-package-zz" on the "npm" registry.',),
        ("No license field", "info Visit", "[1/4]")),
    "yarn-1-no-matching-version.txt": (
        ('error Couldn\'t find any versions for "is-number" that matches "99.0.0"',), ("No license field",)),
    "yarn-1-frozen-lockfile.txt": (
        ("error Your lockfile needs to be updated, but yarn was run with `--frozen-lockfile`.",), ("warning",)),
    "yarn-1-dependency-script.txt": (
        ("node_modules/broken: Command failed.", "Exit code: 1",
         "broken: cannot build the native addon: python2 not found"), ("info Visit",)),
    "yarn-4-not-found.txt": (
        ("YN0035: │ stackblaze-no-such-package-zz@npm:1.0.0: Package not found",), ("YN0000",)),
    "yarn-4-immutable.txt": (
        ("YN0028: │ The lockfile would have been modified by this install, which is explicitly forbidden.",),
        ("YN0000", "is-odd: \"npm:3.0.1\"", "YN0085")),
    "yarn-4-dependency-build.txt": (("couldn't be built successfully (exit code 1",), ("YN0000", "YN0007")),
    "go-1.26-mod-download-missing-module.txt": (
        ("go: github.com/stackblaze-no-such-owner/no-such-module@v1.2.3: reading", "403 Forbidden",
         "server response: This module version is not available."), ()),
    "go-1.26-build-compile-errors.txt": (
        ("# example.com/app", "./main.go:10:6: undefined: fmt.Printn",
         './main.go:11:17: cannot use "8080" (untyped string constant) as int value'), ()),
    "go-1.26-build-missing-go-sum.txt": (
        ("main.go:3:8: missing go.sum entry for module providing package github.com/google/uuid",), ()),
    "bundler-2.3-native-extension.txt": (
        ("Gem::Ext::BuildError: ERROR: Failed to build gem native extension.",
         "broken 1.0.0 needs libbroken-dev, which is not installed",
         "An error occurred while installing broken (1.0.0), and Bundler cannot continue."),
        ("Don't run Bundler as root", "builder.rb:95:in", "worker.rb")),
    "bundler-2.3-gem-not-cached.txt": (
        ("Could not find gem 'sidekiq (~> 7.2)' in cached gems or installed locally.",), ("as root",)),
    "bundler-2.3-registry-unreachable.txt": (("Could not reach host index.rubygems.org.",), ("as root",)),
    "python-3.11-traceback.txt": (
        ('File "/tmp/cap/py/build.py", line 14, in main', "KeyError: 'OUTPUT_DIR'"),
        ("line 17, in <module>", "copied app.css")),
    "python-3.13-chained-traceback.txt": (
        ("sqlite3.OperationalError: no such table: job",
         "RuntimeError: migration failed: 'ALTER TABLE job ADD COLUMN state TEXT'"),
        ("line 13, in <module>", "~~~~")),
}


def output(fixture: str) -> list[str]:
    return (FIXTURES / fixture).read_text(encoding="utf-8").splitlines()


def test_every_fixture_has_a_case() -> None:
    assert {path.name for path in FIXTURES.glob("*.txt")} == set(CASES)


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_the_explanation_has_the_lines_that_say_why_and_not_the_noise(fixture: str) -> None:
    why, noise = CASES[fixture]
    explained = explain(output(fixture))
    text = "\n".join(explained)
    assert [needed for needed in why if needed not in text] == [], text
    assert [unwanted for unwanted in noise if unwanted in text] == [], text
    assert 0 < len(explained) <= LIMIT
    assert len(set(explained)) == len(explained)  # each line once
    shown = iter(clean(line) for line in output(fixture))
    assert all(any(line == seen or line.endswith("…") for seen in shown) for line in explained)  # in order


def test_the_pipenv_cause_is_shown_although_hash_lists_fill_the_last_lines() -> None:
    """The issue's case: the last lines are pipenv's hash list; the line that says why is far above."""
    lines = output("pipenv-2026-broken-sdist.txt")
    assert not any("Failed to build" in line for line in lines[-TAIL_LINES:])
    assert sum("--hash=sha256" in line for line in lines[-TAIL_LINES:]) >= TAIL_LINES - 3
    explained = explain(lines)
    assert "Failed to build broken" in explained
    assert not any("--hash=" in line for line in explained)


def test_a_traceback_gives_its_last_frame_and_exception_only() -> None:
    assert explain(output("python-3.11-traceback.txt")) == [
        '  File "/tmp/cap/py/build.py", line 14, in main',
        '    print(settings["OUTPUT_DIR"])',
        "KeyError: 'OUTPUT_DIR'",
    ]


def test_a_summary_printed_twice_is_shown_once() -> None:
    lines = output("pip-23-broken-sdist-requires.txt")
    assert sum(line.strip() == "error: subprocess-exited-with-error" for line in lines) == 2
    assert sum(line.strip() == "error: subprocess-exited-with-error" for line in explain(lines)) == 1


def test_context_comes_from_around_an_error_line() -> None:
    explained = explain(output("go-1.26-build-compile-errors.txt"), context=0)
    assert "# example.com/app" not in explained and len(explained) == 4
    assert explain(output("go-1.26-build-compile-errors.txt"))[0] == "# example.com/app"


def test_many_errors_keep_the_first_and_the_last_within_the_limit() -> None:
    lines = ["# example.com/app", *(f"./main.go:{n}:2: undefined: name{n}" for n in range(1, 41))]
    explained = explain(lines, limit=9)
    assert explained == [f"./main.go:{n}:2: undefined: name{n}" for n in (1, 2, 3, 4, 5, 6, 38, 39, 40)]


def test_an_output_without_errors_explains_nothing() -> None:
    assert explain(["Collecting six==1.16.0", "Installing collected packages: six", "ERROR"]) == []


def test_colours_and_progress_redraws_are_removed() -> None:
    assert clean("\x1b[1m\x1b[31merror\x1b[39m\x1b[0m\x1b[1m:\x1b[0m No solution found\r\n") == \
        "error: No solution found"
    assert clean("Downloading 10%\rDownloading 60%\rERROR: No matching distribution found for x") == \
        "ERROR: No matching distribution found for x"


def test_a_long_line_is_cut() -> None:
    versions = ", ".join(f"1.{n}.0" for n in range(200))
    [line] = explain([f"ERROR: Could not find a version that satisfies the requirement six==99.0 (from versions: "
                      f"{versions})"])
    assert line.startswith("ERROR: Could not find a version") and line.endswith("…") and len(line) <= 300


# An sdist whose wheel build fails, as a package that cannot build on this Python does. Its build backend is
# in the tarball and needs nothing installed, so pip runs offline (--no-index) and the failure is pip's own.
BACKEND = '''\
import pathlib


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = pathlib.Path(metadata_directory) / "broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\\nName: broken\\nVersion: 1.0\\n")
    return info.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("broken 1.0 does not support this Python (needs < 3.8)")
'''


def broken_sdist(directory: Path) -> Path:
    return make_sdist(directory, {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": BACKEND})


def test_pip_failing_to_build_a_pinned_sdist_is_explained(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(f"broken @ {broken_sdist(tmp_path).as_uri()}\n")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", "--no-input",
         "--target", str(tmp_path / "target"), "-r", str(tmp_path / "requirements.txt")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )
    assert run.returncode != 0, run.stdout
    explained = explain(run.stdout.splitlines())
    assert any("Failed to build" in line and "broken" in line for line in explained), run.stdout
    assert any(line.strip() == "RuntimeError: broken 1.0 does not support this Python (needs < 3.8)"
               for line in explained), explained
    assert not any("_in_process.py" in line for line in explained)  # pip's own frames are not the cause


def test_a_failed_install_carries_its_cause_next_to_its_last_lines(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_text("broken==1.0\n")
    (app / "app.py").write_text("print('v1')\n")
    fixture = FIXTURES / "pipenv-2026-broken-sdist.txt"
    with pytest.raises(BuildFailed) as failure:
        make_builder(tmp_path).build(plan(install=f"cat '{fixture}'; exit 1"), source=app,
                                     log_path=tmp_path / "b.log", progress=lambda _: None)
    error = failure.value
    assert "Failed to build broken" in error.cause
    assert "RuntimeError: broken 1.0 does not support this Python (needs < 3.8)" in [c.strip() for c in error.cause]
    assert error.tail == output("pipenv-2026-broken-sdist.txt")[-TAIL_LINES:]
    message = str(error)
    assert "\n" not in message
    assert message.startswith("install failed (exit 1): cat ") and message.endswith(f"full log: {tmp_path / 'b.log'}")
