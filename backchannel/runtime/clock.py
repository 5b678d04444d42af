"""The runtime's one wall clock, driven by trio's clock.

Wall timestamps are derived from ``trio.current_time()`` plus an anchor
taken at startup, so (a) ``trio.testing.MockClock`` moves wall time too and
a 24 h TTL test takes milliseconds, (b) wall time never goes backwards while
the process runs, and (c) a deadline in wall microseconds converts exactly to
a trio deadline for ``move_on_at``.
"""

from __future__ import annotations

import math
import time

import trio


class WallClock:
    """Microseconds since the epoch, monotonic for the life of the process.

    Args:
        start_us: wall time at construction; defaults to ``time.time()``.
            Recovery passes ``max(now, newest stored timestamp + 1)`` so
            timestamps never go backwards across a restart either.
    """

    def __init__(self, start_us: int | None = None) -> None:
        self._wall0 = time.time_ns() // 1000 if start_us is None else start_us
        self._trio0 = trio.current_time()

    def now(self) -> int:
        return self._wall0 + int((trio.current_time() - self._trio0) * 1_000_000)

    def trio_time(self, wall_us: int | None) -> float:
        """The trio clock reading at which wall time reaches ``wall_us``."""
        if wall_us is None:
            return math.inf
        return self._trio0 + (wall_us - self._wall0) / 1_000_000
