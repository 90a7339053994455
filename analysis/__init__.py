"""Turn a run's traces into answers: where a boot's time goes and which scheduler wins.

The pipeline is three tables, each a pandas DataFrame built with vectorised operations:

* :func:`analysis.load.load_spans` — a row per span (from ``spans.jsonl`` files, run directories,
  a Parquet cache or Jaeger's query API, :mod:`analysis.jaeger`);
* :func:`analysis.boots.boot_table` — a row per boot, its time split into the phases of the step
  catalogue along its critical path;
* :func:`analysis.breakdown.phase_table` — Rally-style percentiles per phase.

Reports, scheduler comparisons and plots build on these (:mod:`analysis.report`,
:mod:`analysis.compare`, :mod:`analysis.plots`).
"""

from analysis.boots import boot_table, critical_path
from analysis.breakdown import phase_table
from analysis.load import load_spans

__all__ = ["load_spans", "boot_table", "critical_path", "phase_table"]
