"""Routes and fields of the delivery semantics: claim-next that waits, dead
letters and redrive, delayed posts (issue 12).

Claim-next (with or without ``wait``) is
:func:`backchannel.runtime.claimers.claim_next`, the one entry point other
front ends (the MCP tools) use too; here it watches the request's client.
"""

from __future__ import annotations

from typing import Any

from backchannel.core import errors
from backchannel.core.errors import ApiError
from backchannel.core.records import ChannelConfig, KeyRecord
from backchannel.core.timefmt import US_PER_SECOND, format_ts
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.request import Disconnected
from backchannel.http.views import message_view
from backchannel.runtime import claimers
from backchannel.runtime.actor import ChannelActor, ClaimResult
from backchannel.runtime.hub import Hub

MAX_DELAY_SECONDS = 86_400
DEAD_LETTER_FIELDS = ("max_deliveries", "dead_letter_channel")
_DEAD_LETTER_RULE = (
    "'max_deliveries' (an integer from 1 to 1000) and 'dead_letter_channel' "
    "(another channel you own) go together: set both or neither"
)


def _invalid_dead_letter(detail: str = "") -> ApiError:
    return ApiError(422, "invalid_dead_letter", _DEAD_LETTER_RULE + detail)


def dead_letter_changes(
    body: dict[str, Any], hub: Hub, key: KeyRecord, current: ChannelConfig | None
) -> dict[str, Any]:
    """``max_deliveries`` / ``dead_letter_channel`` of a create or PATCH body.

    Returns the config values to set (the channel resolved to its id).
    After the change both must be set or both null; the dead-letter
    channel must exist, be another channel, and be owned by ``key``.
    Raises 422 ``invalid_dead_letter`` otherwise (one code for an unknown
    and a foreign channel, so the answer tells nothing of other keys').
    """
    changes: dict[str, Any] = {}
    if "max_deliveries" in body:
        value = body["max_deliveries"]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000
        ):
            raise _invalid_dead_letter()
        changes["max_deliveries"] = value
    if "dead_letter_channel" in body:
        value = body["dead_letter_channel"]
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise _invalid_dead_letter()
            target = hub.world.channels.get(value.strip())
            if target is None:
                target_id = hub.world.channel_aliases.get(value.strip())
                target = hub.world.channels.get(target_id) if target_id else None
            own_id = current.id if current is not None else None
            if target is None or target.config.owner_key_id != key.key_id:
                raise _invalid_dead_letter(" (no channel of yours has that id or alias)")
            if target.config.id == own_id:
                raise _invalid_dead_letter(" (not the channel itself)")
            value = target.config.id
        changes["dead_letter_channel"] = value
    limit = changes.get("max_deliveries", current.max_deliveries if current else None)
    channel = changes.get("dead_letter_channel", current.dead_letter_channel if current else None)
    if (limit is None) != (channel is None):
        raise _invalid_dead_letter()
    return changes


def delay_us(body: dict[str, Any]) -> int:
    """``delay_seconds`` of a post: 0–86400 → µs; else 422 ``invalid_delay_seconds``."""
    value = body.get("delay_seconds", 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DELAY_SECONDS:
        raise ApiError(
            422,
            "invalid_delay_seconds",
            f"'delay_seconds' must be an integer between 0 and {MAX_DELAY_SECONDS}",
        )
    return value * US_PER_SECOND


def body_wait(body: dict[str, Any], api: Api) -> float:
    """A body ``wait``: seconds from 0 to 3600 (422 ``invalid_wait``), clamped."""
    value = body.get("wait")
    if value is None or not api.settings.longpoll_enabled:
        if value is not None:
            _check_wait(value)
        return 0.0
    return min(_check_wait(value), api.settings.longpoll_max_wait_seconds)


def _check_wait(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise ApiError(422, "invalid_wait", "'wait' must be a number of seconds from 0 to 3600")
    return float(value)


def lease_of(body: dict[str, Any], api: Api) -> int | None:
    """An optional ``lease_seconds`` (µs), in the server's lease range, else 422."""
    if body.get("lease_seconds") is None:
        return None
    settings = api.settings
    low, high = settings.lease_min_seconds, settings.lease_max_seconds
    value = body["lease_seconds"]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(
            422,
            "invalid_lease_seconds",
            f"'lease_seconds' must be an integer between {low} and {high}",
        )
    return value * US_PER_SECOND


async def claim_next(
    call: Call,
    hub: Hub,
    actor: ChannelActor,
    acting: str | None,
    lease_us: int | None,
    wait: float,
    strict: bool,
) -> ClaimResult | None:
    """:func:`backchannel.runtime.claimers.claim_next` for a request, watching its client.

    Raises:
        Disconnected: the client left while parked.
    """
    try:
        return await claimers.claim_next(
            hub, actor, call.auth, acting, lease_us, wait, strict, call.request.park
        )
    except claimers.ClaimerGone:
        raise Disconnected from None


def claim_answer(result: ClaimResult | None, actor: ChannelActor, hub: Hub) -> dict[str, Any]:
    """``{"claimed": Message|null}``, plus ``lease_token``/``expires_at`` for a lease."""
    if result is None:
        return {"claimed": None}
    answer: dict[str, Any] = {
        "claimed": message_view(result.message, actor.channel_id, hub.clock.now())
    }
    if result.lease_token is not None and result.lease_expires_at is not None:
        answer["lease_token"] = result.lease_token
        answer["expires_at"] = format_ts(result.lease_expires_at)
    return answer


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings

    @api.route(
        "POST", "/v1/channels/<identifier>/claim-next", mutating=True, scope="messages:claim"
    )
    async def claim_next_route(call: Call, identifier: str) -> Result:
        body = await call.json()
        acting = body.get("actor")
        if acting is not None and not isinstance(acting, str):
            raise ApiError(422, "invalid_string", "'actor' must be a string")
        fields.optional_object(body, "metadata", max_bytes=settings.max_metadata_bytes)
        lease_us = lease_of(body, api)
        wait = body_wait(body, api)
        actor = hub.channel_actor(identifier, call.auth)
        result = await claim_next(call, hub, actor, acting, lease_us, wait, True)
        return 200, claim_answer(result, actor, hub)

    @api.route("POST", "/v1/channels/<identifier>/redrive", mutating=True)
    async def redrive(call: Call, identifier: str) -> Result:
        body = await call.json()
        state = hub.world.resolve_channel(identifier, call.auth)
        if state.config.owner_key_id != call.auth.key_id:
            raise ApiError(403, "forbidden", "Only the channel owner can redrive its messages")
        limit = fields.bounded_int(
            body.get("limit", 100),
            1,
            1000,
            "invalid_limit",
            "'limit' must be an integer between 1 and 1000",
        )
        assert limit is not None
        to = body.get("to")
        to_id: str | None = None
        if to is not None:
            if not isinstance(to, str) or not to.strip():
                raise errors.invalid_string("to")
            target = hub.world.resolve_channel(to.strip(), call.auth)
            if target.config.owner_key_id != call.auth.key_id:
                raise ApiError(403, "forbidden", "Redrive only to a channel you own")
            to_id = target.config.id
        actor = hub.actors[state.config.id]
        moved = await actor.call(actor.cmd_redrive, limit, to_id)
        return 200, {"moved": moved}
