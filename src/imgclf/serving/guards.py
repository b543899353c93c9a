"""Who may talk to the service from a browser: a Host allow-list and a same-origin rule for writes.

Without an API key any web page the user visits could otherwise use the service in two ways:
- a cross-site form POST to /feedback stores images under any label, and `imgclf update
  --from-inbox` trains on them (CSRF); a cross-site page could also keep it busy with scans of
  seconds each. So writes, /scan and /explain must come from the service's own page or from a
  non-browser client: a request whose Origin names another site, or whose Sec-Fetch-Site says
  cross-site, is refused with 403. curl and scripts send neither header and pass.
- DNS rebinding: a page on attacker.example re-points its name to 127.0.0.1 and then talks to the
  service as "same origin", with Host: attacker.example. So only known Host names are served
  (421 otherwise): localhost, the bound host, --allowed-host names, and any IP literal (an IP
  cannot be rebound: a page whose origin is the IP is the service's own).
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from fastapi import Request

from imgclf.serving.limits import Rejected

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(host: str) -> str:
    """The name part of a Host header value: 'Example.org.:8000' -> 'example.org', '[::1]:80' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") == 1 else host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class HostAllowList:
    """Pure ASGI middleware: a request whose Host header names a host not served here gets 421."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app = app
        self.any = "*" in allowed
        self.allowed = LOOPBACK_NAMES | {host_name(h) for h in allowed}

    def allows(self, host: str | None) -> bool:
        # No Host at all: HTTP/1.0 from a script; every browser sends one.
        if self.any or host is None:
            return True
        name = host_name(host)
        return name in self.allowed or _is_ip(name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if self.allows(host):
            return await self.app(scope, receive, send)
        body = json.dumps(
            {
                "detail": f"Host {host[:100]!r} is not served here: start the service with "
                f"--allowed-host {host_name(host)[:100]} to allow it"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def same_origin_only(cors: tuple[str, ...]):
    """A route dependency for writes on a keyless service: browsers must post from this service's
    own page (or from an origin given with --cors); clients that send no Origin pass."""
    trusted = set(cors)

    async def check_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None:
            if "*" in trusted or origin in trusted:
                return
            # The page's origin is scheme://host[:port] as the browser reached it: its Host header.
            # An opaque origin ("null": a sandboxed frame, a file:// page) is never ours.
            if origin != "null" and urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower():
                return
            raise Rejected(
                403,
                f"cross-site request refused: Origin {origin[:100]!r} is not this service. Post from "
                "the service's page, or start it with --api-key (or --cors ORIGIN for a trusted page)",
                "cross_site",
            )
        if request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
            raise Rejected(
                403,
                "cross-site request refused (Sec-Fetch-Site): post from the service's page, or start it with --api-key",
                "cross_site",
            )

    return check_origin
