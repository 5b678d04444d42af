"""The shared page bodies stay correct and bounded (a long run must not grow)."""

from __future__ import annotations

from backchannel.http.page_cache import PageBodies


def test_a_body_serves_only_its_own_version_and_key() -> None:
    bodies = PageBodies()
    bodies.put("c1", 3, (0, 50), b"[1]")
    assert bodies.get("c1", 3, (0, 50)) == b"[1]"
    assert bodies.get("c1", 4, (0, 50)) is None
    assert bodies.get("c1", 3, (1, 50)) is None
    assert bodies.get("c2", 3, (0, 50)) is None
    bodies.put("c1", 4, (0, 50), b"[1,2]")  # a new version replaces the old entry
    assert bodies.get("c1", 3, (0, 50)) is None
    assert bodies.bytes == len(b"[1,2]")


def test_channels_read_once_cannot_pile_up() -> None:
    bodies = PageBodies(max_bytes=10_000, per_channel=4)
    for n in range(5_000):
        bodies.put(f"c{n}", 1, (0, 50), b"x" * 100)
        assert bodies.bytes <= 10_000
    assert len(bodies) <= 100
    assert bodies.get("c4999", 1, (0, 50)) == b"x" * 100  # the newest stays
    assert bodies.get("c0", 1, (0, 50)) is None  # the oldest went first


def test_per_channel_and_oversized_bodies_are_not_kept() -> None:
    bodies = PageBodies(max_bytes=4_000, per_channel=2)
    for after in range(5):
        bodies.put("c", 1, (after, 50), b"y" * 10)
    assert bodies.bytes == 20
    bodies.put("d", 1, (0, 50), b"z" * 1_001)  # over a quarter of the budget
    assert bodies.get("d", 1, (0, 50)) is None
    assert bodies.bytes == 20
