"""Sliding-window rate limiters (contract §3.9), kept in memory per process."""

from __future__ import annotations

from collections import deque

import trio


class SlidingWindow:
    """At most ``limit`` hits per ``window`` seconds for each subject.

    ``limit == 0`` means unlimited. Time is trio's clock, so tests can run
    it on a ``MockClock``. Idle subjects are swept every 1,024 hits, so memory
    stays proportional to the subjects active within one window.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._ops = 0

    def hit(self, subject: str) -> tuple[bool, int]:
        """Count one hit. Returns ``(allowed, remaining)``; a refused hit is not counted."""
        if self.limit == 0:
            return True, 1_000_000
        now = trio.current_time()
        self._ops += 1
        if self._ops % 1024 == 0:
            self._sweep(now)
        hits = self._hits.get(subject)
        if hits is None:
            hits = self._hits[subject] = deque()
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= self.limit:
            return False, 0
        hits.append(now)
        return True, self.limit - len(hits)

    def _sweep(self, now: float) -> None:
        cutoff = now - self.window
        stale = [s for s, hits in self._hits.items() if not hits or hits[-1] <= cutoff]
        for subject in stale:
            del self._hits[subject]
