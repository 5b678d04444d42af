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
        return self._wall_at(trio.current_time())

    def trio_time(self, wall_us: int | None) -> float:
        """The earliest trio clock reading at which :meth:`now` is ``>= wall_us``.

        The conversion goes through a float, so the exact quotient can read
        1 µs early; stepping to the next float closes the gap. An actor that
        sleeps until this time therefore always finds its deadline due (it
        would otherwise re-arm a deadline already past and spin).
        """
        if wall_us is None:
            return math.inf
        at = self._trio0 + (wall_us - self._wall0) / 1_000_000
        while self._wall_at(at) < wall_us:
            at = math.nextafter(at, math.inf)
        return at

    def _wall_at(self, trio_time: float) -> int:
        return self._wall0 + int((trio_time - self._trio0) * 1_000_000)
