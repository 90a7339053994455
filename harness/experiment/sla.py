"""SLA checks on a cell's results, as Rally's SLA plugins judge a task, exportable as JUnit XML.

Criteria (all optional)::

    [sla]
    max_seconds_per_boot = 10          # Rally's max_seconds_per_iteration: every boot
    max_p95_s = 2.0                    # p95 of boot to ACTIVE
    max_failure_rate_pct = 0           # Rally's failure_rate max (percent of boots not ACTIVE)
    min_throughput = 1.0               # ACTIVE boots per second
    [sla.max_mean_phase_ms]            # Rally's max_avg_duration_per_atomic, per phase
    scheduling = 100
    [sla.outliers]                     # Rally's outliers: boots beyond mean + sigmas * stdev
    max = 1
    sigmas = 3.0
    min_boots = 10
    [sla.performance_degradation]      # p50 against a baseline run's summary.csv, per cell
    max_degradation_pct = 50
    baseline = "runs/bench-baseline"
"""

from __future__ import annotations

import csv
import statistics
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, Field

from harness.steps import Phase


class Outliers(BaseModel):
    model_config = {"extra": "forbid"}
    max: int = Field(0, ge=0)
    sigmas: float = Field(3.0, gt=0)
    min_boots: int = Field(10, ge=3)


class Degradation(BaseModel):
    model_config = {"extra": "forbid"}
    max_degradation_pct: float = Field(50.0, ge=0)
    baseline: Path


class SlaSpec(BaseModel):
    model_config = {"extra": "forbid"}
    max_seconds_per_boot: float | None = Field(None, gt=0)
    max_p95_s: float | None = Field(None, gt=0)
    max_failure_rate_pct: float | None = Field(None, ge=0, le=100)
    min_throughput: float | None = Field(None, ge=0)
    max_mean_phase_ms: dict[Phase, float] = Field(default_factory=dict)
    outliers: Outliers | None = None
    performance_degradation: Degradation | None = None

    @property
    def empty(self) -> bool:
        return not any([self.max_seconds_per_boot, self.max_p95_s, self.max_failure_rate_pct is not None,
                        self.min_throughput is not None, self.max_mean_phase_ms, self.outliers,
                        self.performance_degradation])


@dataclass(frozen=True)
class SlaResult:
    cell: str
    criterion: str
    success: bool
    detail: str


def _pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def check(spec: SlaSpec, cell: str, *, latencies_s: Sequence[float], boots: int, failed: int,
          throughput: float, phase_means_ms: Mapping[str, float]) -> list[SlaResult]:
    """Judge one cell. ``latencies_s``: boot to ACTIVE of the ACTIVE boots."""
    out: list[SlaResult] = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append(SlaResult(cell, name, ok, detail))

    if spec.max_seconds_per_boot is not None:
        worst = max(latencies_s, default=0.0)
        add("max_seconds_per_boot", worst <= spec.max_seconds_per_boot,
            f"slowest boot {worst:.3f} s, limit {spec.max_seconds_per_boot:g} s")
    if spec.max_p95_s is not None:
        p95 = _pct(latencies_s, 95)
        add("max_p95_s", bool(latencies_s) and p95 <= spec.max_p95_s,
            f"p95 {p95:.3f} s, limit {spec.max_p95_s:g} s")
    if spec.max_failure_rate_pct is not None:
        rate = 100.0 * failed / boots if boots else 100.0
        add("max_failure_rate_pct", rate <= spec.max_failure_rate_pct,
            f"{failed} of {boots} boots failed ({rate:.1f} %), limit {spec.max_failure_rate_pct:g} %")
    if spec.min_throughput is not None:
        add("min_throughput", throughput >= spec.min_throughput,
            f"{throughput:.2f} boots/s, minimum {spec.min_throughput:g}")
    for phase, limit in spec.max_mean_phase_ms.items():
        mean = phase_means_ms.get(phase.value, float("nan"))
        add(f"max_mean_phase_ms.{phase.value}", mean == mean and mean <= limit,
            f"mean {phase.value} {mean:.1f} ms, limit {limit:g} ms")
    if spec.outliers is not None:
        o = spec.outliers
        if len(latencies_s) >= o.min_boots:
            mean, sd = statistics.fmean(latencies_s), statistics.pstdev(latencies_s)
            n = sum(1 for x in latencies_s if x > mean + o.sigmas * sd)
            add("outliers", n <= o.max, f"{n} boots beyond mean + {o.sigmas:g} sigma, max {o.max}")
        else:
            add("outliers", True, f"only {len(latencies_s)} boots (< {o.min_boots}): not judged")
    return out


def check_degradation(spec: SlaSpec, cell: str, p50_s: float) -> list[SlaResult]:
    d = spec.performance_degradation
    if d is None:
        return []
    summary = d.baseline / "summary.csv" if d.baseline.is_dir() else d.baseline
    base = _baseline_p50(summary, cell)
    if base is None:
        return [SlaResult(cell, "performance_degradation", False, f"no baseline for cell {cell} in {summary}")]
    change = 100.0 * (p50_s - base) / base if base else float("inf")
    return [SlaResult(cell, "performance_degradation", change <= d.max_degradation_pct,
                      f"p50 {p50_s:.3f} s vs baseline {base:.3f} s ({change:+.1f} %), "
                      f"limit +{d.max_degradation_pct:g} %")]


def _baseline_p50(summary: Path, cell: str) -> float | None:
    if not summary.is_file():
        return None
    with summary.open() as fh:
        for row in csv.DictReader(fh):
            if row.get("cell") == cell and row.get("p50_s"):
                return float(row["p50_s"])
    return None


def to_junit(results: Sequence[SlaResult], path: Path, *, suite: str) -> None:
    """JUnit XML: a test case per cell and criterion (CI systems read it natively)."""
    failures = sum(1 for r in results if not r.success)
    root = ET.Element("testsuites", name=suite, tests=str(len(results)), failures=str(failures))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures))
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{r.cell}", name=r.criterion)
        if r.success:
            ET.SubElement(tc, "system-out").text = r.detail
        else:
            ET.SubElement(tc, "failure", message=r.detail, type="SLA")
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def as_rows(results: Sequence[SlaResult]) -> list[dict[str, Any]]:
    return [{"cell": r.cell, "criterion": r.criterion, "success": r.success, "detail": r.detail} for r in results]
