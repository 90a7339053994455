"""The door of every HTTP service: where faults and planted bottlenecks act on requests.

:func:`install` puts :class:`FaultGate` *inside* the service's server-span middleware, so each
request it touches is still one SERVER span: a refused request's span shows the 503, ERROR status
and a ``fault.service_down`` event, and an injected error is an :class:`ApiError` the middleware
renders in the project's own error body. The gate:

* answers 503 while a ``down`` fault holds the service (except the fault admin API, so an
  operator can always clear what they set);
* applies the service's step-less faults (latency, errors, timeouts) to each request;
* in Keystone: revokes the token being validated when a ``revoke_rate`` fault fires for the step
  the caller validates it for (the caller's step travels in the ``baggage`` header), so the token
  expires mid-boot as far as everyone after is concerned; and, when the ``token-validation``
  bottleneck is planted, runs validations through one worker that costs
  :data:`~harness.bottlenecks.KEYSTONE_VALIDATION_MS` each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Receive, Scope, Send

from harness.bottlenecks import KEYSTONE_VALIDATION_MS, Bottleneck, planted
from harness.faults import FaultInjector
from harness.services.http import ServerSpanMiddleware
from harness.telemetry import caller_step

log = logging.getLogger(__name__)

#: Paths a down service still answers: the fault admin API.
EXEMPT_PREFIXES = ("/v2.1/os-harness-faults",)
TOKENS_PATH = "/v3/auth/tokens"


class FaultGate:
    """ASGI middleware run inside the server span of one service."""

    def __init__(self, app: ASGIApp, *, faults: FaultInjector, service: str,
                 keystone: Any = None, slow_validation: bool = False) -> None:
        self.app, self.faults, self.service = app, faults, service
        self.keystone = keystone  # the Keystone service, when this gate is Keystone's
        self._validator = asyncio.Semaphore(1) if slow_validation else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(EXEMPT_PREFIXES):
            if self.faults.at_door_of(self.service):  # usually not: no per-request work then
                span = trace.get_current_span()
                refused = self.faults.refuse(self.service, span)
                if refused is not None:
                    raise refused  # rendered by the server-span middleware as the project's 503
                await self.faults.at_door(self.service, span, rpc=False)
            if self.keystone is not None and scope["path"] == TOKENS_PATH and scope["method"] in ("GET", "HEAD"):
                await self._validation(scope, trace.get_current_span())
        await self.app(scope, receive, send)

    async def _validation(self, scope: Scope, span: trace.Span) -> None:
        if self.faults.revoke_due(caller_step(), span):
            subject = _header(scope, b"x-subject-token")
            if subject and self.keystone.revoke(subject):
                log.info("fault: a token was revoked while being validated")
        if self._validator is not None:
            t0 = time.perf_counter()
            async with self._validator:
                waited = (time.perf_counter() - t0) * 1000
                span.add_event("keystone.worker.wait", {"wait_ms": waited, "workers": 1})
                await asyncio.sleep(KEYSTONE_VALIDATION_MS / 1000.0)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def install(app: ASGIApp, svc: Any, faults: FaultInjector) -> ASGIApp:
    """Put a :class:`FaultGate` for service ``svc`` inside ``app``'s server-span middleware (made
    by :func:`harness.services.http.make_app`); any other app gets the gate outside, unspanned."""
    keystone = svc if svc.name == "keystone" else None
    slow = keystone is not None and planted(svc.settings, Bottleneck.TOKEN_VALIDATION)
    if isinstance(app, ServerSpanMiddleware):
        app.app = FaultGate(app.app, faults=faults, service=svc.name, keystone=keystone,
                            slow_validation=slow)
        return app
    log.warning("%s: its app has no server-span middleware; faults act outside any span", svc.name)
    return FaultGate(app, faults=faults, service=svc.name, keystone=keystone, slow_validation=slow)
