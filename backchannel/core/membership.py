"""Who may use a channel, and how that changes (contract §2.4, §2.5, §3.4, §0.7).

Theory of operation
-------------------
A channel's access state is its config (``access``, ``owner_key_id``,
``members``) plus a :class:`Ledger`: invitations, access requests and the
channel's event log (``GET .../events``). The functions named ``decide_*``
validate a command against that state and ``now`` and return the event it
produces (or None when nothing changes), or raise :class:`ApiError`; they
never change anything. :func:`apply_access` is the one place these events
change a channel; ``ChannelState.apply`` calls it, live and on replay.

Rules
-----
1. Readers: an ``open`` channel admits every key; a ``restricted`` one its
   owner key and its member keys (``ChannelConfig.can_access``).
2. Owner-only operations (§0.7): PATCH, aliases, delete, invitations
   (create and revoke), members (list, add, remove), the event log and
   access requests (list, approve, deny). They are checked against the
   owning key, after the access check: 403 ``forbidden``.
3. The owner key is always a member: removing it is 409 ``cannot_remove_owner``.
4. Ways in: the owner adds a key, any key resolves a live invitation, the
   owner approves an access request. The only way out is removal by the
   owner; revoking an invitation keeps the memberships it granted.
5. Forgetting is by event time: log entries live 24 h, invitations are
   dropped a day after they expire (lookups of a dropped one are 404). Both
   happen while later events are applied, so replay forgets exactly what
   live traffic forgot.
"""

from __future__ import annotations

import secrets
import uuid
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from backchannel.core.errors import ApiError
from backchannel.core.events import (
    AccessEvent,
    AccessRequestDecided,
    AccessRequested,
    ChannelAliasAdded,
    ChannelDeleted,
    ChannelUpdated,
    InvitationCreated,
    InvitationResolved,
    InvitationRevoked,
    MemberAdded,
    MemberRemoved,
)
from backchannel.core.records import (
    OPEN,
    AccessRequest,
    ChannelConfig,
    Invitation,
    KeyRecord,
    LogEntry,
    Member,
)
from backchannel.core.timefmt import US_PER_SECOND

if TYPE_CHECKING:
    from backchannel.core.channel import ChannelState

DAY_US = 86_400 * US_PER_SECOND
INVITATION_LIFE_US = DAY_US
LOG_LIFE_US = DAY_US
INVITATION_KEEP_US = DAY_US  # how long an expired invitation still answers 410


class Ledger:
    """A channel's invitations, access requests and event log."""

    __slots__ = ("dropped", "invitations", "log", "log_seq", "requests")

    def __init__(self) -> None:
        self.invitations: dict[str, Invitation] = {}  # oldest first
        self.requests: dict[str, AccessRequest] = {}  # oldest first
        self.log: list[LogEntry] = []  # by seq (and time)
        self.log_seq = 0
        self.dropped: list[str] = []  # invitation ids forgotten by apply; the world unindexes them

    def pending_request(self, key_id: str) -> AccessRequest | None:
        for request in self.requests.values():
            if request.requester_key_id == key_id and request.status == "pending":
                return request
        return None

    def log_page(
        self, after_seq: int, after_time: int | None, limit: int, now: int
    ) -> list[LogEntry]:
        """Live log entries after ``after_seq`` and ``after_time``, oldest first."""
        log = self.log
        start = bisect_right(log, after_seq, key=_entry_seq)
        out: list[LogEntry] = []
        for entry in log[start:]:
            if entry.expires_at <= now:
                continue
            if after_time is not None and entry.created_at <= after_time:
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out

    # -- snapshots ------------------------------------------------------------

    def rows(self) -> list[Any]:
        """Everything as msgpack-friendly rows (a snapshot's ``ledger``)."""
        return [
            [_row(i) for i in self.invitations.values()],
            [_row(r) for r in self.requests.values()],
            [_row(e) for e in self.log],
            self.log_seq,
        ]

    def load(self, rows: list[Any]) -> None:
        """Fill an empty ledger from :meth:`rows` output."""
        invitations, requests, log, self.log_seq = rows
        self.invitations = {row[0]: Invitation(*row) for row in invitations}
        self.requests = {row[0]: AccessRequest(*row) for row in requests}
        self.log = [LogEntry(*row) for row in log]


def _row(record: Any) -> list[Any]:
    return [getattr(record, name) for name in record.__dataclass_fields__]


def _entry_seq(entry: LogEntry) -> int:
    return entry.seq


def _new_id() -> str:
    return str(uuid.uuid4())


# -- deciding -------------------------------------------------------------------


def require_owner(config: ChannelConfig, key: KeyRecord, action: str) -> None:
    """403 ``forbidden`` unless ``key`` owns the channel (rule 2)."""
    if key.key_id != config.owner_key_id:
        raise ApiError(403, "forbidden", f"Only the channel owner can {action}")


def decide_update(
    state: ChannelState, key: KeyRecord, changes: dict[str, Any], now: int
) -> ChannelUpdated | None:
    """PATCH with validated ``changes``; only fields whose value differs are kept.

    The owner may pause and resume its channel, but not resume one the
    operator paused (§2.10's kill switch outranks the owner; contract §6 S1).
    """
    config = state.config
    require_owner(config, key, "update a channel")
    if config.operator_paused and changes.get("paused") is False:
        raise ApiError(
            403, "forbidden", "The operator paused this channel; only the operator can resume it"
        )
    diff = {name: value for name, value in changes.items() if getattr(config, name) != value}
    return ChannelUpdated(config.id, diff, now) if diff else None


def decide_alias(
    state: ChannelState, key: KeyRecord, alias: str, taken: bool, now: int
) -> ChannelAliasAdded:
    """Add a channel alias; ``taken`` says whether the global namespace has it."""
    require_owner(state.config, key, "add channel aliases")
    if taken:
        raise ApiError(409, "alias_conflict", f"Alias '{alias}' already exists")
    return ChannelAliasAdded(state.config.id, alias, now)


def decide_delete(config: ChannelConfig, key: KeyRecord, now: int) -> ChannelDeleted:
    require_owner(config, key, "delete a channel")
    return ChannelDeleted(config.id, key.key_id, now)


def decide_add_member(
    state: ChannelState, key: KeyRecord, member_key_id: str, now: int
) -> MemberAdded:
    """Always an event: re-adding keeps the member row but logs ``member_added``."""
    require_owner(state.config, key, "add members")
    return MemberAdded(state.config.id, member_key_id, _new_id(), key.key_id, _new_id(), now)


def decide_remove_member(
    state: ChannelState, key: KeyRecord, member_key_id: str, now: int
) -> MemberRemoved:
    """Always an event (no 404 for a non-member), except for the owner key (409)."""
    config = state.config
    require_owner(config, key, "remove members")
    if member_key_id == config.owner_key_id:
        raise ApiError(409, "cannot_remove_owner", "The channel owner cannot be removed")
    return MemberRemoved(config.id, member_key_id, key.key_id, _new_id(), now)


def decide_invite(state: ChannelState, key: KeyRecord, now: int) -> InvitationCreated:
    require_owner(state.config, key, "create invitations")
    invitation_id = secrets.token_urlsafe(18)
    return InvitationCreated(
        state.config.id, invitation_id, key.owner_id, key.key_id, now, now + INVITATION_LIFE_US
    )


def find_invitation(state: ChannelState, invitation_id: str) -> Invitation:
    invitation = state.ledger.invitations.get(invitation_id)
    if invitation is None:
        raise ApiError(404, "invitation_not_found", "Invitation not found")
    return invitation


def decide_resolve(
    state: ChannelState, invitation_id: str, key: KeyRecord, now: int
) -> InvitationResolved:
    """Every resolution of a live invitation is an event (multi-use, §2.5)."""
    invitation = find_invitation(state, invitation_id)
    if invitation.revoked_at is not None:
        raise ApiError(410, "invitation_revoked", "This invitation has been revoked")
    if invitation.expires_at <= now:
        raise ApiError(410, "invitation_expired", "This invitation has expired")
    return InvitationResolved(state.config.id, invitation_id, key.key_id, _new_id(), _new_id(), now)


def decide_revoke_invitation(
    state: ChannelState, invitation_id: str, key: KeyRecord, now: int
) -> InvitationRevoked | None:
    """The first revocation is an event; later ones change nothing."""
    invitation = find_invitation(state, invitation_id)
    require_owner(state.config, key, "revoke invitations")
    if invitation.revoked_at is not None:
        return None
    return InvitationRevoked(state.config.id, invitation_id, key.key_id, _new_id(), now)


def decide_request_access(
    state: ChannelState, key: KeyRecord, reason: str | None, now: int
) -> tuple[str, str | None, AccessRequested | None]:
    """``(status, request id, event)``: ``open``, ``already_member`` or ``pending``."""
    config = state.config
    if config.access == OPEN:
        return "open", None, None
    if config.can_access(key.key_id):
        return "already_member", None, None
    pending = state.ledger.pending_request(key.key_id)
    if pending is not None:
        return "pending", pending.id, None
    event = AccessRequested(config.id, _new_id(), key.key_id, reason, now)
    return "pending", event.request_id, event


def decide_access_request(
    state: ChannelState, key: KeyRecord, request_id: str, approve: bool, now: int
) -> AccessRequestDecided:
    """Approve or deny a pending request (owner only)."""
    require_owner(state.config, key, "decide access requests")
    request = state.ledger.requests.get(request_id)
    if request is None:
        raise ApiError(404, "access_request_not_found", "Access request not found")
    if request.status != "pending":
        raise ApiError(409, "access_request_resolved", f"Request already {request.status}")
    status = "approved" if approve else "denied"
    return AccessRequestDecided(
        state.config.id, request_id, status, key.key_id, _new_id(), _new_id(), now
    )


# -- changing -------------------------------------------------------------------


def apply_access(state: ChannelState, event: AccessEvent) -> None:
    """Change ``state`` by one access event (called only by ``ChannelState.apply``)."""
    config = state.config
    ledger = state.ledger
    match event:
        case ChannelUpdated():
            for name, value in event.changes.items():
                setattr(config, name, value)
            config.updated_at = event.at
        case ChannelAliasAdded():
            if event.alias not in config.aliases:
                config.aliases.append(event.alias)
                config.aliases.sort()
        case MemberAdded():
            _grant(config, event.key_id, event.member_id, event.at, None)
            by, subject = event.by_key_id, event.key_id
            _log(ledger, event.log_id, "member_added", by, subject, None, event.at)
        case MemberRemoved():
            config.members.pop(event.key_id, None)
            by, subject = event.by_key_id, event.key_id
            _log(ledger, event.log_id, "member_removed", by, subject, None, event.at)
        case InvitationCreated():
            ledger.invitations[event.invitation_id] = Invitation(
                event.invitation_id,
                config.id,
                event.owner_id,
                event.key_id,
                event.at,
                event.expires_at,
            )
        case InvitationResolved():
            _grant(config, event.key_id, event.member_id, event.at, event.invitation_id)
            _log(
                ledger,
                event.log_id,
                "invitation_resolved",
                event.key_id,
                event.key_id,
                event.invitation_id,
                event.at,
            )
        case InvitationRevoked():
            ledger.invitations[event.invitation_id].revoked_at = event.at
            _log(
                ledger,
                event.log_id,
                "invitation_revoked",
                event.key_id,
                None,
                event.invitation_id,
                event.at,
            )
        case AccessRequested():
            ledger.requests[event.request_id] = AccessRequest(
                event.request_id, event.key_id, event.reason, "pending", event.at
            )
        case AccessRequestDecided():
            request = ledger.requests[event.request_id]
            request.status = event.status
            request.resolved_at = event.at
            request.resolved_by_key_id = event.key_id
            if event.status == "approved":
                requester = request.requester_key_id
                _grant(config, requester, event.member_id, event.at, None)
                _log(ledger, event.log_id, "member_added", event.key_id, requester, None, event.at)
    _forget(ledger, event.at)


def _grant(
    config: ChannelConfig, key_id: str, member_id: str, at: int, invitation_id: str | None
) -> None:
    if key_id not in config.members:
        config.members[key_id] = Member(member_id, key_id, at, invitation_id)


def _log(
    ledger: Ledger,
    log_id: str,
    event_type: str,
    actor_key_id: str,
    subject_key_id: str | None,
    invitation_id: str | None,
    at: int,
) -> None:
    ledger.log_seq += 1
    ledger.log.append(
        LogEntry(
            log_id,
            ledger.log_seq,
            event_type,
            actor_key_id,
            subject_key_id,
            invitation_id,
            at,
            at + LOG_LIFE_US,
        )
    )


def _forget(ledger: Ledger, now: int) -> None:
    """Rule 5: drop expired log entries and long-expired invitations."""
    log = ledger.log
    stale = 0
    while stale < len(log) and log[stale].expires_at <= now:
        stale += 1
    if stale:
        del log[:stale]
    invitations = ledger.invitations
    while invitations:
        oldest = next(iter(invitations.values()))
        if oldest.expires_at + INVITATION_KEEP_US > now:
            break
        del invitations[oldest.id]
        ledger.dropped.append(oldest.id)
