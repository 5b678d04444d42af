"""Stream subscribers of a channel actor: server-sent events, fanned out once.

A :class:`Subscriber` is one open ``GET .../stream``. The actor keeps its
subscribers beside its parked long-polls and, right after it applies an
event, hands each of them the same frame (:func:`frames`), built once per
event however many streams read it. A subscriber is a bounded buffer: a
push never waits, so a slow reader never slows the actor or other readers;
a reader whose buffer is full is ended with ``overflow`` and resumes with
``Last-Event-ID``.

Guarantees:
    - ``message`` frames reach a subscriber in seq order, each once: the ones
      at or before its backlog cut (``after``) are skipped, since the stream
      already sent them from the backlog read in the same synchronous step
      as the subscription.
    - Once :meth:`Subscriber.end` has run nothing more is pushed; the reader
      drains what is buffered only when the reason is ``overflow``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import trio

from backchannel.core.events import (
    LeaseExpired,
    MessageAcked,
    MessageClaimed,
    MessageReleased,
    MessageRetracted,
)
from backchannel.core.records import Message

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

Render = Callable[[Message, str, int], dict[str, Any]]

# reasons a stream ends, other than its client leaving
OVERFLOW = "overflow"  # the reader fell behind its buffer
ACCESS = "access"  # the key lost access, or the channel was deleted
REVOKED = "revoked"  # the key was revoked
SHUTDOWN = "shutdown"  # the server is stopping
GONE = "gone"  # the client went away

# the event name of each change of an existing message (TTL expiry is ``expired`` too)
CHANGES: dict[type[Any], str] = {
    MessageClaimed: "claimed",
    MessageReleased: "released",
    MessageAcked: "acked",
    LeaseExpired: "expired",
    MessageRetracted: "retracted",
}


def frame(event: str, data: dict[str, Any], cursor: str | None = None) -> bytes:
    """One SSE event: ``id:`` (when given), ``event:``, ``data:`` (one line of JSON)."""
    head = f"id: {cursor}\n" if cursor is not None else ""
    return f"{head}event: {event}\ndata: {_dumps(data)}\n\n".encode()


def message_frame(message: Message, channel_id: str, now: int, render: Render) -> bytes:
    """The ``message`` event of a visible message; its id is its cursor ``s<seq>``."""
    return frame("message", render(message, channel_id, now), f"s{message.seq}")


class Subscriber:
    """One open stream: a bounded buffer of frames the actor pushes without waiting."""

    __slots__ = ("_send", "after", "ended", "key_id", "receive")

    def __init__(self, key_id: str, after: int, buffer: int) -> None:
        self.key_id = key_id
        self.after = after  # message frames at or before this seq were sent from the backlog
        self.ended: str | None = None
        self._send, self.receive = trio.open_memory_channel[bytes](buffer)

    def push(self, data: bytes, seq: int | None) -> None:
        """Queue ``data`` (a ``message`` frame when ``seq`` is given); never waits."""
        if self.ended is not None or (seq is not None and seq <= self.after):
            return
        try:
            self._send.send_nowait(data)
        except trio.WouldBlock:
            self.end(OVERFLOW)

    def end(self, reason: str) -> None:
        """End the stream for ``reason``, once; the reader wakes at once."""
        if self.ended is None:
            self.ended = reason
            self._send.close()


def publish(subscribers: Iterable[Subscriber], data: bytes, seq: int | None) -> None:
    """Push one frame, built once, to every subscriber."""
    for subscriber in list(subscribers):
        subscriber.push(data, seq)
