"""Snapshot files: atomic write, verification on load, listing and pruning."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from backchannel.storage.snapshot import (
    SNAPSHOT_HEADER_SIZE,
    CorruptSnapshot,
    list_snapshots,
    load_snapshot,
    prune_snapshots,
    snapshot_name,
    write_snapshot,
)

PAYLOAD = msgpack.packb({"channels": {"c1": [1, 2, 3]}, "blob": b"\x00" * 50}, use_bin_type=True)


def test_header_size_matches_format() -> None:
    assert struct.calcsize("<6sB1xQQI") == SNAPSHOT_HEADER_SIZE == 28


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path / "data", 42, PAYLOAD)
    assert path.name == snapshot_name(42) == "snapshot-00000000000000000042.bcsnap"
    assert path.stat().st_size == SNAPSHOT_HEADER_SIZE + len(PAYLOAD)
    seq, payload = load_snapshot(path)
    assert (seq, bytes(payload)) == (42, PAYLOAD)
    assert list((tmp_path / "data").glob("*.tmp")) == []


def test_empty_payload_round_trips(tmp_path: Path) -> None:
    seq, payload = load_snapshot(write_snapshot(tmp_path, 0, b""))
    assert (seq, bytes(payload)) == (0, b"")


def test_failed_write_removes_temp_and_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_snapshot(tmp_path, 7, PAYLOAD)
    assert list(tmp_path.iterdir()) == []


def _damage(path: Path, offset: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: _damage(p, 0, b"XX"), "bad magic"),
        (lambda p: _damage(p, 6, b"\x09"), "unsupported version"),
        (lambda p: os.truncate(p, SNAPSHOT_HEADER_SIZE + 3), "payload bytes"),
        (lambda p: os.truncate(p, 10), "shorter than the header"),
        (lambda p: p.write_bytes(p.read_bytes() + b"extra"), "payload bytes"),
        (lambda p: _damage(p, SNAPSHOT_HEADER_SIZE + 5, b"\xff"), "CRC"),
        (lambda p: _damage(p, 8, struct.pack("<Q", 43)), "file name"),
    ],
)
def test_corruption_is_detected(
    tmp_path: Path, mutate: Callable[[Path], object], reason: str
) -> None:
    path = write_snapshot(tmp_path, 42, PAYLOAD)
    mutate(path)
    with pytest.raises(CorruptSnapshot, match=reason) as info:
        load_snapshot(path)
    assert info.value.path == path
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_list_newest_first_and_ignore_others(tmp_path: Path) -> None:
    assert list_snapshots(tmp_path / "absent") == []
    for seq in (5, 100, 20):
        write_snapshot(tmp_path, seq, PAYLOAD)
    (tmp_path / "snapshot-1.bcsnap").write_text("not ours")
    (tmp_path / (snapshot_name(500) + ".tmp")).write_bytes(b"half")
    assert [p.name for p in list_snapshots(tmp_path)] == [
        snapshot_name(100),
        snapshot_name(20),
        snapshot_name(5),
    ]


def test_prune_keeps_newest_and_removes_temp_files(tmp_path: Path) -> None:
    for seq in (1, 2, 3, 4):
        write_snapshot(tmp_path, seq, PAYLOAD)
    leftover = tmp_path / (snapshot_name(9) + ".tmp")
    leftover.write_bytes(b"half-written")
    unrelated = tmp_path / "notes.tmp"
    unrelated.write_text("keep me")
    removed = prune_snapshots(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == sorted(
        [snapshot_name(1), snapshot_name(2), leftover.name]
    )
    assert [p.name for p in list_snapshots(tmp_path)] == [snapshot_name(4), snapshot_name(3)]
    assert unrelated.exists()
    assert prune_snapshots(tmp_path, keep=2) == []
    assert prune_snapshots(tmp_path, keep=1) == [tmp_path / snapshot_name(3)]
    assert [p.name for p in list_snapshots(tmp_path)] == [snapshot_name(4)]
    with pytest.raises(ValueError, match="keep"):
        prune_snapshots(tmp_path, keep=0)
