"""The heap trimmer: glibc's malloc_trim on a timer."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from backchannel.config import Settings, SettingsError
from backchannel.runtime import heap


def test_this_c_library_can_trim() -> None:
    trim = heap.malloc_trim()
    assert trim is not None  # Debian's glibc: the soak's RSS figure depends on it
    assert isinstance(trim(), bool)


async def test_the_heap_is_trimmed_every_interval(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[float] = []

    def counting() -> bool:
        calls.append(trio.current_time())
        return True

    monkeypatch.setattr(heap, "malloc_trim", lambda: counting)
    with trio.move_on_after(3.5 * 60):
        await heap.trim_periodically(60)
    assert [round(t - calls[0]) for t in calls] == [0, 60, 120]


async def test_without_malloc_trim_it_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "malloc_trim", lambda: None)
    with trio.fail_after(1):
        await heap.trim_periodically(60)


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(SettingsError):
        Settings(malloc_trim_seconds=-1)
