"""Scheduling algorithms behind one interface; see :mod:`harness.scheduling.base`."""

from harness.scheduling.base import (
    REGISTRY, Decision, HostState, RequestSpec, Scheduler, load_all, make_scheduler, register,
)

__all__ = ["REGISTRY", "Decision", "HostState", "RequestSpec", "Scheduler", "load_all",
           "make_scheduler", "register"]
