"""A small name -> factory registry (the torchvision ``_api.py`` / timm ``@register_model`` pattern)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Generic, Sequence, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Duplicate names and unknown names raise with the offending value.

    Args:
        kind: what is registered ("model", "dataset"), used in error messages.
        modules: modules whose import registers the built-in entries; imported on the first lookup, so importing
            the package that owns the registry stays cheap (e.g. ``wsol.data.metadata`` without torch).
    """

    def __init__(self, kind: str, modules: Sequence[str] = ()) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._modules = tuple(modules)
        self._loaded = not self._modules

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``fn`` under ``name``; raises ``ValueError`` on a duplicate."""

        def decorator(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = fn
            return fn

        return decorator

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; ``KeyError`` listing the known names otherwise."""
        self._load()
        try:
            return self._factories[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def options(self, name: str, exclude: Sequence[str] = ()) -> tuple[str, ...] | None:
        """The keyword arguments the factory ``name`` takes (minus ``exclude``); ``None`` if it takes ``**kwargs``."""
        parameters = inspect.signature(self.get(name)).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return None
        return tuple(p.name for p in parameters
                     if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                     and p.name not in exclude)

    def build(self, name: str, **kwargs: Any) -> T:
        """Call the factory registered as ``name`` with ``kwargs``.

        Raises:
            ValueError: a keyword the factory does not take, named with the options it does take.
        """
        known = self.options(name)
        unknown = [key for key in kwargs if known is not None and key not in known]
        if unknown:
            raise ValueError(f"{self.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                             f"its options are: {', '.join(known or ())}")
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._factories
