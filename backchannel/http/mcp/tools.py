"""What each MCP tool does, run in-process against the API.

A tool runs its REST operations through :meth:`Api.invoke`: the same
routes, authentication, per-key rate limit (one count per operation),
``Idempotency-Key`` handling and access checks as the same requests over
HTTP, without a round trip. Only ``await_result`` reaches past the routes:
no route waits for an acknowledgement, so it parks on the channel's actor
(acks wake its waiters) and answers the moment the ack lands.

Every failure leaves as :class:`ToolError`, carrying the API's error code,
status and message; the endpoint turns it into an MCP tool error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from jsonschema import Draft202012Validator

from backchannel.core.errors import ApiError
from backchannel.http.api import Api
from backchannel.http.mcp.schemas import tool_schemas
from backchannel.http.views import message_view

# Tools whose routes belong to contract §2.5, which this server may not serve yet.
_OVER_CAP_SLEEP = 1.0  # how often waits re-check while long-poll is off or full


class ToolError(Exception):
    """A tool call that failed, with the API's error envelope.

    Attributes:
        status: the HTTP status the same request would have had.
        code: the machine code of contract §4 (``already_claimed``, ...).
        envelope: the whole error object (``error``, ``message``, details).
    """

    def __init__(self, status: int, envelope: dict[str, Any]) -> None:
        self.status = status
        self.code = str(envelope.get("error", "error"))
        self.message = str(envelope.get("message", self.code))
        self.envelope = envelope
        super().__init__(f"[{status} {self.code}] {self.message}")

    @classmethod
    def of(cls, error: ApiError) -> ToolError:
        return cls(error.status, {"error": error.code, "message": error.message, **error.details})


class Caller:
    """One tool call's access to the API, as the calling key from its address."""

    def __init__(self, api: Api, api_key: str | None, client: tuple[str, int] | None) -> None:
        self.api = api
        self.api_key = api_key
        self.client = client

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        auth: bool = True,
    ) -> Any:
        """The decoded answer of one API request; an error answer raises :class:`ToolError`."""
        status, payload = await self.api.invoke(
            method,
            path,
            api_key=self.api_key if auth else None,
            body=body if body is not None or method == "GET" else {},
            query=query,
            idempotency_key=idempotency_key,
            client=self.client,
        )
        if status >= 400:
            raise ToolError(status, payload if isinstance(payload, dict) else {})
        return payload


Impl = Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


def _pick(arguments: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: arguments[name] for name in names if name in arguments}


def _segment(value: str, missing: ApiError) -> str:
    """``value`` as one path segment; a value that cannot be one names nothing."""
    if "/" in value or value in (".", ".."):
        raise ToolError.of(missing)
    return value


def _channel_segment(value: str) -> str:
    return _segment(value, ApiError(404, "channel_not_found", f"Unknown channel '{value}'"))


def _message_segment(value: str) -> str:
    return _segment(value, ApiError(404, "message_not_found", "Message not found"))


async def post_task(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    body = _pick(a, "channel", "content", "metadata", "actor_label")
    answer = await c.request(
        "POST", "/v1/tasks/post", body, idempotency_key=a.get("idempotency_key")
    )
    return {"channel": answer["channel"], "message_id": answer["message"]["id"], "envelope": answer}


async def broadcast(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    body = _pick(a, "channel", "content", "metadata", "actor_label")
    idem = a.get("idempotency_key")
    try:
        answer = await c.request("POST", "/v1/tasks/broadcast", body, idempotency_key=idem)
    except ToolError as exc:
        if exc.code != "channel_not_found":
            raise
        created = await c.request(
            "POST",
            "/v1/channels",
            {"name": a["channel"], "mode": "broadcast"},
            idempotency_key=None if idem is None else f"{idem}#channel",
        )
        body["channel"] = created["id"]
        answer = await c.request("POST", "/v1/tasks/broadcast", body, idempotency_key=idem)
    return {"channel": answer["message"]["channel_id"], **answer}


async def claim_task(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await c.request(
        "POST", "/v1/tasks/claim", _pick(a, "channel", "actor")
    )
    return answer


async def claim_next(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    """One atomic claim-next (issue 12): with ``lease_seconds`` a lease, with
    ``wait`` parked on the channel until a message is handed to this caller."""
    channel = _channel_segment(a["channel"])
    answer: dict[str, Any] = await c.request(
        "POST", f"/v1/channels/{channel}/claim-next", _pick(a, "actor", "lease_seconds", "wait")
    )
    if answer.get("claimed") is None:
        return {"claimed": None, "note": "no unclaimed messages available"}
    return answer


async def heartbeat(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    token = _segment(
        a["lease_token"], ApiError(410, "lease_expired", "Lease not found or already expired")
    )
    answer: dict[str, Any] = await c.request(
        "POST", f"/v1/leases/{token}/heartbeat", _pick(a, "lease_seconds")
    )
    return answer


async def ack(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    path = f"/v1/messages/{_message_segment(a['message_id'])}/ack"
    answer: dict[str, Any] = await c.request(
        "POST", path, _pick(a, "actor", "metadata"), idempotency_key=a.get("idempotency_key")
    )
    return answer


async def release(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    path = f"/v1/messages/{_message_segment(a['message_id'])}/release"
    answer: dict[str, Any] = await c.request(
        "POST", path, _pick(a, "actor"), idempotency_key=a.get("idempotency_key")
    )
    return answer


async def subscribe(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    body = _pick(a, "channel", "since", "limit", "wait")
    answer: dict[str, Any] = await c.request("POST", "/v1/tasks/subscribe", body)
    return answer


async def await_result(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    """Park on the task's channel until the task has an ack, or the timeout.

    Counts one request against the caller's limit. The check and the park
    have no ``await`` between them, so an ack cannot slip past unseen; a
    cancelled call leaves nothing parked (``ChannelActor.park``).
    """
    api, hub = c.api, c.api.hub
    try:
        key, _ = api.admit(c.api_key)
        actor = hub.channel_actor(a["channel"], key)
    except ApiError as exc:
        raise ToolError.of(exc) from None
    timeout = int(a.get("timeout_seconds", 60))
    deadline = trio.current_time() + timeout
    while True:
        try:
            actor.admit(key)  # revoked, removed or deleted while parked
            message = actor.state.check_message(a["message_id"], key.key_id, "awaited", claim=False)
        except ApiError as exc:
            raise ToolError.of(exc) from None
        if message.acks:
            return {
                "status": "acknowledged",
                "message": message_view(message, actor.channel_id, hub.clock.now()),
            }
        if hub.closing or trio.current_time() >= deadline:
            return {"status": "timeout", "polled_for_seconds": timeout, "message_id": message.id}
        if not api.settings.longpoll_enabled or hub.parked >= api.settings.longpoll_max_waiters:
            await trio.sleep(min(_OVER_CAP_SLEEP, max(0.0, deadline - trio.current_time())))
            continue
        hub.parked += 1
        actor.waiters += 1
        try:
            await actor.park(deadline, key_id=key.key_id)
        finally:
            hub.parked -= 1
            actor.waiters -= 1


async def list_channels(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await c.request(
        "GET", "/v1/channels", query=_pick(a, "limit", "cursor")
    )
    return answer


async def create_channel(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in a.items() if k != "idempotency_key"}
    answer: dict[str, Any] = await c.request(
        "POST", "/v1/channels", body, idempotency_key=a.get("idempotency_key")
    )
    return answer


async def request_access(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    path = f"/v1/channels/{_channel_segment(a['channel'])}/access-requests"
    body = {"reason": a.get("reason", "")}
    answer: dict[str, Any] = await c.request(
        "POST", path, body, idempotency_key=a.get("idempotency_key")
    )
    return answer


async def invite(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    path = f"/v1/channels/{_channel_segment(a['channel'])}/invitations"
    answer: dict[str, Any] = await c.request(
        "POST", path, {}, idempotency_key=a.get("idempotency_key")
    )
    return answer


async def issue_key(c: Caller, a: dict[str, Any]) -> dict[str, Any]:
    answer = await c.request("POST", "/v1/keys", {"agent_label": a["agent_label"]}, auth=False)
    return {**answer, "warning": "Treat 'key' as a secret. It is shown once here."}


_IMPLS: dict[str, Impl] = {
    "post_task": post_task,
    "broadcast": broadcast,
    "claim_task": claim_task,
    "claim_next": claim_next,
    "heartbeat": heartbeat,
    "ack": ack,
    "release": release,
    "subscribe": subscribe,
    "await_result": await_result,
    "list_channels": list_channels,
    "create_channel": create_channel,
    "invite": invite,
    "request_access": request_access,
    "issue_key": issue_key,
}


class Tool:
    """One tool: its name, description, exact input schema and implementation."""

    __slots__ = ("description", "impl", "name", "schema", "validator")

    def __init__(self, name: str, description: str, schema: dict[str, Any], impl: Impl) -> None:
        self.name = name
        self.description = description
        self.schema = schema
        self.impl = impl
        self.validator = Draft202012Validator(schema)

    async def run(self, caller: Caller, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check ``arguments`` against the schema, then run the tool.

        Raises:
            ToolError: 422 ``invalid_arguments``, or the API's own error.
        """
        problems = sorted(self.validator.iter_errors(arguments), key=lambda e: list(e.path))
        if problems:
            where = "/".join(str(p) for p in problems[0].path) or "arguments"
            raise ToolError(
                422,
                {"error": "invalid_arguments", "message": f"{where}: {problems[0].message}"},
            )
        return await self.impl(caller, arguments)


def build_tools(api: Api) -> dict[str, Tool]:
    """The tool table, in listing order."""
    return {
        name: Tool(name, description, schema, _IMPLS[name])
        for name, (description, schema) in tool_schemas(api.settings).items()
    }
