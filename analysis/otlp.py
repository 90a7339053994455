"""OTLP/JSON -> one tidy span table, vectorised with Arrow.

A run's ``spans.jsonl`` holds one ``ExportTraceServiceRequest`` per line (the Collector file
exporter's format: hex ids, 64-bit integers as strings). Parsing a million spans line by line in
Python takes longer than the whole analysis may, so the fast path hands the file to Arrow's
multi-threaded JSON reader with a fixed OTLP schema and flattens the nested lists with
``list_flatten``/``list_parent_indices``; no Python code runs per span. The file is memory-mapped
and read in pieces of :data:`CHUNK_BYTES`, each flattened to a compact Arrow table (attributes
become one column per key, repeated strings dictionary-encoded) before the next is parsed, so memory
stays near the result's size; the pieces are joined and converted to pandas once.

A piece that does not fit the schema (a torn last line, a number where OTLP puts a string, a
producer that writes enums as integers in one line and names in another) takes the slow path:
:func:`normalise_lines` parses its lines with :mod:`json`, counts and drops what is not OTLP, and
rewrites the rest in the canonical form the fast path reads. Malformed input is counted, never fatal.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import mmap
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from harness.steps import ATTR_PHASE, ATTR_STEP, CATALOGUE, Phase

# -- the OTLP/JSON schema the fast path reads -----------------------------------------------------
_SCALAR = [
    ("stringValue", pa.string()),
    ("intValue", pa.string()),
    ("doubleValue", pa.float64()),
    ("boolValue", pa.bool_()),
]
ANY_VALUE = pa.struct(
    _SCALAR
    + [("bytesValue", pa.string()), ("arrayValue", pa.struct([("values", pa.list_(pa.struct(_SCALAR)))]))]
)
KEY_VALUES = pa.list_(pa.struct([("key", pa.string()), ("value", ANY_VALUE)]))


def _request_schema(enum_type: pa.DataType) -> pa.Schema:
    span = pa.struct(
        [
            ("traceId", pa.string()),
            ("spanId", pa.string()),
            ("parentSpanId", pa.string()),
            ("name", pa.string()),
            ("kind", enum_type),
            ("startTimeUnixNano", pa.string()),
            ("endTimeUnixNano", pa.string()),
            ("attributes", KEY_VALUES),
            ("status", pa.struct([("code", enum_type), ("message", pa.string())])),
        ]
    )
    scope_spans = pa.struct([("spans", pa.list_(span))])
    resource_spans = pa.struct(
        [
            ("resource", pa.struct([("attributes", KEY_VALUES)])),
            ("scopeSpans", pa.list_(scope_spans)),
        ]
    )
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

#: Pieces the loader reads a file in (memory stays near one piece plus the result). Arrow parses a
#: piece's blocks on both cores; few, large blocks keep the per-block flattening overhead small.
CHUNK_BYTES = 128 << 20
#: Arrow's parse block (one thread each); grown for a piece whose lines are longer.
BLOCK_BYTES = 32 << 20
#: Column order of the span table (attribute columns follow).
BASE_COLUMNS = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "name",
    "kind",
    "step",
    "phase",
    "start_ns",
    "end_ns",
    "duration_ms",
    "status_code",
    "status_message",
]


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


def read_otlp_table(data: bytes | memoryview) -> pa.Table:
    """Parse OTLP/JSON lines with Arrow; raises ``pa.ArrowInvalid`` when a line does not fit."""
    schema = SCHEMA_ENUM_INTS if _ENUM_INT_SNIFF.search(data[: 1 << 16]) else SCHEMA_ENUM_NAMES
    block = BLOCK_BYTES
    while True:
        try:
            return pj.read_json(
                pa.BufferReader(pa.py_buffer(data)),
                read_options=pj.ReadOptions(block_size=block, use_threads=True),
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            )
        except pa.ArrowInvalid as exc:
            # a line longer than a block (the harness writes up to 2048 spans a line)
            if "straddling" not in str(exc) or block > len(data):
                raise
            block *= 4


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
        out["arrayValue"] = {
            "values": [{k: v for k, v in _any_value(item).items() if k != "arrayValue"} for item in values]
        }
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
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": _hex_id(span.get("parentSpanId"), 8),
        "name": str(span.get("name", "")),
        "kind": _enum_name(span.get("kind"), KIND_NAMES, "SPAN_KIND_"),
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": _attributes(span.get("attributes")),
        "status": {
            "code": _enum_name(status.get("code"), STATUS_NAMES, "STATUS_CODE_"),
            "message": status.get("message"),
        },
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


def iter_chunks(fh: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Pieces of a lines file, each ending at a line end (a line longer than a piece stays whole)."""
    rest = b""
    while True:
        block = fh.read(chunk_bytes)
        if not block:
            break
        data = rest + block if rest else block
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        yield data[: cut + 1]
        rest = data[cut + 1 :]
    if rest:
        yield rest


def parse_piece(data: bytes | memoryview, stats: ParseStats) -> pa.Table | None:
    """Parse one piece of a lines file into a table of requests (None: nothing readable)."""
    try:
        table = read_otlp_table(data)
        stats.lines += table.num_rows  # a row per JSON line (blank lines are not lines)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        clean = normalise_lines(bytes(data).splitlines(), stats)
        if not clean:
            return None
        table = read_otlp_table(clean)
    return table


def flatten_piece(table: pa.Table) -> tuple[pa.Table | None, int, int]:
    """A parsed piece as a flat table of spans, the spans dropped as bad and the lines that were
    JSON objects but not requests."""
    flat, bad = flat_spans(table)
    return flat, bad, table.column("resourceSpans").null_count


def _collect(result: tuple[pa.Table | None, int, int], tables: list[pa.Table], stats: ParseStats) -> None:
    flat, bad, not_otlp = result
    stats.malformed_spans += bad
    if not_otlp:
        stats.malformed_lines += not_otlp
        stats.first_error = stats.first_error or "a line is JSON but not an ExportTraceServiceRequest"
    if flat is not None:
        tables.append(flat)


def _piece_bounds(mm: mmap.mmap, size: int, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each piece: about ``chunk_bytes`` long, ending at a line end."""
    pos = 0
    while pos < size:
        end = size
        if pos + chunk_bytes < size:
            cut = mm.rfind(b"\n", pos, pos + chunk_bytes)
            if cut < 0:  # one line longer than a piece: take it whole
                cut = mm.find(b"\n", pos + chunk_bytes)
            end = size if cut < 0 else cut + 1
        yield pos, end
        pos = end


def parse_otlp_file(
    path: str | os.PathLike, stats: ParseStats | None = None, chunk_bytes: int = CHUNK_BYTES
) -> tuple[pd.DataFrame, ParseStats]:
    """A spans file, memory-mapped and parsed piece by piece (no copy of the file in memory).

    While Arrow parses a piece, a worker thread flattens the one before it (both release the GIL
    for most of their work), so the two steps overlap.
    """
    stats = stats or ParseStats()
    tables: list[pa.Table] = []
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return empty_frame(), stats
        with (
            mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-flatten") as pool,
        ):
            view = memoryview(mm)
            pending: Future | None = None
            try:
                for pos, end in _piece_bounds(mm, size, chunk_bytes):
                    piece = view[pos:end]
                    nested = parse_piece(piece, stats)
                    piece.release()
                    if hasattr(mm, "madvise"):  # parsed pages need not stay resident
                        start = pos - pos % mmap.PAGESIZE
                        mm.madvise(mmap.MADV_DONTNEED, start, end - start)
                    if pending is not None:
                        _collect(pending.result(), tables, stats)
                    pending = pool.submit(flatten_piece, nested) if nested is not None else None
                if pending is not None:
                    _collect(pending.result(), tables, stats)
            finally:
                view.release()
    return to_frame(tables), stats


def parse_otlp_bytes(data: bytes, stats: ParseStats | None = None) -> tuple[pd.DataFrame, ParseStats]:
    """OTLP/JSON lines (bytes) -> span table, with what was malformed."""
    return parse_otlp_stream(io.BytesIO(data), stats)


def parse_otlp_stream(
    fh: BinaryIO, stats: ParseStats | None = None, chunk_bytes: int = CHUNK_BYTES
) -> tuple[pd.DataFrame, ParseStats]:
    """OTLP/JSON lines read piece by piece (memory stays near one piece plus the result)."""
    stats = stats or ParseStats()
    tables: list[pa.Table] = []
    for piece in iter_chunks(fh, chunk_bytes):
        nested = parse_piece(piece, stats)
        if nested is not None:
            _collect(flatten_piece(nested), tables, stats)
    return to_frame(tables), stats


# -- flattening -------------------------------------------------------------------------------------
def _flatten(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Items of a list array and, for each, the index of the list it came from."""
    return pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy()


def _field(arr: pa.Array, name: str) -> pa.Array:
    return pc.struct_field(arr, name)


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


def _resource_columns(resources: pa.Array, rs_of_sp: np.ndarray) -> dict[str, pa.Array]:
    """Resource attributes broadcast to the spans (a few resources per line: cheap in Python)."""
    rows: list[dict[str, Any]] = []
    for attrs in _field(resources, "attributes").to_pylist():
        row: dict[str, Any] = {}
        for kv in attrs or ():
            if not kv["key"].startswith(_NOISE_RESOURCE):
                row[kv["key"]] = _scalar(kv["value"] or {})
        rows.append(row)
    out: dict[str, pa.Array] = {}
    idx = pa.array(rs_of_sp)
    for key in dict.fromkeys(k for row in rows for k in row):
        values = [row.get(key) for row in rows]
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array([None if v is None else str(v) for v in values], pa.string())
        if pa.types.is_string(arr.type):
            enc = pc.dictionary_encode(arr)
            out[key] = pa.DictionaryArray.from_arrays(enc.indices.take(idx), enc.dictionary)
        else:
            out[key] = arr.take(idx)
    return out


_VALUE_FIELDS = ("stringValue", "intValue", "doubleValue", "boolValue", "bytesValue", "arrayValue")


def _attribute_columns(attrs: pa.Array, n: int) -> dict[str, pa.Array]:
    """Span attributes as one column per key (nulls where a span lacks the key).

    The key-value pairs are grouped by key with one sort; a key whose values all use one scalar
    field (the usual case) is scattered with NumPy, its strings dictionary-encoded.
    """
    kv, span_of = _flatten(attrs)
    if len(kv) == 0:
        return {}
    keys = pc.dictionary_encode(_field(kv, "key"))
    codes = keys.indices.to_numpy(zero_copy_only=False)
    n_keys = len(keys.dictionary)
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(codes, minlength=n_keys))))
    value = _field(kv, "value")
    fields = {name: _field(value, name) for name in _VALUE_FIELDS}
    present = {
        name: np.bincount(codes, weights=arr.is_valid().to_numpy(zero_copy_only=False), minlength=n_keys) > 0
        for name, arr in fields.items()
        if arr.null_count < len(arr)
    }
    columns: dict[str, pa.Array] = {}
    for k, key in enumerate(keys.dictionary.to_pylist()):
        rows = order[bounds[k] : bounds[k + 1]]
        if len(rows) == 0:
            continue
        used = [name for name, mask in present.items() if mask[k]]
        targets = span_of[rows]
        if used == ["stringValue"]:
            enc = pc.dictionary_encode(fields["stringValue"].take(rows))
            columns[key] = _scatter_dictionary(enc, targets, n)
        elif used == ["intValue"]:
            columns[key] = _scatter(pc.cast(fields["intValue"].take(rows), pa.int64()), targets, n)
        elif used in (["doubleValue"], ["boolValue"]):
            columns[key] = _scatter(fields[used[0]].take(rows), targets, n)
        else:
            typed = _typed_value(value.take(pa.array(rows)))
            if pa.types.is_string(typed.type):
                typed = pc.dictionary_encode(typed)
            columns[key] = _scatter(typed, targets, n)
    return columns


def _scatter_dictionary(enc: pa.DictionaryArray, rows: np.ndarray, n: int) -> pa.Array:
    """Like :func:`_scatter`, moving only the dictionary indices."""
    idx = np.full(n, -1, dtype=np.int32)
    idx[rows] = enc.indices.to_numpy(zero_copy_only=False)
    return pa.DictionaryArray.from_arrays(pa.array(idx, mask=idx < 0), enc.dictionary)


def _array_strings(arr: pa.Array) -> pa.Array:
    """``arrayValue`` attributes as lists of strings (the harness's are lists of strings)."""
    return pa.array(
        [None if v is None else [str(_scalar(x)) for x in v["values"] or ()] for v in arr.to_pylist()],
        pa.list_(pa.string()),
    )


def _typed_value(vals: pa.StructArray) -> pa.Array:
    """The one typed array an attribute's values fit (strings when a key mixes types)."""
    present = {
        name: _field(vals, name)
        for name in ("stringValue", "intValue", "doubleValue", "boolValue", "bytesValue", "arrayValue")
    }
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
            arr = pa.array(
                [None if v is None else json.dumps(v) for v in _array_strings(arr).to_pylist()], pa.string()
            )
        out = pc.coalesce(out, pc.cast(arr, pa.string()))
    return out


#: Step number -> phase index in PHASES (index 0: no step -> -1).
PHASES = [p.value for p in Phase]
_STEP_PHASE = np.array([-1] + [PHASES.index(CATALOGUE[s].phase.value) for s in sorted(CATALOGUE)])


def _short_enum(arr: pa.Array, names: dict[int, str], prefix: str, default: str) -> pa.Array:
    """``SPAN_KIND_SERVER`` or ``2`` -> ``SERVER`` (worked on the few distinct values only)."""
    if pa.types.is_integer(arr.type):
        arr = pc.cast(arr, pa.string())
        enc = pc.dictionary_encode(pc.fill_null(arr, "0"))
        names_by_str = {str(k): v for k, v in names.items()}
        short = pa.array([names_by_str.get(v, default) for v in enc.dictionary.to_pylist()], pa.string())
    else:
        enc = pc.dictionary_encode(pc.fill_null(arr, default))
        short = pc.replace_substring_regex(enc.dictionary, f"^{prefix}", "")
    return pc.dictionary_encode(pc.take(short, enc.indices))


def _step_and_phase(attr_cols: dict[str, pa.Array], n: int) -> tuple[pa.Array, pa.Array]:
    """``step`` (int64, null when a span is not a boot step) and ``phase`` (dictionary)."""
    raw = attr_cols.pop(ATTR_STEP, None)
    if raw is None:
        step = np.zeros(n, dtype=np.int64)
    else:
        if pa.types.is_dictionary(raw.type):
            raw = raw.cast(pa.string())
        if not pa.types.is_integer(raw.type):
            numeric = pd.to_numeric(pd.Series(raw.to_pandas(), dtype=object), errors="coerce")
            raw = pa.array(numeric.where(numeric == numeric.round()).astype("Int64"))
        step = pc.fill_null(raw, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        step[(step < 1) | (step > len(CATALOGUE))] = 0
    phase_idx = _STEP_PHASE[step]
    extra: list[str] = []
    attr = attr_cols.pop(ATTR_PHASE, None)
    if attr is not None:
        named = pc.fill_null(attr.cast(pa.string()), "").to_numpy(zero_copy_only=False)
        missing = (phase_idx < 0) & (named != "")
        if missing.any():
            values = named[missing]
            extra = sorted(set(values) - set(PHASES))
            lookup = {p: i for i, p in enumerate(PHASES + extra)}
            phase_idx[missing] = [lookup[v] for v in values]
    phase = pa.DictionaryArray.from_arrays(
        pa.array(phase_idx, mask=phase_idx < 0, type=pa.int32()), pa.array(PHASES + extra, pa.string())
    )
    return pa.array(step, mask=step == 0), phase


def flat_spans(table: pa.Table) -> tuple[pa.Table | None, int]:
    """Flatten parsed requests into an Arrow table, a row a span; also the spans dropped as bad."""
    parts, bad = [], 0
    for chunk in table.column("resourceSpans").chunks:
        part, b = _flat_chunk(chunk)
        bad += b
        if part is not None:
            parts.append(part)
    return (_concat(parts) if parts else None), bad


def _flat_chunk(rs_lists: pa.Array) -> tuple[pa.Table | None, int]:
    rs, _ = _flatten(rs_lists)
    ss, rs_of_ss = _flatten(_field(rs, "scopeSpans"))
    sp, ss_of_sp = _flatten(_field(ss, "spans"))
    rs_of_sp = rs_of_ss[ss_of_sp]
    start_s, end_s = _field(sp, "startTimeUnixNano"), _field(sp, "endTimeUnixNano")
    good = pc.and_(
        pc.and_(pc.is_valid(_field(sp, "traceId")), pc.is_valid(_field(sp, "spanId"))),
        pc.and_(pc.utf8_is_numeric(pc.fill_null(start_s, "x")), pc.utf8_is_numeric(pc.fill_null(end_s, "x"))),
    )
    n_good = pc.sum(pc.cast(good, pa.int64())).as_py() or 0
    bad = len(sp) - n_good
    if bad:
        keep = good.to_numpy(zero_copy_only=False)
        sp, rs_of_sp = sp.filter(good), rs_of_sp[keep]
    n = len(sp)
    if n == 0:
        return None, bad
    start = pc.cast(_field(sp, "startTimeUnixNano"), pa.int64())
    end = pc.cast(_field(sp, "endTimeUnixNano"), pa.int64())
    parent = _field(sp, "parentSpanId")
    parent = pc.if_else(pc.equal(pc.fill_null(parent, ""), ""), pa.scalar(None, pa.string()), parent)
    attr_cols = _attribute_columns(_field(sp, "attributes"), n)
    step, phase = _step_and_phase(attr_cols, n)
    resource = _resource_columns(_field(rs, "resource"), rs_of_sp)
    service = resource.pop("service.name", pa.nulls(n, pa.dictionary(pa.int32(), pa.string())))
    status = _field(sp, "status")
    columns: dict[str, pa.Array] = {
        "trace_id": _field(sp, "traceId"),
        "span_id": _field(sp, "spanId"),
        "parent_span_id": parent,
        "service": service,
        "name": pc.dictionary_encode(_field(sp, "name")),
        "kind": _short_enum(_field(sp, "kind"), KIND_NAMES, "SPAN_KIND_", "UNSPECIFIED"),
        "step": step,
        "phase": phase,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": pc.divide(pc.cast(pc.subtract(end, start), pa.float64()), 1e6),
        "status_code": _short_enum(_field(status, "code"), STATUS_NAMES, "STATUS_CODE_", "UNSET"),
        "status_message": _field(status, "message"),
    }
    for key in [k for k in resource if k in attr_cols]:
        # A key that is a resource attribute of some spans and a span attribute of others (the
        # Locust user puts the run's settings on its spans): one column, whichever is set.
        resource[key] = _coalesce(resource[key], attr_cols.pop(key))
    for key, arr in [*resource.items(), *attr_cols.items()]:
        if key not in columns and key not in _OWN:
            columns[key] = arr
    return pa.table(columns), bad


def _plain(arr: pa.Array) -> pa.Array:
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _coalesce(first: pa.Array, second: pa.Array) -> pa.Array:
    a, b = _plain(first), _plain(second)
    if pa.types.is_null(a.type):
        return b
    if pa.types.is_null(b.type):
        return a
    if a.type != b.type:
        a, b = a.cast(pa.string()), b.cast(pa.string())
    return pc.coalesce(a, b)


# -- Arrow -> pandas ------------------------------------------------------------------------------
def _common_type(types: set[pa.DataType]) -> pa.DataType | None:
    """The type a column takes when chunks disagree (None: they agree)."""
    types = {t for t in types if not pa.types.is_null(t)}
    if len(types) <= 1:
        return None
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        return pa.float64()
    return pa.string()


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate flat tables whose attribute columns may differ in presence or type."""
    if len(tables) == 1:
        return tables[0]
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, set()).add(f.type)
    for name, ts in types.items():
        target = _common_type(ts)
        if target is None:
            continue
        for i, t in enumerate(tables):
            if name in t.column_names:
                col = t.column(name)
                if pa.types.is_dictionary(col.type):
                    col = col.cast(col.type.value_type)
                if pa.types.is_list(col.type):
                    col = pa.chunked_array(
                        [
                            pa.array(
                                [None if v is None else json.dumps(v) for v in col.to_pylist()], pa.string()
                            )
                        ]
                    )
                tables[i] = t.set_column(t.column_names.index(name), name, col.cast(target))
    # a column missing from a table is filled with nulls of its type
    schema = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    return pa.concat_tables([_conform(t, schema) for t in tables])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            cols.append(col if col.type == field.type else col.cast(field.type))
        else:
            cols.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _series(col: pa.ChunkedArray, name: str) -> pd.Series:
    """One column to pandas with a small nullable dtype."""
    t = col.type
    if pa.types.is_dictionary(t):
        dict_size = sum(len(c.dictionary) for c in col.chunks)
        valid = len(col) - col.null_count
        if name in _ALWAYS_CATEGORY or dict_size <= max(1, _CATEGORY_RATIO * valid):
            return pd.Series(col.to_pandas())  # Categorical (dictionaries unified)
        return pd.Series(col.cast(t.value_type).to_pandas())
    if pa.types.is_integer(t):
        if col.null_count == 0 and name in ("start_ns", "end_ns"):
            return pd.Series(col.to_numpy())
        return pd.Series(col.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))
    if pa.types.is_boolean(t):
        return pd.Series(col.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get))
    if pa.types.is_null(t):
        return pd.Series([None] * len(col), dtype=object)
    return pd.Series(col.to_pandas())


_ALWAYS_CATEGORY = {"service", "name", "kind", "phase", "status_code"}


def to_frame(tables: list[pa.Table]) -> pd.DataFrame:
    """Flat Arrow tables -> the span table (categoricals for repeated strings, nullable ints)."""
    if not tables:
        return empty_frame()
    table = _concat(tables)
    frame = pd.DataFrame({name: _series(table.column(name), name) for name in table.column_names})
    frame["phase"] = frame["phase"].cat.set_categories(
        PHASES + [c for c in frame["phase"].cat.categories if c not in PHASES]
    )
    return frame


def empty_frame() -> pd.DataFrame:
    """A span table with no rows but every base column (so callers need no special case)."""
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in BASE_COLUMNS})
    frame["step"] = frame["step"].astype("Int64")
    for c in ("start_ns", "end_ns"):
        frame[c] = frame[c].astype(np.int64)
    frame["duration_ms"] = frame["duration_ms"].astype(float)
    frame["phase"] = pd.Categorical([], categories=PHASES)
    return frame
