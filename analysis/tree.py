"""Span-tree arithmetic over a whole span table at once: parents, exclusive time, inheritance and
critical paths, all as NumPy array operations (no Python loop per span or per trace).

Positions, not ids: every function works on row positions of the span table (``parent[i]`` is the
row of span ``i``'s parent, -1 for a root or a parent that was never exported).

*Exclusive (self) time* of a span is its duration minus the union of its children's intervals,
each clipped to the span: overlapping children are not counted twice, and an asynchronous child that
outlives its parent only covers the part inside it.

The *critical path* of a trace segment (from a start span to an end span) is the chain of spans that
decides when the end span ends; it is computed as Jaeger does: from the end span's end, step back
into the child that finished last before the current time, and when a span has no such child left,
its own time is on the path and the walk climbs to its parent at the span's start. Unlike Jaeger,
a child "finishes" when its whole subtree does: an RPC receive span ends when the message is taken,
but the work it starts runs in its children after it, and that work stays on the path under it
(except below a cast, whose consumer nobody waits for).
The sections partition ``[start span's start, end]``: their lengths sum to the segment's wall time.
Gaps inside a parent (between its children, or after it ended, before its asynchronous child
started) belong to the parent. Concurrent siblings: only the one on the chain counts, so nothing
is counted twice. All traces are walked in lockstep, one NumPy step for every trace at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def hex_ids(ids: pd.Series) -> np.ndarray | None:
    """16-hex-digit span ids as uint64 (0 for a missing id), vectorised over the string buffer;
    None when some id is not 16 hex digits (the caller falls back to strings)."""
    arr = (
        pa.chunked_array(pa.array(ids.array, from_pandas=True)).combine_chunks()
        if not isinstance(ids.dtype, pd.CategoricalDtype)
        else None
    )
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    arr = pc.fill_null(arr, "0" * 16)
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    if pc.min_max(pc.binary_length(arr)).as_py() != {"min": 16, "max": 16}:
        return None
    offsets = np.frombuffer(
        arr.buffers()[1], dtype=np.int64 if pa.types.is_large_string(arr.type) else np.int32
    )[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + 16 * n]
    nibbles = _HEX[data]
    if nibbles.max() == 255:
        return None
    nibbles = nibbles.reshape(n, 16)
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]  # 8 bytes, most significant first
    return np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)


def parent_positions(spans: pd.DataFrame) -> np.ndarray:
    """Row of each span's parent (-1: a root, or a parent missing from the table).

    Span ids are 64-bit and random, so they are matched as integers; a table where they repeat
    (two traces sharing an id) is matched on trace id and span id as strings instead.
    """
    if len(spans) == 0:
        return np.zeros(0, dtype=np.int64)
    own, parent = hex_ids(spans["span_id"]), hex_ids(spans["parent_span_id"])
    if own is not None and parent is not None:
        index = pd.Index(own)
        if index.is_unique:
            pos = index.get_indexer(parent)
            pos[parent == 0] = -1
            return pos.astype(np.int64)
    trace = spans["trace_id"].astype(str).to_numpy(dtype=object)
    keys = pd.Index(trace + ":" + spans["span_id"].astype(str).to_numpy(dtype=object))
    first = ~keys.duplicated()
    lookup = pd.Index(keys[first])
    parents = spans["parent_span_id"].astype(object).where(spans["parent_span_id"].notna(), "")
    pos_in_first = lookup.get_indexer(trace + ":" + parents.astype(str).to_numpy(dtype=object))
    rows = np.flatnonzero(first)
    return np.where(pos_in_first >= 0, rows[np.maximum(pos_in_first, 0)], -1).astype(np.int64)


def nearest_labelled(parent: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """For each span, the row of its nearest ancestor-or-self with ``labelled`` true (-1: none).

    Pointer jumping: each round every unresolved span looks one hop further up, so the number of
    rounds is the tree depth, and each round is one vectorised step over the unresolved spans.
    """
    n = len(parent)
    out = np.where(labelled, np.arange(n), -1)
    todo = np.flatnonzero(~labelled)
    probe = parent[todo]
    for _ in range(n + 1):
        keep = probe >= 0
        todo, probe = todo[keep], probe[keep]
        if len(todo) == 0:
            break
        hit = labelled[probe]
        out[todo[hit]] = probe[hit]
        todo, probe = todo[~hit], parent[probe[~hit]]
    return out


def depths(parent: np.ndarray) -> np.ndarray:
    """Depth of each span (0 for roots), by pointer jumping."""
    depth = np.zeros(len(parent), dtype=np.int64)
    todo = np.flatnonzero(parent >= 0)
    probe = parent[todo]
    while len(todo):
        depth[todo] += 1
        keep = parent[probe] >= 0
        todo, probe = todo[keep], parent[probe[keep]]
    return depth


def exclusive_ns(start: np.ndarray, end: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Self time of every span: its duration minus the union of its children's clipped intervals."""
    n = len(start)
    child = np.flatnonzero(parent >= 0)
    p = parent[child]
    cs = np.maximum(start[child], start[p])
    ce = np.minimum(end[child], end[p])
    keep = ce > cs
    p, cs, ce = p[keep], cs[keep], ce[keep]
    order = np.lexsort((cs, p))
    p, cs, ce = p[order], cs[order], ce[order]
    covered = np.zeros(n, dtype=np.int64)
    if len(p):
        running = pd.Series(ce).groupby(p).cummax().to_numpy()
        prev = np.empty_like(running)
        prev[0] = np.iinfo(np.int64).min
        prev[1:] = running[:-1]
        first_of_parent = np.r_[True, p[1:] != p[:-1]]
        prev[first_of_parent] = np.iinfo(np.int64).min
        contrib = np.clip(ce - np.maximum(cs, prev), 0, None)
        covered = np.bincount(p, weights=contrib, minlength=n).astype(np.int64)
    return (end - start) - covered


@dataclass(frozen=True)
class Sections:
    """Critical-path sections: section ``i`` is ``[t0[i], t1[i])`` spent in span ``span[i]`` on the
    path of segment ``segment[i]``; sorted by segment, then time."""

    segment: np.ndarray
    span: np.ndarray
    t0: np.ndarray
    t1: np.ndarray

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"segment": self.segment, "span": self.span, "t0": self.t0, "t1": self.t1})


def _last_leq(keys: np.ndarray, lo: np.ndarray, hi: np.ndarray, value: np.ndarray) -> np.ndarray:
    """For each row, the last index ``j`` in ``[lo, hi)`` with ``keys[j] <= value`` (``lo - 1``: none).

    ``keys`` is sorted within every ``[lo, hi)`` block; a binary search run for all rows at once.
    """
    left, right = lo.copy(), hi.copy()
    while True:
        active = left < right
        if not active.any():
            return left - 1
        mid = (left + right) // 2
        ok = np.zeros(len(left), dtype=bool)
        ok[active] = keys[mid[active]] <= value[active]
        left = np.where(active & ok, mid + 1, left)
        right = np.where(active & ~ok, mid, right)


def subtree_end(end: np.ndarray, parent: np.ndarray, detached: np.ndarray | None = None) -> np.ndarray:
    """When each span's work is over: the latest end in its subtree (an RPC consumer span ends when
    the message is taken, but the work it started runs in its children after it). Nothing passes up
    through a ``detached`` span: the work behind a cast is nobody's to wait for."""
    out = end.copy()
    depth = depths(parent)
    for d in range(int(depth.max()) if len(depth) else 0, 0, -1):
        rows = np.flatnonzero(depth == d)
        if detached is not None:
            rows = rows[~detached[parent[rows]]]
        np.maximum.at(out, parent[rows], out[rows])
    return out


def critical_paths(
    start: np.ndarray,
    end: np.ndarray,
    parent: np.ndarray,
    end_span: np.ndarray,
    stop_span: np.ndarray,
    end_time: np.ndarray | None = None,
    detached: np.ndarray | None = None,
) -> Sections:
    """Critical path of every segment ``k``: from ``stop_span[k]`` (an ancestor) to ``end_span[k]``.

    The walk starts at ``end_time[k]`` (default: when the end span's subtree is over) and stops
    when it has finished ``stop_span[k]`` or reaches a root. A child counts as finished when its
    whole subtree is (:func:`subtree_end`, with ``detached`` spans: casts), so the work an RPC
    consumer starts after its receive span stays on the path under it. Children are considered in
    that order (ties: start time, then row), so the walk never visits a child twice.
    """
    n = len(start)
    done = subtree_end(end, parent, detached)
    # children grouped by parent, each group sorted by (subtree end, start, row)
    child = np.flatnonzero(parent >= 0)
    order = child[np.lexsort((start[child], done[child], parent[child]))]  # stable: row breaks ties
    counts = np.bincount(parent[order], minlength=n) if len(order) else np.zeros(n, dtype=np.int64)
    lo = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    hi = lo + counts
    rank = np.full(n, -1, dtype=np.int64)  # a span's index in ``order``
    rank[order] = np.arange(len(order))
    sorted_end = done[order]
    end = done  # from here on a span "ends" when its subtree does

    k = np.arange(len(end_span))
    cur = end_span.astype(np.int64).copy()
    cursor = end[cur].copy() if end_time is None else np.asarray(end_time, dtype=np.int64).copy()
    limit = hi[cur].copy()
    out_seg, out_span, out_t0, out_t1 = [], [], [], []
    while len(k):
        j = _last_leq(sorted_end, lo[cur], limit, cursor)
        found = j >= lo[cur]
        # descend into the child that finished last before the cursor
        if found.any():
            kf, cf, jf = k[found], cur[found], j[found]
            ch = order[jf]
            gap = end[ch] < cursor[found]
            out_seg.append(kf[gap]), out_span.append(cf[gap])
            out_t0.append(end[ch][gap]), out_t1.append(cursor[found][gap])
        # no child left: the span's own start..cursor is on the path, then climb to the parent
        nf = ~found
        kn, cn, tn = k[nf], cur[nf], cursor[nf]
        own = start[cn] < tn
        out_seg.append(kn[own]), out_span.append(cn[own])
        out_t0.append(start[cn][own]), out_t1.append(tn[own])
        finished = (cn == stop_span[kn]) | (parent[cn] < 0)

        new_cur = cur.copy()
        new_cursor = cursor.copy()
        new_limit = limit.copy()
        if found.any():
            ch = order[j[found]]
            new_cur[found], new_cursor[found], new_limit[found] = ch, end[ch], hi[ch]
        climb = np.flatnonzero(nf)[~finished]
        if len(climb):
            c = cur[climb]
            new_cur[climb] = parent[c]
            new_cursor[climb] = np.minimum(start[c], cursor[climb])
            new_limit[climb] = rank[c]
        alive = np.ones(len(k), dtype=bool)
        alive[np.flatnonzero(nf)[finished]] = False
        k, cur, cursor, limit = k[alive], new_cur[alive], new_cursor[alive], new_limit[alive]

    if not out_seg:
        empty = np.zeros(0, dtype=np.int64)
        return Sections(empty, empty, empty, empty)
    seg, spn = np.concatenate(out_seg), np.concatenate(out_span)
    t0, t1 = np.concatenate(out_t0), np.concatenate(out_t1)
    o = np.lexsort((t0, seg))
    return Sections(seg[o], spn[o], t0[o], t1[o])
