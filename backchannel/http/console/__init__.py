"""``/console``: one page to watch a channel live and act on it (issue 13).

For demo and teaching instances. Three static files of this package, served
as they are: the page, its script and its stylesheet. No build step, no
external asset, no inline script or style, so the page runs under the same
strict CSP as every answer (``script-src 'self'``). Like the discovery pages
these are meta routes: public, unthrottled, left out of the OpenAPI document.

Guarantees the script keeps (tests/http/test_console.py drives it in
headless Chromium):
    - The key is kept in ``sessionStorage`` and sent only in the
      ``X-API-Key`` header; no form field has a ``name``, so even a form
      submitted without the script puts nothing in a URL.
    - The stream is read with ``fetch`` (``EventSource`` cannot send a
      header) and resumed with ``Last-Event-ID`` after a break.
"""

from __future__ import annotations

from importlib import resources

from quart import Response
from quart_trio import QuartTrio

from backchannel.http.api import Api
from backchannel.http.replies import text

# path -> (file of this package, content type)
ASSETS = {
    "/console": ("console.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "application/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}
PATHS = frozenset(ASSETS)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def register(app: QuartTrio, api: Api) -> None:
    """Serve the console's three files, read once at startup."""
    bodies = {path: (_read(name), kind) for path, (name, kind) in ASSETS.items()}

    def serve(path: str) -> None:
        body, kind = bodies[path]

        async def asset() -> Response:
            return text(api, body, kind)

        app.add_url_rule(path, f"console {path}", asset, methods=["GET"])

    for path in ASSETS:
        serve(path)
