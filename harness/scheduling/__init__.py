"""Scheduling algorithms behind one interface; see :mod:`harness.scheduling.base`.

Layout (Nova's, one small file per plugin): ``strategies/`` the algorithms selectable by name,
``filters/`` and ``weighers/`` the parts of Nova's filter scheduler, ``placement.py`` the capacity
stage every algorithm starts from, ``hosts.py`` the columnar host view they all read.
"""

from harness.scheduling.base import (
    REGISTRY, Decision, HostState, RequestSpec, Scheduler, ServerGroup, load_all, make_scheduler,
    register,
)
from harness.scheduling.hosts import HostTable

__all__ = ["REGISTRY", "Decision", "HostState", "HostTable", "RequestSpec", "Scheduler", "ServerGroup",
           "load_all", "make_scheduler", "register"]
