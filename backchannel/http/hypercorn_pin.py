"""Which hypercorn our patches were validated on, and which of them are installed.

``hypercorn_tuning`` and ``hypercorn_recycle`` reach into hypercorn 0.18's
private internals. :func:`check_hypercorn` runs before any of them is
applied and refuses another release, or one missing any attribute a patch
replaces, so raising hypercorn's pin can never leave the server
half-tuned: re-validate the patches, or serve on stock hypercorn with
``BACKCHANNEL_HTTP_TUNING=off``. :func:`hypercorn_patched` lists what this
process installed.
"""

from __future__ import annotations

import importlib.metadata
from typing import Final

from backchannel.http.hypercorn_tuning import _ReadTimeoutOnly

__all__ = ["VALIDATED_HYPERCORN", "check_hypercorn", "hypercorn_patched", "installed_hypercorn"]

VALIDATED_HYPERCORN: Final = "0.18.0"
"""The hypercorn release every patch here and in ``hypercorn_recycle`` was validated on."""


def installed_hypercorn() -> str:
    """The installed hypercorn version."""
    return importlib.metadata.version("hypercorn")


def _patch_targets() -> list[tuple[object, str]]:
    from hypercorn import config
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import HTTPStream
    from hypercorn.trio import tcp_server

    return [
        (tcp_server, "TrioSingleTask"),
        (tcp_server, "MAX_RECV"),
        (tcp_server.TCPServer, "_read_data"),
        (HTTPStream, "app_send"),
        (HTTPStream, "handle"),
        (H11Protocol, "stream_send"),
        (H11Protocol, "_send_error_response"),
        (H11Protocol, "_maybe_recycle"),
        (H11Protocol, "_handle_events"),
        (H11Protocol, "_close_stream"),
        (config, "format_date_time"),
    ]


def check_hypercorn() -> None:
    """Refuse, before anything is patched, a hypercorn the patches do not fit.

    Raises:
        RuntimeError: another hypercorn version, or a patched attribute is
            gone; the message says to re-validate or switch tuning off.
    """
    advice = (
        "re-validate backchannel/http/hypercorn_tuning.py and hypercorn_recycle.py "
        "against it, or serve on stock hypercorn with BACKCHANNEL_HTTP_TUNING=off"
    )
    version = installed_hypercorn()
    if version != VALIDATED_HYPERCORN:
        raise RuntimeError(
            f"hypercorn {version} is not {VALIDATED_HYPERCORN}, the release the tuning "
            f"was validated on: {advice}"
        )
    missing = [f"{getattr(o, '__name__', o)}.{n}" for o, n in _patch_targets() if not hasattr(o, n)]
    if missing:
        raise RuntimeError(f"hypercorn changed ({', '.join(missing)} gone): {advice}")


def hypercorn_patched() -> list[str]:
    """Names of our patches installed in this process (empty: stock hypercorn)."""
    from hypercorn import config
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import HTTPStream
    from hypercorn.trio import tcp_server

    found = {
        "read timeout only": getattr(tcp_server, "TrioSingleTask", None) is _ReadTimeoutOnly,
        "idle deadline in reads": getattr(tcp_server.TCPServer._read_data, "idle_deadline", False),
        "whole responses": getattr(HTTPStream.app_send, "whole_responses", False),
        "date once a second": getattr(getattr(config, "format_date_time", None), "cached", False),
        "closed streams reported": getattr(HTTPStream, "_bc_reports_close", False),
        "safe recycle": getattr(H11Protocol._maybe_recycle, "safe", False),
        "error envelope": getattr(H11Protocol._send_error_response, "envelope", False),
    }
    return [name for name, present in found.items() if present]
