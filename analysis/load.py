"""Load spans from a run: ``spans.jsonl`` files, run directories, their Parquet cache.

:func:`load_spans` is the one entry point the report, the CLI and the notebooks use. It returns the
span table of :mod:`analysis.otlp` (a row a span) with what could not be read in ``df.attrs``:
``malformed_lines``, ``malformed_spans``, ``lines``, ``first_error``, ``duplicate_spans`` (the
same span read from two sources is kept once) and ``sources``.

The Parquet cache (``spans.parquet`` beside ``spans.jsonl``) is written on request and used only
while the JSON file keeps the size and modification time recorded in it, so a run that is still
being written is never read stale.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence, Union

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from analysis.otlp import ParseStats, empty_frame, parse_otlp_file

SPANS_FILE = "spans.jsonl"
CACHE_FILE = "spans.parquet"
#: Bumped when the table's layout changes, so old caches are not read.
CACHE_VERSION = "1"
_CACHE_KEY = b"harness.analysis.cache"

Source = Union[str, os.PathLike, pd.DataFrame]


class SpanSourceError(FileNotFoundError):
    """A source that is neither a spans file nor a run directory holding one."""


def spans_path(source: str | os.PathLike) -> Path:
    """The spans file a source names: the file itself or ``<run dir>/spans.jsonl``."""
    path = Path(source)
    if path.is_dir():
        path = path / SPANS_FILE
    if not path.is_file():
        raise SpanSourceError(f"no spans file at {path} (give a spans.jsonl file or a run directory)")
    return path


def load_spans(source: Source | Sequence[Source], *, cache: bool = False) -> pd.DataFrame:
    """One row per span from a spans file, a run directory, a span table, or a list of them.

    ``cache=True`` reads ``spans.parquet`` when it is current and writes it when it is not.
    Malformed lines and spans are skipped and counted in ``df.attrs`` (never fatal).
    """
    sources: Iterable[Source] = [source] if isinstance(source, (str, os.PathLike, pd.DataFrame)) else source
    frames, stats, names = [], ParseStats(), []
    for src in sources:
        if isinstance(src, pd.DataFrame):
            frames.append(src)
            names.append("<DataFrame>")
            continue
        path = spans_path(src)
        frame, st = _load_file(path, cache=cache)
        frames.append(frame)
        stats.add(st)
        names.append(str(path))
    frame = concat_spans(frames)
    duplicates = 0
    if len(frames) > 1 and not frame["span_id"].is_unique:  # the same spans from two sources
        keep = ~frame.duplicated(["trace_id", "span_id"])
        duplicates = int((~keep).sum())
        frame = frame[keep.to_numpy()].reset_index(drop=True)
    frame.attrs.update(
        duplicate_spans=duplicates,
        lines=stats.lines,
        malformed_lines=stats.malformed_lines,
        malformed_spans=stats.malformed_spans,
        first_error=stats.first_error,
        sources=names,
    )
    return frame


def _load_file(path: Path, *, cache: bool) -> tuple[pd.DataFrame, ParseStats]:
    stat = path.stat()
    key = {"version": CACHE_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache_path = path.with_name(CACHE_FILE) if path.name == SPANS_FILE else path.with_suffix(".parquet")
    if cache:
        cached = _read_cache(cache_path, key)
        if cached is not None:
            return cached
    frame, stats = parse_otlp_file(path)
    if cache:
        _write_cache(cache_path, frame, stats, key)
    return frame, stats


def _read_cache(path: Path, key: dict) -> tuple[pd.DataFrame, ParseStats] | None:
    if not path.is_file():
        return None
    try:
        meta = pq.read_schema(path).metadata or {}
        stored = json.loads(meta.get(_CACHE_KEY, b"{}"))
        if stored.get("key") != key:
            return None
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException):
        return None  # a torn or foreign cache is rebuilt, not trusted
    return frame, ParseStats(**stored["stats"])


def _write_cache(path: Path, frame: pd.DataFrame, stats: ParseStats, key: dict) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_CACHE_KEY] = json.dumps({"key": key, "stats": vars(stats)}).encode()
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    tmp.replace(path)  # atomic: a reader sees the old cache or the new one


def concat_spans(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate span tables, keeping categorical columns categorical (union of categories)."""
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return empty_frame()
    if len(frames) == 1:
        return frames[0]
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    out = {}
    for col in columns:
        parts = [f[col] if col in f.columns else pd.Series([None] * len(f)) for f in frames]
        categorical = [p for p in parts if isinstance(p.dtype, pd.CategoricalDtype)]
        if categorical and all(isinstance(p.dtype, pd.CategoricalDtype) or p.isna().all() for p in parts):
            empty = categorical[0].cat.categories[:0]
            cats = [
                p.array
                if isinstance(p.dtype, pd.CategoricalDtype)
                else pd.Categorical([None] * len(p), categories=empty)
                for p in parts
            ]
            out[col] = pd.Series(union_categoricals(cats, ignore_order=True))
        else:
            out[col] = pd.concat([p.reset_index(drop=True) for p in parts], ignore_index=True)
    return pd.DataFrame(out)
