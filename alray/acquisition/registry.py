"""Name -> factory registries for scorers and selectors.

Registry keys are the short names users type in configs (``"kcenter"``,
``"topk:entropy"``). A duplicate registration raises, an unknown name raises a
``ValueError`` that lists the valid names and suggests the closest one.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """A table of named factories with alias support.

    Args:
        kind: What the registry holds (``"scorer"``, ``"strategy"``); used in errors.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[Callable[..., T], dict[str, Any]]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None, **defaults: Any) -> Any:
        """Register ``factory`` under ``name``; usable as a decorator.

        Args:
            name: The key, e.g. ``"kcenter"``.
            factory: A class or callable building the object; omitted when used as
                ``@registry.register(name)``.
            **defaults: Keyword arguments bound at creation (``create`` may override).

        Returns:
            The factory (so the decorator leaves the class unchanged).

        Raises:
            ValueError: If ``name`` is already registered (as a name or an alias).
        """

        def _add(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries or name in self._aliases:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = (obj, dict(defaults))
            return obj

        return _add if factory is None else _add(factory)

    def alias(self, alias: str, target: str) -> None:
        """Make ``alias`` resolve to the registered name ``target``.

        Args:
            alias: The extra name.
            target: An already registered name.

        Raises:
            ValueError: If ``alias`` is taken or ``target`` is unknown.
        """
        if alias in self._entries or alias in self._aliases:
            raise ValueError(f"{self.kind} {alias!r} is already registered")
        self.resolve(target)
        self._aliases[alias] = target

    def resolve(self, name: str) -> str:
        """Return the canonical name for ``name`` (following aliases).

        Args:
            name: A registered name or alias.

        Returns:
            The canonical registered name.

        Raises:
            ValueError: If ``name`` is unknown; the message lists the valid names.
        """
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {name!r}")
        key = self._aliases.get(name, name)
        if key not in self._entries:
            valid = self.names()
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}.{hint} Valid names: {', '.join(valid)}")
        return key

    def entry(self, name: str) -> tuple[Callable[..., T], dict[str, Any]]:
        """Return ``(factory, defaults)`` for a name or alias.

        Args:
            name: A registered name or alias.

        Returns:
            The factory and its bound default keyword arguments.
        """
        return self._entries[self.resolve(name)]

    def create(self, name: str, **cfg: Any) -> T:
        """Build the object registered under ``name``.

        Keyword arguments left as ``None`` are dropped, so the factory's own
        defaults apply.

        Args:
            name: A registered name or alias.
            **cfg: Options forwarded to the factory.

        Returns:
            The created object.
        """
        factory, defaults = self.entry(name)
        kwargs = {**defaults, **{k: v for k, v in cfg.items() if v is not None}}
        return factory(**kwargs)

    def names(self, pattern: str | None = None, *, aliases: bool = True) -> list[str]:
        """Sorted registered names, optionally filtered with an fnmatch pattern.

        Args:
            pattern: e.g. ``"topk:*"``; ``None`` lists everything.
            aliases: Whether to include aliases.

        Returns:
            The matching names.
        """
        keys: Iterable[str] = list(self._entries)
        if aliases:
            keys = [*keys, *self._aliases]
        out = sorted(keys)
        return out if pattern is None else [n for n in out if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases
