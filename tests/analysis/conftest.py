"""Runs made once per test session for the report and notebook tests: two schedulers, a few boots
each, on the fast profile (the round trip makes its own, slower run)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.cloud import EmbeddedCloud
from tests.analysis.runs import make_run
from tests.conftest import cloud_settings

SCHEDULERS = ("filter_scheduler", "pack")
BOOTS = 6


@pytest.fixture(scope="session")
def analysis_runs(tmp_path_factory) -> list[Path]:
    """Run directories (spans.jsonl, settings.json, nova.db) of one small run per scheduler."""
    runs = []
    for name in SCHEDULERS:
        base = tmp_path_factory.mktemp(name)
        settings = cloud_settings(base, run_dir=base / name, scheduler=name, hosts=4, host_groups=[])
        runs.append(asyncio.run(make_run(EmbeddedCloud(settings), BOOTS, concurrency=3)))
    return runs
