"""The machine a benchmark ran on, in one line for its header: the CPU model (from
/proc/cpuinfo: ``platform.processor()`` is empty on Linux), cores, memory, load average
and Python."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (the machine's architecture where /proc/cpuinfo has none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def memory_gib() -> float:
    """Physical memory in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def describe() -> str:
    """E.g. ``2026-12-03 08:30 UTC, AMD EPYC 7B13, 2 cores (nproc 2), 23.5 GiB, load 0.4,
    Python 3.11.2``."""
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores "
            f"(nproc {len(os.sched_getaffinity(0))}), {memory_gib():.1f} GiB, "
            f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}")
