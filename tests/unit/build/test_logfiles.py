"""Start commands that send the worker's logs to a file get a build-time warning saying why and what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.build.logfiles import logfile_warnings

from .trees import plan_for, write


@pytest.mark.parametrize("start", [
    "python worker.py", "celery -A app worker -l info", "python w.py 2>&1", "python w.py >&2",
    "python w.py > /dev/stdout", "python w.py 2> /dev/stderr", "gunicorn app:app --log-file -",
    "gunicorn app:app --error-logfile=-", "python w.py | tee w.log", "python -c \"print('a > b')\"",
    "python -c 'run(logfile=None)'", "python w.py 'unbalanced", "python w.py --logfile-format json",
    "sh -c 'exec python w.py 2>&1'",
])
def test_commands_that_log_to_stdout_or_stderr_get_no_warning(start: str) -> None:
    assert logfile_warnings(start) == []


@pytest.mark.parametrize(("start", "shown"), [
    ("celery -A app worker --logfile=celery.log", "--logfile=celery.log"),
    ("celery -A app worker --logfile celery.log -l info", "--logfile=celery.log"),
    ("gunicorn app:app --log-file /var/log/g.log", "--log-file=/var/log/g.log"),
    ("gunicorn app:app --error-logfile err.log", "--error-logfile=err.log"),
    ("python -c \"import app; app.run(logfile='w.log')\"", "logfile=w.log"),
    ("python w.py > out.log", "> out.log"),
    ("python w.py >> out.log 2>&1", ">> out.log"),
    ("python w.py>out.log", "> out.log"),
    ("python w.py 2> err.log", "2> err.log"),
    ("python w.py 2>>err.log", "2>> err.log"),
    ("python w.py &> all.log", "&> all.log"),
    ("cd app && exec python w.py >> w.log", ">> w.log"),
    ("sh -c 'exec python w.py > w.log'", "> w.log"),
])
def test_a_log_file_is_named_with_the_fix(start: str, shown: str) -> None:
    (warning,) = logfile_warnings(start)
    assert warning.startswith(f"start: {shown} ")
    assert "`stackblaze logs`" in warning and "never see" in warning
    assert "(remove " in warning or "(leave " in warning


def test_discarded_output_is_called_discarded() -> None:
    (warning,) = logfile_warnings("python w.py > /dev/null 2>&1")
    assert warning.startswith("start: > /dev/null discards the worker's output")


def test_each_place_gets_its_own_warning() -> None:
    warnings = logfile_warnings("celery -A app worker --logfile=c.log > out.log 2> err.log")
    assert [w.split(" ", 2)[1] for w in warnings] == ["--logfile=c.log", ">", "2>"]


def test_the_warning_reaches_the_build_plan(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "celery==5.4.0\n"})
    plan = plan_for(tmp_path, start="celery -A app worker --logfile=/var/log/celery.log")
    assert [w for w in plan.warnings if "--logfile=/var/log/celery.log" in w]
    assert plan_for(tmp_path, start="celery -A app worker").warnings == ()
