"""Data sets and memory probes for the ``scale`` scenario of ``tools/bench.py``.

A data set is a directory written by ``tools/gen_data.py`` (``--dir DIR
--messages N --channels C``: one snapshot, what a clean shutdown leaves).
The scenario starts servers on it again and again; :class:`DataSet`
remembers what the generator wrote and puts the directory back exactly so
after each server (files the server added are removed, files it appended
to are cut back), so every restart loads the same data and nothing is
generated twice.

The per-channel and per-message probes are the other engineers'
``tools/scale_probe.py`` (``idle_channel_cost(n)``, ``live_message_cost(n)``,
each returning a dict of figures); each runs in its own process, so its
allocations never reach the benchmark. Until a probe exists,
:func:`run_probe` says so and the scenario reports the figure as not yet
available.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
GENERATOR = TOOLS / "gen_data.py"
PROBE = TOOLS / "scale_probe.py"
GEN_TIMEOUT_S = 3600.0
PROBE_TIMEOUT_S = 1800.0


class Unavailable(RuntimeError):
    """A tool the scenario needs does not exist yet; the message says which."""


class DataSet:
    """A generated data directory that can be put back as generated."""

    def __init__(self, directory: Path, channels: int, messages: int, seconds: float) -> None:
        self.directory = directory
        self.channels = channels
        self.messages = messages
        self.seconds = seconds  # how long the generator took
        self._files = self._listing()

    @classmethod
    def generate(cls, channels: int, messages: int, python: str = sys.executable) -> DataSet:
        """Run ``gen_data.py`` into a fresh temporary directory.

        Raises:
            Unavailable: ``tools/gen_data.py`` does not exist.
            RuntimeError: the generator failed or timed out.
        """
        if not GENERATOR.exists():
            raise Unavailable("not yet available (tools/gen_data.py does not exist)")
        directory = Path(tempfile.mkdtemp(prefix=f"bench-scale-{channels}c-{messages}m-"))
        cmd = [python, str(GENERATOR), "--dir", str(directory)]
        cmd += ["--messages", str(messages), "--channels", str(channels)]
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, capture_output=True, text=True, timeout=GEN_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"gen_data.py did not finish in {GEN_TIMEOUT_S:.0f} s") from exc
        if proc.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"gen_data.py exited {proc.returncode}: {proc.stderr[-2000:]}")
        return cls(directory, channels, messages, time.monotonic() - started)

    def _listing(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in self.directory.iterdir() if p.is_file()}

    def restore(self) -> None:
        """Put the directory back as the generator left it (call with no server running).

        Raises:
            RuntimeError: a generated file is gone or shorter (the server rewrote it).
        """
        for path in self.directory.iterdir():
            if path.name not in self._files:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        for name, size in self._files.items():
            path = self.directory / name
            if not path.exists() or path.stat().st_size < size:
                raise RuntimeError(f"{name} was removed or rewritten by the server")
            if path.stat().st_size > size:
                os.truncate(path, size)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def run_probe(function: str, n: int, python: str = sys.executable) -> dict[str, float]:
    """``scale_probe.<function>(n)`` in a fresh process; its numeric figures.

    Raises:
        Unavailable: ``tools/scale_probe.py`` or the function does not exist yet.
        RuntimeError: the probe failed.
    """
    if not PROBE.exists():
        raise Unavailable("not yet available (tools/scale_probe.py does not exist)")
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(TOOLS)!r})\n"
        "import scale_probe\n"
        f"fn = getattr(scale_probe, {function!r}, None)\n"
        "if fn is None:\n"
        "    print('MISSING'); sys.exit(0)\n"
        f"print(json.dumps(fn({n})))\n"
    )
    try:
        proc = subprocess.run(
            [python, "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{function}({n}) did not finish in {PROBE_TIMEOUT_S:.0f} s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines and lines[-1] == "MISSING":
        raise Unavailable(f"not yet available (scale_probe.{function} does not exist)")
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{function}({n}) exited {proc.returncode}: {proc.stderr[-2000:]}")
    raw: dict[str, Any] = json.loads(lines[-1])
    return {
        k: float(v)
        for k, v in raw.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and not k.startswith("site:")
    }


def mem_available_bytes() -> int | None:
    """The kernel's estimate of memory available to a new process, if known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None
