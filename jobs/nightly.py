"""Nightly job: the whole offline pipeline (ingest, every job, atomic publish).

    python jobs/nightly.py --config configs/recsys.toml [-q]
"""

from __future__ import annotations

import sys

from recsys.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("run", sys.argv[1:]))
