"""Deadlines for clients that send slowly or stop halfway, so they cannot hold connections forever.

uvicorn closes an idle keep-alive connection, but not one that sent part of its headers (its
keep-alive timer stops at the first byte), nor a request whose body stops short of its
Content-Length (the route waits for the rest). Two deadlines, both `read_timeout_s`:
- headers: from a connection's start, or the end of its previous answer, the next request's
  headers must be complete in time, and within MAX_HEADER_BYTES; else the connection is closed.
  This needs the HTTP protocol itself (`protocol_class`): an ASGI app sees a request only once
  its headers are complete.
- body: each wait for more of the body is bounded (`BodyTimeout`); a stalled upload gets 408.
uvicorn's `limit_concurrency` (ServeSettings.max_connections) bounds how many connections there
are at all: past it new requests get 503.
"""

from __future__ import annotations

import asyncio

from imgclf.serving.limits import Rejected

MAX_HEADER_BYTES = 64 * 1024  # browsers send ~1-2 kB; h11's own limit is 16 kB, httptools has none


def protocol_class(read_timeout_s: float) -> type:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with the header deadline."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return type("HeaderDeadlineProtocol", (_HeaderDeadline, AutoHTTPProtocol), {"header_timeout": read_timeout_s})


class _HeaderDeadline:
    """Mixed into uvicorn's protocol. Between requests (no request cycle, or the last one
    answered) the connection is waiting for headers: that wait is timed and its bytes counted."""

    header_timeout = 15.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_headers():  # still, after these bytes: count them against the limit
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                self.transport.close()

    def _awaiting_headers(self) -> bool:
        # uvicorn makes a cycle when a request's headers are complete; it is done once answered.
        cycle = self.cycle
        return cycle is None or cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        timer = getattr(self, "_deadline", None)
        if timer is not None:
            timer.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        # A request under way (headers complete) is the body deadline's and the route's business.
        if self._awaiting_headers() and not self.transport.is_closing():
            self.transport.close()


class BodyTimeout:
    """Pure ASGI middleware: each wait for the next part of a request body is bounded by
    `seconds`; a body that stalls gets 408 and the connection is closed. Once the body is
    complete, later waits (for a disconnect) are not timed."""

    def __init__(self, app, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"complete": False}

        async def timed_receive():
            if state["complete"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except asyncio.TimeoutError:
                raise Rejected(
                    408,
                    f"the request body stalled: nothing arrived for {self.seconds:g} s",
                    "timeout",
                    headers={"Connection": "close"},
                ) from None
            state["complete"] = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)
