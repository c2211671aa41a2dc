"""Typed values from plain data: the one place a config value's type is checked.

:func:`from_dict` builds a (nested) dataclass from a TOML-like ``dict``, checking every key and
every value's type against the dataclass's annotations; the run config (:mod:`fedlpp.config`)
and every plugin's options (:mod:`fedlpp.registry`) are built through it, so a plugin's
``Config`` only checks ranges and meanings in its ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from fedlpp.errors import FedlppError


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ``Invalid <key>: <value> (allowed: <allowed>)`` unless ``ok``."""
    if not ok:
        raise FedlppError(f"Invalid {key}: {value!r} (allowed: {allowed})")


def type_ok(value: Any, tp: Any) -> bool:
    """``value`` fits annotation ``tp`` (an int is a float; a bool is neither)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return any(type_ok(value, t) for t in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def describe(tp: Any) -> str:
    """Annotation ``tp`` in words, for error messages."""
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is dict:
        return "a table"
    if typing.get_origin(tp) is list:
        return f"a list of {describe(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "None")


def checked(value: Any, tp: Any, *, key: str, where: str = "") -> Any:
    """``value`` if it fits ``tp`` (an int given for a float becomes a float), else a
    FedlppError ``Invalid <key>: <value> [for <where>] (expected <tp in words>)``."""
    if not type_ok(value, tp):
        whose = f" for {where}" if where else ""
        raise FedlppError(f"Invalid {key}: {value!r}{whose} (expected {describe(tp)})")
    return float(value) if tp is float and isinstance(value, int) else value


def from_dict(cls: type, values: dict[str, Any], *, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from nested ``values``, checking every key and type; errors name
    the key as ``<prefix><key>``."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in fields:
            close = [f"{prefix}{k}" for k in fields]
            raise FedlppError(f"Unknown config key '{full}'. Allowed here: {', '.join(close)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise FedlppError(f"Config key '{full}' is a section; set its keys as {full}.<key>")
            kwargs[key] = from_dict(tp, value, prefix=f"{full}.")
            continue
        kwargs[key] = checked(value, tp, key=full)
    return cls(**kwargs)


def options(cls: type, values: dict[str, Any], *, where: str, prefix: str = "") -> Any:
    """Build a plugin's options dataclass ``cls`` from ``values`` (``where`` names the plugin
    in errors, e.g. ``attack 'min-k'``; ``prefix`` the config section its keys come from, e.g.
    ``quant.``): unknown keys and wrong types are one-line errors."""
    allowed = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in allowed:
            raise FedlppError(f"Unknown option '{key}' for {where}. Allowed: "
                              f"{', '.join(sorted(allowed)) or '(none)'}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: checked(v, hints[k], key=f"{prefix}{k}", where=where)
                  for k, v in values.items()})
