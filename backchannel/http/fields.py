"""Validation of request bodies and query values, in the contract's words.

Each function takes the parsed JSON object (or a query string value) and
returns a clean Python value or raises :class:`ApiError` with the code of
contract §2–§4. Nothing here touches state.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from backchannel.core import errors
from backchannel.core.errors import ApiError
from backchannel.core.outbox import literal_target_refused
from backchannel.core.records import BROADCAST, CLAIMABLE, OPEN, RESTRICTED
from backchannel.core.schema import schema_problems

_ABSENT = object()

# U+00AD, U+061C, U+200B–U+200F, U+202A–U+202E, U+2060–U+2064, U+2066–U+2069, U+FEFF
_INVISIBLE = frozenset(
    [
        0x00AD,
        0x061C,
        0xFEFF,
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2065),
        *range(0x2066, 0x206A),
    ]
)


_INT64 = 2**63


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _storable_int(text: str) -> int:
    """Integers must fit 64 bits: that is what the log and snapshots can store."""
    if len(text) > 20:
        raise ValueError("integer too large")
    value = int(text)
    if not -_INT64 <= value < 2**64:
        raise ValueError("integer too large")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number too large")
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodable(value: Any) -> bool:
    """Every string (and key) inside ``value`` encodes as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_object(data: bytes) -> dict[str, Any]:
    """A request body as a JSON object; an empty body is ``{}``.

    Raises 400 ``invalid_json`` (not UTF-8, not JSON, ``NaN``/``Infinity``,
    or a number the server cannot store: integers beyond 64 bits, floats
    beyond double range) and 422 ``invalid_json_shape`` (not an object).
    """
    if not data.strip():
        return {}
    try:
        value = json.loads(
            data.decode("utf-8"),
            parse_constant=_refuse_constant,
            parse_int=_storable_int,
            parse_float=_finite_float,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "Request body is not valid JSON") from None
    if _SURROGATE_ESCAPE.search(data) and not _encodable(value):
        # valid UTF-8 cannot carry a surrogate; only a \u escape can, and a lone
        # one is text nothing downstream can store or send back
        raise ApiError(400, "invalid_json", "Request body has an unpaired surrogate escape")
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_json_shape", "Request body must be a JSON object")
    return value


def required_string(body: dict[str, Any], name: str, *, max_chars: int | None = None) -> str:
    """A required non-empty string, trimmed."""
    if name not in body:
        raise errors.missing_field(name)
    value = body[name]
    if not isinstance(value, str) or not value.strip():
        raise errors.invalid_string(name)
    text = value.strip()
    if max_chars is not None and len(text) > max_chars:
        raise ApiError(422, "invalid_string", f"'{name}' must be at most {max_chars} characters")
    return text


def optional_string(body: dict[str, Any], name: str, *, max_chars: int | None = None) -> str | None:
    """An optional string: absent or null gives None; present must be non-empty."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise errors.invalid_string(name)
    text = value.strip()
    if max_chars is not None and len(text) > max_chars:
        raise ApiError(422, "invalid_string", f"'{name}' must be at most {max_chars} characters")
    return text


def optional_object(
    body: dict[str, Any], name: str, *, max_bytes: int | None = None
) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.invalid_object(name)
    if max_bytes is not None:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > max_bytes:
            raise ApiError(
                422, "invalid_object", f"'{name}' must encode to at most {max_bytes} bytes"
            )
    return value


def channel_name(body: dict[str, Any], max_chars: int) -> str:
    if "name" not in body:
        raise errors.missing_field("name")
    value = body["name"]
    if not isinstance(value, str) or not value.strip():
        raise errors.invalid_string("name")
    name = value.strip()
    for char in name:
        code = ord(char)
        if code < 0x20 or code == 0x7F or code in _INVISIBLE:
            raise ApiError(
                422, "invalid_channel_name", "Channel name contains control or invisible characters"
            )
    if len(name) > max_chars:
        raise ApiError(
            422, "invalid_channel_name", f"Channel name must be at most {max_chars} characters"
        )
    return name


def bounded_int(
    value: Any, low: int, high: int, code: str, message: str, *, nullable: bool = False
) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(422, code, message)
    return value


_LIMIT_RULE = "must be null or an integer between 1 and 1000000"


def channel_mode(value: Any) -> str:
    if value not in (BROADCAST, CLAIMABLE):
        raise ApiError(422, "invalid_mode", "'mode' must be 'broadcast' or 'claimable'")
    return str(value)


def channel_access(value: Any) -> str:
    if value not in (OPEN, RESTRICTED):
        raise ApiError(422, "invalid_access", "'access' must be 'open' or 'restricted'")
    return str(value)


def flag(value: Any, name: str) -> bool:
    """A boolean field; 422 ``invalid_<name>`` otherwise."""
    if not isinstance(value, bool):
        raise ApiError(422, f"invalid_{name}", f"'{name}' must be true or false")
    return value


def metadata_schema(body: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """A channel's ``metadata_schema`` (absent or null: ``{}``), checked usable."""
    schema = optional_object(body, "metadata_schema", max_bytes=max_bytes)
    problems = schema_problems(schema)
    if problems:
        raise ApiError(
            422, "invalid_object", "'metadata_schema' is unusable: " + "; ".join(problems)
        )
    return schema


def channel_limits(body: dict[str, Any]) -> dict[str, Any]:
    """The retention and size limits present in ``body``, validated (creation and PATCH)."""
    found: dict[str, Any] = {}
    if "retention_days" in body:
        found["retention_days"] = bounded_int(
            body["retention_days"],
            1,
            365,
            "invalid_retention_days",
            "'retention_days' must be an integer between 1 and 365",
        )
    for name, code in (
        ("max_messages", "invalid_max_messages"),
        ("max_writes_per_minute", "invalid_max_writes_per_minute"),
    ):
        if name in body:
            found[name] = bounded_int(
                body[name], 1, 1_000_000, code, f"'{name}' {_LIMIT_RULE}", nullable=True
            )
    return found


def content(body: dict[str, Any], max_bytes: int) -> str:
    """Message content: required, non-empty after trim, stored trimmed, byte-capped."""
    text = required_string(body, "content")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ApiError(
            422,
            "content_too_large",
            f"Message content exceeds the {max_bytes}-byte limit",
            max_content_bytes=max_bytes,
            received_bytes=size,
        )
    return text


def string_list(
    body: dict[str, Any], name: str, code: str, *, max_items: int = 100
) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ApiError(422, code, f"'{name}' must be an array")
    if len(value) > max_items:
        raise ApiError(422, code, f"'{name}' must have at most {max_items} entries")
    out: list[str] = []
    for item in value:
        if item is None:
            continue
        if not isinstance(item, str) or not item.strip():
            raise errors.invalid_string("value")
        out.append(item.strip())
    return out


# -- query values -------------------------------------------------------------


def query_int(raw: str | None, name: str, default: int) -> int:
    """An integer query value; anything unparsable is 400 ``invalid_query``."""
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not text.lstrip("+-").isdigit() or len(text) > 12:
        raise errors.invalid_query(name, "must be an integer")
    return int(text)


def query_limit(raw: str | None, *, default: int = 50, strict: bool = True) -> int:
    """``limit``: 1–100; outside → 422 ``invalid_limit`` (or clamped when not strict)."""
    value = query_int(raw, "limit", default)
    if 1 <= value <= 100:
        return value
    if not strict:
        return min(100, max(1, value))
    raise ApiError(422, "invalid_limit", "'limit' must be between 1 and 100")


def query_wait(raw: str | None, cap: float, ceiling: float = 3600.0) -> float:
    """``wait`` seconds, clamped to the server cap.

    Not a finite number, negative, or beyond ``ceiling`` → 400 ``invalid_query``.
    """
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise errors.invalid_query("wait", "must be a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise errors.invalid_query("wait", "must be a non-negative number of seconds")
    if value > ceiling:
        raise errors.invalid_query("wait", f"must be at most {ceiling:g} seconds")
    return min(value, cap)


def webhook_url(body: dict[str, Any], name: str, *, allow_private: bool) -> str | None:
    """An optional http(s) webhook URL (contract §0.6), else 422 ``invalid_webhook_url``.

    Unless ``allow_private``, a URL naming a loopback, private, link-local
    or unspecified address literally, or ``localhost``, is refused here; a
    name that resolves to one is refused at delivery time.
    """
    url = optional_string(body, name, max_chars=2048)
    if url is None:
        return None
    if not url.lower().startswith(("http://", "https://")) or any(
        ord(c) <= 0x20 or ord(c) == 0x7F for c in url
    ):
        raise ApiError(422, "invalid_webhook_url", f"'{name}' must be an http(s) URL")
    if not allow_private and literal_target_refused(url):
        raise ApiError(
            422,
            "invalid_webhook_url",
            f"'{name}' names a loopback, private, link-local or unspecified address",
        )
    return url
