"""Values that go on the wire as they are: error codes and timestamps.

The expected values are the contract's (§4 error codes and statuses, §1.8
timestamps), written out here, not read from the code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backchannel.core import errors
from backchannel.core.errors import ApiError
from backchannel.core.timefmt import format_ts, parse_ts

T = 1_764_329_642_203_069  # 2025-11-28T11:34:02.203069+00:00


@pytest.mark.parametrize(
    ("make", "args", "status", "code", "mentions"),
    [
        (errors.missing_field, ("name",), 422, "missing_field", "'name'"),
        (errors.invalid_string, ("label",), 422, "invalid_string", "'label'"),
        (errors.invalid_object, ("metadata",), 422, "invalid_object", "'metadata'"),
        (errors.invalid_query, ("limit", "must be an int"), 400, "invalid_query", "'limit'"),
        (errors.channel_not_found, ("jobs",), 404, "channel_not_found", "'jobs'"),
        (errors.message_not_found, (), 404, "message_not_found", "not found"),
        (errors.actor_not_found, ("bot",), 404, "actor_not_found", "'bot'"),
        (errors.access_denied, (), 403, "channel_access_denied", "member"),
        (errors.actor_forbidden, (), 403, "actor_forbidden", "actor"),
        (errors.already_claimed, (), 409, "already_claimed", "claimed"),
        (errors.not_claimable, (), 409, "channel_not_claimable", "not claimable"),
        (errors.invalid_lease_seconds, (5, 3600), 422, "invalid_lease_seconds", "5 and 3600"),
    ],
)
def test_each_refusal_carries_its_contract_status_and_code(
    make: Callable[..., ApiError], args: tuple[Any, ...], status: int, code: str, mentions: str
) -> None:
    error = make(*args)  # built here, not at collection: the code under test runs in the test
    assert (error.status, error.code) == (status, code)
    assert mentions in error.message
    assert str(error) == error.message
    assert repr(error) == f"ApiError({status}, {code!r}, {error.message!r})"


def test_an_invalid_query_names_its_parameter_in_the_envelope() -> None:
    error = errors.invalid_query("wait", "must be a number")
    assert error.details == {"parameter": "wait"}
    assert error.message == "Query parameter 'wait' must be a number"


def test_timestamps_render_as_utc_isoformat_with_microseconds() -> None:
    assert format_ts(T) == "2025-11-28T11:34:02.203069+00:00"
    assert format_ts(0) == "1970-01-01T00:00:00+00:00"
    assert parse_ts(format_ts(T)) == T


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-28T11:34:02.203069+00:00", T),
        ("2025-11-28T11:34:02.203069Z", T),
        ("2025-11-28T11:34:02.203069z", T),
        ("  2025-11-28T11:34:02.203069Z ", T),
        ("2025-11-28T11:34:02.203069 00:00", T),  # '+' sent unencoded in a query
        ("2025-11-28T11:34:02.203069", T),  # naive: UTC
        ("2025-11-28T12:34:02.203069+01:00", T),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59Z", -1_000_000),
        ("", None),
        ("   ", None),
        ("yesterday", None),
        ("2025-13-01T00:00:00Z", None),
        ("2025-11-28T11:34:02" + "0" * 60, None),  # over 64 characters
    ],
)
def test_timestamps_parse_from_every_accepted_form(text: str, expected: int | None) -> None:
    assert parse_ts(text) == expected
