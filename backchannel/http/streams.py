"""``GET /v1/channels/{identifier}/stream``: a channel as server-sent events.

A reader first gets the messages after ``since`` (or after the
``Last-Event-ID`` header, which wins), then every new one live, as
``id: s<seq>`` / ``event: message`` / ``data: <Message JSON>``; changes of
a message come as events without an id (``claimed``, ``released``,
``acked``, ``expired``, ``retracted``). A comment line (``: keepalive``) after
``stream_keepalive_seconds`` of quiet (15 by default) keeps proxies from
closing an idle stream.

Guarantees:
    - No loss, no repeat: the stream subscribes to its actor and reads the
      backlog in one synchronous step, so every message after the cursor is
      sent once, in seq order (``runtime.streams``). Resuming with the last
      ``id`` seen continues exactly after it.
    - A reader that falls behind its buffer gets a final ``event: overflow``
      (after what was buffered) and the stream ends; nobody else waits for it.
    - A key that loses access (removed, channel deleted or made restricted)
      gets ``event: closed`` with ``reason: access`` at once and nothing more;
      a revoked key's streams end the same way with ``reason: revoked``; at
      shutdown every stream ends with ``reason: shutdown``.
    - Open streams count against ``longpoll_max_waiters``: past the cap a new
      stream is refused with 503 ``unavailable``. ``max_seconds`` bounds a
      stream's life (it then ends with ``reason: max_seconds``).
    - Opening a stream is not counted by the per-key rate limiter (a stream
      is one long request, not a rate); instead one key holds at most
      ``stream_max_per_key`` open streams (429 ``rate_limit_exceeded`` past it).
      Both caps are checked when a stream is asked for and counted once it
      starts sending, so a burst can pass a cap by the streams still starting.
"""

from __future__ import annotations

import math
from collections import Counter

import trio

from backchannel.core import errors
from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord, Message
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.call import SendChunk, Stream
from backchannel.http.hypercorn_tuning import client_gone_hook
from backchannel.http.messages import _seq_cursor
from backchannel.http.request import Request
from backchannel.http.views import MESSAGE_CURSOR, message_view
from backchannel.runtime.actor import ChannelActor
from backchannel.runtime.streams import GONE, OVERFLOW, Subscriber, frame, message_frame

BACKLOG_PAGE = 1_000  # messages read per synchronous step of the backlog
SEND_BATCH = 64  # frames joined into one body chunk


def _cursor(call: Call) -> int:
    """The seq to start after: ``Last-Event-ID`` wins over ``since``; else 0."""
    raw = call.request.text_header(b"last-event-id")
    if raw is None or not raw.strip():
        raw = call.query.get("since") or call.query.get("cursor")
    if raw is None or raw.strip() in ("", "0"):
        return 0
    seq = _seq_cursor(raw.strip(), MESSAGE_CURSOR)
    if seq is None:
        raise errors.invalid_query("since", "must be a message cursor like s12 (or Last-Event-ID)")
    return seq


def _backlog(actor: ChannelActor, after: int) -> tuple[list[Message], int]:
    """Every live message after ``after``, read without an ``await``."""
    backlog: list[Message] = []
    while page := actor.state.page(after, BACKLOG_PAGE, None, None):
        backlog.extend(page)
        after = page[-1].seq
    return backlog, after


class Reader:
    """One open stream: its subscription, backlog and send loop."""

    def __init__(
        self, api: Api, actor: ChannelActor, key: KeyRecord, after: int, per_key: Counter[str]
    ) -> None:
        self.api = api
        self.actor = actor
        self.key = key
        self.after = after
        self.per_key = per_key  # open streams per key id, shared by every reader

    async def run(self, send: SendChunk, request: Request, deadline: float) -> None:
        """Send the stream until it ends; every count taken here is given back,
        whichever way it ends (access lost at connect included)."""
        hub, actor, key_id = self.api.hub, self.actor, self.key.key_id
        subscriber = Subscriber(key_id, self.after, self.api.settings.stream_buffer_events)
        hub.parked += 1
        actor.waiters += 1
        self.per_key[key_id] += 1
        try:
            await self._serve(send, subscriber, request, deadline)
        finally:
            actor.unsubscribe(subscriber)
            hub.parked -= 1
            actor.waiters -= 1
            self.per_key[key_id] -= 1
            if not self.per_key[key_id]:
                del self.per_key[key_id]

    async def _serve(
        self, send: SendChunk, subscriber: Subscriber, request: Request, deadline: float
    ) -> None:
        actor = self.actor
        try:
            actor.admit(self.key)  # may have lost access since the route checked
            actor.subscribe(subscriber)
            backlog, subscriber.after = _backlog(actor, self.after)  # same step: no gap
        except ApiError:
            await send(frame("closed", {"reason": "access"}))
            return
        hook = client_gone_hook(request.send)
        try:
            if hook is not None:
                hook(lambda: subscriber.end(GONE))
                await self._pump(send, subscriber, backlog, deadline)
            else:
                async with trio.open_nursery() as nursery:

                    async def watch() -> None:
                        await request.wait_disconnect()
                        subscriber.end(GONE)

                    nursery.start_soon(watch)
                    await self._pump(send, subscriber, backlog, deadline)
                    nursery.cancel_scope.cancel()
        finally:
            if hook is not None:
                hook(None)

    async def _pump(
        self, send: SendChunk, subscriber: Subscriber, backlog: list[Message], deadline: float
    ) -> None:
        channel_id, render, clock = self.actor.channel_id, message_view, self.api.hub.clock
        keepalive = self.api.settings.stream_keepalive_seconds
        await send(b": stream open\nretry: 1000\n\n")  # the start goes out now
        for start in range(0, len(backlog), SEND_BATCH):
            now = clock.now()
            batch = backlog[start : start + SEND_BATCH]
            await send(b"".join(message_frame(m, channel_id, now, render) for m in batch))
        with trio.move_on_at(deadline):
            while True:
                with trio.move_on_after(keepalive) as idle:
                    try:
                        data = [await subscriber.receive.receive()]
                    except trio.EndOfChannel:
                        break
                    while len(data) < SEND_BATCH:
                        try:
                            data.append(subscriber.receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                if subscriber.ended not in (None, OVERFLOW):
                    break  # access lost, shutdown, client gone: nothing more
                await send(b": keepalive\n\n" if idle.cancelled_caught else b"".join(data))
        reason = subscriber.ended or "max_seconds"
        if reason == GONE:
            return
        await send(frame(OVERFLOW if reason == OVERFLOW else "closed", {"reason": reason}))


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings
    per_key: Counter[str] = Counter()

    @api.route("GET", "/v1/channels/<identifier>/stream", scope="messages:read", throttled=False)
    async def stream(call: Call, identifier: str) -> Result:
        actor = hub.channel_actor(identifier, call.auth)
        actor.admit(call.auth)
        after = _cursor(call)
        raw_max = call.query.get("max_seconds")
        deadline = math.inf
        if raw_max is not None:
            deadline = trio.current_time() + fields.query_wait(raw_max, math.inf, 86_400)
        if hub.closing or hub.parked >= settings.longpoll_max_waiters:
            raise ApiError(503, "unavailable", "Too many open waiters; retry shortly")
        if per_key[call.auth.key_id] >= settings.stream_max_per_key:
            raise ApiError(
                429,
                "rate_limit_exceeded",
                f"This key already holds {settings.stream_max_per_key} open streams; "
                "close one first",
                retry_after=1,
            )
        reader = Reader(api, actor, call.auth, after, per_key)
        request = call.request
        return 200, Stream(lambda send: reader.run(send, request, deadline))
