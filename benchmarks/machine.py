"""The machine a benchmark ran on, in one line for its header: the CPU model (from
/proc/cpuinfo: ``platform.processor()`` is empty on Linux), cores, memory, load average
and Python; and how slowly an idle core starts working again (``wake_up_ms``)."""

from __future__ import annotations

import os
import platform
import statistics
import time
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


def wake_up_ms(idle_s: float = 1.0, repeats: int = 3) -> dict[str, float]:
    """How long a few microseconds of work take on this process's core right after it slept
    ``idle_s`` seconds, against the same work while busy (medians of ``repeats``, ms). On a
    virtual machine the first work after an idle spell can take tens of milliseconds (the
    host runs something else meanwhile): a latency benchmark whose phases start from idle
    counts that in its tail; ``serving_bench.run_openloop``'s ``warmup`` leaves it out."""
    table = {str(i): i for i in range(100_000)}
    keys = [str(i) for i in range(0, 100_000, 331)]

    def work() -> float:
        started = time.perf_counter()
        for key in keys:
            table[key]
        return (time.perf_counter() - started) * 1e3

    for _ in range(1000):
        work()
    busy = statistics.median(work() for _ in range(200))
    first = []
    for _ in range(repeats):
        time.sleep(idle_s)
        first.append(work())
    return {"idle_s": idle_s, "busy_ms": round(busy, 4),
            "after_idle_ms": round(statistics.median(first), 3)}
