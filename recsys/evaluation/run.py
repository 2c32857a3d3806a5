"""``run_evaluation``: every task the data in a data directory supports, with the engine
built from the training window, written to an output folder (see ``report``)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from recsys.config import Config
from recsys.errors import ConfigError
from recsys.evaluation.engine import EngineBuilder
from recsys.evaluation.report import EvaluationResult, write_outputs
from recsys.evaluation.split import Windows, time_windows
from recsys.evaluation.tasks import (
    DEFAULT_KS,
    TaskResult,
    evaluate_also_viewed,
    evaluate_basket_completion,
    evaluate_next_basket,
)
from recsys.ingest import load_table

__all__ = ["run_evaluation", "TASKS"]

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("basket_completion", "also_viewed", "next_basket")


def _has(frame: pd.DataFrame | None, column: str) -> bool:
    return frame is not None and column in frame and bool(frame[column].notna().any())


def _windows(orders: pd.DataFrame, events: pd.DataFrame | None, test_fraction: float,
             valid_fraction: float) -> Windows | None:
    """One global split over every timestamp of orders and events (None without any)."""
    stamps = []
    if _has(orders, "ordered_at"):
        stamps.append(orders["ordered_at"].dropna())
    if events is not None and _has(events, "occurred_at"):
        stamps.append(events["occurred_at"].dropna())
    if not stamps:
        return None
    return time_windows(pd.concat(stamps, ignore_index=True), test_fraction=test_fraction,
                        valid_fraction=valid_fraction)


def run_evaluation(data_dir: Path | str, out: Path | str, *, config: Config | None = None,
                   tasks: Sequence[str] | None = None, ks: Sequence[int] = DEFAULT_KS,
                   test_fraction: float = 0.2, valid_fraction: float = 0.2, seed: int = 0,
                   engine: bool = True, n_jobs: int = 1,
                   show_progress: bool = True) -> EvaluationResult:
    """Evaluate on the canonical tables of ``data_dir``; write metrics.json, evaluation.json
    and report.html into ``out``.

    The last ``test_fraction`` of the date range is the test window, the ``valid_fraction``
    before it the validation window (hyperparameters are chosen there). ``config`` is the
    engine's config (default: built-in defaults); ``engine=False`` runs the baselines only.
    Tasks the data cannot support are skipped with the reason in every output.
    """
    wanted = list(TASKS if tasks is None else tasks)
    unknown = sorted(set(wanted) - set(TASKS))
    if unknown:
        raise ConfigError(f"unknown evaluation task(s) {unknown}; choose from {list(TASKS)}")
    if not ks or min(ks) < 1:
        raise ConfigError(f"ks must be positive cutoffs, got {list(ks)}")
    orders = load_table(data_dir, "orders")
    assert orders is not None
    events = load_table(data_dir, "events", required=False)
    catalog = load_table(data_dir, "catalog", required=False)
    result = EvaluationResult(tasks={}, title=f"Offline evaluation of {data_dir}")
    undated = int(orders["ordered_at"].isna().sum()) if "ordered_at" in orders else len(orders)
    if 0 < undated < len(orders):
        result.notes.append(f"{undated:,} order lines without ordered_at are left out")
        orders = orders[orders["ordered_at"].notna()]
    windows = _windows(orders, events, test_fraction, valid_fraction)
    with tempfile.TemporaryDirectory(prefix="recsys-evaluate-") as work:
        builder = EngineBuilder(config, Path(work), show_progress=show_progress) if engine else None
        for task in wanted:
            why = _unsupported(task, orders, events, windows)
            if why:
                result.skipped[task] = why
                log.warning("%s skipped: %s", task, why)
                continue
            assert windows is not None
            outcome: TaskResult
            if task == "basket_completion":
                outcome = evaluate_basket_completion(
                    orders, windows, ks=ks, seed=seed, engine=builder, events=events,
                    catalog=catalog, n_jobs=n_jobs, show_progress=show_progress)
            elif task == "also_viewed":
                assert events is not None
                outcome = evaluate_also_viewed(
                    events, windows, ks=ks, engine=builder, orders=orders, catalog=catalog,
                    n_jobs=n_jobs, show_progress=show_progress)
            else:
                outcome = evaluate_next_basket(
                    orders, windows, ks=ks, engine=builder, events=events, catalog=catalog,
                    n_jobs=n_jobs, show_progress=show_progress)
            if outcome.metrics:
                result.tasks[task] = outcome
            else:
                result.skipped[task] = "; ".join(outcome.notes) or "no test cases"
        if builder is not None and builder.seconds:
            result.notes.append("engine artifact(s) built from the training window and loaded "
                                f"in {sum(builder.seconds.values()):.1f} s")
    write_outputs(result, out)
    return result


def _unsupported(task: str, orders: pd.DataFrame, events: pd.DataFrame | None,
                 windows: Windows | None) -> str | None:
    """Why the data cannot support ``task`` (None when it can)."""
    if task in ("basket_completion", "next_basket") and not _has(orders, "ordered_at"):
        return ("orders have no ordered_at: a global time split (train before the cutoff, test "
                "after) needs order dates; map the order date column at ingest")
    if task == "next_basket" and not _has(orders, "customer_id"):
        return ("orders have no customer_id: a next basket needs to know whose history it is; "
                "map the customer column at ingest")
    if task == "also_viewed":
        if events is None or events.empty:
            return ("no events table: also-viewed needs product-view events with a session or "
                    "customer id (ingest them with --events)")
        if not (events["event_type"] == "view").any():
            return "the events table has no 'view' events"
    if windows is None:
        return "the data has no timestamps to split on"
    return None
