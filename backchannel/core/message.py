"""Messages: the compact record millions of which live in memory (issue 15).

Theory of operation
-------------------
A live message costs its content, its metadata and a few hundred bytes
more. To keep it there:

* the claim is one optional :class:`Claim` (None while nobody holds it),
  not six fields that are None most of the time;
* ``metadata``, ``mentions`` and ``acks`` share immutable empties
  (:data:`EMPTY_METADATA`, ``()``); ``mentions`` and ``acks`` are tuples,
  replaced by :meth:`ChannelState.apply` rather than changed in place, so
  a row read from a message never changes later (captures rely on it);
* a loader shares one copy of each author key id and actor id and name.

Rows (:func:`message_row`) keep the snapshot layout of format 2 field for
field, left out only trailing defaults, which every loader since format 2
fills in; :func:`message_from_row` reads both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

EMPTY_METADATA: dict[str, Any] = {}
"""The one metadata dict of every message posted without metadata.

Shared, so it must never be mutated: message metadata is replaced, never
changed in place (a dead-letter note builds a new dict)."""


@dataclass(slots=True)
class Claim:
    """Who holds a message and how; a message nobody holds has none.

    ``lease_token`` and ``lease_expires_at`` are None for a claim without a
    lease, and become None when the holder's ack ends its lease.
    """

    actor_id: str
    actor_name: str
    key_id: str
    at: int
    lease_token: str | None = None
    lease_expires_at: int | None = None


@dataclass(slots=True)
class Message:
    """A live message. ``seq`` is its position in the channel, from 1.

    A delayed message has ``seq`` 0 until it becomes visible at
    ``visible_at``; it then takes the next position (core.channel rule 1).
    ``deliveries`` counts the claims of it that began.

    Compact (see the module docstring): the ``claimed_by_*`` and
    ``lease_*`` properties read the one optional :attr:`claim`.
    """

    id: str
    seq: int
    content: str
    metadata: dict[str, Any]
    created_at: int
    expires_at: int
    author_key_id: str
    actor_id: str | None = None
    actor_name: str | None = None
    actor_label: str | None = None
    mentions: tuple[list[str], ...] = ()
    claim: Claim | None = None
    acks: tuple[list[Any], ...] = ()  # [actor_id, name, at]
    deliveries: int = 0
    visible_at: int | None = None  # None: visible since created_at
    removed: bool = False

    @property
    def claimed_by_id(self) -> str | None:
        claim = self.claim
        return None if claim is None else claim.actor_id

    @property
    def claimed_by_name(self) -> str | None:
        claim = self.claim
        return None if claim is None else claim.actor_name

    @property
    def claimed_by_key_id(self) -> str | None:
        claim = self.claim
        return None if claim is None else claim.key_id

    @property
    def claimed_at(self) -> int | None:
        claim = self.claim
        return None if claim is None else claim.at

    @property
    def lease_token(self) -> str | None:
        claim = self.claim
        return None if claim is None else claim.lease_token

    @property
    def lease_expires_at(self) -> int | None:
        claim = self.claim
        return None if claim is None else claim.lease_expires_at

    def acked_by(self, actor_id: str) -> bool:
        return any(ack[0] == actor_id for ack in self.acks)


MESSAGE_FIELDS = (
    "id",
    "seq",
    "content",
    "metadata",
    "created_at",
    "expires_at",
    "author_key_id",
    "actor_id",
    "actor_name",
    "actor_label",
    "mentions",
    "claimed_by_id",
    "claimed_by_name",
    "claimed_by_key_id",
    "claimed_at",
    "lease_token",
    "lease_expires_at",
    "acks",
    "deliveries",
    "visible_at",
)
"""The order of a message row (snapshots since format 2; never reordered)."""

_UNCLAIMED = (None, None, None, None, None, None)


def message_row(m: Message) -> tuple[Any, ...]:
    """The message's values in ``MESSAGE_FIELDS`` order, detached from later changes.

    Every value is immutable or replaced rather than changed in place
    (``metadata``, ``mentions``, ``acks``), so no copy is needed.
    """
    c = m.claim
    if c is None and not m.acks and not m.deliveries and m.visible_at is None:
        # trailing defaults left out: smaller snapshots, faster loads (every
        # reader since format 2 fills them in)
        if not m.mentions:
            return (
                m.id,
                m.seq,
                m.content,
                m.metadata,
                m.created_at,
                m.expires_at,
                m.author_key_id,
                m.actor_id,
                m.actor_name,
                m.actor_label,
            )
    claim = (
        _UNCLAIMED
        if c is None
        else (c.actor_id, c.actor_name, c.key_id, c.at, c.lease_token, c.lease_expires_at)
    )
    return (
        m.id,
        m.seq,
        m.content,
        m.metadata,
        m.created_at,
        m.expires_at,
        m.author_key_id,
        m.actor_id,
        m.actor_name,
        m.actor_label,
        m.mentions,
        *claim,
        m.acks,
        m.deliveries,
        m.visible_at,
    )


_ROW_DEFAULTS = (None, None, None, (), None, None, None, None, None, None, (), 0, None)


def message_from_row(
    row: list[Any] | tuple[Any, ...], strings: dict[str, str] | None = None
) -> Message:
    """The message a :func:`message_row` row (as unpacked from msgpack) describes.

    Rows may be shorter than ``MESSAGE_FIELDS`` (written before later fields
    existed, or trimmed of trailing defaults); the missing fields take
    their defaults. Empty containers become the shared empties. With
    ``strings``, the author's key id and the actor's id and name are
    replaced by one shared copy per distinct value (a loader's table).
    """
    if len(row) < 20:
        row = (*row, *_ROW_DEFAULTS[len(row) - 7 :])
    (
        id_,
        seq,
        content,
        metadata,
        created_at,
        expires_at,
        author_key_id,
        actor_id,
        actor_name,
        actor_label,
        mentions,
        claimed_by_id,
        claimed_by_name,
        claimed_by_key_id,
        claimed_at,
        lease_token,
        lease_expires_at,
        acks,
        deliveries,
        visible_at,
    ) = row
    if strings is not None:
        author_key_id = strings.setdefault(author_key_id, author_key_id)
        if actor_id is not None:
            actor_id = strings.setdefault(actor_id, actor_id)
            actor_name = strings.setdefault(actor_name, actor_name)
    return Message(
        id_,
        seq,
        content,
        metadata or EMPTY_METADATA,
        created_at,
        expires_at,
        author_key_id,
        actor_id,
        actor_name,
        actor_label,
        tuple(mentions) if mentions else (),
        None
        if claimed_by_id is None
        else Claim(
            claimed_by_id,
            claimed_by_name,
            claimed_by_key_id,
            claimed_at,
            lease_token,
            lease_expires_at,
        ),
        tuple(acks) if acks else (),
        deliveries,
        visible_at,
    )


def shared_id(ids: Iterator[str], row_id: str) -> str:
    """The next string of ``ids`` (equal to ``row_id``), or ``row_id`` once it runs out.

    Raises:
        ValueError: the id column and the rows disagree (a damaged snapshot).
    """
    shared = next(ids, row_id)
    if shared != row_id:
        raise ValueError(f"id column holds {shared!r} where the rows hold {row_id!r}")
    return shared


def load_message_rows(
    rows: list[Any],
    strings: dict[str, str],
    order: list[Message],
    live: dict[str, Message],
    ids: Iterator[str] | None = None,
) -> None:
    """:func:`message_from_row` over many rows, appended to ``order`` and ``live``.

    A loader's hot loop (a restart reads millions of rows): rows holding
    only the first ten fields (nothing claimed, acked, delayed or
    mentioned) take one Python call each. ``ids`` yields a string equal to
    each row's id, in row order, to use in its place (one string per id,
    shared with the hub's index); once it runs out the rows' own are used.

    Raises:
        ValueError: ``ids`` disagrees with the rows (see :func:`shared_id`).
    """
    append = order.append
    share = strings.setdefault
    if ids is None:
        ids = iter(())
    for row in rows:
        if len(row) != 10:
            message = message_from_row(row, strings)
            message.id = shared_id(ids, message.id)
            append(message)
            live[message.id] = message
            continue
        id_, seq, content, metadata, created_at, expires_at, key_id, actor_id, name, label = row
        shared = next(ids, id_)
        if shared != id_:
            raise ValueError(f"id column holds {shared!r} where the rows hold {id_!r}")
        id_ = shared
        if actor_id is not None:
            actor_id = share(actor_id, actor_id)
            name = share(name, name)
        append(
            message := Message(
                id_,
                seq,
                content,
                metadata or EMPTY_METADATA,
                created_at,
                expires_at,
                share(key_id, key_id),
                actor_id,
                name,
                label,
            )
        )
        live[id_] = message
