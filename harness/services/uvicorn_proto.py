"""uvicorn's httptools protocol, each plain response written by one socket write instead of two.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and
its body on ``http.response.body``, and uvloop writes each to the socket at once: two ``write(2)``
calls and two TCP segments for every answer. In the embedded cloud both ends of a
service-to-service request share one event loop and one process, so each response pays a second
system call and the loopback TCP work behind it (a profile of the cloud puts the two writes at
~6 % of its CPU, a quarter of that the body's).

:class:`OneWriteProtocol` is uvicorn's :class:`HttpToolsProtocol` (its parser, ASGI cycle, header
checks and formatting, keep-alive and flow control, unchanged) on a connection transport that can
keep one write, the head, and put it in front of the next one, the body. Whoever sends the
response start asks for that (:func:`head_holder`; the server-span middleware of
:mod:`harness.services.http` does for every response it passes on), except for a HEAD request
(no body write follows) or while writing is paused. The bytes on the wire are the same, in the
same order; only their segmentation changes. A kept head is written by the next write or, at the
latest, when the connection is closed, so an app that starts a response and fails still has its
head written before the close, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class HeadHoldingTransport:
    """A connection's transport that keeps the write made after :meth:`hold_next` and puts it
    in front of the next one. Everything else is the wrapped transport's."""

    __slots__ = ("transport", "_hold", "_head")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._hold = False  # the next write is a head to keep
        self._head: bytes | None = None

    def hold_next(self) -> None:
        self._hold = True

    def write(self, data: Any) -> None:
        if self._hold:
            self._hold = False
            if self._head is None:
                self._head = bytes(data)
                return
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        self.transport.write(data)

    def flush(self) -> None:
        """Write a head still kept (no write came to carry it)."""
        self._hold = False
        head = self._head
        if head is not None:
            self._head = None
            self.transport.write(head)

    def close(self) -> None:
        if not self.transport.is_closing():
            self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, set_protocol, abort, ...
        return getattr(self.transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`HeadHoldingTransport`
    (``uvicorn.Config(http=OneWriteProtocol)``); its request cycles are uvicorn's own.

    Its keep-alive timeout is kept by one sweep a second per server instead of an event-loop
    timer armed after every response and cancelled by the next request (``loop.call_later`` and
    ``TimerHandle.cancel``, ~1 % of the cloud's CPU): a connection idle for ``timeout_keep_alive``
    seconds is closed by the first sweep after that, at most :data:`SWEEP_S` late."""

    _idle_since: float | None = None  # loop time the connection went idle (None: busy)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # the flow control keeps the real transport
        self.transport = HeadHoldingTransport(transport)  # type: ignore[assignment]

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # a request came (or the connection is gone)

    def on_response_complete(self) -> None:
        # uvicorn's, with the idle mark instead of the timer
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self.loop.time()
            _KeepAliveSweep.ensure(self.server_state, self.loop)


#: Seconds between keep-alive sweeps: the resolution of the keep-alive timeout.
SWEEP_S = 1.0


class _KeepAliveSweep:
    """Closes the idle connections of one server (its ``ServerState``) that passed their
    keep-alive timeout; runs every :data:`SWEEP_S` while the server has connections."""

    __slots__ = ("state", "loop", "handle")

    def __init__(self, state: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.state, self.loop = state, loop
        self.handle: asyncio.TimerHandle | None = None

    @classmethod
    def ensure(cls, state: Any, loop: asyncio.AbstractEventLoop) -> None:
        sweep = state.__dict__.get("_harness_keepalive_sweep")
        if sweep is None or sweep.loop is not loop:
            sweep = state._harness_keepalive_sweep = cls(state, loop)
        if sweep.handle is None:
            sweep.handle = loop.call_later(SWEEP_S, sweep.run)

    def run(self) -> None:
        self.handle = None
        now = self.loop.time()
        for conn in list(self.state.connections):
            idle = getattr(conn, "_idle_since", None)
            if idle is not None and now - idle >= conn.timeout_keep_alive:
                conn._idle_since = None
                conn.timeout_keep_alive_handler()
        if self.state.connections:
            self.handle = self.loop.call_later(SWEEP_S, self.run)


def head_holder(send: Any, method: str) -> HeadHoldingTransport | None:
    """The transport to ask to keep the head of the response ``send`` (uvicorn's cycle's own
    ``send``) is about to start, or None: another server or send, a HEAD request (its response
    writes no body), or writing paused (the head then waits for the drain, as uvicorn's does)."""
    cycle = getattr(send, "__self__", None)
    if type(cycle) is not RequestResponseCycle or method == "HEAD":
        return None
    transport = cycle.transport
    if type(transport) is not HeadHoldingTransport or cycle.flow.write_paused:
        return None
    return transport


#: What OneWriteProtocol overrides or calls in uvicorn's protocol (internals, not uvicorn's API).
_RELIED_ON = ("connection_made", "on_response_complete", "_unset_keepalive_if_required",
              "timeout_keep_alive_handler", "_start_asgi_task")


@functools.cache  # once per uvicorn class: every service's server asks, one warning is enough
def server_protocol(base: type = HttpToolsProtocol) -> type | str:
    """The ``http`` setting for uvicorn: :class:`OneWriteProtocol`, or uvicorn's own
    ``"httptools"`` when the installed uvicorn lacks an internal it relies on (a newer release
    may rename them). The bytes on the wire are the same either way; only the one-write saving
    is lost, and a warning says so."""
    missing = [name for name in _RELIED_ON if not callable(getattr(base, name, None))]
    if missing:
        logging.getLogger(__name__).warning(
            "uvicorn's HttpToolsProtocol lacks %s: serving with its stock protocol (two writes a "
            "response)", ", ".join(missing))
        return "httptools"
    return OneWriteProtocol

