"""Plain data written as TOML that ``tomllib`` reads back to the same data.

The types a config holds: tables (``dict``), arrays of tables (a non-empty ``list`` of ``dict``),
arrays, strings, booleans, integers and floats (``inf`` and ``nan`` included). TOML has no null,
so a ``None`` value is left out with a comment saying so: it reads back as the key's default,
which for every ``None`` a run config holds is ``None`` itself (an unset ``quant.bits``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key(name: str) -> str:
    """A TOML key: bare when it can be, else a quoted string."""
    return name if BARE_KEY.fullmatch(name) else string(name)


def string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def value(v: Any) -> str:
    """``v`` as an inline TOML value (tables inline, ``{k = v}``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{key(str(k))} = {value(x)}" for k, x in v.items()
                               if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def _is_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _table(path: list[str], data: dict[str, Any], lines: list[str]) -> None:
    """``data``'s plain keys, then its sub-tables as ``[a.b]``, then arrays as ``[[a.b]]``."""
    for k, v in data.items():
        if v is None:
            lines.append(f"# {key(str(k))}: unset (its default)")
        elif not isinstance(v, dict) and not _is_tables(v):
            lines.append(f"{key(str(k))} = {value(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            sub = [*path, key(str(k))]
            lines += ["", f"[{'.'.join(sub)}]"]
            _table(sub, v, lines)
    for k, v in data.items():
        if _is_tables(v):
            sub = [*path, key(str(k))]
            for item in v:
                lines += ["", f"[[{'.'.join(sub)}]]"]
                _table(sub, item, lines)


def dumps(data: dict[str, Any]) -> str:
    """``data`` as a TOML document; ``tomllib.loads`` of it equals ``data`` without its ``None``s."""
    lines: list[str] = []
    _table([], data, lines)
    return "\n".join(lines).lstrip("\n") + "\n"
