"""What the HTTP path builds once instead of per request answers as before: the microversion
headers appended as prebuilt pairs, a token's time strings made at issue, and a validator's
parsed validation bodies (never shared between tokens)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from harness.services.http import FastJSONResponse
from harness.services.keystone import Token, User, _iso
from harness.services.microversion import COMPUTE, VOLUME, Version, _stamp
from harness.services.rest import AuthContext, HttpResponse, TokenValidator


@pytest.mark.parametrize("vr,ver", [(COMPUTE, Version(2, 79)), (VOLUME, Version(3, 27))])
def test_stamp_matches_the_header_dict(vr, ver) -> None:
    expected = FastJSONResponse({"a": 1}, 200, headers={"X-OpenStack-Request-ID": "req-1"})
    expected.headers.update(vr.response_headers(ver))
    got = FastJSONResponse({"a": 1}, 200, headers={"X-OpenStack-Request-ID": "req-1"})
    _stamp(got, vr.raw_response_headers(ver))
    assert got.raw_headers == expected.raw_headers


def test_stamp_replaces_a_header_the_endpoint_set() -> None:
    resp = FastJSONResponse({}, 200, headers={"Vary": "Accept"})
    _stamp(resp, COMPUTE.raw_response_headers(Version(2, 1)))
    assert resp.headers.getlist("vary") == ["OpenStack-API-Version, X-OpenStack-Nova-API-Version"]
    assert resp.headers["openstack-api-version"] == "compute 2.1"


def test_token_times_are_keystones_text() -> None:
    user = User("u1", "demo", b"", "p1", "member")
    token = Token(user, "p1", 1_764_076_459.93, 1_764_080_059.5, "audit")
    assert (token.issued_iso, token.expires_iso) == (_iso(1_764_076_459.93), _iso(1_764_080_059.5))
    assert token.issued_iso.endswith("Z") and token.expires_iso.startswith("2025-11-25T14:14:19.5")


def _body(user: str, audit: str) -> bytes:
    return orjson.dumps({"token": {
        "user": {"id": f"{user}-id", "name": user}, "project": {"id": "p1", "name": "demo"},
        "roles": [{"id": "r1", "name": "member"}], "audit_ids": [audit],
        "expires_at": "2099-01-01T00:00:00.000Z", "catalog": []}})


class _Keystone:
    """A client whose validations answer each token's fixed body (as Keystone does)."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies, self.calls = bodies, 0

    async def request(self, method: str, url: str, **kw: Any) -> HttpResponse:
        self.calls += 1
        return HttpResponse(200, {}, self.bodies[kw["headers"]["X-Subject-Token"]])


async def test_parsed_bodies_are_per_token_and_keystone_is_still_asked() -> None:
    same = _body("alice", "a1")
    keystone = _Keystone({"t-alice": same, "t-bob": _body("bob", "b1"), "t-copy": same})
    validator = TokenValidator(keystone, keystone_url="http://ks", service_user="s",  # type: ignore[arg-type]
                               service_password="p", service_project="service")
    validator._service_token, validator._service_expiry = "svc", 4e9
    first = await validator.validate("t-alice")
    again = await validator.validate("t-alice")
    bob = await validator.validate("t-bob")
    copy = await validator.validate("t-copy")  # the same bytes for another token: parsed again
    assert keystone.calls == 4
    assert again is first and isinstance(first, AuthContext)
    assert (first.user_name, first.roles, first.token) == ("alice", ("member",), "t-alice")
    assert (bob.user_name, bob.token) == ("bob", "t-bob")
    assert copy.token == "t-copy" and copy.user_id == "alice-id"
    assert first.expires_at == 4_070_908_800.0


async def _serve(app, path: str = "/v2.1/servers/x") -> tuple[list[dict], Any]:
    """One request through ServerSpanMiddleware: the messages sent and the finished span."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from harness.services.http import ServerSpanMiddleware, nova_error

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mw = ServerSpanMiddleware(app, tracer=provider.get_tracer("t"), render=nova_error, port=8774)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"user-agent", b"ua")],
             "scheme": "http", "server": ("127.0.0.1", 8774), "client": ("127.0.0.1", 5000),
             "http_version": "1.1"}
    await mw(scope, receive, send)
    (span,) = exporter.get_finished_spans()
    return sent, span


async def test_server_span_records_the_status_sent() -> None:
    async def ok(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent, span = await _serve(ok)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert span.attributes["http.response.status_code"] == 202
    assert span.attributes["user_agent.original"] == "ua" and "error.type" not in span.attributes


async def test_server_span_a_bug_is_a_500_body_unless_the_response_started() -> None:
    async def bug(scope, receive, send) -> None:
        raise RuntimeError("boom")

    sent, span = await _serve(bug)
    assert sent[0]["status"] == 500
    assert orjson.loads(sent[1]["body"])["computeFault"]["code"] == 500
    assert span.attributes["error.type"] == "500" and span.status.status_code.name == "ERROR"

    async def late_bug(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom")

    sent, span = await _serve(late_bug)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200]
    assert span.attributes["http.response.status_code"] == 200
