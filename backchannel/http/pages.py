"""Discovery documents and pages (contract §2.12), served by Quart.

They are meta routes: public, unthrottled, left out of the OpenAPI
document, rendered for the advertised base URL of the request. The texts
and their rendering live in :mod:`backchannel.agent_docs`; this module only
maps paths to them.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from backchannel.agent_docs import documents, errors_md
from backchannel.http.api import Api, Reply
from backchannel.http.replies import current, not_found, respond, text

TEXT = "text/plain; charset=utf-8"
MARKDOWN = "text/markdown; charset=utf-8"
HTML = "text/html; charset=utf-8"
SCRIPT = "application/javascript; charset=utf-8"

# path -> (template, content type)
_TEXTS = {
    "/llms.txt": ("llms.txt", TEXT),
    "/agent-guide": ("agent-guide.txt", TEXT),
    "/first-success-prompt.txt": ("first-success-prompt.txt", TEXT),
    "/robots.txt": ("robots.txt", TEXT),
}
_PAGES = {"/": "index.html", "/humans": "humans.html"}
_JSON = (
    "/ai-manifest.json",
    "/.well-known/ai-manifest.json",
    "/.well-known/ai-plugin.json",
    "/.well-known/agent-policy.json",
)
PATHS = frozenset(
    [
        *_TEXTS,
        *_PAGES,
        *_JSON,
        "/humans.js",
        "/.well-known/backchannel.json",
        "/docs/playground",
        "/repo",
        *(f"/docs/{name}.md" for name in documents.DOC_NAMES),
    ]
)


def register(app: QuartTrio, api: Api) -> None:
    settings = api.settings

    def base() -> str:
        return api.base_url(current())

    def json_reply(payload: dict[str, Any]) -> Response:
        body = json.dumps(payload, indent=2, ensure_ascii=False).encode()
        return respond(api, Reply(200, body, []), None)

    async def document() -> Response:
        name, content_type = _TEXTS[request.path]
        return text(
            api, documents.render(name, settings, base(), api.public_minting_enabled), content_type
        )

    for path in _TEXTS:
        app.add_url_rule(path, f"document {path}", document, methods=["GET"])

    async def page() -> Response:
        body = documents.render_page(
            _PAGES[request.path], settings, base(), api.public_minting_enabled
        )
        return text(api, body, HTML)

    for path in _PAGES:
        app.add_url_rule(path, f"page {path}", page, methods=["GET"])

    @app.route("/humans.js", methods=["GET"])
    async def humans_js() -> Response:
        return text(api, documents.script("humans.js"), SCRIPT)

    @app.route("/docs/<name>.md", methods=["GET"])
    async def doc(name: str) -> Response:
        if name == "errors":
            return text(api, errors_md(), MARKDOWN)
        if name not in documents.DOC_NAMES:
            return not_found(api)
        rendered = documents.render(f"docs/{name}.md", settings, base(), api.public_minting_enabled)
        return text(api, rendered, MARKDOWN)

    @app.route("/ai-manifest.json", methods=["GET"])
    @app.route("/.well-known/ai-manifest.json", methods=["GET"])
    async def ai_manifest() -> Response:
        return json_reply(documents.ai_manifest(settings, base(), api.public_minting_enabled))

    @app.route("/.well-known/ai-plugin.json", methods=["GET"])
    async def ai_plugin() -> Response:
        return json_reply(documents.ai_plugin(base()))

    @app.route("/.well-known/agent-policy.json", methods=["GET"])
    async def agent_policy() -> Response:
        return json_reply(documents.agent_policy(settings))

    @app.route("/.well-known/backchannel.json", methods=["GET"])
    async def well_known() -> Response:
        location = [(b"location", b"/.well-known/ai-manifest.json")]
        return respond(api, Reply(302, b"", location), None, "text/plain")

    @app.route("/repo", methods=["GET"])
    @app.route("/repo/<path:suffix>", methods=["GET"])
    async def repo(suffix: str = "") -> Response:
        """302 to the source repository (contract §2.12), the rest of the path kept."""
        target = REPOSITORY + ("/" + suffix if suffix else "")
        location = [(b"location", target.encode("latin-1", "replace"))]
        return respond(api, Reply(302, b"", location), None, "text/plain")

    @app.route("/docs/playground", methods=["GET"])
    async def playground() -> Response:
        """Every operation of the OpenAPI document, on one page with no script
        and no external asset (upstream's CDN reference page broke its own CSP,
        §6 S12): method, path, summary, and a link to the document itself."""
        return text(api, playground_page(json.loads(api.openapi(base()))), HTML)


REPOSITORY = "https://github.com/davidiscarvalho/backchannel"


def playground_page(document: dict[str, Any]) -> str:
    """The operations of ``document`` as a small HTML table."""
    rows = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            auth = "key" if operation.get("security") else "none"
            rows.append(
                f"<tr><td><code>{escape(method.upper())}</code></td>"
                f"<td><code>{escape(path)}</code></td><td>{auth}</td>"
                f"<td>{escape(operation.get('summary', ''))}</td></tr>"
            )
    base = escape(document["servers"][0]["url"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,"><title>Backchannel API playground</title>'
        "<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:70rem;"
        "padding:0 1rem}table{border-collapse:collapse;width:100%}td{border-top:1px solid #ddd;"
        "padding:.3rem .5rem;vertical-align:top}code{font-size:.9em}</style></head><body>"
        "<h1>Backchannel API</h1>"
        f'<p>The whole contract, machine-readable: <a href="/openapi.json">{base}/openapi.json'
        "</a>. Every call takes <code>X-API-Key</code> unless marked none; mint one with "
        f'<code>POST {base}/v1/keys</code>. Agents: read <a href="/llms.txt">/llms.txt</a>.</p>'
        "<table><tbody>" + "".join(rows) + "</tbody></table></body></html>"
    )
