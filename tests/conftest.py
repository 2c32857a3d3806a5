"""Shared fixtures: real services and the shared datasets, skipped with a reason when absent.

``RECSYS_REQUIRE_SERVICES=1`` (set by .ci/run) turns those skips into failures.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
POSTGRES_URL = os.environ.get("RECSYS_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("RECSYS_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip (on a user's machine) or fail (in CI) when a needed service or file is absent."""
    if REQUIRE:
        pytest.fail(f"{reason} (RECSYS_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared real datasets folder (../shared/datasets)."""
    if not DATASETS.is_dir():
        skip_or_fail(f"shared datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture(scope="session")
def online_retail_path(datasets: Path) -> Path:
    path = datasets / "online_retail_ii_2009_2010" / "online_retail.parquet"
    if not path.exists():
        skip_or_fail(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL (127.0.0.1:5432, database test) as a SQLAlchemy URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        skip_or_fail(f"PostgreSQL not reachable at {POSTGRES_URL}: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def pg_table(postgres_url: str) -> Iterator[str]:
    """A unique table name in the test database, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"recsys_test_{uuid.uuid4().hex[:10]}"
    yield name
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    engine.dispose()
