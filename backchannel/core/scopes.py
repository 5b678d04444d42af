"""Key scopes (contract §3.10): the valid set, the check, and narrowing.

A key with ``scopes`` None is unrestricted. A scoped key may do a
scope-checked operation only when its list names that scope; an empty list
blocks every one of them.

Rule (fixes §6 S4 in part): a key can narrow its own scopes but never widen
them. Upstream let a key rewrite its scopes at will, which made a scoped key
no safer than an unrestricted one. An unrestricted key may choose any list;
a scoped key may only choose scopes it already holds.
"""

from __future__ import annotations

from typing import Any

from backchannel.core.errors import ApiError
from backchannel.core.events import ScopesSet
from backchannel.core.records import KeyRecord

VALID_SCOPES = (
    "channels:manage",
    "channels:read",
    "channels:write",
    "messages:ack",
    "messages:claim",
    "messages:read",
    "messages:write",
)
_VALID = frozenset(VALID_SCOPES)


def insufficient_scope(key: KeyRecord, scope: str) -> ApiError:
    return ApiError(
        403,
        "insufficient_scope",
        f"This API key lacks the '{scope}' scope",
        required_scope=scope,
        granted_scopes=list(key.scopes or []),
    )


def require_scope(key: KeyRecord, scope: str) -> None:
    """Pass for an unrestricted key or one holding ``scope``; else 403 ``insufficient_scope``."""
    if key.scopes is not None and scope not in key.scopes:
        raise insufficient_scope(key, scope)


def decide_set_scopes(key: KeyRecord, value: Any, now: int) -> ScopesSet:
    """Validate a ``PUT /v1/keys/me/scopes`` body value and return its event.

    The stored list is sorted, duplicates kept (as upstream stores it).

    Raises:
        ApiError: 422 ``invalid_scopes`` (not an array), 422 ``invalid_scope``
            (an unknown entry), 403 ``insufficient_scope`` (a scoped key asking
            for a scope it does not hold; ``required_scope`` names the first).
    """
    if not isinstance(value, list):
        raise ApiError(422, "invalid_scopes", "'scopes' must be an array of strings")
    for entry in value:
        if not isinstance(entry, str) or entry not in _VALID:
            raise ApiError(
                422,
                "invalid_scope",
                f"Unknown scope {entry!r}; valid scopes: {', '.join(VALID_SCOPES)}",
            )
    scopes = sorted(value)
    if key.scopes is not None:
        wider = sorted(set(scopes) - set(key.scopes))
        if wider:
            error = insufficient_scope(key, wider[0])
            error.message = "A key cannot widen its own scopes"
            raise error
    return ScopesSet(key.key_id, scopes, now)
