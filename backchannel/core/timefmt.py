"""Wall-clock timestamps as integer microseconds since the Unix epoch.

The core never reads a clock: callers pass ``now`` in microseconds. This
module only converts between that integer form and the wire form, Python's
``datetime.isoformat()`` of a UTC-aware value (contract §1.8), e.g.
``2026-11-28T11:34:02.203069+00:00``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_SECOND = 1_000_000


def format_ts(us: int) -> str:
    """Render microseconds since the epoch as an ISO-8601 UTC string."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat()


def parse_ts(text: str) -> int | None:
    """Parse an ISO-8601 timestamp into microseconds, or None if unparsable.

    A trailing ``Z`` means UTC; naive values are taken as UTC. A space where
    a ``+`` belongs (an unencoded query string) is accepted too.
    """
    value = text.strip()
    if not value or len(value) > 64:
        return None
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    elif len(value) > 19 and value[-6] == " " and value[-3] == ":":
        value = value[:-6] + "+" + value[-5:]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        delta = parsed - _EPOCH
    except OverflowError:
        return None
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds
