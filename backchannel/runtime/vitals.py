"""Vitals: a periodic log line of what a long run must keep flat.

``BACKCHANNEL_VITALS_LOG_SECONDS`` > 0 (default 0: off) makes the server
log, at INFO on logger ``backchannel.vitals``, one line every that many
seconds::

    vitals {"tasks": 57, "parked_waiters": 3, "channels": 8, "passive_channels": 5,
            "live_messages": 120, "open_leases": 4, "journal_queued": 0,
            "rss_kib": 61234, "open_fds": 31, "py_blocks": 402113,
            "idempotency_entries": 12}

``py_blocks`` is the interpreter's count of allocated memory blocks
(:func:`sys.getallocatedblocks`): when RSS rises while it stays flat, the
growth is in the allocator (fragmentation), not in objects we keep.

It goes to the operator's log only, never to an HTTP caller, so nothing
internal is exposed to unauthenticated clients. ``tools/soak.py`` reads it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import trio

from backchannel.runtime.hub import Hub

log = logging.getLogger("backchannel.vitals")


def count_tasks() -> int:
    """Every trio task alive in this run, from the root task down."""
    count = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return -1


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def vitals(hub: Hub) -> dict[str, Any]:
    """The figures of one vitals line (``/proc`` reads are procfs: memory, not disk)."""
    stats = hub.statistics()
    return {
        "tasks": count_tasks(),
        "parked_waiters": stats.parked_waiters,
        "channels": stats.channels,
        "passive_channels": stats.passive_channels,
        "live_messages": stats.live_messages,
        "open_leases": stats.open_leases,
        "journal_queued": hub.journal.statistics().queued,
        "rss_kib": _rss_kib(),
        "open_fds": _open_fds(),
        "py_blocks": sys.getallocatedblocks(),
        "idempotency_entries": len(hub.world.idempotency),
    }


async def log_vitals(hub: Hub, interval: float) -> None:
    """Log a vitals line every ``interval`` seconds. Never returns unless cancelled."""
    while True:
        await trio.sleep(interval)
        log.info("vitals %s", json.dumps(vitals(hub), separators=(",", ":")))
