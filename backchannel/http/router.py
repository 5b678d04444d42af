"""Method-and-path routing for the API's own ASGI lane.

A pattern is a path whose segments are literals or ``<name>`` (one
non-empty segment, no ``/``), as in Werkzeug's default converter. Matching
looks up literal paths in a dict and templated ones by segment count, so a
request costs a split and a few comparisons, not a regex scan of every route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _Pattern(Generic[T]):
    __slots__ = ("names", "segments", "targets", "template")

    def __init__(self, segments: list[str]) -> None:
        self.template = "/".join(segments).replace("<", "{").replace(">", "}")
        self.segments = [None if s.startswith("<") else s for s in segments]
        self.names = [s[1:-1] for s in segments if s.startswith("<")]
        self.targets: dict[str, T] = {}

    def match(self, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        names = iter(self.names)
        for want, got in zip(self.segments, parts, strict=True):
            if want is None:
                if not got:
                    return None
                params[next(names)] = got
            elif want != got:
                return None
        return params


class Router(Generic[T]):
    """Maps ``(method, path)`` to a target and its path parameters."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, T]] = {}
        self._templated: dict[int, list[_Pattern[T]]] = {}
        self._patterns: dict[str, _Pattern[T]] = {}

    def add(self, method: str, pattern: str, target: T) -> None:
        if "<" not in pattern:
            self._static.setdefault(pattern, {})[method] = target
            return
        entry = self._patterns.get(pattern)
        if entry is None:
            segments = pattern.split("/")
            entry = self._patterns[pattern] = _Pattern(segments)
            self._templated.setdefault(len(segments), []).append(entry)
        entry.targets[method] = target

    def route(self, method: str, pattern: str) -> Callable[[T], T]:
        def register(target: T) -> T:
            self.add(method, pattern, target)
            return target

        return register

    def _methods(self, path: str) -> tuple[dict[str, T], dict[str, str]] | None:
        static = self._static.get(path)
        if static is not None:
            return static, {}
        parts = path.split("/")
        for pattern in self._templated.get(len(parts), ()):
            params = pattern.match(parts)
            if params is not None:
                return pattern.targets, params
        return None

    def match(self, method: str, path: str) -> tuple[T, dict[str, str]] | None:
        """The target for ``method`` on ``path`` and its parameters, or None."""
        found = self._methods(path)
        if found is None:
            return None
        target = found[0].get(method)
        return None if target is None else (target, found[1])

    def template(self, path: str) -> str | None:
        """The routed pattern ``path`` matches, as ``/v1/channels/{identifier}``; else None."""
        if path in self._static:
            return path
        parts = path.split("/")
        for pattern in self._templated.get(len(parts), ()):
            if pattern.match(parts) is not None:
                return pattern.template
        return None

    def knows(self, path: str) -> bool:
        """Whether any method is routed for ``path``."""
        return self._methods(path) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for method, path, _ in self.entries():
            yield method, path

    def entries(self) -> Iterator[tuple[str, str, T]]:
        """Every ``(method, pattern, target)``, in registration order per pattern."""
        for path, methods in self._static.items():
            for method, target in methods.items():
                yield method, path, target
        for path, pattern in self._patterns.items():
            for method, target in pattern.targets.items():
                yield method, path, target
