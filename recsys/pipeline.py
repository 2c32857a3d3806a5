"""The offline pipeline behind `recsys run`: ingest, every job, publish one artifact version.

Each job reads the canonical tables and writes its files into the staging folder; its return
value (a small dict of figures) goes into the manifest's ``metrics`` under the job's name.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import scipy.sparse as sp

from recsys import layout
from recsys.analytics.aggregates import ClvAggregates
from recsys.analytics.job import clv_inputs_missing, run_clv_job
from recsys.artifacts import ArtifactStore, Manifest, fingerprint_files
from recsys.config import Config
from recsys.ingest import IngestReport, ingest, load_table
from recsys.mapping import load_mapping
from recsys.matrices import item_vocabulary, order_item_matrix, view_sessions
from recsys.models.cold_start_job import LocalOrderLines, OrderLines, run_cold_start_job
from recsys.models.content import run_content_job
from recsys.models.job import run_models_job
from recsys.models.upsell_prior import fit_upsell_prior
from recsys.popularity import best_sellers
from recsys.progress import progress_bar, progress_enabled, set_quiet
from recsys.rules.job import run_rules_job
from recsys.server_events import ingest_server_events
from recsys.session_tuning import (
    basket_events,
    baskets_after,
    data_until,
    latest_time,
    previous_version,
    run_session_tuning_job,
)
from recsys.vocab import Vocabulary

__all__ = ["JobContext", "JOBS", "run_pipeline", "run_jobs"]

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """What a job sees: the config, the canonical tables and the staging folder to write to.
    ``orders`` and ``events`` are None in the Spark engine: its jobs read the order lines and
    the events on Spark from the data directory, and the driver never loads them."""

    config: Config
    orders: pd.DataFrame | None
    events: pd.DataFrame | None
    catalog: pd.DataFrame | None
    items: Vocabulary  # every product of catalog, orders and events: the artifact's codes
    out: Path
    made: dict[str, sp.csr_matrix | None] = field(default_factory=dict, repr=False)
    # the store this run publishes into: its current version is the one being served (None:
    # none, as in the offline evaluation's artifacts)
    store: Path | None = None

    def lines(self) -> pd.DataFrame:
        """The order lines in memory (the local engine's jobs)."""
        if self.orders is None:
            raise RuntimeError("this job needs the order lines in memory: the local engine's")
        return self.orders

    def view_sessions(self, make: Callable[[], sp.csr_matrix | None] | None = None
                      ) -> Callable[[], sp.csr_matrix | None]:
        """The session x product matrix of the view events (None without any), made once per
        run by the first job that reads it (rules, models and cold start share it) and
        read-only, so that no job changes what the others read. ``make``: how (default:
        pandas, from ``events``; the Spark engine makes it on Spark)."""
        def shared() -> sp.csr_matrix | None:
            if "view_sessions" not in self.made:
                matrix = (make or partial(view_sessions, self.events, self.items,
                                          self.config.interactions))()
                if matrix is not None:
                    for array in (matrix.data, matrix.indices, matrix.indptr):
                        array.flags.writeable = False
                self.made["view_sessions"] = matrix
            return self.made["view_sessions"]

        return shared


def job_catalog(ctx: JobContext) -> dict[str, Any]:
    """Product vocabulary and the catalog the API shows (names, prices, stock)."""
    ctx.items.save(layout.ITEMS.at(ctx.out))
    if ctx.catalog is not None:
        ctx.catalog.to_parquet(layout.CATALOG.at(ctx.out), index=False)
    return {"products": len(ctx.items),
            "catalog_products": 0 if ctx.catalog is None else len(ctx.catalog)}


def job_popularity(ctx: JobContext) -> dict[str, Any]:
    """Best sellers per scope (global and every category level)."""
    cfg = ctx.config.popularity
    table = best_sellers(ctx.lines(), ctx.catalog, window_days=cfg.window_days, top_k=cfg.top_k)
    table.to_parquet(layout.POPULAR.at(ctx.out), index=False)
    return {"scopes": int(table["scope"].nunique()), "rows": len(table)}


def job_basket_stats(ctx: JobContext) -> dict[str, Any]:
    """Basket figures every later job relies on (from the order x product matrix)."""
    baskets = order_item_matrix(ctx.lines())
    sizes = baskets.matrix.getnnz(axis=1)
    return {"orders": int(baskets.matrix.shape[0]), "products_ordered": int(baskets.matrix.shape[1]),
            "mean_basket_size": round(float(sizes.mean()), 4) if len(sizes) else 0.0,
            "max_basket_size": int(sizes.max()) if len(sizes) else 0}


def job_rules(ctx: JobContext) -> dict[str, Any]:
    """Association rules, category rules, substitutes and bundles (see recsys.rules.job)."""
    return run_rules_job(ctx.lines(), ctx.events, ctx.catalog, ctx.config.rules, ctx.out,
                         weights=ctx.config.interactions, items=ctx.items,
                         sessions=ctx.view_sessions())


def job_models(ctx: JobContext) -> dict[str, Any]:
    """Also-viewed, bought-together, ALS and repurchase cycles (see recsys.models.job)."""
    return run_models_job(ctx.lines(), ctx.events, ctx.items, ctx.config.models,
                          ctx.config.interactions, ctx.out, ctx.catalog,
                          sessions=ctx.view_sessions())


def job_upsell(ctx: JobContext) -> dict[str, Any]:
    """The upsell prior, fitted on the models job's viewed-then-bought evidence and the
    best-seller table (see recsys.models.upsell_prior)."""
    evidence = pd.read_parquet(layout.VIEWED_BOUGHT.at(ctx.out))
    prior = fit_upsell_prior(evidence, ctx.catalog, pd.read_parquet(layout.POPULAR.at(ctx.out)),
                             ctx.config.serving.upsell_band)
    prior.save(layout.UPSELL_PRIOR.at(ctx.out))
    return {"weights": dict(zip(prior.features, prior.weights, strict=True)),
            "products": prior.products, "sessions": prior.sessions}


def job_content(ctx: JobContext) -> dict[str, Any]:
    """Content neighbours from the catalogue (see recsys.models.content)."""
    return run_content_job(ctx.catalog, ctx.items, ctx.config.models.content_top_k, ctx.out)


def job_cold_start(ctx: JobContext, lines: OrderLines | None = None,
                   sessions: Callable[[], sp.csr_matrix | None] | None = None
                   ) -> dict[str, Any]:
    """The cold-start weights, chosen on products held out of the shop's own co-views (see
    recsys.models.cold_start_job); runs after the content job, whose neighbours it reads.
    ``lines``: where the order lines are read (default: pandas, from ctx.orders);
    ``sessions``: the view sessions (default: ``ctx.view_sessions``, made with pandas)."""
    return run_cold_start_job(lines or LocalOrderLines(ctx.lines()), ctx.events, ctx.catalog,
                              ctx.items, ctx.config.models, ctx.config.interactions,
                              window_days=ctx.config.popularity.window_days,
                              top_k=ctx.config.popularity.top_k, out=ctx.out,
                              sessions=sessions or ctx.view_sessions())


def job_session_tuning(ctx: JobContext) -> dict[str, Any]:
    """The session's weights in bought-together and the cart add-ons, chosen with the served
    version on the cart sessions it never saw (see recsys.session_tuning). The Spark engine
    (no tables in memory) reads only those sessions' cart events from the data directory."""
    previous = previous_version(ctx.store) if ctx.store is not None else None
    if ctx.orders is None:
        return run_session_tuning_job(ctx.config, ctx.out, previous,
                                      partial(basket_events, ctx.config.data_dir),
                                      data_until(ctx.config.data_dir))
    return run_session_tuning_job(ctx.config, ctx.out, previous,
                                  partial(baskets_after, ctx.events),
                                  latest_time(ctx.orders, ctx.events))


def job_customer_value(ctx: JobContext, aggregates: ClvAggregates | None = None
                       ) -> dict[str, Any]:
    """CLV, BG/NBD + Gamma-Gamma, RFM, retention and segments (see recsys.analytics.job);
    ``aggregates``: where the order lines are aggregated (default: pandas, from ctx.orders)."""
    lines = ctx.lines() if aggregates is None else aggregates
    missing = clv_inputs_missing(lines, ctx.catalog)
    if missing:
        log.warning("customer value skipped: %s", missing)
        return {"skipped": missing}
    store = ArtifactStore(ctx.config.artifacts.root)
    previous = layout.CLV_REPORT.at(store.path()).parent if store.current_version() else None
    return run_clv_job(lines, ctx.catalog,
                       layout.CLV_REPORT.at(ctx.out).parent, config=ctx.config.analytics,
                       previous=previous, model_dir=ctx.out)


JOBS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "catalog": job_catalog,
    "popularity": job_popularity,
    "basket_stats": job_basket_stats,
    "rules": job_rules,
    "models": job_models,
    "upsell": job_upsell,
    "content": job_content,
    "cold_start": job_cold_start,
    "session_tuning": job_session_tuning,
    "customer_value": job_customer_value,
}


def run_pipeline(config: Config, *, show_progress: bool = True,
                 runner: Callable[..., tuple[IngestReport, Manifest]] | None = None,
                 ) -> tuple[IngestReport, Manifest]:
    """Ingest the configured sources, run every job and publish; returns the new manifest.

    ``runner`` does the work (default ``run_jobs``; the Spark engine passes its own).
    """
    was_quiet = not progress_enabled()
    set_quiet(was_quiet or not show_progress)
    try:
        return (runner or run_jobs)(config, show_progress=show_progress)
    finally:
        set_quiet(was_quiet)


def run_jobs(config: Config, *, show_progress: bool, ingest_fn: Callable[..., IngestReport] = ingest,
             jobs: dict[str, Callable[[JobContext], dict[str, Any]]] = JOBS,
             vocabulary: Callable[[Path, pd.DataFrame | None], Vocabulary] | None = None,
             ) -> tuple[IngestReport, Manifest]:
    """Ingest with ``ingest_fn``, run ``jobs`` in order and publish (the engines differ only
    in these). ``vocabulary``: the product vocabulary of the data directory's orders, the
    catalog and the events, made without loading the order lines and the events (the Spark
    engine's; then ``JobContext.orders`` and ``JobContext.events`` are None); by default the
    lines and the events are loaded and it is made from them."""
    sources = config.ingest.sources()  # fails first when no orders are configured
    mapping = load_mapping(config.ingest.mapping)
    data_dir = Path(config.data_dir)
    report = ingest_fn(sources, mapping, data_dir, show_progress=show_progress)
    log.info("ingest done: %s rows accepted, %s rejected (see %s)",
             f"{sum(t.rows_accepted for t in report.tables.values()):,}",
             f"{sum(t.rows_rejected for t in report.tables.values()):,}", data_dir / "report.json")
    server = ingest_server_events(config.serving.database_url, sources.get("events"),
                                  data_dir, report) if config.ingest.server_events else None
    if server is not None:  # its label hides the URL's password
        sources = {**sources, "server_events": server.source}
    catalog = load_table(data_dir, "catalog", required=False)
    if vocabulary is None:
        orders = load_table(data_dir, "orders")
        events = load_table(data_dir, "events", required=False)
        items = item_vocabulary(catalog, orders, events)
    else:
        orders = events = None
        items = vocabulary(data_dir, catalog)
    store = ArtifactStore(config.artifacts.root, keep_last=config.artifacts.keep_last)
    metrics: dict[str, Any] = {}
    with store.staging() as staging:
        ctx = JobContext(config=config, orders=orders, events=events, catalog=catalog,
                         items=items, out=staging, store=store.root)
        for name in progress_bar(list(jobs), desc="jobs", unit="job", enabled=show_progress):
            metrics[name] = jobs[name](ctx)
            log.info("job %s: %s", name, metrics[name])
        shutil.copyfile(data_dir / "report.json", layout.INGEST_REPORT.at(staging))
        inputs = {
            "sources": dict(sources),
            "rows": {t: {"read": r.rows_read, "accepted": r.rows_accepted,
                         "rejected": r.rows_rejected} for t, r in report.tables.items()},
            "files": fingerprint_files(sorted(data_dir.glob("*.parquet"))),
        }
        manifest = store.publish(staging, config=config.to_json_dict(),
                                 config_hash=config.hash(), inputs=inputs, metrics=metrics)
    log.info("published version %s", manifest.version)
    return report, manifest

