"""A small keep-alive HTTP/1.1 client for the services' own plain-``http://`` calls.

Why hand-written: the embedded cloud runs every service on one event loop, and a boot makes about
eleven service-to-service requests on it. aiohttp's client is general (proxies, TLS, redirects,
cookies, streaming, trace hooks, retries); its per-request machinery (ClientRequest,
ClientResponse, StreamReader, connector bookkeeping) was the largest single share of the loop's CPU.
These calls need none of that: a request is a few headers and a small JSON body to a loopback
server, the answer a small body. This module writes the request in one ``transport.write`` on an
:class:`asyncio.Protocol` and parses the answer with ``httptools`` (llhttp, the parser uvicorn
uses), on a bounded per-host pool of keep-alive connections. ``bench/http_client.py`` measures it
against aiohttp; ``tests/unit/test_http1_client.py`` compares it with aiohttp on the wire, and
``test_http1_client_edges.py`` at HTTP/1.1's edges (bytes after an answer, trailers, cut bodies).

It sends exactly what aiohttp would for the same call (``RestClient``'s session: the same header
order, ``Host`` first, ``Content-Length`` then ``Content-Type``, ``Content-Length: 0`` for a
body-less POST/PUT/PATCH/DELETE, ``application/octet-stream`` for a POST/PUT/PATCH naming no type)
and raises aiohttp's exception types, so
:data:`harness.services.rest.HttpError` and the spans' ``error.type`` are unchanged. Anything else
(https, HEAD, proxies) stays with aiohttp: :func:`handles` says which requests this client takes.
"""

from __future__ import annotations

import asyncio
import collections
import time
import zlib
from typing import Any, Iterable

import aiohttp
import httptools
from aiohttp import http_exceptions
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

#: Methods whose request carries ``Content-Length: 0`` when it has no body (as aiohttp does).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Methods given ``Content-Type: application/octet-stream`` when they name none (as aiohttp does).
_POST_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: Methods retried once on a fresh connection when a reused one turns out closed (RFC 9112 9.3.1;
#: aiohttp's IDEMPOTENT_METHODS).
_IDEMPOTENT = frozenset({"GET", "OPTIONS", "TRACE", "PUT", "DELETE"})

#: Seconds an idle connection is kept for reuse (aiohttp's keepalive_timeout).
KEEPALIVE_S = 15.0


def handles(url: URL, method: str) -> bool:
    """True when this client takes the request: plain http with a host, and a method whose
    answer's framing llhttp knows without being told the request (not HEAD, not CONNECT)."""
    return url.scheme == "http" and bool(url.raw_host) and method not in ("HEAD", "CONNECT")


class _BadAnswer(Exception):
    """A malformed answer (raised to the caller as aiohttp's ClientResponseError, status 400)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight (no pipelining)."""

    def __init__(self, pool: "_HostPool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False  # (or half-closed by the server): no request goes out on it
        self.reused = False  # has answered a request before (a closed peer is then retried)
        self.counted = True  # holds one of its pool's places until freed (HostPool.free)
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.started = False  # some of the answer arrived
        self.complete = False
        self.headers_done = False
        self.keep_alive = False

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes on an idle connection: nothing asked for them
            self.close()
            return
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:  # a malformed answer: this connection is done
            self._fail(_BadAnswer(f"Invalid HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        self.closed = True  # no request goes out on it any more (connection_lost() frees it)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.free(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and not self._framed():
            # an answer delimited by the connection's end (neither Content-Length nor chunked)
            self.complete = True
            waiter.set_result(None)
        elif self.headers_done:  # the body cut short, as aiohttp's payload parser reports it
            message = f"Response payload is not completed: {self._shortfall()!r}"
            waiter.set_exception(aiohttp.ClientPayloadError(message if exc is None else f"{message}. {exc!r}"))
        elif isinstance(exc, OSError):
            waiter.set_exception(aiohttp.ClientOSError(*exc.args))
        elif exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_exception(aiohttp.ServerDisconnectedError())

    # --- httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:  # more after the whole answer (nothing asked for it): not reusable
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:  # (a chunked body's trailers are not headers, as for aiohttp)
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # (llhttp forgets it once the body ends)
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self._reset()
            self.started = True
            return
        self.complete = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # ---
    def _framed(self) -> bool:
        return any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.headers) \
            or self.status in (204, 304)

    def _shortfall(self) -> Exception:
        """What aiohttp's parser says of a body the connection's end cut short."""
        for name, value in self.headers:
            if name.lower() == b"content-length":
                got = sum(map(len, self.body))
                return http_exceptions.ContentLengthError(
                    f"Not enough data to satisfy content length header (received {got} of {int(value)} bytes).")
        return http_exceptions.TransferEncodingError("Not enough data to satisfy transfer length header.")

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    async def exchange(self, request: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request and wait for its whole answer."""
        self._reset()
        self.waiter = self.pool.loop.create_future()
        self.transport.write(request)  # type: ignore[union-attr]
        try:
            await self.waiter
        finally:
            self.waiter = None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        return self.status, self.headers, body


class _HostPool:
    """The keep-alive connections to one host:port, at most ``limit`` open at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, limit: int,
                 connect_timeout: float | None) -> None:
        self.loop, self.host, self.port, self.limit = loop, host, port, limit
        self.connect_timeout = connect_timeout
        self.idle: list[_Connection] = []
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self.closed = False  # Http1Client.close(): connections released from now on are closed

    async def acquire(self, url: URL) -> _Connection:
        while True:
            now = time.monotonic()
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed and now - conn.idle_since < KEEPALIVE_S:
                    return conn
                conn.close()  # (connection_lost frees its place)
            if self.open < self.limit:
                self.open += 1
                conn = _Connection(self)
                try:
                    await self._connect(conn, url)
                except BaseException:
                    conn.close()  # (connected already when a cancellation lands just after)
                    self.free(conn)
                    raise
                return conn
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                conn = await waiter
            except BaseException:  # cancelled: pass on what we were given meanwhile
                if waiter.done() and not waiter.cancelled():
                    handed = waiter.result()
                    if handed is not None:
                        self.release(handed, True)
                    else:
                        self._wake(None)
                raise
            if conn is not None and not conn.closed:
                return conn  # handed over by release(); otherwise a place freed up: try again
            # (one the server closed meanwhile frees its place when the loop reports it lost)

    async def _connect(self, conn: _Connection, url: URL) -> None:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation (the
            # caller's timeout, sent once) that lands as the connection completes
            async with asyncio.timeout(self.connect_timeout):
                await self.loop.create_connection(lambda: conn, self.host, self.port)
        except OSError as exc:
            if isinstance(exc, TimeoutError) and exc.errno is None:  # ours, not connect(2)'s ETIMEDOUT
                raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {url}") from exc
            key = ConnectionKey(self.host, self.port, False, True, None, None, None)
            raise aiohttp.ClientConnectorError(key, exc) from exc

    def release(self, conn: _Connection, reusable: bool) -> None:
        if not reusable or conn.closed or self.closed:
            conn.close()  # connection_lost() (soon) frees its place and wakes a waiter
            return
        conn.reused = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def free(self, conn: _Connection) -> None:
        """A connection closed (either side) or never opened: its place is free (once)."""
        if not conn.counted:
            return
        conn.counted = False
        self.open -= 1
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        self._wake(None)

    def _wake(self, conn: _Connection | None) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return

    def close(self) -> None:
        self.closed = True
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()


class Http1Client:
    """Keep-alive HTTP/1.1 over plain TCP, with aiohttp's wire format and exception types.

    ``default_headers`` come first after ``Host`` (a request's own header of the same name
    replaces one in place, as aiohttp's session headers do); ``limit_per_host`` bounds the open
    connections to one host:port; ``connect_timeout`` bounds opening one (aiohttp's
    ``sock_connect``). The whole request's timeout is the caller's (``RequestTimeouts``): a
    request cancelled midway closes its connection.
    """

    def __init__(self, *, default_headers: Iterable[tuple[str, str]] = (), limit_per_host: int = 256,
                 connect_timeout: float | None = 5.0) -> None:
        self._defaults = list(default_headers)
        self._default_names = {name.lower(): i for i, (name, _) in enumerate(self._defaults)}
        self._default_block = "".join(f"{name}: {value}\r\n" for name, value in self._defaults)
        if self._default_block.count("\n") != len(self._defaults) or "\r\r" in self._default_block:
            self._merged(dict(self._defaults))  # raises, naming the header
        self._hosts: dict[tuple[str | None, int | None], str] = {}  # Host headers by host and port
        self.limit_per_host, self.connect_timeout = limit_per_host, connect_timeout
        self._pools: dict[tuple[str, int], _HostPool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def encode(self, method: str, url: URL, headers: Any, body: bytes | None,
               content_type: str | None = None) -> bytes:
        """The request's bytes, as aiohttp writes them for the same call."""
        if headers and not self._default_names.keys().isdisjoint(map(str.lower, headers)):
            lines = self._merged(headers)  # a request header replaces a default one in place
            block = "".join([f"{name}: {value}\r\n" for name, value in lines])
            has: Any = {name.lower() for name, _ in lines}
        elif headers:  # the usual case: the defaults' prebuilt block, then the request's own
            extra = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
            if extra.count("\n") != len(headers) or extra.count("\r") != len(headers):
                self._merged(headers)  # raises, naming the header
            block = self._default_block + extra
            has = {name.lower() for name in headers} if body is not None or method in _BODY_METHODS else ()
        else:
            block, has = self._default_block, ()
        tail = []
        if body is not None:
            if "content-length" not in has:
                tail.append(f"Content-Length: {len(body)}\r\n")
            if content_type is not None and "content-type" not in has:
                tail.append(f"Content-Type: {content_type}\r\n")
        elif method in _BODY_METHODS and "content-length" not in has:
            tail.append("Content-Length: 0\r\n")
        if method in _POST_METHODS and content_type is None and "content-type" not in has:
            tail.append("Content-Type: application/octet-stream\r\n")  # aiohttp's default
        head = f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {self._host(url)}\r\n{block}{''.join(tail)}\r\n"
        data = head.encode("utf-8")
        return data + body if body else data

    def _merged(self, headers: Any) -> list[tuple[str, str]]:
        """The default headers with the request's (a same-named one replacing a default in
        place, the others after them, in order); a header holding CR or LF is refused."""
        lines = list(self._defaults)
        names = self._default_names
        added: dict[str, int] = {}
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"Newline or carriage return character detected in HTTP header {name!r}")
            key = name.lower()
            at = names.get(key, added.get(key))
            if at is None:
                added[key] = len(lines)
                lines.append((name, value))
            else:
                lines[at] = (lines[at][0], value)
        return lines

    def _host(self, url: URL) -> str:
        """The ``Host`` header: host, and port unless the scheme's default (as aiohttp)."""
        key = (url.raw_host, url.port)
        host = self._hosts.get(key)
        if host is None:
            host = url.raw_host or ""
            if ":" in host:
                host = f"[{host}]"  # an IPv6 literal
            if not url.is_default_port():
                host = f"{host}:{url.port}"
            if len(self._hosts) < 1024:
                self._hosts[key] = host
        return host

    async def request(self, method: str, url: URL, *, headers: Any = None, body: bytes | None = None,
                      content_type: str | None = None) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """Send ``method url`` and return (status, headers, body), the body whole (decoded from
        gzip/deflate when the answer says so, as aiohttp's ``auto_decompress``)."""
        data = self.encode(method, url, headers, body, content_type)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a client reused on a new loop
            self._pools.clear()
            self._loop = loop
        key = (url.raw_host or "", url.port or 80)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _HostPool(loop, key[0], key[1], self.limit_per_host,
                                                self.connect_timeout)
        retry = method in _IDEMPOTENT
        while True:
            conn = await pool.acquire(url)
            try:
                status, raw, content = await conn.exchange(data)
            except _BadAnswer as exc:  # as aiohttp reports a response its parser refuses
                pool.release(conn, False)
                info = RequestInfo(url, method, CIMultiDictProxy(CIMultiDict(headers or {})), url)
                raise aiohttp.ClientResponseError(info, (), status=400, message=str(exc)) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                pool.release(conn, False)
                if retry and conn.reused and not conn.started:
                    retry = False  # the server closed a kept-alive connection: once more, afresh
                    continue
                raise
            except BaseException:
                pool.release(conn, False)  # cancelled or failed midway: the connection is done
                raise
            pool.release(conn, conn.keep_alive)
            break
        hdrs = CIMultiDict([(n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                            for n, v in raw])
        encoding = hdrs.get("Content-Encoding", "").lower()
        if encoding in ("gzip", "deflate") and content:
            try:
                try:
                    content = zlib.decompress(content, 47 if encoding == "gzip" else 15)
                except zlib.error:
                    content = zlib.decompress(content, -15)  # raw deflate, as some servers send it
            except zlib.error:
                raise aiohttp.ClientPayloadError(str(http_exceptions.ContentEncodingError(
                    f"Can not decode content-encoding: {encoding}"))) from None
        return status, CIMultiDictProxy(hdrs), content

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
