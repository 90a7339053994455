"""OTLP/JSON -> one tidy span table, vectorised with Arrow.

A run's ``spans.jsonl`` holds one ``ExportTraceServiceRequest`` per line (the Collector file
exporter's format: hex ids, 64-bit integers as strings). Parsing a million spans line by line in
Python takes longer than the whole analysis may, so the fast path hands the file to Arrow's
multi-threaded JSON reader with a fixed OTLP schema and flattens the nested lists with
``list_flatten``/``list_parent_indices``; no Python code runs per span.

Files that do not fit the schema (a torn last line, a number where OTLP puts a string, a producer
that writes enums as integers in one line and names in another) take the slow path:
:func:`normalise_lines` parses every line with :mod:`json`, counts and drops what is not OTLP, and
rewrites the rest in the canonical form the fast path reads. Malformed input is counted, never fatal.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from harness.steps import ATTR_PHASE, ATTR_STEP, CATALOGUE, Phase

# -- the OTLP/JSON schema the fast path reads -----------------------------------------------------
_SCALAR = [("stringValue", pa.string()), ("intValue", pa.string()), ("doubleValue", pa.float64()),
           ("boolValue", pa.bool_())]
ANY_VALUE = pa.struct(_SCALAR + [("bytesValue", pa.string()),
                                 ("arrayValue", pa.struct([("values", pa.list_(pa.struct(_SCALAR)))]))])
KEY_VALUES = pa.list_(pa.struct([("key", pa.string()), ("value", ANY_VALUE)]))


def _request_schema(enum_type: pa.DataType) -> pa.Schema:
    span = pa.struct([
        ("traceId", pa.string()), ("spanId", pa.string()), ("parentSpanId", pa.string()),
        ("name", pa.string()), ("kind", enum_type),
        ("startTimeUnixNano", pa.string()), ("endTimeUnixNano", pa.string()),
        ("attributes", KEY_VALUES),
        ("status", pa.struct([("code", enum_type), ("message", pa.string())])),
    ])
    scope_spans = pa.struct([("spans", pa.list_(span))])
    resource_spans = pa.struct([
        ("resource", pa.struct([("attributes", KEY_VALUES)])),
        ("scopeSpans", pa.list_(scope_spans)),
    ])
    return pa.schema([("resourceSpans", pa.list_(resource_spans))])


SCHEMA_ENUM_NAMES = _request_schema(pa.string())
SCHEMA_ENUM_INTS = _request_schema(pa.int64())

#: OTLP enum numbers -> the short names the span table uses.
KIND_NAMES = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}
#: Resource attributes that say nothing about the run (dropped from the table).
_NOISE_RESOURCE = ("telemetry.sdk.", "service.instance.id")
#: Attributes that become the table's own columns, not attribute columns.
_OWN = {ATTR_STEP, ATTR_PHASE, "service.name"}
#: A string attribute with fewer distinct values than this fraction of its rows becomes categorical.
_CATEGORY_RATIO = 0.5

#: Column order of the span table (attribute columns follow).
BASE_COLUMNS = ["trace_id", "span_id", "parent_span_id", "service", "name", "kind", "step", "phase",
                "start_ns", "end_ns", "duration_ms", "status_code", "status_message"]


@dataclass
class ParseStats:
    """What could not be read; kept in ``DataFrame.attrs`` so callers can report it."""

    lines: int = 0
    malformed_lines: int = 0
    malformed_spans: int = 0
    first_error: str | None = None

    def add(self, other: "ParseStats") -> None:
        self.lines += other.lines
        self.malformed_lines += other.malformed_lines
        self.malformed_spans += other.malformed_spans
        self.first_error = self.first_error or other.first_error


# -- fast path --------------------------------------------------------------------------------------
_ENUM_INT_SNIFF = re.compile(rb'"kind"\s*:\s*\d')


def _block_size(data: bytes | memoryview) -> int:
    """Arrow needs a block at least as long as the longest line (the harness writes 2048 spans/line)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    bounds = np.concatenate(([-1], newlines, [len(arr)]))
    longest = int(np.diff(bounds).max()) if len(bounds) > 1 else len(arr)
    size = 1 << 24  # 16 MiB: big blocks parse fastest
    while size <= longest + 1:
        size <<= 1
    return size


def read_otlp_table(data: bytes) -> pa.Table:
    """Parse OTLP/JSON lines with Arrow; raises ``pa.ArrowInvalid`` when a line does not fit."""
    schema = SCHEMA_ENUM_INTS if _ENUM_INT_SNIFF.search(data[:1 << 16]) else SCHEMA_ENUM_NAMES
    return pj.read_json(
        io.BytesIO(data),
        read_options=pj.ReadOptions(block_size=_block_size(data), use_threads=True),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore",
                                      newlines_in_values=False),
    )


# -- slow path: normalise anything OTLP-like, count the rest ----------------------------------------
def _enum_name(value: Any, names: dict[int, str], prefix: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"enum {value!r}")
    if isinstance(value, int):
        return f"{prefix}{names.get(value, 'UNSPECIFIED')}"
    if isinstance(value, str):
        return value
    raise ValueError(f"enum {value!r}")


def _hex_id(value: Any, nbytes: int) -> str | None:
    """Ids are hex in OTLP/JSON; protobuf's default JSON (base64) is accepted and converted."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"id {value!r}")
    if len(value) == 2 * nbytes and re.fullmatch(r"[0-9a-fA-F]+", value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"id {value!r}") from None
    if len(raw) != nbytes:
        raise ValueError(f"id {value!r}")
    return raw.hex()


def _any_value(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"attribute value {value!r}")
    out: dict[str, Any] = {}
    for key in ("stringValue", "bytesValue"):
        if key in value:
            out[key] = str(value[key])
    if "intValue" in value:
        out["intValue"] = str(int(value["intValue"]))
    if "doubleValue" in value:
        out["doubleValue"] = float(value["doubleValue"])
    if "boolValue" in value:
        out["boolValue"] = bool(value["boolValue"])
    if "arrayValue" in value:
        values = (value["arrayValue"] or {}).get("values") or []
        out["arrayValue"] = {"values": [
            {k: v for k, v in _any_value(item).items() if k != "arrayValue"} for item in values
        ]}
    if "kvlistValue" in value:  # nested maps: kept as their JSON text
        out["stringValue"] = json.dumps(value["kvlistValue"], sort_keys=True)
    return out


def _attributes(attrs: Any) -> list[dict[str, Any]]:
    if attrs is None:
        return []
    if not isinstance(attrs, list):
        raise ValueError("attributes is not a list")
    out = []
    for kv in attrs:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise ValueError(f"attribute {kv!r}")
        out.append({"key": kv["key"], "value": _any_value(kv.get("value") or {})})
    return out


def _span(span: Any) -> dict[str, Any]:
    if not isinstance(span, dict):
        raise ValueError("span is not an object")
    trace_id, span_id = _hex_id(span.get("traceId"), 16), _hex_id(span.get("spanId"), 8)
    if trace_id is None or span_id is None:
        raise ValueError("span without traceId or spanId")
    start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
    status = span.get("status") or {}
    if not isinstance(status, dict):
        raise ValueError("status is not an object")
    return {
        "traceId": trace_id, "spanId": span_id, "parentSpanId": _hex_id(span.get("parentSpanId"), 8),
        "name": str(span.get("name", "")), "kind": _enum_name(span.get("kind"), KIND_NAMES, "SPAN_KIND_"),
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
        "attributes": _attributes(span.get("attributes")),
        "status": {"code": _enum_name(status.get("code"), STATUS_NAMES, "STATUS_CODE_"),
                   "message": status.get("message")},
    }


def normalise_request(request: Any, stats: ParseStats) -> dict[str, Any] | None:
    """One request in canonical OTLP/JSON, bad spans dropped (and counted); None if not OTLP."""
    if not isinstance(request, dict) or not isinstance(request.get("resourceSpans"), list):
        return None
    out_rs = []
    for rs in request["resourceSpans"]:
        if not isinstance(rs, dict):
            stats.malformed_spans += 1
            continue
        try:
            resource = {"attributes": _attributes((rs.get("resource") or {}).get("attributes"))}
        except (ValueError, TypeError, AttributeError):
            resource = {"attributes": []}
        scopes = []
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            spans = []
            for span in (ss or {}).get("spans") or [] if isinstance(ss, dict) else []:
                try:
                    spans.append(_span(span))
                except (ValueError, TypeError, KeyError, OverflowError) as exc:
                    stats.malformed_spans += 1
                    stats.first_error = stats.first_error or f"bad span: {exc}"
            scopes.append({"spans": spans})
        out_rs.append({"resource": resource, "scopeSpans": scopes})
    return {"resourceSpans": out_rs}


def normalise_lines(lines: Iterable[bytes], stats: ParseStats) -> bytes:
    """Re-encode every readable line canonically; unreadable lines are counted in ``stats``."""
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        stats.lines += 1
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            request, error = None, f"line {number}: {exc}"
        else:
            error = f"line {number}: not an OTLP ExportTraceServiceRequest"
        fixed = normalise_request(request, stats) if request is not None else None
        if fixed is None:
            stats.malformed_lines += 1
            stats.first_error = stats.first_error or error
            continue
        out.append(json.dumps(fixed, separators=(",", ":")).encode())
    return b"\n".join(out) + b"\n" if out else b""


def parse_otlp_bytes(data: bytes, stats: ParseStats | None = None) -> tuple[pd.DataFrame, ParseStats]:
    """OTLP/JSON lines -> span table (see :func:`spans_frame`), with what was malformed."""
    stats = stats or ParseStats()
    if not data.strip():
        return empty_frame(), stats
    try:
        table = read_otlp_table(data)
        stats.lines += int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10)) + (
            0 if data.endswith(b"\n") else 1)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        clean = normalise_lines(data.splitlines(), stats)
        if not clean:
            return empty_frame(), stats
        table = pj.read_json(io.BytesIO(clean), read_options=pj.ReadOptions(block_size=_block_size(clean)),
                             parse_options=pj.ParseOptions(explicit_schema=SCHEMA_ENUM_NAMES,
                                                           unexpected_field_behavior="ignore"))
    frame, bad = spans_frame(table)
    stats.malformed_spans += bad
    return frame, stats


# -- flattening -------------------------------------------------------------------------------------
def _flatten(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Items of a list array and, for each, the index of the list it came from."""
    return pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy()


def _field(arr: pa.Array, name: str) -> pa.Array:
    return pc.struct_field(arr, name)


def _resource_table(resources: pa.Array) -> pd.DataFrame:
    """Resource attributes, one row per resource (a few per line: cheap in Python)."""
    rows = []
    for attrs in _field(resources, "attributes").to_pylist():
        row: dict[str, Any] = {}
        for kv in attrs or ():
            key = kv["key"]
            if key.startswith(_NOISE_RESOURCE):
                continue
            row[key] = _scalar(kv["value"] or {})
        rows.append(row)
    return pd.DataFrame(rows, index=range(len(rows)))


def _scalar(value: dict[str, Any]) -> Any:
    if value.get("stringValue") is not None:
        return value["stringValue"]
    if value.get("intValue") is not None:
        return int(value["intValue"])
    if value.get("doubleValue") is not None:
        return value["doubleValue"]
    if value.get("boolValue") is not None:
        return value["boolValue"]
    return None


def _scatter(values: pa.Array, rows: np.ndarray, n: int) -> pa.Array:
    """A length-``n`` array holding ``values[i]`` at ``rows[i]`` and null elsewhere."""
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    return values.take(pa.array(pos, mask=pos < 0))


def _to_series(arr: pa.Array) -> pd.Series:
    """Arrow column -> pandas with a nullable dtype that keeps memory small."""
    t = arr.type
    if pa.types.is_integer(t):
        return pd.Series(arr.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))
    if pa.types.is_floating(t):
        return pd.Series(arr.to_numpy(zero_copy_only=False))
    if pa.types.is_boolean(t):
        return pd.Series(arr.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        valid = len(arr) - arr.null_count
        enc = pc.dictionary_encode(arr)
        if valid and len(enc.dictionary) <= max(1, _CATEGORY_RATIO * valid):
            return pd.Series(enc.to_pandas())
        return pd.Series(arr.to_pandas())
    return pd.Series(arr.to_pylist(), dtype=object)


def _attribute_columns(attrs: pa.Array, n: int) -> dict[str, pd.Series]:
    """Span attributes as one column per key (nulls where a span lacks the key)."""
    kv, span_of = _flatten(attrs)
    if len(kv) == 0:
        return {}
    keys = pc.dictionary_encode(_field(kv, "key"))
    codes = keys.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(codes, minlength=len(keys.dictionary)))))
    value = _field(kv, "value")
    columns: dict[str, pd.Series] = {}
    for k, key in enumerate(keys.dictionary.to_pylist()):
        rows = order[bounds[k]:bounds[k + 1]]
        if key in _OWN or len(rows) == 0:
            continue
        vals = value.take(pa.array(rows))
        columns[key] = _to_series(_scatter(_typed_value(vals), span_of[rows], n))
    return columns


def _array_strings(arr: pa.Array) -> pa.Array:
    """``arrayValue`` attributes as lists of strings (the harness's are lists of strings)."""
    return pa.array([None if v is None else [str(_scalar(x)) for x in v["values"] or ()]
                     for v in arr.to_pylist()], pa.list_(pa.string()))


def _typed_value(vals: pa.StructArray) -> pa.Array:
    """The one typed array an attribute's values fit (strings when a key mixes types)."""
    present = {name: _field(vals, name) for name in ("stringValue", "intValue", "doubleValue", "boolValue",
                                                      "bytesValue", "arrayValue")}
    present = {k: v for k, v in present.items() if v.null_count < len(v)}
    if not present:
        return pa.nulls(len(vals), pa.string())
    if len(present) == 1:
        name, arr = next(iter(present.items()))
        if name == "intValue":
            return pc.cast(arr, pa.int64())
        if name == "arrayValue":
            return _array_strings(arr)
        return arr
    if set(present) == {"intValue", "doubleValue"}:
        return pc.coalesce(pc.cast(present["intValue"], pa.float64()), present["doubleValue"])
    out = pa.nulls(len(vals), pa.string())
    for name, arr in present.items():
        if name == "arrayValue":
            arr = pa.array([None if v is None else json.dumps(v) for v in _array_strings(arr).to_pylist()],
                           pa.string())
        out = pc.coalesce(out, pc.cast(arr, pa.string()))
    return out


#: Step number -> phase name (index 0: no step).
_STEP_PHASE = np.array([""] + [CATALOGUE[s].phase.value for s in sorted(CATALOGUE)], dtype=object)
#: Phase categories in the catalogue's order.
PHASES = [p.value for p in Phase]


def _enum_short(arr: pa.Array, names: dict[int, str], prefix: str, default: str) -> pd.Series:
    if pa.types.is_integer(arr.type):
        mapped = pd.Series(arr.to_numpy(zero_copy_only=False)).map(names)
        return mapped.fillna(default).astype("category")
    short = pc.replace_substring_regex(arr, f"^{prefix}", "")
    return pd.Series(pc.fill_null(short, default).to_pandas()).astype("category")


def spans_frame(table: pa.Table) -> tuple[pd.DataFrame, int]:
    """Flatten a table of requests into a row per span; returns it and the spans dropped as bad."""
    rs_lists = table.column("resourceSpans").combine_chunks()
    rs, _ = _flatten(rs_lists)
    ss, rs_of_ss = _flatten(_field(rs, "scopeSpans"))
    sp, ss_of_sp = _flatten(_field(ss, "spans"))
    rs_of_sp = rs_of_ss[ss_of_sp]

    ids = {k: _field(sp, k) for k in ("traceId", "spanId", "startTimeUnixNano", "endTimeUnixNano")}
    good = pc.and_(pc.and_(pc.is_valid(ids["traceId"]), pc.is_valid(ids["spanId"])),
                   pc.and_(pc.is_valid(ids["startTimeUnixNano"]), pc.is_valid(ids["endTimeUnixNano"])))
    good = pc.and_(good, pc.and_(pc.utf8_is_alnum(pc.fill_null(ids["startTimeUnixNano"], "x")),
                                 pc.utf8_is_alnum(pc.fill_null(ids["endTimeUnixNano"], "x"))))
    bad = len(sp) - pc.sum(pc.cast(good, pa.int64())).as_py() if len(sp) else 0
    if bad:
        sp, rs_of_sp = sp.filter(good), rs_of_sp[np.asarray(good.to_numpy(zero_copy_only=False))]
    n = len(sp)
    if n == 0:
        return empty_frame(), bad

    start = pc.cast(_field(sp, "startTimeUnixNano"), pa.int64()).to_numpy()
    end = pc.cast(_field(sp, "endTimeUnixNano"), pa.int64()).to_numpy()
    parent = pc.if_else(pc.equal(pc.fill_null(_field(sp, "parentSpanId"), ""), ""), None,
                        _field(sp, "parentSpanId"))
    attr_cols = _attribute_columns(_field(sp, "attributes"), n)

    step = _step_column(_field(sp, "attributes"), n)
    phase = _STEP_PHASE[step.fillna(0).to_numpy(dtype=np.int64)]
    phase = np.where(phase == "", _phase_attribute(_field(sp, "attributes"), n), phase)
    phase = np.where(phase == "", None, phase)

    resources = _resource_table(_field(rs, "resource"))
    status = _field(sp, "status")
    frame = pd.DataFrame({
        "trace_id": _lower(_field(sp, "traceId")).to_pandas(),
        "span_id": _lower(_field(sp, "spanId")).to_pandas(),
        "parent_span_id": _lower(parent).to_pandas(),
        "service": _resource_values(resources, "service.name", rs_of_sp),
        "name": pd.Series(pc.dictionary_encode(_field(sp, "name")).to_pandas()),
        "kind": _enum_short(_field(sp, "kind"), KIND_NAMES, "SPAN_KIND_", "UNSPECIFIED"),
        "step": step,
        "phase": pd.Categorical(phase, categories=PHASES + _extra_phases(phase)),
        "start_ns": start,
        "end_ns": end,
        "duration_ms": (end - start) / 1e6,
        "status_code": _enum_short(_field(status, "code"), STATUS_NAMES, "STATUS_CODE_", "UNSET"),
        "status_message": _field(status, "message").to_pandas(),
    })
    for key in resources.columns:
        if key != "service.name":
            frame[key] = _resource_values(resources, key, rs_of_sp)
    for key, col in attr_cols.items():
        if key not in frame.columns:
            frame[key] = col.values
    return frame, bad


def _lower(arr: pa.Array) -> pa.Array:
    """Hex ids in lower case (Jaeger and the SDK agree on that)."""
    return pc.utf8_lower(arr)


def _extra_phases(phase: np.ndarray) -> list[str]:
    """Phases named by an attribute but not in the catalogue (kept rather than lost)."""
    return sorted({p for p in pd.unique(phase) if p is not None and p not in PHASES})


def _resource_values(resources: pd.DataFrame, key: str, rs_of_sp: np.ndarray) -> pd.Series:
    if key not in resources.columns:
        return pd.Series(pd.Categorical([None] * len(rs_of_sp)))
    col = resources[key]
    if col.map(lambda v: isinstance(v, str) or v is None or v != v).all():
        cat = pd.Categorical(col.where(col.notna(), None))
        return pd.Series(pd.Categorical.from_codes(cat.codes[rs_of_sp], categories=cat.categories))
    return pd.Series(col.to_numpy()[rs_of_sp])


def _attribute_lookup(attrs: pa.Array, key: str, n: int) -> tuple[pa.Array, np.ndarray]:
    kv, span_of = _flatten(attrs)
    mask = pc.equal(_field(kv, "key"), key)
    rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    return _field(kv, "value").take(pa.array(rows)), span_of[rows]


def _step_column(attrs: pa.Array, n: int) -> pd.Series:
    """``openstack.boot.step`` as nullable Int64 (an int in OTLP, a string from some exporters)."""
    vals, rows = _attribute_lookup(attrs, ATTR_STEP, n)
    raw = pc.coalesce(_field(vals, "intValue"), _field(vals, "stringValue"),
                      pc.cast(_field(vals, "doubleValue"), pa.string()))
    numeric = pd.to_numeric(pd.Series(raw.to_pandas(), dtype=object), errors="coerce")
    out = np.full(n, np.nan)
    out[rows] = numeric.to_numpy(dtype=float)
    valid = ~np.isnan(out) & (out == np.floor(out)) & (out >= 1) & (out <= len(CATALOGUE))
    return pd.Series(pd.array(np.where(valid, out, 0).astype(np.int64), dtype="Int64")).mask(~valid)


def _phase_attribute(attrs: pa.Array, n: int) -> np.ndarray:
    vals, rows = _attribute_lookup(attrs, ATTR_PHASE, n)
    out = np.full(n, "", dtype=object)
    strings = _field(vals, "stringValue").to_numpy(zero_copy_only=False)
    out[rows] = np.where(pd.isna(strings), "", strings)
    return out


def empty_frame() -> pd.DataFrame:
    """A span table with no rows but every base column (so callers need no special case)."""
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in BASE_COLUMNS})
    frame["step"] = frame["step"].astype("Int64")
    for c in ("start_ns", "end_ns"):
        frame[c] = frame[c].astype(np.int64)
    frame["duration_ms"] = frame["duration_ms"].astype(float)
    return frame
