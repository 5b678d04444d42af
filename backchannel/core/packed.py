"""Packed channels: messages left in their snapshot encoding until first used (issue 15).

Theory of operation
-------------------
A restart of a million messages spent most of its time building
:class:`~backchannel.core.message.Message` objects nobody had asked for
yet. A snapshot of format 3 stores, beside each channel's chunks of
message rows, the few things a server needs before anyone reads the
channel: every message id it holds (the hub's message-id index), the
tokens of its leases (the lease index), its live and claimed counts, and
the parts of its next deadline. A loader keeps the chunks as they are, in
a :class:`PackedMessages`, and the channel's state holds that instead of
its messages.

Rules
-----
1. A packed :class:`~backchannel.core.channel.ChannelState` has no message
   attributes at all (``live``, ``history``, ``delayed`` and the indexes
   over them, :data:`MESSAGE_ATTRIBUTES`). The first read of any of them,
   from anywhere (a command, a capture, replay's ``apply``, a tool),
   unpacks the channel in that same synchronous step (:func:`unpack_messages`), so
   no code path can see a packed channel as empty, and an unpacked one
   costs nothing more than one loaded eagerly.
2. Unpacking builds exactly what an eager load builds: it is the same
   code (``storage.state`` loads an older format by packing nothing and
   unpacking at once).
3. What a packed channel answers without unpacking (its deadline, its
   counts, its ids) comes from the snapshot, which computed it from the
   same capture the chunks were packed from.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backchannel.core.message import load_message_rows, message_from_row, shared_id
from backchannel.core.records import Archived

if TYPE_CHECKING:
    from backchannel.core.channel import ChannelState

MESSAGE_ATTRIBUTES = frozenset(
    {
        "live",
        "_order",
        "_head",
        "_holes",
        "history",
        "archived",
        "_oldest_archived_at",
        "_leases",
        "_unclaimed",
        "delayed",
        "_due",
    }
)
"""The slots of ``ChannelState`` a packed channel leaves unset (rule 1)."""

Deadlines = tuple[int | None, int | None, int | None, int | None]
"""(first TTL expiry, earliest lease expiry, oldest ``archived_at``, first ``visible_at``)."""

NO_DEADLINES: Deadlines = (None, None, None, None)


@dataclass(slots=True)
class PackedMessages:
    """One channel's messages as a format-3 snapshot stores them.

    Attributes:
        live: chunks of live message rows (``message_row``), in seq order,
            each still encoded (``decode`` turns one into a list of rows);
            a loader may keep them as views of the snapshot it read.
        history: chunks of ``[archived_at, reason, row]``, in seq order.
        delayed: rows of messages not visible yet (few; already decoded).
        ids: every message id the channel holds (live, archived, delayed).
        leases: lease token -> message id, for each live leased message.
        live_count: how many live messages the chunks hold.
        claimed_count: how many of them have a holder.
        deadlines: the parts of the channel's next deadline (:data:`Deadlines`).
        decode: the storage layer's decoder of one chunk.
    """

    live: Sequence[bytes | memoryview]
    history: Sequence[bytes | memoryview]
    delayed: Sequence[Any]
    ids: Sequence[str]
    leases: Mapping[str, str]
    live_count: int
    claimed_count: int
    deadlines: Deadlines
    decode: Callable[[bytes | memoryview], list[Any]]


def unpack_messages(state: ChannelState, packed: PackedMessages) -> None:
    """Give ``state`` the messages ``packed`` holds, and the indexes over them.

    ``state`` must have none of :data:`MESSAGE_ATTRIBUTES` set yet. The
    message ids come from ``packed.ids``, so the hub's index and the
    messages share one string per id. The cyclic garbage collector is
    paused meanwhile, as during a restart's load: building many objects
    and freeing none would otherwise start collections that each walk
    the whole heap (unpacking 500,000 messages took 1.7 times as long).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        _unpack(state, packed)
    finally:
        if enabled:
            gc.enable()


def _unpack(state: ChannelState, packed: PackedMessages) -> None:
    decode = packed.decode
    state.live = {}
    state._order = []
    state._head = 0
    state._holes = 0
    state.history = []
    state.archived = {}
    state.delayed = {}
    strings: dict[str, str] = {}  # one copy of each key id and actor name, not one per row
    ids = iter(packed.ids)
    order = state._order
    for chunk in packed.live:
        load_message_rows(decode(chunk), strings, order, state.live, ids)
    history = state.history
    archived = state.archived
    for chunk in packed.history:
        for archived_at, reason, row in decode(chunk):
            message = message_from_row(row, strings)
            message.id = shared_id(ids, message.id)
            message.removed = True
            entry = Archived(message, archived_at, reason)
            history.append(entry)
            archived[message.id] = entry
    for row in packed.delayed:
        message = message_from_row(row, strings)
        message.id = shared_id(ids, message.id)
        state.delayed[message.id] = message
    state.rebuild_indexes()
