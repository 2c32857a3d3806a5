"""Ingest job: read, map and validate sources into a data directory (with quarantine and report).

    python jobs/ingest.py --orders PATH_OR_URL [--events ...] [--catalog ...] [--mapping FILE] --out DIR
"""

from __future__ import annotations

import sys

from recsys.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("ingest", sys.argv[1:]))
