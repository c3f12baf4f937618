"""JSON log lines: which keys mean level, message and time, and how filters select."""

from __future__ import annotations

import pytest

from stackblaze.errors import UserError
from stackblaze.logs.structured import LogFilter, normalize_level, parse_line


@pytest.mark.parametrize(("line", "level", "message"), [
    ('{"level": "warning", "msg": "slow"}', "warn", "slow"),
    ('{"severity": "ERROR", "message": "boom"}', "error", "boom"),
    ('{"levelname": "CRITICAL", "message": "down"}', "fatal", "down"),
    ('{"level": 30, "msg": "pino info"}', "info", "pino info"),
    ('{"level": 50, "msg": "pino error"}', "error", "pino error"),
    ('{"msg": "no level"}', None, "no level"),
])
def test_level_and_message_keys(line: str, level: str | None, message: str) -> None:
    parsed = parse_line(line)
    assert parsed is not None and (parsed.level, parsed.message) == (level, message)


def test_other_fields_are_kept_and_plain_lines_pass_through() -> None:
    parsed = parse_line('{"level": "info", "msg": "done", "time": "2026-11-30T10:00:00Z", "job": 7}')
    assert parsed is not None and parsed.fields == {"job": 7} and parsed.time == "2026-11-30T10:00:00Z"
    for plain in ("hello", "[1, 2]", "{not json}", '"text"', ""):
        assert parse_line(plain) is None


def test_level_filter_is_that_level_and_above() -> None:
    wanted = LogFilter.build(level="WARNING", grep=None, fields=[])
    assert [wanted.matches({"line": "", "level": lv}) for lv in ("debug", "info", "warn", "error", "fatal")] == [
        False, False, True, True, True]
    assert not wanted.matches({"line": "plain"})


def test_field_filter_compares_text_and_json_values() -> None:
    wanted = LogFilter.build(level=None, grep=None, fields=["queue=emails", "n=3"])
    assert wanted.matches({"line": "", "fields": {"queue": "emails", "n": 3}})
    assert not wanted.matches({"line": "", "fields": {"queue": "emails", "n": 4}})
    assert not wanted.matches({"line": "plain"})


def test_bad_filters_name_the_option_and_the_fix() -> None:
    with pytest.raises(UserError, match=r"^--level: 'loud' is not a level \(use one of trace, debug"):
        LogFilter.build(level="loud", grep=None, fields=[])
    with pytest.raises(UserError, match=r"^--field: 'queue' is not key=value \(e.g. --field queue=emails\)$"):
        LogFilter.build(level=None, grep=None, fields=["queue"])
    assert normalize_level(True) is None
