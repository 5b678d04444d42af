"""The answer to one actor command: a single-use rendezvous, no channel.

A caller queues ``(fn, args, reply)`` in a channel actor's inbox
(:data:`Command`) and waits on the :class:`Reply`; the actor runs ``fn``
and delivers its outcome exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import outcome
import trio
import trio.lowlevel


class Reply:
    """The one answer to one command.

    The actor ``deliver``s exactly once. The caller ``wait``s once, after
    its command is queued; if the answer is already there it takes it, else
    it sleeps until the actor reschedules it. A caller cancelled while
    waiting abandons the reply and the actor's answer goes nowhere.
    """

    __slots__ = ("_abandoned", "_result", "_task")

    def __init__(self) -> None:
        self._result: outcome.Outcome[Any] | None = None
        self._task: trio.lowlevel.Task | None = None
        self._abandoned = False

    def deliver(self, result: outcome.Outcome[Any]) -> None:
        self._result = result
        if self._task is not None and not self._abandoned:
            task, self._task = self._task, None
            trio.lowlevel.reschedule(task, outcome.Value(result))

    async def wait(self) -> outcome.Outcome[Any]:
        if self._result is not None:
            await trio.lowlevel.checkpoint()
            return self._result
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._abandoned = True
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        result: outcome.Outcome[Any] = await trio.lowlevel.wait_task_rescheduled(abort)
        return result


Command = tuple[Callable[..., tuple[Any, int]], tuple[Any, ...], Reply]
