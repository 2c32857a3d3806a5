"""The session_tuning job: chooses, on the shop's own cart sessions, how much the session
weighs in bought-together (``session_weight``, ``session_decay``) and how much more the cart's
latest lines count in the cart add-ons (``line_decay``), and writes the choice, with who made
it, to ``session_weights.json`` (served by ``recsys.serving.session_weights``; a value set in
``[serving.placements.bought_together]`` or ``[serving.placements.cart]`` is pinned and not
tuned).

No leakage, no refit: the lists are scored with the version being served (the store's
current one, built before this run) on the sessions it never saw: those whose first cart add
came after everything it was trained on (its ``data_until``, the latest order or event time
of its data, which this job writes; a version from before the job: the time it was made).
A session's basket is its ``add_to_cart`` and ``purchase`` events in time order, each product
once (views play no part); a case is the product at place i > 1 (the target) with the
basket before it: its last product on screen, all of it the session (cart adds: left out of
the list, as served). Cases whose target or product on screen the version does not know are
left out; at most ``session_tune_cases`` are drawn (whole sessions, seeded). Lists: the
served ``recommend.bought_together`` and ``recommend.cart_addons`` (k=10, the placement's
minimum evidence, out-of-stock products kept) at each setting of the grid; a hit is the
target in the list.

Choice: the best HR@10, ties to the setting in force (the config's ``[serving]`` session
weights, the default ``line_decay``), then to the grid's order. With fewer than
``session_tune_min_cases`` cases (a quiet day, no served version, no cart events) the
previous version's choice is kept where it made one, else nothing is chosen (the config's
settings apply).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from recsys import layout
from recsys.artifacts import ArtifactStore
from recsys.config import DEFAULT_LINE_DECAY, Config
from recsys.errors import ArtifactError
from recsys.ingest import table_file
from recsys.progress import progress_bar
from recsys.serving import recommend
from recsys.serving.finish import Decisions, Options
from recsys.serving.index import ServingIndex, load_index
from recsys.serving.live import Recent
from recsys.serving.service import placed, session_at
from recsys.serving.session import line_weights

__all__ = ["GRID_WEIGHTS", "GRID_DECAYS", "LINE_DECAYS", "Case", "Previous", "previous_version",
           "data_until", "latest_time", "basket_events", "baskets_after", "cases_of",
           "bought_together_hits", "cart_hits", "run_session_tuning_job"]

log = logging.getLogger(__name__)

GRID_WEIGHTS = (0.1, 0.3, 1.0, 2.0, 4.0)  # bought-together's session_weight
GRID_DECAYS = (0.5, 0.8, 1.0)  # ... and session_decay
LINE_DECAYS = (1.0, 0.8, 0.5, 0.3, 0.1)  # the cart add-ons' line_decay
BASKET_EVENTS = ("add_to_cart", "purchase")
_COLUMNS = ["session_id", "product_id", "occurred_at"]  # of the basket events read
K = 10  # the list length scored


class Case(NamedTuple):
    """A session's next cart add (``target``) after its ``basket`` so far (oldest first;
    its last product is on screen)."""

    session: str
    basket: tuple[str, ...]
    target: str


@dataclass(frozen=True)
class Previous:
    """The version being served: what scores the cases, and the time after which its data
    holds nothing (``since``)."""

    version: str
    root: Path
    since: pd.Timestamp
    chosen: dict[str, Any]  # its session_weights.json ({} for a version from before the job)


def previous_version(root: Path | str) -> Previous | None:
    """The store's current version (None before the first run)."""
    store = ArtifactStore(root)
    version = store.current_version()
    if version is None:
        return None
    path = layout.SESSION_WEIGHTS.at(store.path(version))
    chosen = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    made = _naive_utc(pd.Timestamp(store.manifest(version).created_at))
    since = _naive_utc(pd.Timestamp(chosen["data_until"])) if chosen.get("data_until") else made
    return Previous(version, Path(root), since, chosen)


def _naive_utc(moment: pd.Timestamp) -> pd.Timestamp:
    """The data contract's time: naive UTC (a table written by another engine may say UTC)."""
    return moment.tz_convert("UTC").tz_localize(None) if moment.tzinfo else moment


def _latest(path: Path, column: str) -> pd.Timestamp | None:
    """The latest value of a timestamp column of a parquet table (read in batches)."""
    if not path.exists():
        return None
    dataset = ds.dataset(path, format="parquet")
    if column not in dataset.schema.names:  # orders may have no times
        return None
    latest = None
    for batch in dataset.to_batches(columns=[column]):
        found = pc.max(batch.column(0)).as_py()
        if found is not None and (latest is None or found > latest):
            latest = found
    return None if latest is None else _naive_utc(pd.Timestamp(latest))


def data_until(data_dir: Path | str) -> pd.Timestamp | None:
    """The latest order or event time of the data directory's tables."""
    found = [t for t in (_latest(table_file(data_dir, "orders"), "ordered_at"),
                         _latest(table_file(data_dir, "events"), "occurred_at")) if t is not None]
    return max(found) if found else None


def latest_time(orders: pd.DataFrame, events: pd.DataFrame | None) -> pd.Timestamp | None:
    """The latest order or event time of the tables in memory."""
    found = [table[column].max() for table, column in ((orders, "ordered_at"),
                                                       (events, "occurred_at"))
             if table is not None and column in table and len(table)]
    found = [t for t in found if not pd.isna(t)]
    return _naive_utc(pd.Timestamp(max(found))) if found else None


def baskets_after(events: pd.DataFrame | None, since: pd.Timestamp) -> pd.DataFrame:
    """``basket_events`` of the events in memory."""
    if events is None or "session_id" not in events:
        return pd.DataFrame(columns=_COLUMNS)
    keep = (events["event_type"].isin(BASKET_EVENTS) & (events["occurred_at"] > since)
            & events["session_id"].notna())
    return events.loc[keep, _COLUMNS].reset_index(drop=True)


def basket_events(data_dir: Path | str, since: pd.Timestamp) -> pd.DataFrame:
    """The cart adds and purchases of sessions after ``since`` (session_id, product_id,
    occurred_at; in the table's order), read without loading the other events."""
    path = table_file(data_dir, "events")
    if not path.exists():
        return pd.DataFrame(columns=_COLUMNS)
    dataset = ds.dataset(path, format="parquet")
    if "session_id" not in dataset.schema.names:
        return pd.DataFrame(columns=_COLUMNS)
    kind = dataset.schema.field("occurred_at").type
    moment = pa.scalar(since.tz_localize("UTC") if kind.tz else since, type=kind)
    found = dataset.to_table(columns=_COLUMNS, filter=(
        pc.field("event_type").isin(list(BASKET_EVENTS)) & (pc.field("occurred_at") > moment)
        & pc.field("session_id").is_valid())).to_pandas()
    if kind.tz:
        found["occurred_at"] = found["occurred_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    return found


def cases_of(events: pd.DataFrame, since: pd.Timestamp, known: dict[str, int], limit: int,
             seed: int = 0) -> list[Case]:
    """The cases of the sessions whose first cart add came after ``since`` (see the module),
    at most ``limit`` (whole sessions, in a seeded order)."""
    ordered = events.assign(_row=np.arange(len(events))).sort_values(
        ["session_id", "occurred_at", "_row"], kind="stable")
    by_session: dict[str, list[Case]] = {}
    for session, group in ordered.groupby("session_id", sort=True):
        if group["occurred_at"].iloc[0] <= since:
            continue
        basket = list(dict.fromkeys(group["product_id"].astype(str)))
        for i in range(1, len(basket)):
            if basket[i - 1] in known and basket[i] in known:
                by_session.setdefault(str(session), []).append(
                    Case(str(session), tuple(basket[:i]), basket[i]))
    sessions = sorted(by_session)
    np.random.default_rng(seed).shuffle(sessions)
    out: list[Case] = []
    for session in sessions:
        if len(out) >= limit:
            break
        out.extend(by_session[session])
    return out


LISTED = Options(k=K, in_stock_only=False)  # then the placement's minimum evidence, as served


def bought_together_hits(index: ServingIndex, case: Case, config: Config,
                         settings: list[tuple[float, float]]) -> np.ndarray:
    """Per (weight, decay): whether the case's target is in the served bought-together of
    the product on screen with the basket before it as a live session's cart adds."""
    options, shown = placed(config.serving, "bought_together", LISTED), case.basket[-1]
    recent = Recent(list(reversed(case.basket)), ["add_to_cart"] * len(case.basket),
                    frozenset(case.basket))
    hits = np.zeros(len(settings), dtype=bool)
    for n, (weight, decay) in enumerate(settings):
        session = session_at(config.serving, recent, [shown], weight, decay)
        items = recommend.bought_together(index, shown, options, Decisions(), session).items
        hits[n] = any(i["product_id"] == case.target for i in items)
    return hits


def cart_hits(index: ServingIndex, case: Case, config: Config,
              decays: list[float]) -> np.ndarray:
    """Per ``line_decay``: whether the case's target is in the served cart add-ons of the
    basket so far, its lines weighted by the order they were put in."""
    lines, options = list(case.basket), placed(config.serving, "cart", LISTED)
    hits = np.zeros(len(decays), dtype=bool)
    for n, decay in enumerate(decays):
        items = recommend.cart_addons(index, lines, options, Decisions(),
                                      line_weights=line_weights(lines, lines[::-1], decay)).items
        hits[n] = any(i["product_id"] == case.target for i in items)
    return hits


def _first_best(candidates: list[Any], rates: np.ndarray) -> Any:
    return candidates[int(np.flatnonzero(rates == rates.max())[0])]


def run_session_tuning_job(config: Config, out: Path, previous: Previous | None,
                           events_after: Callable[[pd.Timestamp], pd.DataFrame],
                           until: pd.Timestamp | None) -> dict[str, Any]:
    """Choose and write ``session_weights.json`` (see the module); returns the report
    (the manifest's metrics). ``previous``: the version being served (None: none yet);
    ``events_after``: the basket events after a time (``basket_events``); ``until``: the
    latest order or event time of this run's data (the next run's ``since``; at most now)."""
    pinned = config.serving.placements.bought_together
    weights = [pinned.session_weight] if pinned.session_weight is not None else list(
        dict.fromkeys([config.serving.session_weight, *GRID_WEIGHTS]))
    decays = [pinned.session_decay] if pinned.session_decay is not None else list(
        dict.fromkeys([config.serving.session_decay, *GRID_DECAYS]))
    settings = [(w, d) for w in weights for d in decays]
    line_pinned = config.serving.placements.cart.line_decay
    lines = [line_pinned] if line_pinned is not None else list(
        dict.fromkeys([DEFAULT_LINE_DECAY, *LINE_DECAYS]))
    report: dict[str, Any] = {"previous_version": previous and previous.version,
                              "since": previous and str(previous.since), "cases": 0}
    cases: list[Case] = []
    index = None
    if len(settings) == 1 and len(lines) == 1:
        report["skipped"] = "every session weight is pinned in the config"
    elif config.models.session_tune_cases == 0:
        report["skipped"] = "session_tune_cases = 0"
    elif previous is None:
        report["skipped"] = "no version served yet"
    else:
        found = events_after(previous.since)
        if len(found):  # a quiet day does not load the served version
            index = _served_index(previous, report)
        if index is not None:
            cases = cases_of(found, previous.since, index.code_of,
                             config.models.session_tune_cases)
        report.update(cases=len(cases), sessions=len({c.session for c in cases}),
                      sessions_read=int(found["session_id"].nunique()))  # some may hold none
    chosen = _choose(index, cases, config, settings, lines, previous, report)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)  # a row dated ahead stops nothing
    chosen["data_until"] = None if until is None else str(min(until, now))
    layout.SESSION_WEIGHTS.at(out).write_text(json.dumps(chosen, indent=2))
    return {**report, **chosen}


def _served_index(previous: Previous, report: dict[str, Any]) -> ServingIndex | None:
    """The version being served, loaded as the API loads it (None, said in the report, when
    it does not load)."""
    try:
        return load_index(previous.root, previous.version)
    except (ArtifactError, OSError, ValueError, KeyError) as exc:
        log.warning("session_tuning: version %s not loaded (%s)", previous.version, exc)
        report["skipped"] = f"version {previous.version} did not load: {exc}"
        return None


def _choose(index: ServingIndex | None, cases: list[Case], config: Config,
            settings: list[tuple[float, float]], lines: list[float], previous: Previous | None,
            report: dict[str, Any]) -> dict[str, Any]:
    """The file's choice: scored on ``cases`` when there are enough, else the previous
    version's (unless tuning is off), else none; pinned values are the config's (written as
    null: the config applies)."""
    pinned = config.serving.placements
    bought = {"session_weight": None, "session_decay": None, "chosen_by": "default"}
    cart: dict[str, Any] = {"line_decay": None, "chosen_by": "default"}
    if pinned.bought_together.session_weight is not None \
            and pinned.bought_together.session_decay is not None:
        bought["chosen_by"] = "config"
    if pinned.cart.line_decay is not None:
        cart["chosen_by"] = "config"
    if index is not None and len(cases) >= config.models.session_tune_min_cases:
        bt = np.zeros(len(settings), np.int64)
        ca = np.zeros(len(lines), np.int64)
        for case in progress_bar(cases, desc="session_tuning", unit="case"):
            if len(settings) > 1:
                bt += bought_together_hits(index, case, config, settings)
            if len(lines) > 1:
                ca += cart_hits(index, case, config, lines)
        if len(settings) > 1:
            weight, decay = _first_best(settings, bt)
            bought = {"session_weight": None if pinned.bought_together.session_weight is not None
                      else weight, "session_decay": None
                      if pinned.bought_together.session_decay is not None else decay,
                      "chosen_by": "validation"}
            report["bought_together hr@10 by weight/decay"] = {
                f"{w}/{d}": round(int(h) / len(cases), 4)
                for (w, d), h in zip(settings, bt, strict=True)}
        if len(lines) > 1:
            cart = {"line_decay": _first_best(lines, ca), "chosen_by": "validation"}
            report["cart hr@10 by line_decay"] = {
                str(d): round(int(h) / len(cases), 4) for d, h in zip(lines, ca, strict=True)}
        return {"bought_together": bought, "cart": cart,
                "chosen_on": {"version": previous and previous.version, "cases": len(cases)}}
    tuning = config.models.session_tune_cases > 0  # off: the config's settings apply
    kept = previous.chosen if previous is not None and tuning else {}
    if bought["chosen_by"] == "default" and kept.get("bought_together", {}).get(
            "chosen_by") in ("validation", "previous"):
        bought = {**kept["bought_together"], "chosen_by": "previous"}
        for key in ("session_weight", "session_decay"):
            if getattr(pinned.bought_together, key) is not None:
                bought[key] = None  # pinned since: the config's applies
    if cart["chosen_by"] == "default" and kept.get("cart", {}).get(
            "chosen_by") in ("validation", "previous"):
        cart = {**kept["cart"], "chosen_by": "previous"}
    report.setdefault("skipped", f"{len(cases)} cases, fewer than session_tune_min_cases "
                                 f"({config.models.session_tune_min_cases})")
    return {"bought_together": bought, "cart": cart, "chosen_on": kept.get("chosen_on")}
