"""Durable storage: log framing, log segments, snapshots and recovery.

Knows bytes and files, not HTTP or channel semantics. ``framing`` is pure;
``log`` and ``snapshot`` do blocking file I/O (call them from worker
threads); ``recovery`` combines them into "newest valid snapshot plus the
log records after it".
"""
