"""Who is asking, and under which name we answer: client IP and base URL.

Client IP (contract §3.17): the peer address, unless the peer is inside a
``BACKCHANNEL_TRUSTED_PROXIES`` network; then ``X-Forwarded-For`` is read
right to left and the first hop that is not itself a trusted proxy is the
client. A client can prepend anything to the header, but it cannot make its
own hop disappear: the proxy appends the address it saw, so walking from the
right never passes the real client. (Upstream trusted every peer, §6.) Any
hop that is not an IP address ends the walk at that hop: it is what the
nearest proxy we trust reported, and a junk value is no worse than the
proxy itself.

Base URL (contract §3.18): ``BACKCHANNEL_BASE_URL`` verbatim; else scheme
and host from the request (``X-Forwarded-Proto``/``-Host`` only from a
trusted proxy), a host that is not a plain ``name[:port]`` or not in
``BACKCHANNEL_ALLOWED_HOSTS`` giving way to the first allowed host, and
the public showroom when nothing else fits.
"""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv6Address

from backchannel.config import Settings
from backchannel.http.request import Request

PUBLIC_BASE_URL = "https://backchannel.oakstack.eu"
_HOST_RE = re.compile(r"^[A-Za-z0-9._-]+(:[0-9]{1,5})?$")


def _address(text: str) -> IPv4Address | IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ClientView:
    """Client IP and base URL of requests, per the settings (module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.networks = settings.trusted_networks
        self.base = settings.base_url.rstrip("/")
        self.allowed = settings.allowed_host_list
        self._trust_cache: dict[str, bool] = {}

    def trusted(self, address: str | None) -> bool:
        """Whether ``address`` is one of our trusted proxies."""
        if not self.networks or address is None:
            return False
        known = self._trust_cache.get(address)
        if known is None:
            ip = _address(address)
            known = ip is not None and any(ip in net for net in self.networks)
            if len(self._trust_cache) > 10_000:
                self._trust_cache.clear()
            self._trust_cache[address] = known
        return known

    def client_ip(self, request: Request) -> str:
        """The real client's address: what rate limits per IP count."""
        peer = request.remote_addr or "unknown"
        if not self.trusted(peer):
            return peer
        forwarded = request.text_header(b"x-forwarded-for")
        if not forwarded:
            return peer
        for hop in reversed(forwarded.split(",")):
            hop = hop.strip()
            if hop and not self.trusted(hop):
                return hop
        return peer

    def base_url(self, request: Request) -> str:
        if self.base:
            return self.base
        from_proxy = self.trusted(request.remote_addr)
        host = request.text_header(b"x-forwarded-host") if from_proxy else None
        host = (host or "").split(",")[0].strip() or request.text_header(b"host") or ""
        scheme = request.scheme
        if from_proxy:
            proto = (request.text_header(b"x-forwarded-proto") or "").split(",")[0].strip()
            if proto in ("http", "https"):
                scheme = proto
        valid = bool(host) and _HOST_RE.match(host) is not None
        if self.allowed:
            name = host.lower()
            listed = name in self.allowed or name.split(":", 1)[0] in self.allowed
            if not valid or not listed:
                host = self.allowed[0]
        elif not valid:
            return PUBLIC_BASE_URL
        return f"{scheme}://{host}"
