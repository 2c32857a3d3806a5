"""The real-data acceptance suite's fixtures: every shared dataset that has orders, ingested with
its mapping (configs/mappings/), run through the whole pipeline with the default settings once
per test session, and served in-process.

``served`` is parametrised over :data:`DATASETS`: each dataset's pipeline runs once, the first
time a test asks for it, and every test runs once per dataset (``-k bread_basket`` picks one).
YOOCHOOSE has clicks only, no orders, so it is not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys.artifacts import Manifest
from recsys.config import Config
from recsys.pipeline import run_pipeline
from tests.conftest import REPO, skip_or_fail

MAPPINGS = REPO / "configs" / "mappings"
PASSWORD = "acceptance-password-1"


def app_factory() -> Callable[..., Any]:
    """The API's app factory (one place to change when it moves)."""
    from recsys.app import create_app

    return create_app


@dataclass(frozen=True)
class Dataset:
    """A shared dataset with orders: its files, mapping and what a user would look for."""

    name: str
    orders: str  # under ../shared/datasets
    catalog: str | None
    known: tuple[str, ...]  # products a merchandiser looks up first
    names: bool  # the source has product names
    customers: bool  # the order lines name the buyer
    search: str | None = None  # a word of a known product's name, for the console search


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("online_retail_ii", "online_retail_ii_2009_2010/online_retail.parquet", None,
            known=("85123A", "22423", "22086"), names=True, customers=True,
            search="CAKESTAND"),
    Dataset("bread_basket", "bread_basket/BreadBasket_DMS.csv", None,
            known=("Coffee", "Bread", "Cake"), names=True, customers=False, search="Bread"),
    Dataset("instacart", "instacart_100_users/instacart_ordertoproductmap.csv",
            "instacart_100_users/instacart_products.csv", known=("13176", "24852", "21903"),
            names=True, customers=False, search="Banana"),
    Dataset("dunnhumby", "dunnhumby_complete_journey/transactions_sample.csv.gz",
            "dunnhumby_complete_journey/products.csv.gz", known=("1082185", "1029743"),
            names=False, customers=True),
)}


@dataclass
class Served:
    """One dataset after `recsys run` with the default settings, served in-process."""

    dataset: Dataset
    config: Config
    manifest: Manifest
    version_dir: Path
    orders: pd.DataFrame  # the accepted order lines (DATA_DIR/orders.parquet)
    catalog: pd.DataFrame | None
    client: TestClient

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET as the shop's backend would (the server key opens every endpoint)."""
        response = self.client.get(path, params=params,
                                   headers={"X-API-Key": self.config.serving_settings().api_key})
        assert response.status_code == 200, f"{path} {params}: {response.text}"
        body: dict[str, Any] = response.json()
        return body

    def new_app(self) -> Any:
        """Another app over the same artifact and database (for a real server)."""
        return app_factory()(self.config.serving_settings())


def pipeline_config(dataset: Dataset, datasets: Path, tmp: Path) -> Config:
    """Defaults for everything but where the data is and where results go (no demo files)."""
    return Config.model_validate({
        "data_dir": str(tmp / "data"),
        "ingest": {"orders": str(datasets / dataset.orders),
                   "catalog": str(datasets / dataset.catalog) if dataset.catalog else None,
                   "events": None, "mapping": str(MAPPINGS / f"{dataset.name}.toml")},
        "demo": {"generate_if_missing": False},
        "artifacts": {"root": str(tmp / "artifacts")},
        "serving": {"database_url": f"sqlite:///{tmp / 'serving.db'}",
                    "reload_interval_s": 0, "decisions_refresh_s": 0},
    })


@pytest.fixture(scope="session", params=list(DATASETS))
def served(request: pytest.FixtureRequest, datasets: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from recsys.console.passwords import hash_password

    dataset = DATASETS[request.param]
    for part in (dataset.orders, dataset.catalog):
        if part and not (datasets / part).exists():
            skip_or_fail(f"{datasets / part} not found")
    config = pipeline_config(dataset, datasets, tmp_path_factory.mktemp(dataset.name))
    _, manifest = run_pipeline(config, show_progress=False)
    data = Path(config.data_dir)
    catalog_file = data / "catalog.parquet"
    app = app_factory()(config.serving_settings())
    with TestClient(app) as client:
        app.state.serving.store.add_user("ann", hash_password(PASSWORD), "viewer")
        yield Served(dataset=dataset, config=config, manifest=manifest,
                     version_dir=Path(config.artifacts.root) / "versions" / manifest.version,
                     orders=pd.read_parquet(data / "orders.parquet"),
                     catalog=pd.read_parquet(catalog_file) if catalog_file.exists() else None,
                     client=client)
