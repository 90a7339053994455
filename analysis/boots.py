"""The per-boot table: a row a boot, with where its time went.

A *boot* is the subtree of a step-3 span (``POST /servers`` at nova-api) together with everything
asynchronous that descends from it (the cast to nova-compute and the build). Its window runs from
the step-3 span's start to the end of its last step-29 span (spawn: the VM is ACTIVE), or, for a
boot that failed, to the end of its last span.

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

from analysis.tree import Sections, critical_paths, exclusive_ns, nearest_labelled, parent_positions
from harness.steps import CATALOGUE, Phase, Step

PHASES = [p.value for p in Phase]
QUEUE_STEPS = [int(s) for s, info in CATALOGUE.items() if info.queue_wait]
ATTR_QUEUE_WAIT = "messaging.harness.queue_wait_ms"
ATTR_INSTANCE = "openstack.instance.id"
ATTR_HOST = "openstack.host"
ATTR_CLAIMED = "openstack.scheduler.claimed_host"
RUN_COLUMNS = {"harness.run.id": "run_id", "harness.scheduler": "scheduler", "harness.profile": "profile"}
NO_VALID_HOST = "No valid host was found"


class Tree:
    """The structure of a span table, computed once and shared by the boot table and its helpers."""

    def __init__(self, spans: pd.DataFrame) -> None:
        self.spans = spans
        self.start = spans["start_ns"].to_numpy(dtype=np.int64)
        self.end = spans["end_ns"].to_numpy(dtype=np.int64)
        self.parent = parent_positions(spans)
        step = spans["step"]
        self.step = step.fillna(0).to_numpy(dtype=np.int64) if len(spans) else np.zeros(0, np.int64)
        phase = spans["phase"]
        phase_codes = pd.Categorical(phase.astype(object), categories=PHASES).codes.astype(np.int64)
        #: the span that gives each span its phase (itself or its nearest phased ancestor)
        phased_by = nearest_labelled(self.parent, phase_codes >= 0)
        self.phase = np.where(phased_by >= 0, phase_codes[np.maximum(phased_by, 0)], -1)
        stepped_by = nearest_labelled(self.parent, self.step > 0)
        #: the step a span's time counts for (its own or its nearest numbered ancestor's; 0: none)
        self.eff_step = np.where(stepped_by >= 0, self.step[np.maximum(stepped_by, 0)], 0)
        #: the boot (row of its step-3 span) each span belongs to, -1 if none
        self.boot = nearest_labelled(self.parent, self.step == int(Step.BOOT_REQUEST))

    def exclusive_ms(self) -> np.ndarray:
        return exclusive_ns(self.start, self.end, self.parent) / 1e6


def _error_mask(spans: pd.DataFrame) -> np.ndarray:
    return (spans["status_code"].astype(object) == "ERROR").to_numpy(dtype=bool)


def _attr(spans: pd.DataFrame, key: str) -> pd.Series:
    if key in spans.columns:
        return spans[key]
    return pd.Series([None] * len(spans), index=spans.index, dtype=object)


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


def boot_segments(spans: pd.DataFrame, tree: Tree | None = None) -> tuple[pd.DataFrame, Tree]:
    """Each boot's rows: its step-3 span, its end span, its window and outcome (no phase times)."""
    tree = tree or Tree(spans)
    roots = np.flatnonzero(tree.step == int(Step.BOOT_REQUEST))
    n_boots = len(roots)
    index_of_root = np.full(len(spans), -1, dtype=np.int64)
    index_of_root[roots] = np.arange(n_boots)
    member = np.where(tree.boot >= 0, index_of_root[np.maximum(tree.boot, 0)], -1)
    error = _error_mask(spans)
    spawn_ok = (tree.step == int(Step.SPAWN)) & ~error
    last_spawn = _last_by_group(member, tree.end, spawn_ok, n_boots)
    last_any = _last_by_group(member, tree.end, np.ones(len(spans), dtype=bool), n_boots)
    end_span = np.where(last_spawn >= 0, last_spawn, last_any)
    boots = pd.DataFrame({"root": roots, "end_span": end_span, "active": last_spawn >= 0})
    boots["start_ns"] = tree.start[roots]
    boots["end_ns"] = tree.end[end_span] if n_boots else np.zeros(0, dtype=np.int64)
    return boots.assign(member_count=np.bincount(member[member >= 0], minlength=n_boots)), tree


@dataclass
class BootAnalysis:
    """The boot table and what it was computed from (for per-step and per-span follow-ups)."""

    spans: pd.DataFrame
    tree: Tree
    table: pd.DataFrame
    sections: Sections  # critical-path sections; ``segment`` is the row of ``table``
    roots: np.ndarray  # row of each boot's step-3 span in ``spans``

    def critical_step_ms(self) -> pd.DataFrame:
        """Milliseconds each boot spends on its critical path per step (a column per step number;
        time in spans without a step of their own counts for their nearest numbered ancestor)."""
        return _critical_step_ms(self)


def boot_table(spans: pd.DataFrame) -> pd.DataFrame:
    """One row per boot; see the module docstring for what each column means.

    Columns: trace_id, root_span_id, instance_id, outcome, total_ms, one ``<phase>_ms`` per
    :class:`harness.steps.Phase` (auth apart, see above), other_ms, queue_wait_ms, work_ms
    (total minus queue wait), host, scheduler, profile, run_id, error, failed_phase, no_valid_host,
    reschedules, claim_rounds, n_spans, start_ns, end_ns.
    """
    return analyse_boots(spans).table


def analyse_boots(spans: pd.DataFrame) -> BootAnalysis:
    """:func:`boot_table` plus the tree and critical-path sections behind it."""
    boots, tree = boot_segments(spans)
    n = len(boots)
    roots, end_span = boots["root"].to_numpy(), boots["end_span"].to_numpy()
    sections = critical_paths(tree.start, tree.end, tree.parent, end_span, roots)
    window_start = tree.start[roots]
    t0 = np.maximum(sections.t0, window_start[sections.segment])
    t1 = np.minimum(sections.t1, tree.end[end_span][sections.segment])
    length = np.clip(t1 - t0, 0, None)
    phase = tree.phase[sections.span]
    n_ph = len(PHASES)
    by_phase = np.bincount(sections.segment * (n_ph + 1) + np.where(phase >= 0, phase, n_ph),
                           weights=length, minlength=n * (n_ph + 1)).reshape(n, n_ph + 1) / 1e6

    total_ns = tree.end[end_span] - window_start if n else np.zeros(0, dtype=np.int64)
    out = pd.DataFrame({
        "trace_id": spans["trace_id"].to_numpy(dtype=object)[roots],
        "root_span_id": spans["span_id"].to_numpy(dtype=object)[roots],
        "instance_id": _boot_attribute(spans, tree, boots, ATTR_INSTANCE),
        "outcome": np.where(boots["active"].to_numpy(), "ACTIVE", "ERROR"),
        "total_ms": total_ns / 1e6,
    })
    for i, name in enumerate(PHASES):
        out[f"{name}_ms"] = by_phase[:, i]
    out["auth_ms"] = _auth_ms(spans, tree, roots)
    out["other_ms"] = by_phase[:, n_ph]
    member = _members(tree, boots)
    queue = _attr(spans, ATTR_QUEUE_WAIT).astype(float).fillna(0.0).to_numpy()
    in_queue_step = np.isin(tree.step, QUEUE_STEPS) & (member >= 0)
    out["queue_wait_ms"] = np.bincount(member[in_queue_step], weights=queue[in_queue_step], minlength=n)
    out["work_ms"] = out["total_ms"] - out["queue_wait_ms"]
    out["host"] = _host(spans, tree, boots, member)
    for attr, col in RUN_COLUMNS.items():
        out[col] = _attr(spans, attr).astype(object).to_numpy()[roots] if n else []
    out["error"], out["failed_phase"], out["no_valid_host"] = _errors(spans, tree, member, n)
    out["reschedules"], out["claim_rounds"] = _retries(spans, tree, member, n)
    out["n_spans"] = boots["member_count"].to_numpy()
    out["start_ns"], out["end_ns"] = boots["start_ns"].to_numpy(), boots["end_ns"].to_numpy()
    return BootAnalysis(spans=spans, tree=tree, table=out, sections=sections, roots=roots)


def _critical_step_ms(analysis: BootAnalysis) -> pd.DataFrame:
    sec, tree, table = analysis.sections, analysis.tree, analysis.table
    n, n_steps = len(table), len(CATALOGUE) + 1
    roots = tree.start[analysis.roots]
    ends = table["end_ns"].to_numpy()
    t0 = np.maximum(sec.t0, roots[sec.segment]) if n else sec.t0
    t1 = np.minimum(sec.t1, ends[sec.segment]) if n else sec.t1
    step = tree.eff_step[sec.span]
    ms = np.bincount(sec.segment * n_steps + step, weights=np.clip(t1 - t0, 0, None),
                     minlength=n * n_steps).reshape(n, n_steps) / 1e6
    frame = pd.DataFrame(ms[:, 1:], columns=[int(s) for s in sorted(CATALOGUE)], index=table.index)
    frame["none"] = ms[:, 0]
    return frame


def _members(tree: Tree, boots: pd.DataFrame) -> np.ndarray:
    index_of_root = np.full(len(tree.start), -1, dtype=np.int64)
    index_of_root[boots["root"].to_numpy()] = np.arange(len(boots))
    return np.where(tree.boot >= 0, index_of_root[np.maximum(tree.boot, 0)], -1)


def _boot_attribute(spans: pd.DataFrame, tree: Tree, boots: pd.DataFrame, key: str) -> np.ndarray:
    """The attribute on the boot's root span, else on the first span of the boot that has it."""
    values = _attr(spans, key).astype(object).to_numpy()
    member = _members(tree, boots)
    has = pd.notna(values) & (member >= 0)
    first = _last_by_group(member, -tree.start, has, len(boots))
    out = np.where(first >= 0, values[np.maximum(first, 0)], None)
    at_root = values[boots["root"].to_numpy()] if len(boots) else values[:0]
    return np.where(pd.notna(at_root), at_root, out)


def _host(spans: pd.DataFrame, tree: Tree, boots: pd.DataFrame, member: np.ndarray) -> np.ndarray:
    """Where the VM was spawned (step 29's host), else the last host claimed for it (step 11)."""
    spawn_host = _attr(spans, ATTR_HOST).astype(object).to_numpy()
    claimed = _attr(spans, ATTR_CLAIMED).astype(object).to_numpy()
    n = len(boots)
    last_spawn = _last_by_group(member, tree.end, (tree.step == int(Step.SPAWN)) & pd.notna(spawn_host), n)
    last_claim = _last_by_group(member, tree.end, pd.notna(claimed), n)
    return np.where(last_spawn >= 0, spawn_host[np.maximum(last_spawn, 0)],
                    np.where(last_claim >= 0, claimed[np.maximum(last_claim, 0)], None))


def _errors(spans: pd.DataFrame, tree: Tree, member: np.ndarray, n: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each boot's first error message and its phase, and whether no valid host was found."""
    err = _error_mask(spans) & (member >= 0)
    first = _last_by_group(member, -tree.start, err, n)
    messages = spans["status_message"].astype(object).to_numpy()
    message = np.where(first >= 0, messages[np.maximum(first, 0)], None)
    phase_names = np.array(PHASES + [None], dtype=object)
    failed_phase = np.where(first >= 0, phase_names[tree.phase[np.maximum(first, 0)]], None)
    nvh_rows = err & (tree.step == int(Step.SCHEDULER_SELECT_HOST))
    nvh_rows |= err & pd.Series(messages).astype(str).str.contains(NO_VALID_HOST, regex=False).to_numpy()
    nvh = np.bincount(member[nvh_rows], minlength=n) > 0
    return message, failed_phase, nvh


def _retries(spans: pd.DataFrame, tree: Tree, member: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Build attempts beyond the first (compute took a build message again) and claim rounds."""
    method = _attr(spans, "openstack.rpc.method").astype(object).to_numpy()
    kind = spans["kind"].astype(object).to_numpy()
    builds = (method == "build_and_run_instance") & (kind == "CONSUMER") & (member >= 0)
    reschedules = np.maximum(np.bincount(member[builds], minlength=n) - 1, 0)
    selects = (tree.step == int(Step.SCHEDULER_SELECT_HOST)) & (member >= 0)
    rounds = np.bincount(member[selects], minlength=n)
    return reschedules, rounds


def _auth_ms(spans: pd.DataFrame, tree: Tree, roots: np.ndarray) -> np.ndarray:
    """Wall time of the auth steps (1-2) traced in the boot's trace (0 when the client did not)."""
    auth = np.isin(tree.step, [int(Step.AUTH_REQUEST), int(Step.AUTH_ISSUE_TOKEN)])
    if not auth.any() or not len(roots):
        return np.zeros(len(roots))
    trace = spans["trace_id"].to_numpy(dtype=object)
    frame = pd.DataFrame({"trace": trace[auth], "s": tree.start[auth], "e": tree.end[auth]})
    window = frame.groupby("trace").agg(s=("s", "min"), e=("e", "max"))
    ms = ((window["e"] - window["s"]) / 1e6).reindex(trace[roots]).fillna(0.0)
    return ms.to_numpy()


def critical_path(spans: pd.DataFrame, *, end_span_id: str | None = None) -> pd.DataFrame:
    """The critical path of one trace (or one boot of it): the chain of spans that decides its end.

    Returns one row per section in time order: span_id, name, service, step, phase (the phase the
    time counts for), start_ns, end_ns, ms. A span may own several sections (its own time before
    and after the child on the path). For a boot the path runs from its step-3 span to its end
    (last step 29, or its last span); for any other trace, from the root to the span that ends last;
    ``end_span_id`` picks the end span explicitly.
    """
    spans = spans.reset_index(drop=True)
    if len(spans) == 0:
        return pd.DataFrame(columns=["span_id", "name", "service", "step", "phase", "start_ns", "end_ns", "ms"])
    tree = Tree(spans)
    if end_span_id is not None:
        hits = np.flatnonzero(spans["span_id"].to_numpy(dtype=object) == end_span_id)
        if not len(hits):
            raise KeyError(f"span {end_span_id!r} is not in the trace")
        end = hits[:1]
        stop = tree.boot[end] if tree.boot[end[0]] >= 0 else np.array([-1])
    else:
        boots, _ = boot_segments(spans, tree)
        if len(boots):
            first = int(np.argmin(boots["start_ns"].to_numpy()))
            end, stop = boots["end_span"].to_numpy()[[first]], boots["root"].to_numpy()[[first]]
        else:
            end, stop = np.array([int(np.argmax(tree.end))]), np.array([-1])
    sections = critical_paths(tree.start, tree.end, tree.parent, end, stop)
    return _sections_frame(spans, tree, sections)


def _sections_frame(spans: pd.DataFrame, tree: Tree, sections: Sections) -> pd.DataFrame:
    rows = sections.span
    phase = tree.phase[rows]
    return pd.DataFrame({
        "span_id": spans["span_id"].to_numpy(dtype=object)[rows],
        "name": spans["name"].astype(object).to_numpy()[rows],
        "service": spans["service"].astype(object).to_numpy()[rows],
        "step": pd.array(np.where(tree.eff_step[rows] > 0, tree.eff_step[rows], 0), dtype="Int64"),
        "phase": np.where(phase >= 0, np.array(PHASES, dtype=object)[np.maximum(phase, 0)], None),
        "start_ns": sections.t0,
        "end_ns": sections.t1,
        "ms": (sections.t1 - sections.t0) / 1e6,
    }).assign(step=lambda f: f["step"].mask(f["step"] == 0))
