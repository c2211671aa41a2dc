"""A named registry of plugins: ``@REG.register("name")``, ``REG.get``, ``REG.build``.

Names ending in ``:`` are prefix plugins: ``hf:`` serves ``hf:<anything>``.
A registry loads its own built-in modules (``builtins``) and then the third-party plugins of its
entry-point group on its first lookup, so listing or building never depends on what happened to
be imported before. Options are type-checked by :func:`fedlpp.typed.options`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from fedlpp.errors import FedlppError
from fedlpp.typed import from_dict, options


class Registry:
    """A dict of plugins with registration, lookup with suggestions, and entry-point discovery."""

    def __init__(self, kind: str, *, group: str | None = None, builtins: Sequence[str] = (),
                 option_prefix: str = "") -> None:
        self.kind = kind
        self.option_prefix = option_prefix  # the config section options come from, in errors
        self.group = group
        # modules whose import registers the built-in plugins; "pkg.*" = every module of pkg
        self.builtins = tuple(builtins)
        self._items: dict[str, Any] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator registering ``obj`` under ``name``; a duplicate name raises."""

        def deco(obj: Any) -> Any:
            if name in self._items:
                raise FedlppError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            obj.registered_name = name
            return obj

        return deco

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for module in self.builtins:  # importing a plugin's module runs its @register
            for name in _modules(module):
                importlib.import_module(name)
        for ep in entry_points(group=self.group) if self.group else ():
            if ep.name not in self._items:
                ep.load()

    def names(self) -> list[str]:
        """All registered names, built-in and discovered, sorted."""
        self._discover()
        return sorted(self._items)

    def get(self, name: str) -> Any:
        """The plugin registered as ``name`` (or the prefix plugin serving it)."""
        self._discover()
        if name in self._items:
            return self._items[name]
        if ":" in name and name.split(":", 1)[0] + ":" in self._items:
            return self._items[name.split(":", 1)[0] + ":"]
        close = difflib.get_close_matches(name, self._items, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise FedlppError(
            f"Unknown {self.kind} '{name}'.{hint} Available: {', '.join(self.names())}"
        )

    def build(self, name: str, **kwargs: Any) -> Any:
        """Instantiate plugin ``name`` with its ``Config`` dataclass made from ``kwargs``."""
        cls = self.get(name)
        return cls(options(cls.Config, kwargs, where=f"{self.kind} '{name}'",
                           prefix=self.option_prefix))

    def build_table(self, table: Any, *, where: str, key: str = "name") -> Any:
        """Instantiate the plugin a config table names (``{key = "name", option = value, ...}``).

        The table's other keys are the plugin's ``Config`` options, type-checked like every config
        key; errors name the table, e.g. ``Invalid adversaries[0].fraction: 'x' (expected float)``.
        """
        if not isinstance(table, Mapping) or not isinstance(table.get(key), str):
            raise FedlppError(f"Invalid {where}: {table!r} (expected a table with {key} = one of: "
                              f"{', '.join(self.names()) or '(none registered)'})")
        try:
            cls = self.get(table[key])
        except FedlppError as exc:
            raise FedlppError(f"Invalid {where}.{key}: {exc}") from None
        options = {k: v for k, v in table.items() if k != key}
        try:
            return cls(from_dict(cls.Config, options, prefix=f"{where}."))
        except FedlppError as exc:  # a value check in the plugin's Config: say which table
            if where in str(exc):
                raise
            raise FedlppError(f"{where}: {exc}") from None


def _modules(spec: str) -> list[str]:
    """``spec`` itself, or for ``pkg.*`` every module of package ``pkg`` (sorted)."""
    if not spec.endswith(".*"):
        return [spec]
    package = importlib.import_module(spec[:-2])
    return sorted(f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__))


@dataclass
class NoOptions:
    """The config of a plugin without options."""


class Plugin:
    """Base of plugin classes built from a config table: ``Config`` is the options' dataclass."""

    Config: ClassVar[type] = NoOptions
    registered_name: ClassVar[str]  # set by ``Registry.register``

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @property
    def name(self) -> str:
        """The registered name."""
        return type(self).registered_name
