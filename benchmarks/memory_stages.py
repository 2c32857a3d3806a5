"""Peak resident memory of each stage of `recsys run`: every pipeline job and the models job's
steps (EASE, item-kNN, ALS, purchase history), to find which one sets `memory_bench.py`'s peak.

    PYTHONPATH=. .venv/bin/python benchmarks/memory_stages.py CONFIG

Linux only: before and after each stage the kernel's high-water mark (VmHWM) is read and reset
(``/proc/self/clear_refs``), so a stage's figure is the largest resident size the process had
while it ran, whatever allocated it (numpy, LAPACK, scipy's C++). A parent stage's figure
includes its children's. Ingest runs before the first job and shows under ``(whole run)``.
"""

from __future__ import annotations

import argparse
import functools
import re
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

PEAK: dict[str, float] = defaultdict(float)
SECONDS: dict[str, float] = defaultdict(float)
STACK: list[str] = ["(whole run)"]


def _high_water_mib() -> float:
    status = Path("/proc/self/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+)", status)
    assert found, "no VmHWM in /proc/self/status (Linux only)"
    return int(found.group(1)) / 1024


def _close_segment() -> None:
    """Charge the high-water mark since the last reset to the open stages, then reset it."""
    peak = _high_water_mib()
    for depth in range(1, len(STACK) + 1):
        path = "/".join(STACK[:depth])
        PEAK[path] = max(PEAK[path], peak)
    Path("/proc/self/clear_refs").write_text("5")


def _staged(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        _close_segment()
        STACK.append(label)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SECONDS["/".join(STACK)] += time.perf_counter() - start
            _close_segment()
            STACK.pop()
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    args = parser.parse_args()
    import recsys.models.job as models_job
    import recsys.pipeline as pipeline
    from recsys.config import load_config

    for name, job in list(pipeline.JOBS.items()):
        pipeline.JOBS[name] = _staged(f"job {name}", job)
    for name in ("ease_neighbours", "_neighbours", "customer_item_matrix", "_save_purchases",
                 "cycles_of_sorted"):
        setattr(models_job, name, _staged(name, getattr(models_job, name)))
    models_job.ALS.fit = _staged("ALS.fit", models_job.ALS.fit)  # type: ignore[method-assign]
    start = time.perf_counter()
    pipeline.run_pipeline(load_config(args.config), show_progress=False)
    SECONDS["(whole run)"] = time.perf_counter() - start
    _close_segment()
    print("| stage | peak RSS | seconds |\n|---|---:|---:|")
    for path in sorted(PEAK):
        print(f"| {path} | {PEAK[path]:,.0f} MiB | {SECONDS[path]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
