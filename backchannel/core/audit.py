"""The security audit (contract §2.11 ``GET /v1/security/audit``).

``AuditLog`` keeps every security event in order and indexes it by each
key it concerns (its ``actor_key_id`` and ``subject_key_id``), so a key's
own events stay reachable however many others follow (fixes §6 S11, where
upstream filtered only the 500 newest events instance-wide). Events are
kept forever, as upstream keeps them.

Written event types: ``key.issue``, ``key.issue.admin``, ``key.revoke``,
``minting.toggle``, ``channel.pause``, ``channel.resume``. Unlike upstream,
``actor_key_id`` is filled whenever a key caused the event.
"""

from __future__ import annotations

import uuid
from typing import Any

from backchannel.core.events import SecurityRecorded
from backchannel.core.records import SecurityEvent

AUDIT_MAX_LIMIT = 500


class AuditLog:
    """Security events, oldest first, with a per-key index."""

    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []
        self._by_key: dict[str, list[SecurityEvent]] = {}

    @staticmethod
    def decide(
        event_type: str,
        *,
        actor_key_id: str | None,
        subject_key_id: str | None,
        remote_addr: str | None,
        detail: dict[str, Any],
        now: int,
    ) -> SecurityRecorded:
        return SecurityRecorded(
            str(uuid.uuid4()), event_type, actor_key_id, subject_key_id, remote_addr, detail, now
        )

    def for_key(self, key_id: str, limit: int) -> list[SecurityEvent]:
        """Up to ``limit`` events that concern ``key_id``, newest first."""
        found = self._by_key.get(key_id, [])
        return found[::-1][:limit]

    def apply(self, event: SecurityRecorded) -> None:
        self.add(
            SecurityEvent(
                event.event_id,
                event.event_type,
                event.actor_key_id,
                event.subject_key_id,
                event.remote_addr,
                event.detail,
                event.at,
            )
        )

    def add(self, record: SecurityEvent) -> None:
        """Append one record (``apply`` and snapshot loading)."""
        self.events.append(record)
        for key_id in {record.actor_key_id, record.subject_key_id}:
            if key_id is not None:
                self._by_key.setdefault(key_id, []).append(record)
