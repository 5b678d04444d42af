"""Sessions (contract §2.8): small per-key key/value documents.

Theory of operation
-------------------
``SessionBook`` owns every session. ``decide_*`` validate against the book
and ``now`` and return an event, or raise :class:`ApiError`; only
:meth:`SessionBook.apply` changes the book, live and on replay.

Rules
-----
1. A session belongs to the key that created it; to any other key it does
   not exist (404 ``session_not_found``), so ids reveal nothing.
2. It expires 24 h after creation, never extended. Expired sessions leave
   the list at once; reading, patching or deleting one by id still works
   until it is purged (as upstream). The runtime purges them periodically
   with a :class:`SessionsPurged` event, so replay drops them too.
3. PATCH shallow-merges into the stored state. The merged state travels in
   the event, so replay never re-runs a merge.
"""

from __future__ import annotations

import uuid
from typing import Any

from backchannel.core.errors import ApiError
from backchannel.core.events import (
    SessionCreated,
    SessionDeleted,
    SessionsPurged,
    SessionUpdated,
)
from backchannel.core.records import Session
from backchannel.core.timefmt import US_PER_SECOND

SESSION_LIFE_US = 86_400 * US_PER_SECOND

SessionEvent = SessionCreated | SessionUpdated | SessionDeleted | SessionsPurged


def session_not_found() -> ApiError:
    return ApiError(404, "session_not_found", "Session not found")


class SessionBook:
    """All sessions, by id and by owning key."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self._by_key: dict[str, dict[str, None]] = {}  # key id → session ids, oldest first

    def get(self, key_id: str, session_id: str) -> Session:
        """The caller's session (expired or not), or 404 ``session_not_found``."""
        session = self.sessions.get(session_id)
        if session is None or session.key_id != key_id:
            raise session_not_found()
        return session

    def listing(self, key_id: str, now: int) -> list[Session]:
        """The key's unexpired sessions, newest first."""
        ids = self._by_key.get(key_id, {})
        found = [self.sessions[i] for i in reversed(ids)]
        return [s for s in found if s.expires_at > now]

    def decide_create(
        self, key_id: str, name: str, state: dict[str, Any], now: int
    ) -> SessionCreated:
        return SessionCreated(str(uuid.uuid4()), key_id, name, state, now, now + SESSION_LIFE_US)

    def decide_patch(
        self, key_id: str, session_id: str, changes: dict[str, Any], now: int
    ) -> SessionUpdated:
        """Shallow-merge ``changes`` into the caller's session state."""
        session = self.get(key_id, session_id)
        return SessionUpdated(session.id, {**session.state, **changes}, now)

    def decide_delete(self, key_id: str, session_id: str, now: int) -> SessionDeleted:
        return SessionDeleted(self.get(key_id, session_id).id, now)

    def decide_purge(self, now: int) -> SessionsPurged | None:
        """Drop every session expired at ``now``; None when there is none."""
        if any(s.expires_at <= now for s in self.sessions.values()):
            return SessionsPurged(now)
        return None

    def apply(self, event: SessionEvent) -> None:
        match event:
            case SessionCreated():
                self.sessions[event.session_id] = Session(
                    event.session_id,
                    event.key_id,
                    event.name,
                    event.state,
                    event.at,
                    event.at,
                    event.expires_at,
                )
                self._by_key.setdefault(event.key_id, {})[event.session_id] = None
            case SessionUpdated():
                session = self.sessions[event.session_id]
                session.state = event.state
                session.updated_at = event.at
            case SessionDeleted():
                self._remove(event.session_id)
            case SessionsPurged():
                expired = [s.id for s in self.sessions.values() if s.expires_at <= event.before]
                for session_id in expired:
                    self._remove(session_id)

    def _remove(self, session_id: str) -> None:
        session = self.sessions.pop(session_id)
        ids = self._by_key[session.key_id]
        del ids[session_id]
        if not ids:
            del self._by_key[session.key_id]

    def load(self, sessions: list[Session]) -> None:
        """Fill an empty book from a snapshot (in creation order)."""
        for session in sessions:
            self.sessions[session.id] = session
            self._by_key.setdefault(session.key_id, {})[session.id] = None
