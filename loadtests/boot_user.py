"""The Locust user: boot a server, wait for ACTIVE, delete it, wait until it is gone.

One boot is what a person with the ``openstack`` CLI does for ``server create --wait`` then
``server delete --wait`` (closed loop: one after another; open loop: each at its arrival time, in a
greenlet of its own):

1. authenticate (steps 1-2), only when the token is near expiry, or every boot with
   ``--token-per-boot``;
2. ``POST /servers`` (step 3; the cloud does 4-29 behind it);
3. ``GET /servers/{id}`` every ``--poll-interval`` seconds until ACTIVE or ERROR;
4. ``DELETE /servers/{id}`` and ``GET`` until 404.

Locust's statistics get one entry per API call (``POST /servers``, ``GET /servers/[id]``,
``DELETE /servers/[id]``, ``POST /v3/auth/tokens``) and one synthetic entry for the whole boot,
request type ``BOOT``, name ``boot to ACTIVE``: from the boot's start (its *intended* start in the
open-loop shape) to the poll that saw ACTIVE. A boot ending in ERROR is a failure of that entry
with the server's fault message.

Tracing: 1-3 run inside one CLIENT span ``nova.boot_server`` of service ``locust``, whose context
goes with every request as ``traceparent``, so the cloud's steps join it and the trace starts with
the user's wait. The delete is a trace of its own (``nova.delete_server``), so a boot's trace holds
the boot only.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import gevent
from gevent.pool import Pool
from locust import HttpUser, task
from opentelemetry.trace import SpanKind, Status, StatusCode

from loadtests.arrivals import PoissonArrivals
from loadtests.hooks import LoadContext, context_of
from loadtests.keystone_session import CloudError, KeystoneSession, response_error
from loadtests.load_options import DEFAULT_AUTH_URL, LoadOptions

log = logging.getLogger(__name__)
BOOT_REQUEST_TYPE = "BOOT"
BOOT_NAME = "boot to ACTIVE"
DELETE_NAME = "delete until gone"  # appears only when a deleted server never goes away
SERVER_NAME = "/servers/[id]"


class BootFailed(Exception):
    """A boot that ended in ERROR (the message is the server's fault) or never got there."""


class DeleteTimeout(CloudError):
    """A deleted server still answers ``GET`` after ``--boot-timeout`` seconds."""


class BootUser(HttpUser):
    """Boots servers on the cloud whose Keystone is ``--host`` (default: the embedded cloud)."""

    host = DEFAULT_AUTH_URL
    _numbers = itertools.count(1)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.number = next(self._numbers)
        self.ctx: LoadContext = context_of(environment)
        self.user_id = f"{self.ctx.worker_index}-{self.number}"
        self.session: KeystoneSession | None = None
        self.arrivals: PoissonArrivals | None = None
        self._due: float | None = None  # open loop: the drawn, not yet started, next arrival
        self._inflight = Pool(size=self._options().max_in_flight)  # open loop: boots running
        self._wall_minus_mono = time.time() - time.monotonic()

    # -- Locust hooks --------------------------------------------------------------------------
    def context(self) -> dict[str, Any]:
        return {"user_id": self.user_id}

    def wait_time(self) -> float:
        """Closed loop: the think time. Open loop: until this user's next arrival is due.

        Waiting in Locust's own wait (not inside the task) means a stopping run ends a waiting
        user at once instead of letting it start one more boot.
        """
        opts = self._options()
        if opts.load_shape != "open":
            return opts.think_time
        return max(0.0, self._due_arrival(opts) - time.monotonic())

    def on_start(self) -> None:
        """Authenticate and look the image and flavor up before the first boot, so no boot's start
        (or, in the open shape, its arrival time) is held up by them. A failure here is counted
        (the request's own entry) and retried by the first boot."""
        self.session = KeystoneSession(self.client, self.host or DEFAULT_AUTH_URL, self._options())
        try:
            self._prepare()
        except CloudError as exc:
            log.warning("user %s: %s (the first boot tries again)", self.user_id, exc)

    def on_stop(self) -> None:
        """Open loop: boots still in flight may finish within Locust's ``--stop-timeout``."""
        if len(self._inflight):
            self._inflight.join(timeout=float(self.environment.stop_timeout or 0))
            self._inflight.kill(block=True, timeout=5)

    @task
    def boot_and_delete(self) -> None:
        opts = self._options()
        if opts.load_shape != "open":
            self._boot_and_delete(opts, time.monotonic())
            return
        if self._due is None:  # the user's first iteration: draw its first arrival, then wait
            self._due_arrival(opts)
            return
        intended, self._due = self._due, None
        # its own greenlet, so the next arrival never waits for this boot (unless the user already
        # has --max-in-flight boots running: then spawn blocks, and the lateness counts)
        self._inflight.spawn(self._boot_and_delete_logged, opts, intended)

    def _boot_and_delete(self, opts: LoadOptions, intended: float) -> None:
        try:
            image, flavor = self._prepare()
        except CloudError as exc:  # no token, catalog, image or flavor: the boot cannot start
            self._report_boot(intended, exc)
            gevent.sleep(opts.poll_interval)  # a cloud that is down is not hammered in a tight loop
            return
        server_id = self.boot(opts, intended, image, flavor)
        if server_id is not None:
            self.delete(opts, server_id)

    def _boot_and_delete_logged(self, opts: LoadOptions, intended: float) -> None:
        try:
            self._boot_and_delete(opts, intended)
        except Exception:  # a greenlet of its own: Locust would not see this, so say it here
            log.exception("open-loop boot of user %s", self.user_id)

    def _prepare(self) -> tuple[str, str]:
        """A token and the image and flavor ids, outside any boot's trace (cached: after the user's
        start these make no calls; a token renewal happens inside a boot's trace)."""
        assert self.session is not None
        if self.session.token is None:
            self.session.ensure_token()
        return self.session.image_id(), self.session.flavor_id()

    # -- the open-loop schedule -----------------------------------------------------------------
    def _options(self) -> LoadOptions:
        run = self.ctx.run
        if run is None:
            raise RuntimeError("no run started (test_start did not fire)")
        return run.options

    def _due_arrival(self, opts: LoadOptions) -> float:
        """The intended start of this user's next boot (drawn once, kept until that boot starts)."""
        if self._due is None:
            if self.arrivals is None:
                self.arrivals = PoissonArrivals(seed=opts.load_seed, worker_index=self.ctx.worker_index,
                                                user_number=self.number, start=time.monotonic())
            self._due = self.arrivals.next(opts.arrival_rate / max(1, self.ctx.users_total()))
        return self._due

    def _unix_ns(self, mono: float) -> int:
        return int((mono + self._wall_minus_mono) * 1e9)

    # -- boot -----------------------------------------------------------------------------------
    def boot(self, opts: LoadOptions, intended: float, image: str, flavor: str) -> str | None:
        """One boot, traced; returns the server id when there is a server to delete."""
        assert self.session is not None and self.ctx.tracing is not None and self.ctx.run is not None
        attrs = {"locust.user.id": self.user_id, "locust.user.class": type(self).__name__,
                 "locust.worker.index": self.ctx.worker_index,
                 **self.ctx.run.span_attributes(self.ctx.users_total())}
        if opts.load_shape == "open":
            attrs["harness.load.schedule_lag_ms"] = round((time.monotonic() - intended) * 1000, 3)
        server_id: str | None = None
        with self.ctx.tracing.tracer.start_as_current_span(
            "nova.boot_server", kind=SpanKind.CLIENT, start_time=self._unix_ns(intended), attributes=attrs,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                renewed = self.session.ensure_token(renew=opts.token_per_boot)
                span.set_attribute("harness.boot.authenticated", renewed)
                server_id = self._create(image, flavor)
                span.set_attribute("openstack.instance.id", server_id)
                server = self._wait_built(opts, server_id, span)
            except (CloudError, BootFailed) as exc:
                self._boot_failed(span, intended, exc, "failed", server_id)
                return server_id
            except Exception as exc:  # a malformed answer: a failure with its text, not a crash
                log.exception("boot of user %s", self.user_id)
                span.record_exception(exc)
                self._boot_failed(span, intended, exc, "failed", server_id)
                return server_id
            except BaseException:  # the run stopped mid-boot (GreenletExit): not a result
                span.set_attribute("harness.boot.outcome", "interrupted")
                raise
            span.set_attribute("openstack.instance.status", server["status"])
            span.set_attribute("harness.boot.outcome", "active")
            self._report_boot(intended, None)
            self._log_boot(span, intended, "active", server_id)
        return server_id

    def _boot_failed(self, span: Any, intended: float, exc: Exception, outcome: str,
                     server_id: str | None) -> None:
        span.set_status(Status(StatusCode.ERROR, str(exc)))
        span.set_attribute("harness.boot.outcome", outcome)
        self._report_boot(intended, exc)
        self._log_boot(span, intended, outcome, server_id, str(exc))

    def _log_boot(self, span: Any, intended: float, outcome: str, server_id: str | None,
                  message: str | None = None) -> None:
        """The boot's line in the run's boot log (its result even when its trace was dropped)."""
        if self.ctx.boot_log is not None:
            self.ctx.boot_log.write(outcome=outcome, server_id=server_id,
                                    trace_id=span.get_span_context().trace_id,
                                    start_ns=self._unix_ns(intended), message=message,
                                    sampled=span.is_recording())

    def _create(self, image: str, flavor: str) -> str:
        assert self.session is not None
        body = {"server": {"name": f"locust-{self.user_id}", "imageRef": image, "flavorRef": flavor}}
        url = f"{self.session.endpoint('compute')}/servers"
        with self.client.post(url, name="/servers", json=body, headers=self.session.headers(),
                              catch_response=True) as resp:
            if resp.status_code != 202:
                error = response_error(resp)
                resp.failure(error)
                if resp.status_code == 401:
                    self.session.forget_token()
                raise CloudError(f"POST /servers: {error}")
            return str(resp.json()["server"]["id"])

    def _wait_built(self, opts: LoadOptions, server_id: str, span: Any) -> dict[str, Any]:
        """Poll until ACTIVE (returned) or ERROR (:class:`BootFailed` with the fault)."""
        deadline = time.monotonic() + opts.boot_timeout
        polls = 0
        while True:
            server = self._get(server_id)
            polls += 1
            span.set_attribute("harness.boot.polls", polls)
            status = server.get("status") if server else "DELETED"
            if status == "ACTIVE":
                return server  # type: ignore[return-value]
            if status == "ERROR":
                fault = (server or {}).get("fault") or {}
                span.add_event("instance.error", {"message": str(fault.get("message", ""))})
                raise BootFailed(fault.get("message") or "server went to ERROR without a fault")
            if status == "DELETED":
                raise BootFailed(f"server {server_id} disappeared while building")
            if time.monotonic() > deadline:
                raise BootFailed(f"not ACTIVE after {opts.boot_timeout:g}s (status {status})")
            gevent.sleep(opts.poll_interval)

    def _get(self, server_id: str) -> dict[str, Any] | None:
        """``GET /servers/{id}``: the server, or None when it is gone (404 is then a success)."""
        assert self.session is not None
        url = f"{self.session.endpoint('compute')}/servers/{server_id}"
        with self.client.get(url, name=SERVER_NAME, headers=self.session.headers(), catch_response=True) as resp:
            if resp.status_code == 404:
                resp.success()
                return None
            if resp.status_code != 200:
                error = response_error(resp)
                resp.failure(error)
                if resp.status_code == 401:
                    self.session.forget_token()
                raise CloudError(f"GET /servers/{{id}}: {error}")
            return resp.json()["server"]

    def _report_boot(self, intended: float, exc: Exception | None) -> None:
        """The synthetic ``BOOT boot to ACTIVE`` entry, timed from the intended start."""
        self.environment.events.request.fire(
            request_type=BOOT_REQUEST_TYPE, name=BOOT_NAME,
            response_time=(time.monotonic() - intended) * 1000, response_length=0,
            exception=exc, context=self.context(), start_time=intended + self._wall_minus_mono,
            url=None, response=None,
        )

    # -- delete ---------------------------------------------------------------------------------
    def delete(self, opts: LoadOptions, server_id: str) -> None:
        """``DELETE`` then poll until 404; a trace of its own. Failures show on those entries."""
        assert self.session is not None and self.ctx.tracing is not None and self.ctx.run is not None
        attrs = {"locust.user.id": self.user_id, "openstack.instance.id": server_id,
                 **self.ctx.run.span_attributes(self.ctx.users_total())}
        with self.ctx.tracing.tracer.start_as_current_span("nova.delete_server", kind=SpanKind.CLIENT,
                                                           attributes=attrs) as span:
            try:
                self.session.ensure_token()
                url = f"{self.session.endpoint('compute')}/servers/{server_id}"
                with self.client.delete(url, name=SERVER_NAME, headers=self.session.headers(),
                                        catch_response=True) as resp:
                    if resp.status_code not in (204, 404):
                        error = response_error(resp)
                        resp.failure(error)
                        raise CloudError(f"DELETE /servers/{{id}}: {error}")
                deadline = time.monotonic() + opts.boot_timeout
                while self._get(server_id) is not None:
                    if time.monotonic() > deadline:
                        raise DeleteTimeout(f"server still there {opts.boot_timeout:g}s after DELETE")
                    gevent.sleep(opts.poll_interval)
            except CloudError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                log.warning("delete of %s: %s", server_id, exc)
                if isinstance(exc, DeleteTimeout):  # every request succeeded: the failure shows here
                    self.environment.events.request.fire(
                        request_type=BOOT_REQUEST_TYPE, name=DELETE_NAME, response_time=None,
                        response_length=0, exception=exc, context=self.context(), url=None, response=None)
