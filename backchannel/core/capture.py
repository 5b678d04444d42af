"""Consistent, incremental reads of one channel: copy-on-write captures.

A snapshot of a big channel cannot be packed in one event-loop step
without stalling requests, yet each channel's part must show the channel
at one instant. A :class:`Capture` opened by ``ChannelState.begin_capture``
holds the list of messages live at that instant; while it is open, the
state saves a message's row the first time an event changes it (rule 4 of
:mod:`backchannel.core.channel`), so reading the capture over many steps
returns the channel exactly as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backchannel.core.records import Archived, Member, Message, message_row

if TYPE_CHECKING:
    from backchannel.core.channel import ChannelState


class Capture:
    """A channel as it was when :meth:`ChannelState.begin_capture` ran.

    Reading it with :meth:`rows` may be spread over many event-loop steps;
    the owner applies events meanwhile, and copy-on-write keeps what this
    capture returns fixed.
    """

    def __init__(self, state: ChannelState) -> None:
        config = state.config
        self.seq = state.applied_seq
        self.last_seq = state.last_seq
        self.config = config
        self.config_values = {
            name: getattr(config, name) for name in config.__dataclass_fields__ if name != "members"
        }
        self.config_values["aliases"] = list(config.aliases)
        self.config_values["related_channels"] = list(config.related_channels)
        self.members: list[Member] = list(config.members.values())
        self.recent_posts = list(state._recent_posts or ())
        self.messages: list[Message] = state._order[state._head :]
        self.history: list[Archived] = list(state.history)
        self.saved: dict[str, tuple[Any, ...]] = {}
        self.ledger: list[Any] = state.ledger_view.rows()  # small: copied whole
        self.delayed = [message_row(m) for m in state.delayed.values()]  # few: copied
        self.deadlines = state.deadlines()

    def rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        """Rows of the live messages ``messages[start:stop]`` as of the capture."""
        saved = self.saved
        out: list[tuple[Any, ...]] = []
        for message in self.messages[start:stop]:
            row = saved.get(message.id)
            if row is None:
                if message.removed:
                    continue  # gone before the capture opened
                row = message_row(message)
            out.append(row)
        return out
