"""A safe keep-alive recycle for hypercorn 0.18's HTTP/1.1 protocol.

The stall this fixes
--------------------
A client POSTs on a keep-alive connection and the app answers before the
request body has arrived (a 404 that never reads it; the body sent in a
second TCP segment). When the answer is complete, hypercorn's
``H11Protocol._maybe_recycle`` finds h11 with ``our_state`` DONE and
``their_state`` still SEND_BODY, so it cannot start the next cycle and
means to close the connection (``can_read.set()``, then ``send(Closed())``).
That runs in the *app's* task, at the end of its last ``send``. Under
quart-trio the app's task is cancelled at that very moment: closing the
stream hands ``http.disconnect`` to Quart's message reader, which returns
and cancels the request nursery, so the next checkpoint (``send_eof`` in
``TCPServer._close``) raises ``Cancelled`` and the connection is never
closed. It is left as it stands: stream gone, h11 still in SEND_BODY. The
body then arrives and is dropped (``self.stream is None``), h11 reaches
DONE/DONE, and nothing calls ``start_next_cycle`` any more. The next
request is read into h11's buffer, ``next_event`` answers PAUSED, and the
reader waits on ``can_read`` forever: ESTABLISHED, nothing queued on either
side, until the client gives up (then CLOSE-WAIT, since nobody reads).

The fix, for any app
--------------------
- The recycle runs shielded from the app's cancellation, so its decision
  is always carried out.
- A body still arriving after a complete answer is read and dropped (up to
  ``drain_limit`` bytes, then the connection is closed) and the connection
  is recycled once it ends, by whichever task sees the end: keep-alive is
  kept, and a client already sending its next request is not cut off.
- Closing a stream never blocks on the app's receive queue: the
  ``http.disconnect`` is queued without waiting, and a body chunk that the
  reader is still trying to queue for an app that has answered is dropped.
  An app that never reads its body cannot wedge the connection.

Each patch checks what it replaces and refuses to start if hypercorn
changed; installing twice does nothing.
"""

from __future__ import annotations

from typing import Any

import h11
import trio

DEFAULT_DRAIN_LIMIT = 16 << 20


def install_safe_recycle(drain_limit: int = DEFAULT_DRAIN_LIMIT) -> None:
    """Patch hypercorn's HTTP/1.1 recycle path as the module docstring says.

    Args:
        drain_limit: bytes of an unread request body to read and drop after
            the answer before the connection is closed instead.
    """
    from hypercorn.events import Closed
    from hypercorn.protocol.events import Body, EndBody, StreamClosed
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import HTTPStream

    for owner, name in (
        (H11Protocol, "_maybe_recycle"),
        (H11Protocol, "_handle_events"),
        (H11Protocol, "_close_stream"),
        (HTTPStream, "handle"),
    ):
        if not hasattr(owner, name):
            raise RuntimeError(f"hypercorn changed: {owner.__name__}.{name} is gone; review")
    H11Protocol._bc_drain_limit = drain_limit  # type: ignore[attr-defined]
    if getattr(H11Protocol._maybe_recycle, "safe", False):
        return
    stock_recycle = H11Protocol._maybe_recycle
    stock_handle_events = H11Protocol._handle_events
    stock_stream_handle = HTTPStream.handle

    async def drain(self: Any) -> bool:
        """Drop what h11 holds of a body that outlived its answer.

        Returns True once the connection was recycled (the caller may read
        the next request), False while more of the body is awaited or after
        the connection was closed.
        """
        connection = self.connection
        while connection.their_state is h11.SEND_BODY:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError:
                break
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.Data):
                self._bc_drain_left -= len(event.data)
                if self._bc_drain_left < 0:
                    break
        self._bc_drain_left = None
        if connection.their_state is h11.SEND_BODY:
            await self.can_read.set()
            await self.send(Closed())
            return False
        await stock_recycle(self)  # the stream is gone: DONE/DONE recycles, else closes
        return connection.our_state is h11.IDLE

    async def maybe_recycle(self: Any) -> None:
        with trio.CancelScope(shield=True):
            await self._close_stream()
            connection = self.connection
            if (
                isinstance(connection, h11.Connection)
                and not self.context.terminated.is_set()
                and connection.our_state is h11.DONE
                and connection.their_state is h11.SEND_BODY
            ):
                self._bc_drain_left = self._bc_drain_limit
                await drain(self)
                return
            await stock_recycle(self)

    async def handle_events(self: Any) -> None:
        if getattr(self, "_bc_drain_left", None) is not None and not await drain(self):
            return
        await stock_handle_events(self)

    async def stream_handle(self: Any, event: Any) -> None:
        if isinstance(event, Body | EndBody) and not self.closed:
            # queued with backpressure while the app reads; dropped once it has answered
            with trio.CancelScope() as scope:
                self._bc_putting = scope
                await stock_stream_handle(self, event)
            self._bc_putting = None
            return
        if isinstance(event, StreamClosed) and not self.closed:
            putting = getattr(self, "_bc_putting", None)
            if putting is not None:
                putting.cancel()
            put = getattr(self, "app_put", None)
            channel = getattr(put, "__self__", None)
            if isinstance(channel, trio.MemorySendChannel):
                self.app_put = _nowait(channel)
        await stock_stream_handle(self, event)

    maybe_recycle.safe = True  # type: ignore[attr-defined]
    H11Protocol._maybe_recycle = maybe_recycle  # type: ignore[method-assign]
    H11Protocol._handle_events = handle_events  # type: ignore[method-assign]
    HTTPStream.handle = stream_handle  # type: ignore[method-assign]


def _nowait(channel: trio.MemorySendChannel[Any]) -> Any:
    """An ``app_put`` that queues without waiting and drops what does not fit."""

    async def put(message: Any) -> None:
        try:
            channel.send_nowait(message)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    return put
