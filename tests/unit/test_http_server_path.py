"""The server path's shortcuts answer what Starlette's own objects answer: FastJSONResponse's inline
headers, the endpoint app's direct sends, json_body's read of the ASGI messages, the version
headers found in one pass, and the pass-through (non-coroutine) layers of the app."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.services.http import (
    MAX_BODY_BYTES, ApiError, FastJSONResponse, _endpoint_app, as_response, json_body, make_app, nova_error,
)
from harness.services.microversion import COMPUTE, VOLUME, Version, _version_headers, api_version, versioned


class _OrjsonJSON(JSONResponse):
    """Starlette's own __init__ and init_headers, rendering with orjson: the reference."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


@pytest.mark.parametrize("status,headers", [
    (200, None), (202, {"X-Subject-Token": "t", "Location": "http://x/1"}), (404, {}),
    (200, {"Content-Type": "application/openstack+json"}), (200, {"content-length": "99"}),
    (204, None), (304, {"ETag": "e"}), (101, None),
])
def test_fast_json_headers_are_starlettes(status: int, headers: dict | None) -> None:
    content = {"server": {"id": "é", "n": [1, 2.5, None]}, 3: "int key"}
    got = FastJSONResponse(content, status, headers=headers)
    want = _OrjsonJSON(content, status, headers=headers)
    assert (got.status_code, got.body, got.raw_headers) == (want.status_code, want.body, want.raw_headers)
    assert got.background is None and got.headers.get("content-type") == want.headers.get("content-type")


def test_fast_json_with_media_type_or_background_is_starlettes() -> None:
    got = FastJSONResponse({"a": 1}, 200, media_type="application/x")
    assert got.raw_headers == _OrjsonJSON({"a": 1}, 200, media_type="application/x").raw_headers


def test_as_response_shapes() -> None:
    resp = as_response(({"a": 1}, 201, {"X-A": "b"}))
    assert (resp.status_code, resp.body, resp.headers["x-a"]) == (201, b'{"a":1}', "b")
    empty = as_response((None, 204))
    assert type(empty) is Response and empty.status_code == 204 and empty.body == b""
    same = Response("x")
    assert as_response(same) is same


async def _call(app, scope: dict, body_messages: list[dict] | None = None) -> list[dict]:
    sent: list[dict] = []
    messages = list(body_messages or [{"type": "http.request", "body": b""}])

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _scope(method: str = "GET", path: str = "/x", headers: list | None = None) -> dict:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": headers or [], "scheme": "http", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2),
            "root_path": "", "http_version": "1.1"}


@pytest.mark.parametrize("make", [
    lambda: FastJSONResponse({"a": 1}, 202, headers={"X-Y": "z"}),
    lambda: Response(status_code=204),
    lambda: Response("text", media_type="text/plain"),
])
async def test_endpoint_app_sends_what_the_response_sends(make) -> None:
    async def endpoint(request: Request) -> Response:
        return make()

    direct = await _call(_endpoint_app(endpoint), _scope())
    reference = await _call(make(), _scope())
    assert direct == reference


async def test_endpoint_app_runs_a_background_task() -> None:
    from starlette.background import BackgroundTask

    ran: list[int] = []

    async def endpoint(request: Request) -> Response:
        return Response("x", background=BackgroundTask(ran.append, 1))

    await _call(_endpoint_app(endpoint), _scope())
    assert ran == [1]


def _request(chunks: list[bytes], headers: list | None = None, *, disconnect: bool = False) -> Request:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect:
        messages = messages[:-1] + [{"type": "http.disconnect"}]

    async def receive() -> dict:
        return messages.pop(0)

    return Request(_scope("POST", headers=headers), receive)


async def test_json_body_reads_the_messages() -> None:
    assert await json_body(_request([b'{"a":', b' [1, 2]', b"}"])) == {"a": [1, 2]}
    assert await json_body(_request([b'{"b": "\xc3\xa9"}'])) == {"b": "é"}
    request = _request([b'{"c": 1}'])
    await request.body()  # read before: json_body parses what was read
    assert await json_body(request) == {"c": 1}


async def test_json_body_errors() -> None:
    with pytest.raises(ApiError) as err:
        await json_body(_request([b"x" * (MAX_BODY_BYTES // 2)] * 3))  # no content-length: counted
    assert err.value.status == 413
    with pytest.raises(ApiError) as err:
        await json_body(_request([b"{}"], [(b"content-length", str(MAX_BODY_BYTES + 1).encode())]))
    assert err.value.status == 413
    for chunks, message in (([b""], "empty"), ([b"[1]"], "JSON object"), ([b"{x"], "invalid JSON"),
                            ([b"\xff{}"], "invalid JSON")):
        with pytest.raises(ApiError) as err:
            await json_body(_request(chunks))
        assert err.value.status == 400 and message in err.value.message
    with pytest.raises(ClientDisconnect):
        await json_body(_request([b"{", b"}"], disconnect=True))
    request = _request([b"{}"])
    await json_body(request)
    with pytest.raises(RuntimeError):  # as Request.stream() refuses a second read
        await json_body(request)


def test_version_headers_first_of_each() -> None:
    raw = [(b"accept", b"application/json"), (b"openstack-api-version", b"compute 2.79"),
           (b"x-openstack-nova-api-version", b"2.5"), (b"openstack-api-version", b"compute 2.3")]
    found = _version_headers(raw)
    assert found == {"openstack-api-version": "compute 2.79", "x-openstack-nova-api-version": "2.5"}
    assert COMPUTE.negotiate(found) == Version(2, 79)
    assert COMPUTE.negotiate(_version_headers([(b"x-openstack-nova-api-version", b"2.5")])) == Version(2, 5)
    assert VOLUME.negotiate(_version_headers([(b"x-openstack-nova-api-version", b"3.5")])) == VOLUME.min


async def test_versioned_endpoint_through_the_app() -> None:
    from opentelemetry import trace

    seen: list[Version] = []

    async def show(request: Request):
        seen.append(api_version(request))
        if request.path_params["id"] == "gone":
            raise ApiError(404, "gone")
        return {"id": request.path_params["id"]}, 200

    app = make_app([Route("/s/{id}", versioned(COMPUTE, nova_error)(show), methods=["GET"])],
                   render=nova_error, tracer=trace.NoOpTracer(), port=1)
    ok = await _call(app, _scope(path="/s/1", headers=[(b"openstack-api-version", b"compute 2.61")]))
    assert ok[0]["status"] == 200 and ok[1]["body"] == b'{"id":"1"}'
    assert (b"openstack-api-version", b"compute 2.61") in ok[0]["headers"]
    gone = await _call(app, _scope(path="/s/gone"))
    assert gone[0]["status"] == 404 and (b"x-openstack-nova-api-version", b"2.1") in gone[0]["headers"]
    assert orjson.loads(gone[1]["body"]) == {"itemNotFound": {"message": "gone", "code": 404}}
    bad = await _call(app, _scope(path="/s/1", headers=[(b"openstack-api-version", b"compute 9.9")]))
    assert bad[0]["status"] == 406
    assert seen == [Version(2, 61), Version(2, 1)]
    # routing's own answers still come from Starlette, rendered by the span middleware
    assert (await _call(app, _scope("POST", "/s/1")))[0]["status"] == 405
    assert (await _call(app, _scope(path="/nowhere")))[0]["status"] == 404
