"""Per-channel ``metadata_schema`` validation (contract §3.12).

Theory of operation
-------------------
A channel may carry a ``metadata_schema``: a small, JSON-Schema-like
document applied to the ``metadata`` object of every message posted to it.
The schema is stored as given (any JSON object is accepted when set); this
module decides, per post, whether the metadata satisfies it and, if not,
lists every violation as ``{"field": <path>, "issue": <text>}`` for the 422
``metadata_validation_failed`` reply. The module is pure: no I/O, no trio,
no clock and no imports from the rest of the package.

The subset (mirrors upstream ``_validate_against_schema``):

- ``type``: ``string``, ``number`` (int or float), ``integer``, ``boolean``,
  ``array``, ``object``, ``null``. Python bools pass as ``integer`` and
  ``number`` (``bool`` is an ``int``); a float never passes as ``integer``.
  Any other ``type`` value (unknown name, a list of names) is ignored.
- ``minLength`` / ``maxLength`` / ``pattern`` apply to strings; ``pattern``
  uses ``re.search`` (unanchored).
- ``minimum`` / ``maximum`` apply to numbers (bools included), inclusive.
- ``enum`` applies to any value (Python ``in``, so ``1`` matches ``True``).
- ``required``, ``properties`` (recursive) and ``additionalProperties``
  (only the value ``false`` has an effect) apply to objects.
- Every other keyword (``items``, ``$ref``, ``oneOf``, ``format``...) is
  ignored, and so is a schema node that is not an object: the schema
  ``{"severity": "string"}`` validates nothing.

Rule 1: a type mismatch stops descent. When ``type`` names a known type the
value does not have, the node reports ``expected type '<t>'`` and nothing
else; a node without ``type`` whose value is an object is still checked for
``required``/``properties``/``additionalProperties``.

Rule 2: the order of violations is deterministic. Within a node: ``type``,
``minLength``, ``maxLength``, ``pattern``, ``minimum``, ``maximum``,
``enum``, then ``required`` in listed order, then each of ``properties`` in
schema order (depth first), then additional properties in metadata order.
Paths are ``metadata``, ``metadata.who``, ``metadata.a.b``.

Rule 3: never raise on JSON-compatible input. A malformed keyword (a
non-numeric ``minimum``, a non-integer ``minLength``, a non-list
``required`` or ``enum``, a non-string ``pattern``) is ignored, never a
crash: a bad schema must not turn a post into a 500 (contract §0 item 8).

Safety (our improvement over upstream, which evaluated any user regex on
any subject on every post):

- A ``pattern`` longer than ``max_pattern_length`` is never compiled; it
  reports ``invalid pattern in schema: pattern longer than N characters``.
- Compiled patterns, and compile failures, are cached per pattern string
  (``functools.lru_cache``), so a channel's schema is compiled once, not
  once per post. ``re`` warnings (e.g. "possible nested set") are silenced
  during compilation: they are about the schema author's regex, not a fault
  of the server, and the test suite runs with warnings as errors.
- A string longer than ``max_subject_length`` is not matched at all and
  reports ``pattern '<p>' did not match``.
- Descent is bounded by ``MAX_DEPTH`` levels of ``properties`` below the
  root; deeper metadata nodes are simply not checked.

- Patterns are evaluated with the ``regex`` package (``re``-compatible
  syntax) under a time budget of ``PATTERN_TIMEOUT_SECONDS``: catastrophic
  backtracking (``(a+)+$``) cannot stall the channel; a match that runs out
  of time reports ``pattern '<p>' timed out`` and the post is refused.
  ``schema_problems`` lets callers refuse uncompilable or oversized patterns
  when a schema is set.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

import regex

__all__ = [
    "DEFAULT_MAX_PATTERN_LENGTH",
    "DEFAULT_MAX_SUBJECT_LENGTH",
    "MAX_DEPTH",
    "schema_problems",
    "validate_metadata",
]

DEFAULT_MAX_PATTERN_LENGTH: Final = 256
DEFAULT_MAX_SUBJECT_LENGTH: Final = 10_000
MAX_DEPTH: Final = 32
"""Levels of ``properties`` below the root that are validated (root = 0)."""

_ROOT: Final = "metadata"
_PATTERN_CACHE_SIZE: Final = 512

_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}

# Exceptions ``re.compile`` is known to raise for a bad pattern string:
# ``re.error`` for syntax, ``OverflowError`` for repeat counts such as
# ``a{4294967296}``, ``RecursionError`` for extreme nesting.
_COMPILE_ERRORS: Final = (regex.error, OverflowError, RecursionError, ValueError)
PATTERN_TIMEOUT_SECONDS: Final = 0.05


def validate_metadata(
    schema: Mapping[str, Any],
    metadata: Any,
    *,
    max_pattern_length: int = DEFAULT_MAX_PATTERN_LENGTH,
    max_subject_length: int = DEFAULT_MAX_SUBJECT_LENGTH,
) -> list[dict[str, str]]:
    """Check ``metadata`` against a channel's ``metadata_schema``.

    Args:
      schema: The channel's schema. An empty schema (or a non-mapping)
        validates everything.
      metadata: The posted ``metadata`` value, the root of validation (path
        ``metadata``). Usually a dict, but any JSON value is accepted.
      max_pattern_length: Longest ``pattern`` that is compiled; a longer one
        is reported as an invalid pattern wherever it applies.
      max_subject_length: Longest string a ``pattern`` is matched against; a
        longer string is reported as not matching.

    Returns:
      The violations, each ``{"field": <path>, "issue": <text>}``, in the
      order described in the module docstring; an empty list means valid.

    Raises:
      Nothing for any JSON-compatible ``schema`` and ``metadata`` (what
      ``json.loads`` can return); malformed keywords are ignored.
    """
    violations: list[dict[str, str]] = []
    if isinstance(schema, Mapping):
        limits = _Limits(max_pattern_length, max_subject_length)
        _check_node(schema, metadata, _ROOT, 0, limits, violations)
    return violations


def schema_problems(
    schema: Mapping[str, Any],
    *,
    max_pattern_length: int = DEFAULT_MAX_PATTERN_LENGTH,
) -> list[str]:
    """List the reasons a schema is unusable, for rejecting it when set.

    Only the patterns validation could ever evaluate are inspected: those of
    the root and of nodes reachable through ``properties`` within
    ``MAX_DEPTH``. Everything else a schema may contain is tolerated, as
    validation ignores it.

    Args:
      schema: A candidate ``metadata_schema``.
      max_pattern_length: The limit ``validate_metadata`` will apply.

    Returns:
      Human-readable reasons in schema order, e.g. ``"metadata.who: invalid
      pattern in schema: missing ), unterminated subpattern at position 0"``;
      an empty list means the schema is usable.

    Raises:
      Nothing for any JSON-compatible ``schema``.
    """
    problems: list[str] = []
    if isinstance(schema, Mapping):
        _collect_problems(schema, _ROOT, 0, max_pattern_length, problems)
    return problems


class _Limits:
    __slots__ = ("max_pattern_length", "max_subject_length")

    def __init__(self, max_pattern_length: int, max_subject_length: int) -> None:
        self.max_pattern_length = max_pattern_length
        self.max_subject_length = max_subject_length


def _check_node(
    schema: Mapping[str, Any],
    value: Any,
    path: str,
    depth: int,
    limits: _Limits,
    out: list[dict[str, str]],
) -> None:
    expected = schema.get("type")
    if isinstance(expected, str) and expected in _TYPES:
        if not isinstance(value, _TYPES[expected]):
            out.append({"field": path, "issue": f"expected type '{expected}'"})
            return
    if isinstance(value, str):
        _check_string(schema, value, path, limits, out)
    if isinstance(value, int | float):
        _check_bounds(schema, value, path, out)
    enum = schema.get("enum")
    if isinstance(enum, list) and not _contains(enum, value):
        out.append({"field": path, "issue": f"value must be one of {_render(enum)}"})
    if isinstance(value, dict):
        _check_object(schema, value, path, depth, limits, out)


def _check_string(
    schema: Mapping[str, Any],
    value: str,
    path: str,
    limits: _Limits,
    out: list[dict[str, str]],
) -> None:
    min_length = schema.get("minLength")
    if _is_int(min_length) and len(value) < min_length:
        out.append({"field": path, "issue": f"minLength {min_length}"})
    max_length = schema.get("maxLength")
    if _is_int(max_length) and len(value) > max_length:
        out.append({"field": path, "issue": f"maxLength {max_length}"})
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        issue = _pattern_issue(pattern, value, limits)
        if issue is not None:
            out.append({"field": path, "issue": issue})


def _check_bounds(
    schema: Mapping[str, Any], value: float, path: str, out: list[dict[str, str]]
) -> None:
    minimum = schema.get("minimum")
    if _is_number(minimum) and value < minimum:
        out.append({"field": path, "issue": f"minimum {minimum}"})
    maximum = schema.get("maximum")
    if _is_number(maximum) and value > maximum:
        out.append({"field": path, "issue": f"maximum {maximum}"})


def _check_object(
    schema: Mapping[str, Any],
    value: dict[Any, Any],
    path: str,
    depth: int,
    limits: _Limits,
    out: list[dict[str, str]],
) -> None:
    required = schema.get("required")
    if isinstance(required, list):
        reported: set[str] = set()
        for name in required:
            if isinstance(name, str) and name not in value and name not in reported:
                reported.add(name)
                out.append({"field": f"{path}.{name}", "issue": "required field missing"})
    properties = schema.get("properties")
    declared: Mapping[Any, Any] = properties if isinstance(properties, Mapping) else {}
    if depth < MAX_DEPTH:
        for name, child in declared.items():
            if isinstance(child, Mapping) and name in value:
                _check_node(child, value[name], f"{path}.{name}", depth + 1, limits, out)
    if schema.get("additionalProperties") is False:
        for name in value:
            if name not in declared:
                out.append({"field": f"{path}.{name}", "issue": "additional property not allowed"})


def _pattern_issue(pattern: str, subject: str, limits: _Limits) -> str | None:
    limit = limits.max_pattern_length
    if len(pattern) > limit:
        return f"invalid pattern in schema: pattern longer than {limit} characters"
    compiled = _compile_pattern(pattern)
    if isinstance(compiled, str):
        return f"invalid pattern in schema: {compiled}"
    if len(subject) > limits.max_subject_length:
        return f"pattern '{pattern}' did not match"
    try:
        found = compiled.search(subject, timeout=PATTERN_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"pattern '{pattern}' timed out"
    return None if found is not None else f"pattern '{pattern}' did not match"


def _pattern_problem(pattern: str, max_pattern_length: int) -> str | None:
    """Why ``pattern`` cannot be used, or None when it compiles within limits."""
    if len(pattern) > max_pattern_length:
        return f"pattern longer than {max_pattern_length} characters"
    compiled = _compile_pattern(pattern)
    return compiled if isinstance(compiled, str) else None


@functools.lru_cache(maxsize=_PATTERN_CACHE_SIZE)
def _compile_pattern(pattern: str) -> Any:
    """Compile ``pattern``, returning the error text instead of raising.

    Failures are returned rather than raised so that ``lru_cache`` keeps
    them too: a broken schema costs one compile, not one per post.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return regex.compile(pattern)
    except _COMPILE_ERRORS as exc:
        return str(exc)


def _collect_problems(
    schema: Mapping[str, Any], path: str, depth: int, max_pattern_length: int, out: list[str]
) -> None:
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        problem = _pattern_problem(pattern, max_pattern_length)
        if problem is not None:
            out.append(f"{path}: invalid pattern in schema: {problem}")
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and depth < MAX_DEPTH:
        for name, child in properties.items():
            if isinstance(child, Mapping):
                _collect_problems(child, f"{path}.{name}", depth + 1, max_pattern_length, out)


def _is_int(candidate: object) -> TypeGuard[int]:
    return isinstance(candidate, int) and not isinstance(candidate, bool)


def _is_number(candidate: object) -> TypeGuard[int | float]:
    return isinstance(candidate, int | float) and not isinstance(candidate, bool)


def _contains(enum: list[Any], value: Any) -> bool:
    try:
        return value in enum
    except RecursionError:  # comparing pathologically deep containers
        return False


def _render(enum: list[Any]) -> str:
    try:
        return repr(enum)
    except RecursionError:
        return "[...]"
