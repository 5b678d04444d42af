"""The ``/v1/tasks/*`` verb aliases and deprecated helpers (contract §2.9).

Each verb is the same operation as a channel route, reached by naming the
channel in the body; none checks scopes. Where upstream differs from what
an agent needs we keep the promise instead: ``post`` reuses the caller's
channel of that name (§0.9), ``claim`` is one atomic claim-next, and
``subscribe`` is a read, never answered from an idempotency cache. The
deprecated helpers answer with ``Deprecation`` and ``Sunset`` headers.
"""

from __future__ import annotations

from typing import Any

from backchannel.core import errors
from backchannel.core.errors import ApiError
from backchannel.core.records import BROADCAST, CLAIMABLE, RESTRICTED
from backchannel.http import delivery, fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.channels import _channel_spec
from backchannel.http.messages import Pager
from backchannel.http.views import channel_view, invitation_view, message_cursor, message_view
from backchannel.runtime import access
from backchannel.runtime.actor import ChannelActor

DEPRECATED = {"Deprecation": "true", "Sunset": "2027-01-01"}
RESULT_PREFIX = "result-of-"


def _channel(body: dict[str, Any]) -> str:
    """The required ``channel`` of a verb body."""
    value = body.get("channel")
    if not isinstance(value, str) or not value.strip():
        raise errors.missing_field("channel")
    return value.strip()


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings
    pager = Pager(api)

    def view(message: Any, actor: ChannelActor) -> dict[str, Any]:
        return message_view(message, actor.channel_id, hub.clock.now())

    async def post(
        call: Call, actor: ChannelActor, body: dict[str, Any], metadata: dict[str, Any]
    ) -> dict[str, Any]:
        """Post ``body``'s content as the caller; the Message and its cursor."""
        content = fields.content(body, settings.max_message_bytes)
        label = fields.optional_string(body, "actor_label", max_chars=settings.max_name_chars)
        message = await actor.call(actor.cmd_post, call.auth, content, metadata, None, label, None)
        return {"message": view(message, actor), "next_cursor": message_cursor(message.seq)}

    def metadata_of(body: dict[str, Any]) -> dict[str, Any]:
        return fields.optional_object(body, "metadata", max_bytes=settings.max_metadata_bytes)

    async def own_work_channel(call: Call, name: str) -> ChannelActor:
        """The caller's newest channel named ``name``, created (claimable) when missing.

        The look-up and the creating event happen with no ``await`` between
        them, so two concurrent posts for a new name make one channel.
        """
        spec, _ = _channel_spec({"name": name, "mode": CLAIMABLE}, api)
        named = hub.world.channel_named(call.auth.owner_id, spec["name"])
        if named is None:
            state = await hub.create_channel(call.auth, spec, [])
            return hub.channel_actor(state.config.id, call.auth)
        return hub.channel_actor(named, call.auth)

    @api.route("POST", "/v1/tasks/post", mutating=True)
    async def post_task(call: Call) -> Result:
        """Post a task to the caller's claimable channel of that name."""
        body = await call.json()
        name = _channel(body)
        metadata = metadata_of(body)
        fields.content(body, settings.max_message_bytes)  # refuse before creating anything
        actor = await own_work_channel(call, name)
        return 201, {**await post(call, actor, body, metadata), "channel": actor.channel_id}

    @api.route("POST", "/v1/tasks/broadcast", mutating=True)
    async def broadcast(call: Call) -> Result:
        """Post to an existing channel of any mode."""
        body = await call.json()
        identifier = _channel(body)
        metadata = metadata_of(body)
        return 201, await post(call, hub.channel_actor(identifier, call.auth), body, metadata)

    @api.route("POST", "/v1/tasks/claim", mutating=True)
    async def claim_next(call: Call) -> Result:
        """Claim the channel's oldest unclaimed message in one atomic step."""
        body = await call.json()
        identifier = _channel(body)
        acting = fields.optional_string(body, "actor", max_chars=settings.max_name_chars)
        metadata_of(body)
        lease = delivery.lease_of(body, api)
        wait = delivery.body_wait(body, api)
        actor = hub.channel_actor(identifier, call.auth)
        result = await delivery.claim_next(call, hub, actor, acting, lease, wait, False)
        if result is None:
            return 200, {"claimed": None, "note": "no unclaimed messages available"}
        return 200, delivery.claim_answer(result, actor, hub)

    @api.route("POST", "/v1/tasks/subscribe")
    async def subscribe(call: Call) -> Result:
        """The channel's page after ``since``, long-polling up to ``wait`` seconds."""
        body = await call.json()
        identifier = _channel(body)
        since = body.get("since")
        if since is not None and not isinstance(since, str | int):
            raise ApiError(422, "invalid_string", "'since' must be a cursor string")
        raw = None if since is None else str(since)
        limit = fields.bounded_int(
            body.get("limit", 50), 1, 100, "invalid_limit", "'limit' must be between 1 and 100"
        )
        assert limit is not None
        wait = 0.0
        if settings.longpoll_enabled and body.get("wait") is not None:
            wait = _wait(body["wait"], settings.longpoll_max_wait_seconds)
        return 200, await pager.page(call, identifier, raw, limit, wait)

    # -- deprecated helpers ----------------------------------------------------

    @api.route("POST", "/v1/tasks/claim-and-ack", mutating=True)
    async def claim_and_ack(call: Call) -> Result:
        """Claim, then acknowledge, one message (two steps, as upstream)."""
        body = await call.json()
        message_id = body.get("message_id")
        if not isinstance(message_id, str) or not message_id.strip():
            raise errors.missing_field("message_id")
        acting = body.get("actor")
        if acting is not None and not isinstance(acting, str):
            raise ApiError(422, "invalid_string", "'actor' must be a string")
        metadata_of(body)
        actor = hub.message_actor(message_id)
        claim = await actor.call(actor.cmd_claim, call.auth, message_id, acting, None)
        if claim.status == "already_claimed" and claim.message.claimed_by_id != acting:
            raise errors.already_claimed()
        _, message = await actor.call(actor.cmd_ack, call.auth, message_id, acting)
        return 200, {"status": "claimed_and_acked", "message": view(message, actor)}, DEPRECATED

    @api.route("POST", "/v1/tasks/post-with-result", mutating=True)
    async def post_with_result(call: Call) -> Result:
        """Post a task and open its broadcast result channel ``result-of-<id>``.

        The work channel is the caller's of that name, as for ``post``. The
        result channel carries the alias ``result-of-<id>`` (global), so any
        key may post the result and read it by that name.
        """
        body = await call.json()
        name = _channel(body)
        metadata = metadata_of(body)
        fields.content(body, settings.max_message_bytes)
        work = await own_work_channel(call, name)
        answer = await post(call, work, body, metadata)
        task_id = answer["message"]["id"]
        channel = RESULT_PREFIX + task_id
        spec, _ = _channel_spec({"name": channel, "mode": BROADCAST}, api)
        state = await hub.create_channel(call.auth, spec, [])
        results = hub.actors[state.config.id]
        await results.call(access.add_alias, results, call.auth, channel)
        reply = {
            "message": answer["message"],
            "channel": work.channel_id,
            "result_channel": channel,
            "result_url": f"/v1/tasks/{task_id}/result",
        }
        return 201, reply, DEPRECATED

    @api.route("POST", "/v1/tasks/create-claimable-session", mutating=True)
    async def create_claimable_session(call: Call) -> Result:
        """A restricted claimable channel plus an invitation to it (upstream's
        rule kept: ``description`` must be a non-empty string)."""
        body = await call.json()
        name = body.get("name", "session")
        description = body.get("description", "")
        if not isinstance(description, str) or not description.strip():
            raise errors.invalid_string("value")
        shape = {"name": name, "mode": CLAIMABLE, "access": RESTRICTED}
        spec, _ = _channel_spec({**shape, "description": description}, api)
        state = await hub.create_channel(call.auth, spec, [])
        actor = hub.actors[state.config.id]
        invitation = await actor.call(access.invite, actor, call.auth)
        return (
            201,
            {
                "channel": channel_view(state.config, hub.world, call.auth.key_id),
                "invitation": invitation_view(invitation, state.config, hub.clock.now()),
            },
            DEPRECATED,
        )

    @api.route("POST", "/v1/tasks/<message_id>/result", mutating=True)
    async def post_result(call: Call, message_id: str) -> Result:
        """Post a task's result to its ``result-of-<id>`` channel."""
        body = await call.json()
        metadata = {**metadata_of(body), "task_id": message_id}
        channel = RESULT_PREFIX + message_id
        answer = await post(call, hub.channel_actor(channel, call.auth), body, metadata)
        return 201, {"result_channel": channel, "message": answer["message"]}, DEPRECATED

    @api.route("GET", "/v1/tasks/<message_id>/result")
    async def get_result(call: Call, message_id: str) -> Result:
        """The oldest live message of the task's result channel."""
        not_ready = ApiError(404, "result_not_ready", f"No result yet for task '{message_id}'")
        try:
            actor = hub.channel_actor(RESULT_PREFIX + message_id, call.auth)
        except ApiError as exc:
            if exc.code != "channel_not_found":
                raise
            raise not_ready from None
        page, _ = await actor.call(actor.cmd_page, 0, 1, None, None)
        if not page:
            raise not_ready
        return 200, {"task_id": message_id, "result": view(page[0], actor)}, DEPRECATED


def _wait(value: Any, cap: float) -> float:
    """A body ``wait``: seconds from 0 to 3600, clamped to the long-poll cap."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise ApiError(422, "invalid_wait", "'wait' must be a number of seconds from 0 to 3600")
    return min(float(value), cap)
