"""What a plugin takes, in words: ``fedlpp ls KIND NAME`` and ``fedlpp config show``.

:func:`describe` gives a registered plugin's docstring, where its options are set, and each
option's type, default and the comment beside it in the source. :func:`config_toml` gives the
resolved run config (:func:`fedlpp.run.resolve.resolve`) as TOML that ``fedlpp train --config``
reads back to the same config. The attack registry sits above this floor: the caller passes it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from pathlib import Path
from typing import Any

from fedlpp import tomlwrite
from fedlpp.config import DataConfig, ModelConfig, load_config
from fedlpp.errors import FedlppError
from fedlpp.registry import Registry
from fedlpp.run.resolve import resolve
from fedlpp.typed import describe as describe_type

# kind -> where a plugin of that kind is named and its options set ({name} = the plugin's name)
SET_AS = {
    "quantizers": 'run config: [quant] name = "{name}" (broadcast) or upload = "{name}"; '
                  "options as quant.<option> (upload_bits for the upload's bits)",
    "datasets": 'run config: [data] name = "{name}"; it reads the [data] keys below',
    "models": 'run config: [model] name = "{name}"; it reads the [model] keys below',
    "methods": 'run config: [fed] method = "{name}" (a name only: the options below are the '
               "defaults it runs with)",
    "aggregators": 'run config: aggregator = {{name = "{name}", <option> = value}}',
    "defenses": 'run config: defenses = [{{name = "{name}", <option> = value}}, ...]',
    "adversaries": 'run config: adversaries = [{{behaviour = "{name}", <option> = value}}, ...]',
    "attacks": "fedlpp attack RUN --attack {name} [--set {name}.<option>=value]; in a suite, "
               '[attacks] names = ["{name}"] and set = ["{name}.<option>=value"]',
}
SECTIONS = {"datasets": DataConfig, "models": ModelConfig}  # plugins that read a config section


def registries() -> dict[str, Registry]:
    """fedlpp's plugin registries by kind (the attacks' registry is ``attacks.base.ATTACKS``)."""
    from fedlpp.adversaries import ADVERSARIES
    from fedlpp.aggregators import AGGREGATORS
    from fedlpp.data import DATASETS
    from fedlpp.defenses import DEFENSES
    from fedlpp.methods import METHODS
    from fedlpp.models import MODELS
    from fedlpp.quant import QUANTIZERS

    return {"quantizers": QUANTIZERS, "datasets": DATASETS, "models": MODELS,
            "methods": METHODS, "aggregators": AGGREGATORS, "defenses": DEFENSES,
            "adversaries": ADVERSARIES}


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    found: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                found[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return found


def field_notes(cls: type) -> dict[str, str]:
    """Each dataclass field's comment in the source (the lines just above it, and the one
    beside it), its base classes' fields included; ``{}`` where there is no source."""
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        comments, lines = _comments(source), source.splitlines()
        try:
            body = ast.parse(source).body[0].body
        except (SyntaxError, IndexError, AttributeError):
            continue
        for node in body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            above, line = [], node.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, comments.get(line, ""))
                line -= 1
            beside = comments.get(node.end_lineno, "")
            notes[node.target.id] = " ".join(t for t in [*above, beside] if t)
    return notes


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    return "unset" if value is None else tomlwrite.value(value)


def option_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type in words, default as TOML, note) of each field of dataclass ``cls``."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a plugin's annotation that does not resolve: as written
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
    notes = field_notes(cls)
    return [(f.name, describe_type(hints[f.name]), _default(f), notes.get(f.name, ""))
            for f in dataclasses.fields(cls)]


def _doc(obj: Any) -> str:
    """``obj``'s own docstring, dedented; a dataclass's generated signature is none."""
    doc = inspect.getdoc(obj) if obj.__doc__ else ""
    if isinstance(obj, type) and doc and doc.startswith(f"{obj.__name__}("):
        return ""
    return doc or ""


def options_class(kind: str, plugin: Any) -> type | None:
    """The dataclass of what ``plugin`` takes: its ``Config``, or the section it reads."""
    if kind in SECTIONS:
        return SECTIONS[kind]
    config = getattr(plugin, "Config", None)
    return config if dataclasses.is_dataclass(config) else None


def _origin(plugin: Any) -> str:
    module = getattr(plugin, "__module__", "") or ""
    builtin = module.split(".")[0] in ("fedlpp", "attacks")
    return f"{'built-in' if builtin else 'plugin'}: {module}"


def _attack_lines(plugin: Any) -> list[str]:
    """An attack's kind, threat model (as its defaults configure it) and summary."""
    if not isinstance(getattr(plugin, "kind", None), str):
        return []
    try:
        threat = plugin(plugin.Config()).threat_model
    except Exception:  # noqa: BLE001 - a plugin whose defaults don't build is still described
        threat = "?"
    lines = [f"kind: {plugin.kind}; threat model (defaults): {threat}"]
    return lines + ([f"summary: {plugin.summary}"] if getattr(plugin, "summary", "") else []) + [""]


def _defaults_note(kind: str, config: type) -> list[str]:
    """A line saying the defaults alone are refused (a required choice), else nothing."""
    if kind in SECTIONS:
        return []
    try:
        config()
    except FedlppError as exc:
        return ["", f"note: the defaults alone are refused ({exc}): set what it asks for"]
    except Exception:  # noqa: BLE001 - a plugin's own check failing is still worth saying
        return ["", "note: the defaults alone are refused"]
    return []


def option_table(rows: list[tuple[str, str, str, str]], indent: str = "  ") -> list[str]:
    """Rows as aligned columns: option, type, default, note."""
    if not rows:
        return [f"{indent}(none)"]
    widths = [max(len(r[i]) for r in [("option", "type", "default", ""), *rows]) for i in range(3)]
    head = ("option", "type", "default", "")
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True))
             + ("  " + r[3] if r[3] else "")).rstrip() for r in [head, *rows]]


def describe(kind: str, registry: Registry, name: str) -> str:
    """``fedlpp ls KIND NAME``: the plugin's docstring, where it is set, and its options."""
    plugin = registry.get(name)  # an unknown name: one line with a suggestion
    shown = name if name in registry.names() else f"{name} (served by {plugin.registered_name})"
    lines = [f"{kind} {shown}  [{_origin(plugin)}]", ""]
    doc = _doc(plugin)
    lines += [doc, ""] if doc else []
    lines += _attack_lines(plugin)
    lines += [f"use: {SET_AS[kind].format(name=name)}", ""] if kind in SET_AS else []
    config = options_class(kind, plugin)
    what = f"[{'data' if kind == 'datasets' else 'model'}] keys" if kind in SECTIONS else "options"
    lines.append(f"{what}:")
    lines += option_table(option_rows(config)) if config else ["  (none)"]
    if config is not None:
        config_doc = _doc(config)
        lines += ["", textwrap.indent(config_doc, "  ")] if config_doc and kind not in SECTIONS \
            else []
        lines += _defaults_note(kind, config)
    return "\n".join(lines).rstrip() + "\n"


def summary_line(kind: str, registry: Registry, name: str) -> str:
    """The options of plugin ``name`` with their defaults, in one line (for ``fedlpp ls KIND``);
    ``""`` for one without options or that reads a whole config section."""
    config = options_class(kind, registry.get(name))
    if config is None or kind in SECTIONS:
        return ""
    return ", ".join(f"{o} = {d}" for o, _, d, _ in option_rows(config))


def config_toml(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """``fedlpp config show``: the config of ``fedlpp train --config PATH --set ...`` resolved
    (every plugin checked, the quantizers' defaults filled in), as TOML that ``--config`` reads
    back to the same config."""
    cfg = resolve(load_config(path, overrides))
    args = "".join(f" --set {s}" for s in overrides)
    head = [f"# the resolved config of: fedlpp train{f' --config {path}' if path else ''}{args}",
            "# (fedlpp train --config THIS_FILE runs the same config)", ""]
    return "\n".join(head) + tomlwrite.dumps(cfg.to_dict())
