"""Reading a run's spans file in tests, independently of the analysis package."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SpanRec:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str  # SPAN_KIND_* name
    start: int
    end: int
    attrs: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def step(self) -> int | None:
        v = self.attrs.get("openstack.boot.step")
        return int(v) if v is not None else None


def _value(v: dict[str, Any]) -> Any:
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    (kind, val), = v.items()
    return int(val) if kind == "intValue" else val


_KINDS = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
          "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"]
_CODES = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]


def _kind(v: Any) -> str:
    """OTLP/JSON writes enums as integers (the Collector's form); names are accepted too."""
    return _KINDS[v] if isinstance(v, int) else str(v)


def _status(st: dict[str, Any]) -> dict[str, Any]:
    code = st.get("code")
    return {**st, "code": _CODES[code]} if isinstance(code, int) else dict(st)


def read_spans(path: Path) -> list[SpanRec]:
    out = []
    for line in Path(path).read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            res = {a["key"]: _value(a["value"]) for a in rs["resource"]["attributes"]}
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    out.append(SpanRec(
                        service=res["service.name"], name=s["name"], trace_id=s["traceId"],
                        span_id=s["spanId"], parent_id=s.get("parentSpanId") or None,
                        kind=_kind(s.get("kind", 0)), start=int(s["startTimeUnixNano"]),
                        end=int(s["endTimeUnixNano"]),
                        attrs={a["key"]: _value(a["value"]) for a in s.get("attributes", [])},
                        status=_status(s.get("status", {})), events=s.get("events", []),
                    ))
    return out


def by_trace(spans: list[SpanRec]) -> dict[str, list[SpanRec]]:
    d: dict[str, list[SpanRec]] = defaultdict(list)
    for s in spans:
        d[s.trace_id].append(s)
    return d


def boot_traces(spans: list[SpanRec]) -> dict[str, list[SpanRec]]:
    """Traces that hold a boot (a step-3 span), keyed by the instance id of that boot."""
    out = {}
    for tid, ss in by_trace(spans).items():
        root = [s for s in ss if s.step == 3]
        if root:
            out[root[0].attrs.get("openstack.instance.id", tid)] = ss
    return out
