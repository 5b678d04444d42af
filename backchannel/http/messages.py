"""Routes for messages: post, list / long-poll, history, claim, lease, ack (§2.6).

Long-poll (contract §0.2): a reader whose page is empty parks on its
channel actor, which wakes its parked readers (a slice at a time) right
after it applies a post. Before parking, the reader checks that the
channel's state version is still the one its empty page was read at, with
no ``await`` between that check and the park, so no wake-up can be lost.
A parked reader watches its connection: a client that leaves is dropped
from the actor's waiters at once and answered nothing. Nothing is left
behind whichever way a park ends (woken, ``wait`` elapsed, client gone,
cancelled): the actor drops the waiter, and its two counters are restored
in ``finally``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord, Message
from backchannel.core.timefmt import US_PER_SECOND, format_ts, parse_ts
from backchannel.http import fields
from backchannel.http.api import Api, Call, RawJSON, Result, dumps
from backchannel.http.call import encoded
from backchannel.http.delivery import delay_us
from backchannel.http.hypercorn_tuning import OnLeave
from backchannel.http.page_cache import PageBodies
from backchannel.http.request import Disconnected
from backchannel.http.views import (
    HISTORY_CURSOR,
    MESSAGE_CURSOR,
    archived_view,
    history_cursor,
    message_cursor,
    message_view,
)
from backchannel.runtime.actor import ChannelActor
from backchannel.runtime.hub import Hub

_STATUSES = ("unclaimed", "claimed")
_SINCE_DEPRECATED = encoded({"Deprecation": "true", "Sunset": "2027-01-01"})  # ?since= (§2.6)


def _acting(body: dict[str, Any]) -> str | None:
    """The optional ``actor`` of claim/release/ack bodies."""
    value = body.get("actor")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(422, "invalid_string", "'actor' must be a string")
    return value


def _seq_cursor(raw: str | None, prefix: str) -> int | None:
    """Our own opaque cursor (``s12`` / ``h12``) as a seq, else None."""
    if raw and raw.startswith(prefix) and raw[1:].isdigit() and len(raw) < 20:
        return int(raw[1:])
    return None


Park = Callable[[Callable[[float, OnLeave], Awaitable[bool]], float], Awaitable[bool]]


async def read_or_wait(
    hub: Hub,
    actor: ChannelActor,
    after: int,
    at: int | None,
    limit: int,
    status: str | None,
    expiring_before: int | None,
    deadline: float,
    park: Park,
    key: KeyRecord | None = None,
) -> tuple[list[Message], int, int]:
    """A page after ``after`` (or created after ``at``), waiting until ``deadline``
    for one that is not empty: the long-poll loop of ``GET .../messages``.

    ``park(actor.park, deadline)`` is :meth:`Request.park`, which watches the
    client while the task is parked. Returns ``(page, state version, after)``,
    where ``after`` is the seq cursor the page was read from. With ``key``,
    a reader woken after losing access (removed, channel deleted, key
    revoked) is refused before it reads again.

    Raises:
        Disconnected: the client went away while parked.
        ApiError: 401/403/404 for a ``key`` revoked or that lost access while parked.
    """
    while True:
        if at is not None:  # "created after at": messages posted while waiting count too
            after = actor.read_seq_after_time(at)
        read = actor.read_page(after, limit, status, expiring_before)
        if read is None:
            read = await actor.call(actor.cmd_page, after, limit, status, expiring_before)
        page, version = read
        if page or hub.closing or trio.current_time() >= deadline:
            return page, version, after
        if hub.parked >= hub.settings.longpoll_max_waiters:
            return page, version, after  # waiter cap: answer at once with the normal page
        if actor.state.version != version:
            continue  # changed while the actor was answering: read again
        hub.parked += 1
        actor.waiters += 1
        try:
            fn = actor.park if key is None else partial(actor.park, key_id=key.key_id)
            if not await park(fn, deadline):
                raise Disconnected
            if key is not None:
                actor.admit(key)  # removed or deleted while parked: answer that
        finally:
            hub.parked -= 1
            actor.waiters -= 1


class Pager:
    """Reads a page of a channel's live messages, long-polling while it is empty."""

    def __init__(self, api: Api) -> None:
        self.hub = api.hub
        self.bodies = PageBodies()

    async def page(
        self,
        call: Call,
        identifier: str,
        raw: str | None,
        limit: int,
        wait: float,
        status: str | None = None,
        expiring_before: int | None = None,
    ) -> RawJSON:
        """The page after cursor ``raw`` as ``{"data", "limit", "next_cursor"}``.

        Waits up to ``wait`` seconds (already clamped) for a first message.

        Raises:
            Disconnected: the client left while parked.
        """
        hub = self.hub
        actor = hub.channel_actor(identifier, call.auth)
        after = _seq_cursor(raw, MESSAGE_CURSOR)
        at = parse_ts(raw) if after is None and raw and raw != "0" else None
        after = after or 0
        deadline = trio.current_time() + wait
        page, version, after = await read_or_wait(
            hub,
            actor,
            after,
            at,
            limit,
            status,
            expiring_before,
            deadline,
            call.request.park,
            call.auth,
        )
        key = (after, limit, status, expiring_before)
        data = self.bodies.get(actor.channel_id, version, key)
        if data is None:
            now = hub.clock.now()
            data = dumps([message_view(m, actor.channel_id, now) for m in page])
            self.bodies.put(actor.channel_id, version, key, data)
        next_cursor = message_cursor(page[-1].seq) if page else raw
        return RawJSON(
            b'{"data":%b,"limit":%d,"next_cursor":%b}' % (data, limit, dumps(next_cursor))
        )


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings
    pager = Pager(api)

    def lease_us(body: dict[str, Any]) -> int:
        low, high = settings.lease_min_seconds, settings.lease_max_seconds
        value = body.get("lease_seconds", settings.lease_default_seconds)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ApiError(
                422,
                "invalid_lease_seconds",
                f"'lease_seconds' must be an integer between {low} and {high}",
            )
        return value * US_PER_SECOND

    def view(message: Message, actor: ChannelActor) -> dict[str, Any]:
        return message_view(message, actor.channel_id, hub.clock.now())

    @api.route("POST", "/v1/channels/<identifier>/messages", mutating=True, scope="messages:write")
    async def post_message(call: Call, identifier: str) -> Result:
        body = await call.json()
        content = fields.content(body, settings.max_message_bytes)
        metadata = fields.optional_object(body, "metadata", max_bytes=settings.max_metadata_bytes)
        actor_label = fields.optional_string(body, "actor_label", max_chars=settings.max_name_chars)
        actor_ref = fields.optional_string(body, "actor", max_chars=settings.max_name_chars)
        mentions = fields.string_list(body, "mentions", "invalid_mentions")
        delay = delay_us(body)
        actor = hub.channel_actor(identifier, call.auth)
        args = (call.auth, content, metadata, actor_ref, actor_label, mentions)
        if delay:
            message, position = await actor.call(actor.cmd_post_later, delay, *args)
        else:
            message = await actor.call(actor.cmd_post, *args)
            position = message.seq
        return 201, {"message": view(message, actor), "next_cursor": message_cursor(position)}

    @api.route("GET", "/v1/channels/<identifier>/messages", scope="messages:read")
    async def list_messages(call: Call, identifier: str) -> Result:
        args = call.query
        cursor, since = args.get("cursor"), args.get("since")
        raw = cursor if cursor is not None else since
        limit = fields.query_limit(args.get("limit"))
        status = args.get("status") or None
        if status is not None and status not in _STATUSES:
            raise ApiError(422, "invalid_status", "'status' must be 'unclaimed' or 'claimed'")
        expiring = args.get("expiring_before")
        expiring_before = parse_ts(expiring) if expiring else None
        wait = 0.0
        if settings.longpoll_enabled:
            wait = fields.query_wait(args.get("wait"), settings.longpoll_max_wait_seconds)
        body = await pager.page(call, identifier, raw, limit, wait, status, expiring_before)
        return 200, body, _SINCE_DEPRECATED if cursor is None and since else []

    @api.route("GET", "/v1/channels/<identifier>/history", scope="messages:read")
    async def history(call: Call, identifier: str) -> Result:
        args = call.query
        limit = fields.query_limit(args.get("limit"))
        raw = args.get("cursor") or args.get("since")
        before_seq = _seq_cursor(raw, HISTORY_CURSOR)
        before_time = parse_ts(raw) if raw and before_seq is None and raw != "0" else None
        actor = hub.channel_actor(identifier, call.auth)
        entries = await actor.call(actor.cmd_history, before_seq, before_time, limit)
        data = [archived_view(e, actor.channel_id) for e in entries]
        next_cursor = history_cursor(entries[-1].message.seq) if entries else None
        return 200, {"data": data, "limit": limit, "next_cursor": next_cursor}

    @api.route("DELETE", "/v1/messages/<message_id>", mutating=True)
    async def retract(call: Call, message_id: str) -> Result:
        actor = hub.message_actor(message_id)
        await actor.call(actor.cmd_retract, call.auth, message_id)
        return 200, {"status": "retracted"}

    @api.route("POST", "/v1/messages/<message_id>/claim", mutating=True, scope="messages:claim")
    async def claim(call: Call, message_id: str) -> Result:
        body = await call.json()
        acting = _acting(body)
        fields.optional_object(body, "metadata", max_bytes=settings.max_metadata_bytes)
        actor = hub.message_actor(message_id)
        result = await actor.call(actor.cmd_claim, call.auth, message_id, acting, None)
        return 200, {"status": result.status, "message": view(result.message, actor)}

    @api.route("POST", "/v1/messages/<message_id>/claim-with-lease", mutating=True)
    async def claim_with_lease(call: Call, message_id: str) -> Result:
        body = await call.json()
        lease = lease_us(body)
        acting = _acting(body)
        fields.optional_object(body, "metadata", max_bytes=settings.max_metadata_bytes)
        actor = hub.message_actor(message_id)
        result = await actor.call(actor.cmd_claim, call.auth, message_id, acting, lease)
        assert result.lease_expires_at is not None
        return 200, {
            "lease_token": result.lease_token,
            "expires_at": format_ts(result.lease_expires_at),
            "message": view(result.message, actor),
        }

    @api.route("POST", "/v1/leases/<lease_token>/heartbeat", mutating=True)
    async def heartbeat(call: Call, lease_token: str) -> Result:
        lease = lease_us(await call.json())
        actor, message_id = hub.lease_actor(lease_token)
        expires = await actor.call(actor.cmd_heartbeat, call.auth, lease_token, message_id, lease)
        return 200, {"lease_token": lease_token, "expires_at": format_ts(expires)}

    @api.route("POST", "/v1/messages/<message_id>/release", mutating=True)
    async def release(call: Call, message_id: str) -> Result:
        acting = _acting(await call.json())
        actor = hub.message_actor(message_id)
        message = await actor.call(actor.cmd_release, call.auth, message_id, acting)
        return 200, {"status": "released", "message": view(message, actor)}

    @api.route("POST", "/v1/messages/<message_id>/ack", mutating=True)
    async def ack(call: Call, message_id: str) -> Result:
        body = await call.json()
        acting = _acting(body)
        fields.optional_object(body, "metadata", max_bytes=settings.max_metadata_bytes)
        actor = hub.message_actor(message_id)
        status, message = await actor.call(actor.cmd_ack, call.auth, message_id, acting)
        return 200, {"status": status, "message": view(message, actor)}
