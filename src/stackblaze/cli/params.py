"""Plain parameter conversion for the CLI, without pydantic.

typer (0.2x) converts every parameter of the command that runs through a pydantic TypeAdapter, `None`
defaults included: importing pydantic and building the schemas costs 70-90 ms per command, a third of
`stackblaze ps`. The CLI's parameters are plain str, bool, int, float and list[str] (an int with at most
a min and a max), which this module converts the way click does; anything else (Path, files, clamps,
choices) still goes through typer's own conversion. When typer's internals are not the ones this was
written against, `install` changes nothing and commands are merely slower (tests/unit/cli says so).
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

import typer.core
from typer import _coercion
from typer._click import Context
from typer._click.exceptions import BadParameter

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
_NAMES = {str: "text", int: "whole number", float: "number", bool: "boolean"}


class PlainParam(_coercion.RuntimeParam):
    """Conversion of one str, bool, int or float value (or a list of str)."""

    def _coerce_value(self, value: Any, param: typer.core._TyperParameter, ctx: Context) -> Any:
        annotation: Any = self.annotation  # typer's alias for it is a ParamSpec-laden union
        if get_origin(annotation) is list:
            return [convert(str, item, self.parameter_info, param, ctx) for item in value]
        return convert(annotation, value, self.parameter_info, param, ctx)


def convert(kind: type[Any], value: Any, info: Any, param: typer.core._TyperParameter, ctx: Context) -> Any:
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        converted: Any = value
    elif kind is str:
        converted = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    elif kind is bool:
        text = str(value).strip().lower()
        if text not in _TRUE | _FALSE:
            raise BadParameter(f"{value!r} is not a boolean (e.g. true or false)", ctx=ctx, param=param)
        converted = text in _TRUE
    else:
        try:
            converted = kind(str(value).strip())
        except ValueError:
            raise BadParameter(f"{value!r} is not a {_NAMES[kind]} (e.g. 4)", ctx=ctx, param=param) from None
    if kind in (int, float):
        low, high = info.min, info.max
        if (low is not None and converted < low) or (high is not None and converted > high):
            bounds = " to ".join(str(b) for b in (low, high) if b is not None)
            rule = f"use {bounds}" if low is not None and high is not None else (
                f"{low} or more" if low is not None else f"{high} or less")
            raise BadParameter(f"{converted} is out of range ({rule})", ctx=ctx, param=param)
    return converted


def is_plain(descriptor: Any) -> bool:
    """Whether PlainParam converts this parameter exactly as typer would."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None or getattr(info, "clamp", False):
        return False
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        return get_args(annotation) == (str,)
    return annotation in _NAMES


def install() -> bool:
    """Route plain parameters to PlainParam; False (and nothing changed) when typer is not as expected."""
    parameter = getattr(typer.core, "_TyperParameter", None)
    original = getattr(parameter, "get_runtime_param", None)
    if parameter is None or original is None:
        return False
    if getattr(original, "plain", False):
        return True

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None and is_plain(self.type_descriptor):
            descriptor = self.type_descriptor
            self._runtime_param = PlainParam(parameter_info=descriptor.parameter_info,
                                             annotation=descriptor.annotation)
        return original(self)

    get_runtime_param.plain = True  # type: ignore[attr-defined]
    parameter.get_runtime_param = get_runtime_param
    return True
