"""What every HTTP service shares: server spans, OpenStack error bodies, JSON bodies, uvicorn.

The server span is made by a small ASGI middleware rather than opentelemetry-instrumentation-asgi
because each service has its own TracerProvider and some server spans *are* boot steps (1 and 3):
the handler sets the step attributes on the span the middleware opened.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from typing import Any, Awaitable, Callable, Mapping

import orjson
import uvicorn
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harness.services.routing import TableRouter
from harness.services.uvicorn_proto import head_holder, server_protocol
from harness.telemetry import extract_context
from harness.tracer import _context_log, _cv_reset, _cv_set

log = logging.getLogger(__name__)

#: Request headers the server span reads (trace context, baggage, user agent), as ASGI names them.
_SPAN_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage", b"user-agent"})

#: Largest request body accepted; larger ones get 413 before any byte is parsed.
MAX_BODY_BYTES = 1 << 20

_TITLES = {
    400: ("badRequest", "Bad Request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("itemNotFound", "Not Found"),
    405: ("badMethod", "Method Not Allowed"),
    406: ("notAcceptable", "Not Acceptable"),
    409: ("conflictingRequest", "Conflict"),
    413: ("overLimit", "Request Entity Too Large"),
    415: ("badMediaType", "Unsupported Media Type"),
    500: ("computeFault", "Internal Server Error"),
    503: ("serviceUnavailable", "Service Unavailable"),
}


class FastJSONResponse(JSONResponse):
    """Starlette's JSONResponse encoded by orjson: the same compact UTF-8 body (no spaces, non-ASCII
    kept as is) at a fraction of the CPU, which matters because every poll, validation and error
    of a boot is one of these and the whole cloud shares one event loop.

    Its headers are Starlette's (``init_headers``: the endpoint's, lower-cased, then
    ``content-length`` and ``content-type`` unless given), built inline for a plain answer (no
    background task, a status that has a body), which is every answer of the services."""

    def __init__(self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None,
                 media_type: str | None = None, background: BackgroundTask | None = None) -> None:
        if media_type is not None or background is not None or status_code < 200 or status_code in (204, 304):
            super().__init__(content, status_code, headers, media_type, background)
            return
        self.status_code = status_code
        self.background = None
        body = self.body = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        length = (b"content-length", str(len(body)).encode("latin-1"))
        if headers is None:
            self.raw_headers = [length, _JSON_TYPE]
            return
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        keys = {k for k, _ in raw}
        if b"content-length" not in keys:
            raw.append(length)
        if b"content-type" not in keys:
            raw.append(_JSON_TYPE)
        self.raw_headers = raw

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


_JSON_TYPE = (b"content-type", b"application/json")


class ApiError(Exception):
    """An error answered to the client; each service renders it in its own project's shape."""

    def __init__(self, status: int, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.kind = kind or _TITLES.get(status, ("computeFault", "Error"))[0]


# -- error bodies as each project renders them -------------------------------------------------

def nova_error(err: ApiError) -> Response:
    """Nova and Cinder: ``{"itemNotFound": {"message": ..., "code": 404}}``."""
    return FastJSONResponse({err.kind: {"message": err.message, "code": err.status}}, err.status)


def keystone_error(err: ApiError) -> Response:
    """Keystone: ``{"error": {"code": 401, "title": "Unauthorized", "message": ...}}``."""
    title = _TITLES.get(err.status, ("", "Error"))[1]
    body = {"error": {"code": err.status, "title": title, "message": err.message}}
    headers = {"WWW-Authenticate": 'Keystone uri="/v3"'} if err.status == 401 else None
    return FastJSONResponse(body, err.status, headers=headers)


_NEUTRON_TYPES = {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden",
                  404: "HTTPNotFound", 409: "HTTPConflict", 413: "HTTPRequestEntityTooLarge"}


def neutron_error(err: ApiError) -> Response:
    """Neutron: ``{"NeutronError": {"type": ..., "message": ..., "detail": ""}}``."""
    kind = err.kind if err.kind and err.kind[0].isupper() else _NEUTRON_TYPES.get(err.status, "HTTPError")
    return FastJSONResponse({"NeutronError": {"type": kind, "message": err.message, "detail": ""}}, err.status)


def glance_error(err: ApiError) -> Response:
    """Glance (webob): a short text body, ``404 Not Found\\n\\n<message>``."""
    title = _TITLES.get(err.status, ("", "Error"))[1]
    return Response(f"{err.status} {title}\n\n{err.message}\n\n   ", err.status, media_type="text/plain")


Renderer = Callable[[ApiError], Response]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 413 for an oversized body, 400 for anything malformed."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            too_big = int(length) > MAX_BODY_BYTES
        except ValueError:
            raise ApiError(400, "Invalid Content-Length header") from None
        if too_big:
            raise ApiError(413, f"Request is too large (limit {MAX_BODY_BYTES} bytes)")
    cached = getattr(request, "_body", None)  # read already by request.body()
    if cached is not None:
        chunks = [cached] if cached else []
    elif request._stream_consumed:  # as Request.stream() refuses a second read
        raise RuntimeError("Stream consumed")
    else:
        chunks = await _read_body(request)
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not raw:
        raise ApiError(400, "The request body is empty; a JSON object is required")
    try:
        data = orjson.loads(raw)
    except (ValueError, UnicodeDecodeError):  # orjson.JSONDecodeError is a ValueError
        raise ApiError(400, "Malformed request body: invalid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Malformed request body: a JSON object is required")
    return data


async def _read_body(request: Request) -> list[bytes]:
    """The body's chunks, read from the ASGI messages as ``Request.stream()`` reads them, without
    an async generator per request (uvicorn hands a small body over in one message); 413 as soon
    as they pass :data:`MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size, receive = 0, request.receive
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ApiError(413, f"Request is too large (limit {MAX_BODY_BYTES} bytes)")
                chunks.append(chunk)
            if not message.get("more_body", False):
                request._stream_consumed = True
                break
        elif kind == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
    return chunks


def _routing_error(exc: HTTPException, method: str) -> ApiError:
    """Routing's 404/405 (Starlette's HTTPException) as the project's error."""
    if exc.status_code == 404:
        return ApiError(404, "The resource could not be found.")
    if exc.status_code == 405:
        return ApiError(405, f"The method {method} is not allowed for this resource.")
    return ApiError(exc.status_code, str(exc.detail))


class ServerSpanMiddleware:
    """Opens the SERVER span of each request (OTel HTTP conventions) and renders errors.

    Honours the caller's ``traceparent``. An :class:`ApiError` becomes the project's error body,
    as do routing's 404/405; anything else is logged with its traceback and answered 500 in the
    same shape.
    """

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer, render: Renderer, port: int) -> None:
        self.app, self.tracer, self.render, self.port = app, tracer, render, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Only the headers the span needs are decoded (a request carries a dozen).
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            if k in _SPAN_HEADERS:
                headers[k.decode("latin-1")] = v.decode("latin-1")
        parent = extract_context(headers)
        method = scope["method"]
        client = scope.get("client") or _NO_CLIENT
        attrs = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "server.address": (scope.get("server") or ("127.0.0.1", self.port))[0],
            "server.port": self.port,
            "client.address": client[0],
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if "user-agent" in headers:
            attrs["user_agent.original"] = headers["user-agent"]
        span = self.tracer.start_span(method, parent, _SERVER, attrs)  # the API's order
        # current for the app: trace.set_span_in_context + attach, as the RPC server does it
        values = parent.copy()
        values[_SPAN_KEY] = span
        token = _cv_set(Context(values))
        sender = _StatusSend(send, method)

        try:
            try:
                await self.app(scope, receive, sender)
            except ApiError as err:
                await self.render(err)(scope, receive, sender)
            except HTTPException as exc:  # routing's 404 and 405
                await self.render(_routing_error(exc, method))(scope, receive, sender)
            except Exception as exc:  # never a traceback to the client
                log.exception("unhandled error in %s %s", method, scope["path"])
                span.record_exception(exc)
                if not sender.started:
                    await self.render(ApiError(500, "An unexpected error occurred."))(
                        scope, receive, sender
                    )
        finally:
            status = sender.status
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template:
                span.update_name(f"{method} {template}")
                end_attrs: dict[str, Any] = {"http.route": template, "http.response.status_code": status}
            else:
                end_attrs = {"http.response.status_code": status}
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
                end_attrs["error.type"] = str(status)
            span.set_attributes(end_attrs)  # one call: each takes the span's lock
            span.end()
            try:  # as the API's detach: a failure is logged, never raised
                _cv_reset(token)
            except Exception:
                _context_log.exception("Failed to detach context")


_NO_CLIENT = ("", 0)
_SERVER = SpanKind.SERVER


class _StatusSend:
    """The ASGI ``send`` of one request, remembering the response status it started (500 until
    then); one small object instead of a closure and a dict per request. Under
    :class:`~harness.services.uvicorn_proto.OneWriteProtocol` it has the response's head kept for
    the body's write (one socket write a response)."""

    __slots__ = ("send", "status", "started", "method")

    def __init__(self, send: Send, method: str) -> None:
        self.send, self.status, self.started, self.method = send, 500, False, method

    def __call__(self, message: Message) -> Awaitable[None]:
        # Not a coroutine itself: the app awaits uvicorn's send directly (one coroutine a message).
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
            holder = head_holder(self.send, self.method)
            if holder is not None:
                holder.hold_next()
        return self.send(message)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the harness (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def make_server(app: ASGIApp, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="off", log_level="warning", access_log=False,
        loop="none", timeout_keep_alive=30, backlog=4096,
        http=server_protocol(),  # uvicorn's httptools protocol, a response's head and body in one write
        proxy_headers=False,  # loopback services behind no proxy: skip the X-Forwarded-* middleware
    )
    return _QuietServer(config)


def handler(func: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an endpoint that returns a Response or ``(body, status[, headers])``."""

    async def endpoint(request: Request) -> Response:
        return as_response(await func(request))

    endpoint.__name__ = func.__name__
    return endpoint


def as_response(result: Any) -> Response:
    """What an endpoint returned (a Response or ``(body, status[, headers])``) as a Response."""
    if isinstance(result, Response):
        return result
    body, status, *rest = result
    headers = rest[0] if rest else None
    if body is None:
        return Response(status_code=status, headers=headers)
    return FastJSONResponse(body, status, headers=headers)


def make_app(routes: list, *, render: Renderer, tracer: trace.Tracer, port: int) -> ASGIApp:
    """A Starlette app whose every error (ours, routing's 404/405, a bug's 500) is rendered in
    the project's shape by the server-span middleware around it.

    The app is the bare router (:class:`_RouterApp`) and each endpoint is called without
    Starlette's exception-catching wrapper: Starlette's ServerErrorMiddleware, ExceptionMiddleware
    and per-endpoint wrapper would only re-do, per request, what the span middleware does once
    (the same answers, a few microseconds less on the cloud's one loop for each request).
    """
    app = _RouterApp(routes=routes)
    for route in app.routes:
        if isinstance(route, Route) and _async_function(route.endpoint):
            route.app = _endpoint_app(route.endpoint)
    return ServerSpanMiddleware(app, tracer=tracer, render=render, port=port)


class _RouterApp(Starlette):
    """A Starlette app without its default middleware: requests go straight to the router (a
    full match found by table, :mod:`harness.services.routing`; the rest by Starlette's router).
    It still sets ``scope["app"]``, so routing's 404/405 are raised as HTTPException (which
    :class:`ServerSpanMiddleware` renders) rather than answered in plain text."""

    def build_middleware_stack(self) -> ASGIApp:
        return TableRouter(self.router)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        # Starlette.__call__ without a coroutine of its own: the router's is awaited directly.
        scope["app"] = self
        stack = self.middleware_stack
        if stack is None:
            stack = self.middleware_stack = self.build_middleware_stack()
        return stack(scope, receive, send)


def _async_function(endpoint: Any) -> bool:
    """Would Starlette wrap ``endpoint`` as ``request -> response`` (an async function/method)?"""
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    return (inspect.isfunction(endpoint) or inspect.ismethod(endpoint)) and inspect.iscoroutinefunction(endpoint)


#: Response classes whose ``__call__`` is Starlette's own (start, then the whole body).
_PLAIN_RESPONSES = frozenset({Response, JSONResponse, FastJSONResponse})


def _endpoint_app(func: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """``request -> response`` as an ASGI app, its errors left to the span middleware."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await func(Request(scope, receive, send))
        if type(response) in _PLAIN_RESPONSES and response.background is None:
            # what Response.__call__ sends for an HTTP scope, without its coroutine
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": response.raw_headers})
            await send({"type": "http.response.body", "body": response.body})
        else:
            await response(scope, receive, send)

    return app
