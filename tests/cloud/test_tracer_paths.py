"""A boot's trace content does not depend on how the harness records spans.

The same boots (seeded cloud, one at a time) run twice, once with every span made by the SDK's
own ``start_span`` (``HARNESS_TRACER_PATH=sdk``) and once with the harness's light spans (the
default), and the spans files must hold the same spans: service, name, kind, parent's service and
name, every attribute (ids, ports and timings replaced by placeholders), status, events. Ids and
times are the only things allowed to differ.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from harness.client import CloudError, OpenStackClient
from harness.tracer import PATH_VARIABLE
from tests.spanfile import read_spans

BOOTS = 30
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
_PORT = re.compile(r"(127\.0\.0\.1|localhost):\d+")
# values that differ between two runs of the same boots: ports, and the driver's own counters
_VOLATILE_INTS = {"server.port", "harness.boot.index"}


def _norm(key: str, value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_norm(key, v) for v in value)
    if isinstance(value, float):
        return "<float>"  # durations, queue waits, weights computed from timings
    if isinstance(value, str):
        return _PORT.sub(r"\1:<port>", _ID.sub("<id>", value))
    if key in _VOLATILE_INTS:
        return "<int>"
    return value


def _attrs(attrs: dict[str, Any]) -> tuple:
    return tuple(sorted((k, _norm(k, v)) for k, v in attrs.items() if k != "exception.stacktrace"))


def _event_attrs(event: dict[str, Any]) -> tuple:
    from tests.spanfile import _value

    return _attrs({a["key"]: _value(a["value"]) for a in event.get("attributes", [])})


def _content(path) -> tuple[Counter, set]:
    """The spans of every trace but the status polls, counted; the polls' distinct spans (how many
    polls a boot takes depends on timing)."""
    spans = read_spans(path)
    by_id = {s.span_id: s for s in spans}
    polls = {s.trace_id for s in spans if s.parent_id is None and s.name.startswith("GET ")}
    counted: Counter = Counter()
    polled: set = set()
    for s in spans:
        parent = by_id.get(s.parent_id) if s.parent_id else None
        key = (
            s.service, s.name, s.kind,
            (parent.service, parent.name) if parent else ("remote" if s.parent_id else None),
            _attrs(s.attrs), tuple(sorted(s.status.items())),
            tuple((e["name"], _event_attrs(e)) for e in s.events),
        )
        if s.trace_id in polls:
            polled.add(key)
        else:
            counted[key] += 1
    return counted, polled


async def _boots(make_cloud, tmp_path, monkeypatch, path: str) -> tuple[Counter, set]:
    monkeypatch.setenv(PATH_VARIABLE, path)
    cloud = make_cloud(run_dir=tmp_path / path, profile="zero")
    async with cloud:
        assert {s.tracer.mode for s in cloud.services} == {path}
        async with OpenStackClient(cloud.auth_url) as client:
            await client.authenticate()
            image = next(i["id"] for i in await client.images() if i["name"].startswith("cirros"))
            servers = []
            for i in range(BOOTS):
                server = await client.create_server(f"vm-{i}", flavor="1", image=image)
                final = await client.wait_for_status(server["id"], timeout=60)
                assert final["status"] == "ACTIVE", final
                servers.append(server["id"])
            await client.delete_server(servers[0])
            await client.wait_for_delete(servers[0], timeout=60)
            assert await client.get_server("00000000-0000-0000-0000-000000000000") is None
            try:  # a bad request: its error spans too
                await client.create_server("bad", flavor="1", image="no-such-image")
            except CloudError as err:
                assert 400 <= err.status < 500, err
    return _content(cloud.run_dir / "spans.jsonl")


async def test_the_light_spans_of_30_boots_are_the_sdk_spans(make_cloud, tmp_path, monkeypatch):
    sdk, sdk_polls = await _boots(make_cloud, tmp_path, monkeypatch, "sdk")
    light, light_polls = await _boots(make_cloud, tmp_path, monkeypatch, "light")
    assert sum(sdk.values()) > BOOTS * 50  # the boots' spans, not an empty file
    assert {k for k in sdk if k[6]}, "no span with an event: the error paths were not traced"
    missing, extra = sdk - light, light - sdk
    assert not missing and not extra, (list(missing.items())[:5], list(extra.items())[:5])
    assert sdk_polls and sdk_polls == light_polls, (sdk_polls ^ light_polls)
