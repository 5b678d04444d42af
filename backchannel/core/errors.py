"""The closed set of errors a request can meet, with their wire meaning.

Every expected failure is an :class:`ApiError`: it carries the machine
``code`` of contract §4, the HTTP ``status`` and flat ``details`` that the
HTTP skin merges into the error envelope. Anything else raised from the core
is a bug, never an ordinary reply.

Taxonomy (status → codes)::

    ApiError
    ├── 400  invalid_json, invalid_query, invalid_content_length
    ├── 401  unauthorized
    ├── 403  forbidden, channel_access_denied, actor_forbidden, minting_closed
    ├── 404  not_found, channel_not_found, message_not_found, actor_not_found,
    │        invitation_not_found, access_request_not_found
    ├── 409  already_claimed, channel_not_claimable, not_claimed,
    │        message_claimed, alias_conflict, label_in_use, lease_not_held,
    │        cannot_remove_owner, access_request_resolved
    ├── 410  message_expired, lease_expired, invitation_expired, invitation_revoked
    ├── 413  body_too_large
    ├── 422  missing_field, invalid_string, invalid_object, invalid_* ...,
    │        content_too_large, metadata_validation_failed,
    │        idempotency_key_reused
    ├── 429  rate_limit_exceeded, channel_write_rate_exceeded
    └── 503  channel_paused, unavailable

Rule: a command that raises ``ApiError`` has changed nothing.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An expected, client-visible failure.

    Args:
        status: HTTP status code.
        code: machine-readable error code (contract §4).
        message: human-readable explanation.
        **details: extra top-level fields of the error envelope
            (``retry_after``, ``violations``, ``parameter``, ...).
    """

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"


def missing_field(name: str) -> ApiError:
    return ApiError(422, "missing_field", f"'{name}' is required")


def invalid_string(name: str) -> ApiError:
    return ApiError(422, "invalid_string", f"'{name}' must be a non-empty string")


def invalid_object(name: str) -> ApiError:
    return ApiError(422, "invalid_object", f"'{name}' must be an object")


def invalid_query(parameter: str, reason: str) -> ApiError:
    return ApiError(
        400, "invalid_query", f"Query parameter '{parameter}' {reason}", parameter=parameter
    )


def channel_not_found(identifier: str) -> ApiError:
    return ApiError(404, "channel_not_found", f"Unknown channel '{identifier}'")


def message_not_found() -> ApiError:
    return ApiError(404, "message_not_found", "Message not found")


def actor_not_found(identifier: str) -> ApiError:
    return ApiError(404, "actor_not_found", f"Unknown actor '{identifier}'")


def inactive_key() -> ApiError:
    return ApiError(401, "unauthorized", "Inactive API key")


def access_denied() -> ApiError:
    return ApiError(403, "channel_access_denied", "You are not a member of this channel")


def actor_forbidden() -> ApiError:
    return ApiError(403, "actor_forbidden", "You can only act as an actor your own key registered")


def already_claimed() -> ApiError:
    return ApiError(409, "already_claimed", "This message has already been claimed")


def not_claimable() -> ApiError:
    return ApiError(409, "channel_not_claimable", "This channel is not claimable")


def invalid_lease_seconds(low: int, high: int) -> ApiError:
    return ApiError(
        422,
        "invalid_lease_seconds",
        f"'lease_seconds' must be an integer between {low} and {high}",
    )
