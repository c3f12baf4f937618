"""Env keys and values a process could never receive are refused where they enter, with one line."""

from __future__ import annotations

import pytest

from stackblaze.errors import SpecError
from stackblaze.spec.fields import (
    ENV_STRING_MAX,
    ENV_TOTAL_MAX,
    check_env_key,
    check_env_total,
    check_env_value,
    env_size,
)


@pytest.mark.parametrize("key", ["A=B", "", "A\0", "1A", "A-B", "É", "A B"])
def test_keys_outside_the_grammar_are_refused(key: str) -> None:
    with pytest.raises(SpecError) as refused:
        check_env_key(key, where="env set", assign="=")
    message = str(refused.value)
    assert message.startswith("env set: ") and "is not a variable name" in message and "\n" not in message
    assert message.endswith("=value)")


def test_a_value_is_held_to_what_execve_takes_for_one_variable() -> None:
    fits = "x" * (ENV_STRING_MAX - len("KEY=") - 1)  # with "KEY=" and the NUL: exactly 128 KiB
    assert check_env_value(fits, where="env KEY", key="KEY") == fits
    with pytest.raises(SpecError) as refused:
        check_env_value(fits + "x", where="env KEY", key="KEY")
    assert "KEY=value takes 131,073 bytes and a process can receive at most 131,072" in str(refused.value)
    with pytest.raises(SpecError, match="contains a NUL character"):
        check_env_value("a\0b", where="env KEY", key="KEY")
    with pytest.raises(SpecError, match="lone surrogate"):
        check_env_value("\ud800", where="env KEY", key="KEY")
    # Multi-byte characters count as the bytes a process receives.
    with pytest.raises(SpecError, match="at most 131,072"):
        check_env_value("é" * (ENV_STRING_MAX // 2), where="env KEY", key="KEY")


def test_the_whole_environment_counts_strings_and_pointers() -> None:
    assert env_size({"A": "b"}) == len("A=b\0") + 8
    many = {f"K{i:05d}": "v" * 30 for i in range(20_000)}  # 20,000 of 46 bytes ("K00000=" 30 bytes, NUL, pointer)
    check_env_total(many, where="env")
    with pytest.raises(SpecError) as refused:
        check_env_total(many, where="env", reserve=200 * 1024)
    message = str(refused.value)
    assert message.startswith("env: 20,000 variables take 920,000 bytes") and f"{ENV_TOTAL_MAX:,}" in message
