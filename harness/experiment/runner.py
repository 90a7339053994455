"""Runs an experiment cell by cell: a fresh embedded cloud per cell, load, spans, tables, SLAs.

Results go to ``OUT/<cell>/`` (settings.json, spans.jsonl, results.csv, boots.csv, summary.json);
a cell with a summary.json is complete and skipped when the experiment runs again (resumable).
Ctrl-C stops the running cell cleanly (its cloud is stopped, its spans flushed) and keeps every
finished cell. Then ``OUT/summary.csv``, ``OUT/sla.json`` (+ ``junit.xml``) and ``OUT/report.html``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.cloud import EmbeddedCloud
from harness.config import Settings, free_ports
from harness.experiment import sla as sla_mod
from harness.experiment.spec import Cell, Experiment
from harness.experiment.locust_driver import results_from_boot_log, results_from_spans, run_locust
from harness.steps import Phase
from harness.loadgen import BootOptions, LoadReport, closed_loop, open_loop, percentile, run_load
from loadtests.boot_log import BOOTS_FILE_NAME

SUMMARY = "summary.json"


@dataclass
class CellOutcome:
    cell: Cell
    summary: dict[str, Any]
    sla: list[sla_mod.SlaResult] = field(default_factory=list)
    skipped: bool = False


Notify = Callable[[str, Cell, dict[str, Any] | None], None]


def cell_settings(exp: Experiment, cell: Cell, run_dir: Path) -> Settings:
    data: dict[str, Any] = {**exp.settings}
    data.update(run_dir=run_dir, profile=cell.profile, hosts=exp.hosts, seed=exp.seed,
                scheduler=cell.scheduler.name, scheduler_options=cell.scheduler.options)
    data.setdefault("ports", free_ports())
    return Settings(**data)


async def run_cell(exp: Experiment, cell: Cell, out: Path) -> CellOutcome:
    cell_dir = out / cell.name
    done = cell_dir / SUMMARY
    if done.is_file():
        summary = json.loads(done.read_text())
        return CellOutcome(cell, summary, [sla_mod.SlaResult(**r) for r in summary.get("sla", [])], skipped=True)
    cell_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("spans.jsonl", "results.csv", "boots.csv", "locust-runs.jsonl"):
        (cell_dir / stale).unlink(missing_ok=True)  # an interrupted earlier attempt
    settings = cell_settings(exp, cell, cell_dir)
    opts = BootOptions(flavor=exp.boot.flavor, image=exp.boot.image, poll_interval=exp.boot.poll_interval_s,
                       boot_timeout=exp.boot.boot_timeout_s)
    load = cell.load

    async def shape(booter, tick):
        if load.users is not None:
            return await closed_loop(booter, users=load.users, duration=exp.duration_s, tick=tick)
        return await open_loop(booter, rate=float(load.rate or 1), duration=exp.duration_s,
                               seed=exp.seed, tick=tick)

    cloud = EmbeddedCloud(settings) if exp.auth_url is None else None
    started = time.time()
    locust_wall = 0.0
    try:
        if cloud is not None:
            await cloud.start()
        if exp.driver == "locust":
            auth_url = cloud.auth_url if cloud is not None else str(exp.auth_url)
            locust_wall = await run_locust(exp, cell, auth_url=auth_url, cell_dir=cell_dir)
        else:
            report = await run_load(settings, shape, opts=opts, auth_url=exp.auth_url, cloud=cloud)
    finally:
        counts = await cloud.stop() if cloud is not None else {}
    if exp.driver == "locust":
        from analysis.load import load_spans

        spans_file, boot_log = cell_dir / "spans.jsonl", cell_dir / BOOTS_FILE_NAME
        if boot_log.exists():  # every boot, whether its trace was sampled or not
            results = results_from_boot_log(boot_log)
        else:
            results = results_from_spans(load_spans(spans_file)) if spans_file.exists() else []
        report = LoadReport(results, min(locust_wall, exp.duration_s) or exp.duration_s,
                            spans_file if spans_file.exists() else None, counts)
    rows = report.rows()
    _write_csv(cell_dir / "results.csv", rows)
    summary = _summarise(cell, report, counts, started)
    phase_means = _boot_tables(cell_dir, summary)
    sla_results = sla_mod.check(
        exp.sla, cell.name,
        latencies_s=[r.active_s for r in report.active if r.active_s is not None],
        boots=summary["boots"], failed=summary["error"], throughput=summary["throughput"],
        phase_means_ms=phase_means,
    ) + sla_mod.check_degradation(exp.sla, cell.name, summary["p50_s"])
    summary["sla"] = sla_mod.as_rows(sla_results)
    summary["sla_ok"] = all(r.success for r in sla_results)
    summary["driver"] = exp.driver
    done.write_text(json.dumps(summary, indent=2, default=str))
    return CellOutcome(cell, summary, sla_results)


def _summarise(cell: Cell, report, counts: dict[str, dict[str, int]], started: float) -> dict[str, Any]:
    lat = [r.active_s for r in report.active if r.active_s is not None]
    nvh = sum(1 for r in report.failed if r.fault and "No valid host" in r.fault)
    return {
        **cell.labels(),
        "started_at": started,
        "wall_s": report.wall_s,
        "boots": len(report.results),
        "active": len(report.active),
        "error": len(report.failed),
        "no_valid_host": nvh,
        "throughput": len(report.active) / report.wall_s if report.wall_s else 0.0,
        "p50_s": percentile(lat, 50), "p90_s": percentile(lat, 90), "p95_s": percentile(lat, 95),
        "p99_s": percentile(lat, 99), "max_s": max(lat, default=math.nan),
        "mean_s": sum(lat) / len(lat) if lat else math.nan,
        "spans_dropped": sum(c.get("dropped", 0) for c in counts.values()),
        "spans_exported": sum(c.get("exported", 0) for c in counts.values()),
    }


def _boot_tables(cell_dir: Path, summary: dict[str, Any]) -> dict[str, float]:
    """Per-boot table from the spans (analysis package); returns mean ms per phase."""
    from analysis.boots import boot_table
    from analysis.load import load_spans

    spans_path = cell_dir / "spans.jsonl"
    if not spans_path.exists():
        return {}
    boots = boot_table(load_spans(spans_path))
    boots.to_csv(cell_dir / "boots.csv", index=False)
    means: dict[str, float] = {}
    for name in [p.value for p in Phase] + ["queue_wait"]:
        col = f"{name}_ms"
        if col in boots.columns:
            means[name] = float(boots[col].mean()) if len(boots) else math.nan
    summary.update({f"mean_{k}_ms": v for k, v in means.items()})
    return means


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    keys = list(rows[0])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()})


async def run_experiment(exp: Experiment, out: Path, *, notify: Notify | None = None) -> list[CellOutcome]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.json").write_text(exp.model_dump_json(indent=2))
    outcomes: list[CellOutcome] = []
    for cell in exp.cells():
        if notify:
            notify("start", cell, None)
        outcome = await run_cell(exp, cell, out)
        outcomes.append(outcome)
        if notify:
            notify("skip" if outcome.skipped else "done", cell, outcome.summary)
    write_outputs(exp, out, outcomes)
    return outcomes


def write_outputs(exp: Experiment, out: Path, outcomes: list[CellOutcome]) -> None:
    rows = [{k: v for k, v in o.summary.items() if k != "sla"} for o in outcomes]
    _write_csv(out / "summary.csv", rows)
    results = [r for o in outcomes for r in o.sla]
    (out / "sla.json").write_text(json.dumps(sla_mod.as_rows(results), indent=2))
    if results:
        sla_mod.to_junit(results, out / "junit.xml", suite=f"harness.bench.{exp.name}")
