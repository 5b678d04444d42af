"""Frame layout: round trip, torn tails at every offset, CRC damage."""

from __future__ import annotations

import struct
import zlib

import pytest

from backchannel.storage.framing import (
    FORMAT_VERSION,
    FRAME_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    SegmentHeaderError,
    decode_frames,
    decode_segment_header,
    encode_frame,
    encode_segment_header,
)

PAYLOADS = [b"\x93\x01\x02\x03", b"x" * 300, b"\xc0"]


def test_sizes_match_struct_formats() -> None:
    assert struct.calcsize("<II") == FRAME_HEADER_SIZE == 8
    assert struct.calcsize("<8sB3x") == SEGMENT_HEADER_SIZE == 12
    assert len(encode_segment_header()) == SEGMENT_HEADER_SIZE


def test_frame_layout_is_length_crc_payload() -> None:
    frame = encode_frame(b"abc")
    assert frame == struct.pack("<II", 3, zlib.crc32(b"abc")) + b"abc"


def test_round_trip_with_offsets() -> None:
    prefix = encode_segment_header()
    data = prefix + b"".join(encode_frame(p) for p in PAYLOADS)
    scan = decode_frames(data, SEGMENT_HEADER_SIZE)
    assert scan.payloads == PAYLOADS
    assert scan.offsets == [12, 12 + 8 + 4, 12 + 8 + 4 + 8 + 300]
    assert scan.valid_end == len(data)
    assert scan.problem is None
    assert scan.problem_offset is None


def test_empty_data_is_clean() -> None:
    scan = decode_frames(b"", 0)
    assert (scan.payloads, scan.valid_end, scan.problem) == ([], 0, None)


def test_start_outside_data_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        decode_frames(b"abc", 4)


def test_empty_payload_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_frame(b"")


def _torn_cases() -> list[int]:
    head = b"".join(encode_frame(p) for p in PAYLOADS[:-1])
    last = encode_frame(b"last record payload")
    return list(range(len(head), len(head) + len(last)))


@pytest.mark.parametrize("cut", _torn_cases())
def test_torn_tail_at_every_byte_of_last_record(cut: int) -> None:
    head = b"".join(encode_frame(p) for p in PAYLOADS[:-1])
    data = (head + encode_frame(b"last record payload"))[:cut]
    scan = decode_frames(data, 0)
    assert scan.payloads == PAYLOADS[:-1]
    assert scan.valid_end == len(head)
    if cut == len(head):
        assert scan.problem is None
    else:
        assert scan.problem == "torn"
        assert scan.problem_offset == len(head)


@pytest.mark.parametrize("flip", [FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + 2, 4, 7])
def test_crc_mismatch_stops_scan(flip: int) -> None:
    first, second, third = (encode_frame(p) for p in PAYLOADS)
    damaged = bytearray(second)
    damaged[flip] ^= 0x40
    data = first + bytes(damaged) + third
    scan = decode_frames(data, 0)
    assert scan.payloads == PAYLOADS[:1]
    assert scan.problem == "crc"
    assert scan.problem_offset == scan.valid_end == len(first)


def test_length_damage_that_overruns_is_torn() -> None:
    frame = bytearray(encode_frame(b"abc"))
    frame[0] = 0xFF
    scan = decode_frames(bytes(frame), 0)
    assert (scan.problem, scan.problem_offset, scan.payloads) == ("torn", 0, [])


def test_zero_filled_tail_is_not_a_valid_frame() -> None:
    good = encode_frame(b"abc")
    scan = decode_frames(good + bytes(64), 0)
    assert scan.payloads == [b"abc"]
    assert (scan.problem, scan.problem_offset) == ("crc", len(good))


def test_segment_header_round_trip_and_errors() -> None:
    header = encode_segment_header()
    assert header[:8] == SEGMENT_MAGIC
    assert decode_segment_header(header) == FORMAT_VERSION
    with pytest.raises(SegmentHeaderError, match="magic"):
        decode_segment_header(b"NOTALOG\x00" + header[8:])
    with pytest.raises(SegmentHeaderError, match="version"):
        decode_segment_header(encode_segment_header(version=99))
    with pytest.raises(ValueError, match="12 bytes"):
        decode_segment_header(header[:5])
