"""Serialized message pages, shared by the waiters one change wakes.

When one post wakes thousands of long-polls on the same cursor, the page
is serialized once and every waiter answers with the same bytes.
"""

from __future__ import annotations

from typing import Any

MAX_BYTES = 2 << 20  # all cached bodies together: a fan-out needs one or two
PER_CHANNEL = 64  # distinct (cursor, limit, filter) pages kept per channel version


class PageBodies:
    """The ``data`` arrays of message pages, per channel and state version.

    Guarantees:

    - never stale: an entry serves only the exact state version it was built
      from (any change to a channel bumps its version), and a new version
      replaces the channel's entry;
    - bounded: at most ``per_channel`` bodies a channel and ``max_bytes``
      in all; past the budget the least recently written channels are
      forgotten first, so channels that were read once (or deleted) cannot
      pile up over a long run. A body larger than a quarter of the budget
      is not kept.
    """

    __slots__ = ("_entries", "_max_bytes", "_per_channel", "bytes")

    def __init__(self, max_bytes: int = MAX_BYTES, per_channel: int = PER_CHANNEL) -> None:
        self._max_bytes = max_bytes
        self._per_channel = per_channel
        # channel id -> (version, {page key: body}); oldest written first
        self._entries: dict[str, tuple[int, dict[Any, bytes]]] = {}
        self.bytes = 0  # the size of every body held

    def __len__(self) -> int:
        """Channels with an entry."""
        return len(self._entries)

    def get(self, channel_id: str, version: int, key: Any) -> bytes | None:
        entry = self._entries.get(channel_id)
        if entry is None or entry[0] != version:
            return None
        return entry[1].get(key)

    def put(self, channel_id: str, version: int, key: Any, body: bytes) -> None:
        if len(body) > self._max_bytes // 4:
            return
        entry = self._entries.pop(channel_id, None)
        if entry is None or entry[0] != version:
            if entry is not None:
                self.bytes -= sum(map(len, entry[1].values()))
            entry = (version, {})
        self._entries[channel_id] = entry  # (re)inserted: now the most recent
        pages = entry[1]
        if key not in pages and len(pages) < self._per_channel:
            pages[key] = body
            self.bytes += len(body)
        while self.bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self.bytes -= sum(map(len, self._entries.pop(oldest)[1].values()))
