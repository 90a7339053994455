"""The per-boot table: a row a boot, with where its time went.

A *boot* is the subtree of a step-3 span (``POST /servers`` at nova-api) together with everything
asynchronous that descends from it (the cast to nova-compute and the build). Its window runs from
the step-3 span's start to the end of its last successful step-29 span (spawn: the VM is ACTIVE),
or, for a boot that failed, to the end of its last span. ``outcome`` is ACTIVE (a successful
spawn), ERROR (no spawn, and some span of the boot has ERROR status) or INCOMPLETE (neither: the
run stopped or spans were lost before the boot ended; its times are lower bounds).

Phase times come from the step catalogue (:func:`harness.steps.phase_of`), never from span names:
each span belongs to the phase of its own step, or of its ``openstack.boot.phase`` attribute (the
token fetches inside steps 20, 23 and 26), or else of its nearest ancestor that has one (the Keystone
server span under step 4 is token validation; the Glance call inside step 20 is image). The boot's
window is then split along its critical path (:mod:`analysis.tree`), so overlapping or concurrent
spans are never counted twice and the ``<phase>_ms`` columns add up to ``total_ms`` (what is left,
``other_ms``, is time on the path in spans that belong to no phase). Step 20's own column therefore
excludes its token fetch and the Glance-side token validation (step 21), which count as
``token_validation_ms``, as boot-flow.md asks.

``auth_ms`` (steps 1-2) lies before the boot's window when the client traced its authentication in
the same trace; it is reported apart and is not part of ``total_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.tree import (
    Sections,
    critical_paths,
    exclusive_ns,
    nearest_labelled,
    parent_positions,
    subtree_end,
)
from harness.steps import CATALOGUE, Phase, Step

PHASES = [p.value for p in Phase]
QUEUE_STEPS = [int(s) for s, info in CATALOGUE.items() if info.queue_wait]
ATTR_QUEUE_WAIT = "messaging.harness.queue_wait_ms"
ATTR_INSTANCE = "openstack.instance.id"
ATTR_HOST = "openstack.host"
ATTR_CLAIMED = "openstack.scheduler.claimed_host"
RUN_COLUMNS = {"harness.run.id": "run_id", "harness.scheduler": "scheduler", "harness.profile": "profile"}
NO_VALID_HOST = "No valid host was found"
ATTR_MSG_OPERATION = "messaging.operation.name"


class Tree:
    """The structure of a span table, computed once and shared by the boot table and its helpers."""

    def __init__(self, spans: pd.DataFrame) -> None:
        self.spans = spans
        self.start = spans["start_ns"].to_numpy(dtype=np.int64)
        self.end = spans["end_ns"].to_numpy(dtype=np.int64)
        self.parent = parent_positions(spans)
        self.step = spans["step"].fillna(0).to_numpy(dtype=np.int64) if len(spans) else np.zeros(0, np.int64)
        phase_codes = _phase_codes(spans["phase"])
        #: the span that gives each span its phase (itself or its nearest phased ancestor)
        phased_by = nearest_labelled(self.parent, phase_codes >= 0)
        self.phase = np.where(phased_by >= 0, phase_codes[np.maximum(phased_by, 0)], -1)
        stepped_by = nearest_labelled(self.parent, self.step > 0)
        #: the step a span's time counts for (its own or its nearest numbered ancestor's; 0: none)
        self.eff_step = np.where(stepped_by >= 0, self.step[np.maximum(stepped_by, 0)], 0)
        #: the rows of the boots' step-3 spans, and the boot (index into ``roots``) of every span
        self.roots = np.flatnonzero(self.step == int(Step.BOOT_REQUEST))
        booted_by = nearest_labelled(self.parent, self.step == int(Step.BOOT_REQUEST))
        index_of_root = np.full(len(spans), -1, dtype=np.int64)
        index_of_root[self.roots] = np.arange(len(self.roots))
        self.member = np.where(booted_by >= 0, index_of_root[np.maximum(booted_by, 0)], -1)
        #: casts: the work their consumers do is nobody's to wait for (see analysis.tree)
        self.detached = _eq(spans, "kind", "PRODUCER") & _eq(spans, ATTR_MSG_OPERATION, "cast")

    def exclusive_ms(self) -> np.ndarray:
        """Self time of every span (see :func:`analysis.tree.exclusive_ns`)."""
        return exclusive_ns(self.start, self.end, self.parent) / 1e6


def _phase_codes(phase: pd.Series) -> np.ndarray:
    """Index of each span's phase in PHASES (-1: none), from the categorical codes when possible."""
    if isinstance(phase.dtype, pd.CategoricalDtype):
        return phase.cat.set_categories(PHASES).cat.codes.to_numpy(dtype=np.int64)
    return pd.Categorical(phase.astype(object), categories=PHASES).codes.astype(np.int64)


# -- column access that never converts a whole million-row column to Python objects ---------------
def _eq(spans: pd.DataFrame, key: str, value: str) -> np.ndarray:
    if key not in spans.columns:
        return np.zeros(len(spans), dtype=bool)
    return (spans[key] == value).fillna(False).to_numpy(dtype=bool)


def _notna(spans: pd.DataFrame, key: str) -> np.ndarray:
    if key not in spans.columns:
        return np.zeros(len(spans), dtype=bool)
    return spans[key].notna().to_numpy(dtype=bool)


def _at(spans: pd.DataFrame, key: str, rows: np.ndarray) -> np.ndarray:
    """Values of a column at some rows, as Python objects (None where missing)."""
    if key not in spans.columns:
        return np.full(len(rows), None, dtype=object)
    vals = spans[key].take(rows).astype(object)
    return vals.where(vals.notna(), None).to_numpy(dtype=object)


def _pick(spans: pd.DataFrame, key: str, rows: np.ndarray) -> np.ndarray:
    """Like :func:`_at` where ``rows`` may hold -1 (no row: None)."""
    out = np.full(len(rows), None, dtype=object)
    have = rows >= 0
    out[have] = _at(spans, key, rows[have])
    return out


def _last_by_group(group: np.ndarray, value: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    """Row with the largest ``value`` among rows with ``mask`` in each group (-1: none)."""
    rows = np.flatnonzero(mask & (group >= 0))
    out = np.full(n_groups, -1, dtype=np.int64)
    if len(rows):
        o = rows[np.lexsort((value[rows], group[rows]))]
        g = group[o]
        is_last = np.r_[g[1:] != g[:-1], True]
        out[g[is_last]] = o[is_last]
    return out


@dataclass
class BootAnalysis:
    """The boot table and what it was computed from (for per-step and per-span follow-ups)."""

    spans: pd.DataFrame
    tree: Tree
    table: pd.DataFrame
    sections: Sections  # critical-path sections; ``segment`` is the row of ``table``
    end_ns: np.ndarray  # when each boot's window ends

    @property
    def roots(self) -> np.ndarray:
        return self.tree.roots

    def critical_step_ms(self, *, own: bool = False) -> pd.DataFrame:
        """Milliseconds each boot spends on its critical path per step (a column per step number).

        Time in spans without a step of their own counts for their nearest numbered ancestor (the
        token fetch inside step 20 is step 20's), unless ``own``: then only the step's own spans
        count, and the rest is in the ``none`` column.
        """
        sec, tree, n = self.sections, self.tree, len(self.table)
        n_steps = len(CATALOGUE) + 1
        t0, t1 = _clip_to_window(sec, tree.start[tree.roots], self.end_ns)
        step = tree.step[sec.span] if own else tree.eff_step[sec.span]
        ms = (
            np.bincount(sec.segment * n_steps + step, weights=t1 - t0, minlength=n * n_steps).reshape(
                n, n_steps
            )
            / 1e6
        )
        frame = pd.DataFrame(ms[:, 1:], columns=[int(s) for s in sorted(CATALOGUE)], index=self.table.index)
        frame["none"] = ms[:, 0]
        return frame

    def critical_path(self, boot: int) -> pd.DataFrame:
        """The critical path of the boot in row ``boot`` of the table (see :func:`critical_path`)."""
        sec = self.sections
        lo, hi = np.searchsorted(sec.segment, [boot, boot + 1])
        one = Sections(sec.segment[lo:hi], sec.span[lo:hi], sec.t0[lo:hi], sec.t1[lo:hi])
        return _sections_frame(self.spans, self.tree, one)


def _clip_to_window(sec: Sections, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(sec.segment) == 0:
        return sec.t0, sec.t1
    t0 = np.maximum(sec.t0, starts[sec.segment])
    t1 = np.maximum(np.minimum(sec.t1, ends[sec.segment]), t0)
    return t0, t1


def _end_spans(spans: pd.DataFrame, tree: Tree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each boot's path ends: its last successful spawn (ACTIVE), else its last span to end.
    Returns the end spans, their end times and whether the boot is ACTIVE."""
    n = len(tree.roots)
    error = _eq(spans, "status_code", "ERROR")
    spawned = _last_by_group(tree.member, tree.end, (tree.step == int(Step.SPAWN)) & ~error, n)
    last = _last_by_group(tree.member, tree.end, np.ones(len(spans), dtype=bool), n)
    end_span = np.where(spawned >= 0, spawned, last)
    return end_span, tree.end[end_span], spawned >= 0


def boot_table(spans: pd.DataFrame) -> pd.DataFrame:
    """One row per boot; see the module docstring for what each column means.

    Columns: trace_id, root_span_id, instance_id, outcome, total_ms, one ``<phase>_ms`` per
    :class:`harness.steps.Phase` (auth apart, see above), other_ms, queue_wait_ms, work_ms
    (total minus queue wait), host, run_id, scheduler, profile, error, failed_phase, no_valid_host,
    reschedules, claim_rounds, n_spans, start_ns, end_ns.
    """
    return analyse_boots(spans).table


def analyse_boots(spans: pd.DataFrame) -> BootAnalysis:
    """:func:`boot_table` plus the tree and critical-path sections behind it."""
    spans = spans.reset_index(drop=True)
    tree = Tree(spans)
    roots, n = tree.roots, len(tree.roots)
    end_span, end_ns, active = _end_spans(spans, tree)
    sections = critical_paths(tree.start, tree.end, tree.parent, end_span, roots, end_ns, tree.detached)
    t0, t1 = _clip_to_window(sections, tree.start[roots], end_ns)
    phase = tree.phase[sections.span]
    n_ph = len(PHASES)
    by_phase = (
        np.bincount(
            sections.segment * (n_ph + 1) + np.where(phase >= 0, phase, n_ph),
            weights=t1 - t0,
            minlength=n * (n_ph + 1),
        ).reshape(n, n_ph + 1)
        / 1e6
    )

    out = pd.DataFrame(
        {
            "trace_id": _at(spans, "trace_id", roots),
            "root_span_id": _at(spans, "span_id", roots),
            "instance_id": _instance_ids(spans, tree),
            "outcome": np.where(active, "ACTIVE", np.where(_has_error(spans, tree), "ERROR", "INCOMPLETE")),
            "total_ms": (end_ns - tree.start[roots]) / 1e6,
        }
    )
    for i, name in enumerate(PHASES):
        out[f"{name}_ms"] = by_phase[:, i]
    out["auth_ms"] = _auth_ms(spans, tree)
    out["other_ms"] = by_phase[:, n_ph]
    out["queue_wait_ms"] = _queue_wait_ms(spans, tree)
    out["work_ms"] = out["total_ms"] - out["queue_wait_ms"]
    out["host"] = _host(spans, tree)
    for attr, col in RUN_COLUMNS.items():
        out[col] = _at(spans, attr, roots)
    out["error"], out["failed_phase"], out["no_valid_host"] = _errors(spans, tree)
    out["reschedules"], out["claim_rounds"] = _retries(spans, tree)
    out["n_spans"] = np.bincount(tree.member[tree.member >= 0], minlength=n)
    out["start_ns"], out["end_ns"] = tree.start[roots], end_ns
    return BootAnalysis(spans=spans, tree=tree, table=out, sections=sections, end_ns=end_ns)


def _has_error(spans: pd.DataFrame, tree: Tree) -> np.ndarray:
    err = _eq(spans, "status_code", "ERROR") & (tree.member >= 0)
    return np.bincount(tree.member[err], minlength=len(tree.roots)) > 0


def _instance_ids(spans: pd.DataFrame, tree: Tree) -> np.ndarray:
    """``openstack.instance.id`` of the step-3 span, else of the boot's first span that has it."""
    at_root = _at(spans, ATTR_INSTANCE, tree.roots)
    first = _last_by_group(tree.member, -tree.start, _notna(spans, ATTR_INSTANCE), len(tree.roots))
    return np.where(pd.notna(at_root), at_root, _pick(spans, ATTR_INSTANCE, first))


def _queue_wait_ms(spans: pd.DataFrame, tree: Tree) -> np.ndarray:
    """Time messages of the boot waited in queues (steps 9, 13, 15, 19 record it)."""
    rows = np.flatnonzero(np.isin(tree.step, QUEUE_STEPS) & (tree.member >= 0))
    wait = pd.to_numeric(pd.Series(_at(spans, ATTR_QUEUE_WAIT, rows), dtype=object), errors="coerce")
    return np.bincount(
        tree.member[rows], weights=wait.fillna(0.0).to_numpy(dtype=float), minlength=len(tree.roots)
    )


def _host(spans: pd.DataFrame, tree: Tree) -> np.ndarray:
    """Where the VM was spawned (step 29's host), else the last host claimed for it (step 11)."""
    n = len(tree.roots)
    spawn = _last_by_group(
        tree.member, tree.end, (tree.step == int(Step.SPAWN)) & _notna(spans, ATTR_HOST), n
    )
    claim = _last_by_group(tree.member, tree.end, _notna(spans, ATTR_CLAIMED), n)
    return np.where(spawn >= 0, _pick(spans, ATTR_HOST, spawn), _pick(spans, ATTR_CLAIMED, claim))


def _errors(spans: pd.DataFrame, tree: Tree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each boot's original error (the error span that ended first: the failure that the others
    propagate) with its phase, and whether no valid host was found."""
    n = len(tree.roots)
    err = _eq(spans, "status_code", "ERROR") & (tree.member >= 0)
    first = _last_by_group(tree.member, -tree.end, err, n)  # the error that ended first is the origin
    message = _pick(spans, "status_message", first)
    phase_names = np.array(PHASES + [None], dtype=object)
    failed_phase = np.where(first >= 0, phase_names[tree.phase[np.maximum(first, 0)]], None)
    err_rows = np.flatnonzero(err)
    text = pd.Series(_at(spans, "status_message", err_rows), dtype=object).fillna("").astype(str)
    nvh_rows = err_rows[
        (tree.step[err_rows] == int(Step.SCHEDULER_SELECT_HOST))
        | text.str.contains(NO_VALID_HOST, regex=False).to_numpy(dtype=bool)
    ]
    return message, failed_phase, np.bincount(tree.member[nvh_rows], minlength=n) > 0


def _retries(spans: pd.DataFrame, tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """Build attempts beyond the first (compute took a build message again) and claim rounds."""
    n = len(tree.roots)
    builds = (
        _eq(spans, "openstack.rpc.method", "build_and_run_instance")
        & _eq(spans, "kind", "CONSUMER")
        & (tree.member >= 0)
    )
    reschedules = np.maximum(np.bincount(tree.member[builds], minlength=n) - 1, 0)
    selects = (tree.step == int(Step.SCHEDULER_SELECT_HOST)) & (tree.member >= 0)
    return reschedules, np.bincount(tree.member[selects], minlength=n)


def _auth_ms(spans: pd.DataFrame, tree: Tree) -> np.ndarray:
    """Wall time of the auth steps (1-2) traced in the boot's trace (0 when the client did not)."""
    roots = tree.roots
    auth = np.flatnonzero(np.isin(tree.step, [int(Step.AUTH_REQUEST), int(Step.AUTH_ISSUE_TOKEN)]))
    if not len(auth) or not len(roots):
        return np.zeros(len(roots))
    frame = pd.DataFrame({"trace": _at(spans, "trace_id", auth), "s": tree.start[auth], "e": tree.end[auth]})
    window = frame.groupby("trace").agg(s=("s", "min"), e=("e", "max"))
    ms = ((window["e"] - window["s"]) / 1e6).reindex(_at(spans, "trace_id", roots)).fillna(0.0)
    return ms.to_numpy()


def critical_path(spans: pd.DataFrame, *, end_span_id: str | None = None) -> pd.DataFrame:
    """The critical path of one trace (or of its first boot): the chain of spans that decides its end.

    Returns one row per section in time order: span_id, name, service, step (the step the time
    counts for), phase, start_ns, end_ns, ms. A span may own several sections (its own time before
    and after the child on the path). For a boot the path runs from its step-3 span to its end
    (last step 29, or its last span); for any other trace, from the root whose work ends last;
    ``end_span_id`` picks the end span explicitly.
    """
    spans = spans.reset_index(drop=True)
    if len(spans) == 0:
        return _sections_frame(spans, None, Sections(*(np.zeros(0, dtype=np.int64),) * 4))
    tree = Tree(spans)
    if end_span_id is not None:
        hits = np.flatnonzero(_eq(spans, "span_id", end_span_id))
        if not len(hits):
            raise KeyError(f"span {end_span_id!r} is not in the trace")
        end = hits[:1]
        boot = tree.member[end[0]]
        stop = tree.roots[[boot]] if boot >= 0 else np.array([-1])
    elif len(tree.roots):
        first = int(np.argmin(tree.start[tree.roots]))
        ends, times, _ = _end_spans(spans, tree)
        end, stop = ends[[first]], tree.roots[[first]]
        return _sections_frame(
            spans,
            tree,
            critical_paths(tree.start, tree.end, tree.parent, end, stop, times[[first]], tree.detached),
        )
    else:  # no boot: from the root whose work ends last
        roots = np.flatnonzero(tree.parent < 0)
        done = subtree_end(tree.end, tree.parent, tree.detached)
        end, stop = roots[[int(np.argmax(done[roots]))]], np.array([-1])
    return _sections_frame(
        spans, tree, critical_paths(tree.start, tree.end, tree.parent, end, stop, detached=tree.detached)
    )


def _sections_frame(spans: pd.DataFrame, tree: Tree | None, sections: Sections) -> pd.DataFrame:
    rows = sections.span
    if tree is None:
        return pd.DataFrame(
            {c: [] for c in ("span_id", "name", "service", "step", "phase", "start_ns", "end_ns", "ms")}
        )
    phase = tree.phase[rows]
    return pd.DataFrame(
        {
            "span_id": _at(spans, "span_id", rows),
            "name": _at(spans, "name", rows),
            "service": _at(spans, "service", rows),
            "step": pd.array(np.where(tree.eff_step[rows] > 0, tree.eff_step[rows], 0), dtype="Int64"),
            "phase": np.where(phase >= 0, np.array(PHASES, dtype=object)[np.maximum(phase, 0)], None),
            "start_ns": sections.t0,
            "end_ns": sections.t1,
            "ms": (sections.t1 - sections.t0) / 1e6,
        }
    ).assign(step=lambda f: f["step"].mask(f["step"] == 0))
