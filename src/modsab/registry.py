"""One registry per extension point: fusion rules, attribution methods, diagnostics,
dataset loaders, agent kinds, agent backends, built-in tasks and executors.

An entry registers itself where it is defined (``@fusion_rules.register("cap")``), and
each registry knows the package its entries live in, so it imports that package's modules
on first use: adding a rule, a diagnostic or a loader is one new file in its folder.
Config validation, CLI choices, ``--help`` and "unknown name" errors all read
:meth:`Registry.names` and :meth:`Registry.get`, never a retyped list.

The registries are created here once, at import, and only ever filled by the modules of
their own package (at their import): they hold classes and factories, never results.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from modsab.contract.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, discovered from the modules of ``package`` (or from the one
    module ``package`` names).

    ``what`` names the kind in errors ("fusion rule"); ``option`` names the config key or
    command option that chooses one ("--weights"), so an unknown name says where it came from.
    """

    def __init__(self, what: str, package: str, *, option: str | None = None) -> None:
        self.what, self.package, self.option = what, package, option
        self._entries: dict[str, T] = {}
        self._order: dict[str, float] = {}
        self._discovered = False

    def register(self, name: str, *, order: float = 100.0) -> Callable[[T], T]:
        """Decorator: record ``entry`` under ``name``; ``order`` sorts :meth:`names` (ties by name)."""

        def add(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.what} '{name}' is registered twice")
            self._entries[name] = entry
            self._order[name] = order
            return entry

        return add

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        if not hasattr(package, "__path__"):  # a module: importing it registered its entries
            return
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order (``order``, then name)."""
        self._discover()
        return tuple(sorted(self._entries, key=lambda name: (self._order[name], name)))

    def get(self, name: str) -> T:
        """The entry called ``name``; an :class:`InputError` listing the valid names otherwise."""
        self._discover()
        try:
            return self._entries[name]
        except KeyError:
            where = f" ({self.option})" if self.option else ""
            raise InputError(
                f"unknown {self.what} '{name}'{where}", hint=f"choose one of {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]


#: Fusion rules: the ``--weights`` values and the strategies of ``fusion_compare``.
fusion_rules: Registry[Any] = Registry("weights", "modsab.core.rules", option="--weights")
#: Contribution methods over coalitions (paper rule, leave-one-out, Shapley).
attributions: Registry[Any] = Registry("attribution method", "modsab.diagnostics")
#: Diagnostics beyond the paper, each a JSON section of its own.
diagnostics: Registry[Any] = Registry("diagnostic", "modsab.diagnostics", option="--diagnostics")
#: Dataset loaders of ``[dataset] loader``.
loaders: Registry[Any] = Registry("dataset loader", "modsab.data.loaders", option="[dataset] loader")
#: Agent kinds of ``[[agents]] kind``.
agent_kinds: Registry[Any] = Registry("agent kind", "modsab.agents.kinds", option="[[agents]] kind")
#: Backends of LLM agents (OpenAI-compatible endpoint, in-process local models).
backends: Registry[Any] = Registry("agent backend", "modsab.agents.backends", option="model")
#: Built-in tasks of ``task = "..."`` (emotion, sentiment, sentiment2); a ``[task]`` table defines others.
tasks: Registry[Any] = Registry("task", "modsab.contract.task", option="task")
#: Executors of ``[run] executor``: where per-item work (descriptor extraction) runs.
executors: Registry[Any] = Registry("executor", "modsab.run.executors", option="[run] executor")


def requestable_diagnostics() -> tuple[str, ...]:
    """The diagnostics one asks for (``--<key>`` flags, ``"all"``): every registered one but the
    automatic ones (``Diagnostic.automatic``: ``diagnose()`` runs those whenever they apply)."""
    return tuple(name for name, entry in diagnostics.items() if not getattr(entry, "automatic", False))
