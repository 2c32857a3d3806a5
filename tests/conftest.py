"""Shared fixtures: real services and the shared datasets, skipped with a reason when absent.

``RECSYS_REQUIRE_SERVICES=1`` (set by .ci/run) turns those skips into failures.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from tests.browser import browser, page  # noqa: F401 - fixtures for every test
from tests.spark_fixtures import spark_cluster, spark_local  # noqa: F401 - Spark engine tests

if TYPE_CHECKING:
    from recsys.config import ServingSettings

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
POSTGRES_URL = os.environ.get("RECSYS_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE = os.environ.get("RECSYS_REQUIRE_SERVICES") == "1"


#: Modules whose fixtures build an artifact, start a server or a browser, or read the shared
#: datasets: seconds to minutes each. Their tests are marked ``slow`` (``make test-fast``
#: leaves them out; ``make test`` runs everything).
SLOW_MODULES = frozenset({
    "test_api", "test_api_ab", "test_api_fastpath", "test_api_reload", "test_api_schema",
    "test_api_segments", "test_console", "test_console_browser", "test_storefront",
    "test_storefront_browser", "test_serving", "test_pipeline", "test_evaluation_run",
    "test_models", "test_rules_job", "test_demo", "test_rules_real_data",
    "test_online_retail_ingest", "test_sql_ingest", "test_layout", "test_reliability_load",
    "test_database_down", "test_api_campaign", "test_load_reload",
    # each builds an artifact, starts a server, Spark or a browser, or fuzzes the API
    "test_spark_rules", "test_spark_pipeline", "test_spark_cli", "test_spark_ingest",
    "test_spark_models",
    "test_faults", "test_live", "test_content", "test_server_events", "test_analytics_pricing",
    "test_auth", "test_forget", "test_privacy_api", "test_events_guard",
    "test_api_docs_browser", "test_artifact_checks", "test_secrets", "test_hardening",
    "test_upsell", "test_console_customers", "test_profile", "test_export_customers",
    "test_analytics_actions",
})
#: Single tests over 4 s in a fast module (measured with --durations; compiled kernels, 300,000
#: rules, property tests against brute force).
SLOW_TESTS = frozenset({
    "test_ranking.py::test_cart_scores_by_hand",
    "test_console_rules.py::test_300k_rules_filter_sort_and_page",
    "test_analytics_outcomes.py::test_report_is_self_contained",
    "test_popularity.py::test_counts_and_ranks_match_brute_force",
    "test_ingest.py::test_property_counts_contract_and_quarantine",
    "test_rules_mining.py::test_matches_brute_force",
    "test_repurchase.py::test_cycles_match_plain_python",
    "test_itemsets.py::test_matches_brute_force",
})
#: Fixtures that make any test using them slow.
SLOW_FIXTURES = frozenset({"datasets", "online_retail_path", "demo_shop", "demo_artifact",
                           "browser", "page", "postgres_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of SLOW_MODULES and SLOW_TESTS, and those using a SLOW_FIXTURES
    fixture, ``slow``."""
    for item in items:
        owner = getattr(item, "module", None)  # None for items that are not Python tests
        module = owner.__name__.rsplit(".", 1)[-1] if owner else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        test = f"{module}.py::{getattr(item, 'originalname', item.name)}"
        if module in SLOW_MODULES or test in SLOW_TESTS or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis (127.0.0.1:6379 by default) as a URL; tests prefix their keys."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


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


def write_small_shop(folder: Path) -> dict[str, Path]:
    """A hand-made shop with a known answer: 6 orders, 5 products, one out of stock."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.csv").write_text(
        "order_id,product_id,customer_id,ordered_at,quantity,unit_price\n"
        "o1,mug,c1,2025-01-01T10:00:00,1,8.5\n"
        "o1,tea,c1,2025-01-01T10:00:00,2,4.0\n"
        "o2,mug,c2,2025-01-02T11:00:00,1,8.5\n"
        "o2,tea,c2,2025-01-02T11:00:00,1,4.0\n"
        "o3,mug,,2025-01-03T12:00:00,1,8.5\n"
        "o4,kettle,c1,2025-01-04T09:00:00,1,30\n"
        "o4,tea,c1,2025-01-04T09:00:00,1,4.0\n"
        "o5,spoon,c3,2025-01-05T09:00:00,3,1.5\n"
        "o6,mug,c3,not a date,1,8.5\n"
        "C7,mug,c3,2025-01-06T09:00:00,-1,8.5\n"
    )
    (folder / "catalog.csv").write_text(
        "product_id,name,category,price,in_stock\n"
        "mug,Ceramic Mug,Home > Kitchen > Mugs,8.5,true\n"
        "tea,Green Tea,Food > Tea,4.0,true\n"
        "kettle,Steel Kettle,Home > Kitchen > Kettles,30,false\n"
        "spoon,Tea Spoon,Home > Kitchen,1.5,yes\n"
        "pot,Tea Pot,Home > Kitchen,22,true\n"
    )
    (folder / "events.csv").write_text(
        "product_id,event_type,occurred_at,session_id,customer_id\n"
        "mug,view,2025-01-01T09:55:00,s1,c1\n"
        "tea,view,2025-01-01T09:57:00,s1,c1\n"
        "pot,view,2025-01-02T10:00:00,s2,\n"
    )
    (folder / "mapping.toml").write_text('[orders]\ncancellation_prefix = "C"\n')
    return {"orders": folder / "orders.csv", "catalog": folder / "catalog.csv",
            "events": folder / "events.csv", "mapping": folder / "mapping.toml"}


def write_small_config(tmp: Path) -> Path:
    """A config that runs the pipeline on the small shop inside ``tmp``."""
    files = write_small_shop(tmp / "raw")
    config = tmp / "recsys.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\n'
        f'[ingest]\norders = "{files["orders"]}"\nevents = "{files["events"]}"\n'
        f'catalog = "{files["catalog"]}"\nmapping = "{files["mapping"]}"\n'
        f'[demo]\ngenerate_if_missing = false\n'
        f'[popularity]\nwindow_days = 0\n'
        f'[artifacts]\nroot = "{tmp / "artifacts"}"\nkeep_last = 3\n'
        # a handful of orders: every rule (the default rules need 20 orders and evidence)
        f'[rules]\nmin_support = 0.001\nmin_count = 0\nmin_lift = 1.0\nmax_p_value = 1\n'
        f'prune_redundant = false\nmax_per_antecedent = 0\n'
        # [serving] last: tests append serving keys
        f'[serving]\ndatabase_url = "sqlite:///{tmp / "recsys.db"}"\nreload_interval_s = 0.2\n'
        f'decisions_refresh_s = 0\n'
    )
    return config


#: The shared demo shop: planted patterns recoverable, a few seconds to generate.
DEMO_SPEC_ORDERS, DEMO_SPEC_SEED = 12_000, 5


@dataclass(frozen=True)
class DemoShop:
    """The generated demo shop (``raw``: CSVs and planted.json) ingested into ``data``."""

    raw: Path
    data: Path
    planted: dict[str, Any]

    def tables(self) -> dict[str, pd.DataFrame]:
        """The canonical tables (a fresh copy per call: tests may change them)."""
        from recsys.ingest import load_table

        out = {t: load_table(self.data, t) for t in ("orders", "events", "catalog")}
        return {t: frame for t, frame in out.items() if frame is not None}

    def sources(self) -> dict[str, str]:
        return {t: str(self.raw / f"{t}.csv") for t in ("orders", "events", "catalog")}


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory: pytest.TempPathFactory) -> DemoShop:
    """One demo shop (12,000 orders, seed 5) for the whole session, generated and ingested."""
    from recsys.demo import DemoSpec, generate_demo
    from recsys.ingest import ingest
    from recsys.mapping import SourceMapping

    tmp = tmp_path_factory.mktemp("demo_shop")
    generate_demo(tmp / "raw", DemoSpec(orders=DEMO_SPEC_ORDERS, seed=DEMO_SPEC_SEED),
                  progress=False)
    shop = DemoShop(raw=tmp / "raw", data=tmp / "data",
                    planted=json.loads((tmp / "raw" / "planted.json").read_text()))
    ingest(shop.sources(), SourceMapping(), shop.data, show_progress=False)
    return shop


@pytest.fixture(scope="session")
def demo_artifact(demo_shop: DemoShop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact store of one `recsys run` on the demo shop (default config otherwise).

    Shared by every module: serve it read only (``demo_settings``); a test that publishes,
    rolls back or damages a version works on a copy (``copy_store``). The run's config is
    ``demo_config(demo_artifact)``, its ingested tables are in ``demo_artifact.parent / "data"``.
    """
    from recsys.config import load_config
    from recsys.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("demo_artifact")
    config = tmp / "recsys.toml"
    config.write_text(f'data_dir = "{tmp / "data"}"\n[ingest]\n' + "".join(
        f'{t} = "{path}"\n' for t, path in demo_shop.sources().items())
        + f'[artifacts]\nroot = "{tmp / "artifacts"}"\n')
    run_pipeline(load_config(config), show_progress=False)
    return tmp / "artifacts"


def demo_config(demo_artifact: Path) -> Path:
    """The config the shared demo artifact was built with (its hash is the artifact's)."""
    return demo_artifact.parent / "recsys.toml"


def demo_settings(demo_artifact: Path, tmp: Path, **serving: Any) -> ServingSettings:
    """Serving settings for the shared demo artifact, as ``recsys serve`` reads them from its
    config, with this test's own SQLite database, event buffer and console secret in ``tmp``
    (nothing is written next to the shared artifact), no reload polling, decisions re-read
    at once."""
    from recsys.config import ServingSettings, load_config

    base = load_config(demo_config(demo_artifact)).serving_settings()
    values = {**base.model_dump(), "database_url": f"sqlite:///{tmp / 'recsys.db'}",
              "data_dir": str(tmp / "buffer"), "session_secret_file": str(tmp / "secret"),
              "reload_interval_s": 0, "decisions_refresh_s": 0, **serving}
    return ServingSettings(**values)


def copy_store(store: Path, to: Path) -> Path:
    """A copy of an artifact store (for a test that publishes into it or damages it)."""
    shutil.copytree(store, to, ignore=shutil.ignore_patterns(".lock", ".staging*"))
    return to
