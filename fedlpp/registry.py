"""A named registry of plugins: ``@REG.register("name")``, ``REG.get``, ``REG.build``.

Names ending in ``:`` are prefix plugins: ``hf:`` serves ``hf:<anything>``.
Third-party plugins are discovered from the entry-point group given to the registry.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from fedlpp.errors import FedlppError


class Registry:
    """A dict of plugins with registration, lookup with suggestions, and entry-point discovery."""

    def __init__(self, kind: str, *, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, Any] = {}
        self._discovered = group is None

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
        for ep in entry_points(group=self.group):
            if ep.name not in self._items:
                ep.load()  # importing the module runs its @register

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
        return cls(make_config(cls.Config, kwargs, where=f"{self.kind} '{name}'"))


    def build_table(self, table: Any, *, where: str, key: str = "name") -> Any:
        """Instantiate the plugin a config table names (``{key = "name", option = value, ...}``).

        The table's other keys are the plugin's ``Config`` options, type-checked like every config
        key; errors name the table, e.g. ``Invalid adversaries[0].fraction: 'x' (expected float)``.
        """
        from fedlpp.config import from_dict  # config does not import the registry: no cycle

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


def make_config(cls: type, values: dict[str, Any], *, where: str) -> Any:
    """Build dataclass ``cls`` from ``values``; an unknown key is a FedlppError naming the allowed ones."""
    allowed = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in allowed:
            raise FedlppError(
                f"Unknown option '{key}' for {where}. Allowed: {', '.join(sorted(allowed)) or '(none)'}"
            )
    return cls(**values)
