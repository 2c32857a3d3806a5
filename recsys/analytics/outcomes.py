"""Measured outcomes of recommendations, per placement and A/B arm, from stored events.

Input: the events the API stores (table ``recsys_events``: event_type, product_id, session_id,
customer_id, request_id, placement, position, quantity, price, order_id, occurred_at,
received_at), as a DataFrame or read from the database by :func:`load_events`.

Definitions
    unit, arm
        The randomisation unit of an event is its customer id (its session id for guests), or
        with ``unit = "session"`` its session id (else customer id). Its arm is
        ``assign_arm(unit, salt, split)``, recomputed here; an ``arm`` column, where present
        and filled, wins.
    response
        One recommendation list shown: the ``request_id`` of impression and click events
        (an impression or click without request_id is a response of its own). Its placement
        (product page, cart, customer page...) is the first non-empty placement of its events,
        else "unknown". impressions = responses.
    attribution (last click)
        An add-to-cart or purchase of product P at time t is attributed to the latest click on
        P in a response, by the same session or the same customer, at a time in
        [t - window, t] (``attribution_window_hours``). Only clicks count, not impressions.
    orders
        Purchase events grouped by order_id (without one: by unit and timestamp). Line value =
        quantity (1 when empty) x price (0 when empty). An order "contains a recommended
        product" for a placement when one of its lines is attributed to a click there; for
        placement "all", to a click anywhere. An order's arm is its unit's arm.
    metrics (each with a percentile bootstrap interval, resampling units)
        click_through_rate = responses with >= 1 click / responses;
        add_to_cart_rate = responses with >= 1 attributed add-to-cart / responses;
        attach_rate = orders containing a recommended product / all orders of the arm;
        attributed_revenue = value of the attributed lines (a total);
        attributed_revenue_per_order = attributed_revenue / all orders of the arm;
        revenue_per_unit = value of all orders / units of the arm that have any event (the
        A/B test's primary money metric: it counts extra orders as well as bigger ones);
        order_value = mean value of all orders of the arm; order_value_with_rec /
        order_value_without_rec = mean value of orders with / without a recommended product.
        order_value and revenue_per_unit do not depend on the placement.
    uplift
        For each arm other than the control: arm / control - 1 per metric (not the total
        attributed_revenue, which grows with the arm's size) and placement, with an interval
        from the two arms' independent bootstrap draws.
    without an experiment (``experiment=False``, the API's ``ab_test = false``)
        Nobody was assigned an arm, so none is drawn: the units are grouped by exposure
        instead, "shown recommendations" (any impression or click) vs "not shown any", and no
        uplift is computed. The comparison is observational: the groups differ in more than
        the recommendations (who browses more sees more lists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.analytics.experiments import (
    Interval,
    assign_arms,
    bootstrap_ratio,
    relative_uplift,
    unit_ids,
)
from recsys.analytics.settings import ExperimentConfig
from recsys.errors import InputError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["EVENT_COLUMNS", "METRICS", "UPLIFT_METRICS", "EXPOSED", "NOT_EXPOSED", "Outcomes",
           "load_events", "prepare_events", "attribute", "measure_outcomes"]

EVENT_COLUMNS: tuple[str, ...] = (
    "event_type", "product_id", "session_id", "customer_id", "request_id", "placement",
    "position", "quantity", "price", "order_id", "occurred_at", "received_at")

#: Metric name -> (what it is, its unit), in report order.
METRICS: dict[str, tuple[str, str]] = {
    "click_through_rate": ("responses with a click / responses", "share"),
    "add_to_cart_rate": ("responses with an attributed add-to-cart / responses", "share"),
    "attach_rate": ("orders with a recommended product / orders", "share"),
    "attributed_revenue": ("value of purchase lines attributed to a click", "money"),
    "attributed_revenue_per_order": ("attributed revenue / orders", "money"),
    "revenue_per_unit": ("value of all orders / units (customers or sessions) of the arm",
                         "money"),
    "order_value": ("mean order value, all orders", "money"),
    "order_value_with_rec": ("mean value of orders with a recommended product", "money"),
    "order_value_without_rec": ("mean value of orders without one", "money"),
}
#: Metrics compared between arms (a total such as attributed_revenue depends on arm size).
UPLIFT_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m != "attributed_revenue")
_PLACEMENT_FREE = ("revenue_per_unit", "order_value")
ALL = "all"
#: The two groups of an observational comparison (no experiment).
EXPOSED, NOT_EXPOSED = "shown recommendations", "not shown any"


def load_events(source: str | Engine, *, table: str = "recsys_events") -> pd.DataFrame:
    """Read the events table from a SQLAlchemy URL or Engine (the API's database)."""
    from sqlalchemy import MetaData, Table, create_engine, select
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(source) if isinstance(source, str) else source
    try:
        events = Table(table, MetaData(), autoload_with=engine)
        columns = [events.c[c] for c in EVENT_COLUMNS if c in events.c]
        with engine.connect() as conn:
            return pd.read_sql_query(select(*columns), conn)
    except SQLAlchemyError as exc:
        raise InputError(f"cannot read the events table {table!r} from {engine.url!r}: "
                         f"{exc}") from exc
    finally:
        if isinstance(source, str):
            engine.dispose()


def _timestamps(values: pd.Series) -> pd.Series:
    """Naive UTC datetimes from datetimes or ISO text, aware or naive."""
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    return parsed.dt.tz_localize(None)


def prepare_events(events: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """Typed events with ``time``, ``unit`` and ``arm``; events without a time or unit are
    dropped. Missing optional columns are treated as empty."""
    needed = ("event_type", "product_id")
    missing = [c for c in needed if c not in events.columns]
    if missing:
        raise InputError(f"events lack column(s) {', '.join(missing)}")
    frame = pd.DataFrame(index=pd.RangeIndex(len(events)))
    for column in ("event_type", "product_id", "session_id", "customer_id", "request_id",
                   "placement", "order_id"):
        values = (events[column].to_numpy() if column in events.columns
                  else np.full(len(events), None))
        frame[column] = pd.array(values, dtype="string")
    for column in ("quantity", "price"):
        frame[column] = (pd.to_numeric(events[column], errors="coerce").to_numpy(np.float64)
                         if column in events.columns else np.nan)
    time = (_timestamps(events["occurred_at"]) if "occurred_at" in events.columns
            else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]"))
    if "received_at" in events.columns:
        time = time.fillna(_timestamps(events["received_at"]))
    frame["time"] = time.to_numpy()
    frame["unit"] = unit_ids(frame["customer_id"], frame["session_id"], config.unit)
    frame["arm"] = pd.array(events["arm"].to_numpy() if "arm" in events.columns
                            else np.full(len(events), None), dtype="string")
    frame = frame[frame["time"].notna() & frame["unit"].notna()].reset_index(drop=True)
    drawn = assign_arms(frame["unit"].to_numpy(dtype=object), salt=config.salt,
                        split=config.split)
    arm = np.where(frame["arm"].isna().to_numpy(), drawn, frame["arm"].to_numpy(dtype=object))
    frame["arm"] = pd.array(arm, dtype="string")
    return frame


@dataclass
class Attribution:
    """Responses, attributed add-to-carts and order lines, ready to aggregate."""

    responses: pd.DataFrame  # response, placement, unit, arm, clicked, added
    lines: pd.DataFrame  # order, unit, arm, value, placement (attributed click's, or <NA>)
    figures: dict[str, int] = field(default_factory=dict)


def _last_click(targets: pd.DataFrame, clicks: pd.DataFrame,
                window: pd.Timedelta) -> np.ndarray:
    """For each target row (product_id, session_id, customer_id, time): the row number in
    ``clicks`` of the latest click on the same product by the same session or customer in
    [time - window, time]; -1 where none."""
    best_row = np.full(len(targets), -1, dtype=np.int64)
    best_time = np.full(len(targets), np.datetime64("NaT"), dtype="datetime64[ns]")
    if targets.empty or clicks.empty:
        return best_row
    for key in ("session_id", "customer_id"):  # two passes: same session, same customer
        left = pd.DataFrame({"target": np.arange(len(targets)), "key": targets[key].to_numpy(),
                             "product_id": targets["product_id"].to_numpy(),
                             "time": targets["time"].to_numpy()})
        right = pd.DataFrame({"click": np.arange(len(clicks)), "key": clicks[key].to_numpy(),
                              "product_id": clicks["product_id"].to_numpy(),
                              "time": clicks["time"].to_numpy(),
                              "click_time": clicks["time"].to_numpy()})
        left = left[left["key"].notna()].sort_values("time", kind="stable")
        right = right[right["key"].notna()].sort_values("time", kind="stable")
        if left.empty or right.empty:
            continue
        matched = pd.merge_asof(left, right, on="time", by=["key", "product_id"],
                                direction="backward", tolerance=window)
        hit = matched["click"].notna().to_numpy()
        rows = matched["target"].to_numpy()[hit]
        click = matched["click"].to_numpy()[hit].astype(np.int64)
        when = matched["click_time"].to_numpy()[hit].astype("datetime64[ns]")
        later = np.isnat(best_time[rows]) | (when > best_time[rows])
        best_row[rows[later]] = click[later]
        best_time[rows[later]] = when[later]
    return best_row


def attribute(events: pd.DataFrame, config: ExperimentConfig) -> Attribution:
    """Responses and order lines with their last-click attribution (module docstring)."""
    window = pd.Timedelta(hours=config.attribution_window_hours)
    kind = events["event_type"].to_numpy(dtype=object)
    rec = events[np.isin(kind, ("impression", "click"))].sort_values("time", kind="stable")
    key = rec["request_id"].astype(object).where(rec["request_id"].notna(),
                                                 "row:" + rec.index.astype(str))
    rec = rec.assign(response=key.to_numpy())
    grouped = rec.groupby("response", sort=False)
    responses = grouped.agg(placement=("placement", "first"), unit=("unit", "first"),
                            arm=("arm", "first"))
    responses["placement"] = responses["placement"].fillna("unknown")
    clicks = rec[(rec["event_type"] == "click").to_numpy() & rec["product_id"].notna().to_numpy()]
    clicks = clicks.reset_index(drop=True)
    responses["clicked"] = responses.index.isin(clicks["response"].unique())

    carts = events[kind == "add_to_cart"].reset_index(drop=True)
    cart_click = _last_click(carts, clicks, window)
    added = clicks["response"].to_numpy()[cart_click[cart_click >= 0]]
    responses["added"] = responses.index.isin(pd.unique(added))
    responses = responses.reset_index()

    buys = events[(kind == "purchase") & events["product_id"].notna().to_numpy()]
    buys = buys.reset_index(drop=True)
    order = buys["order_id"].astype(object).where(
        buys["order_id"].notna(), buys["unit"].astype(str) + "|" + buys["time"].astype(str))
    quantity = buys["quantity"].to_numpy(np.float64)
    price = buys["price"].to_numpy(np.float64)
    buy_click = _last_click(buys, clicks, window)
    placement_of = responses.set_index("response")["placement"]
    attributed = buy_click >= 0
    line_placement = np.full(len(buys), None, dtype=object)
    line_placement[attributed] = placement_of.reindex(
        clicks["response"].to_numpy()[buy_click[attributed]]).to_numpy(dtype=object)
    lines = pd.DataFrame({
        "order": order.to_numpy(dtype=object), "unit": buys["unit"].to_numpy(dtype=object),
        "arm": buys["arm"].to_numpy(dtype=object),
        "value": np.where(np.isnan(quantity), 1.0, quantity) * np.nan_to_num(price),
        "placement": line_placement,
    })
    figures = {"events": len(events), "responses": len(responses),
               "impression_events": int((kind == "impression").sum()),
               "click_events": len(clicks), "add_to_cart_events": len(carts),
               "attributed_add_to_carts": int((cart_click >= 0).sum()),
               "purchase_lines": len(buys), "attributed_purchase_lines": int(attributed.sum()),
               "purchase_lines_without_price": int(np.isnan(price).sum())}
    return Attribution(responses=responses, lines=lines, figures=figures)


@dataclass
class Outcomes:
    """Per (placement, arm, metric): estimate, interval and its inputs; uplift vs control; the
    orders of each arm (for plots); and counts."""

    metrics: pd.DataFrame  # placement, arm, metric, estimate, low, high, numerator, denominator, units
    uplift: pd.DataFrame  # placement, arm, metric, uplift, low, high
    orders: pd.DataFrame  # order, arm, value, with_rec
    control_arm: str  # "" when observational
    figures: dict[str, Any] = field(default_factory=dict)
    observational: bool = False  # arms are exposure groups, not an experiment's arms

    def table(self) -> pd.DataFrame:
        """One row per placement and arm: impressions, clicks, orders and each metric with its
        interval (``<metric>``, ``<metric>_low``, ``<metric>_high``)."""
        if self.metrics.empty:
            return pd.DataFrame(columns=["placement", "arm"])
        wide = self.metrics.pivot_table(index=["placement", "arm"], columns="metric",
                                        values=["estimate", "low", "high"], aggfunc="first",
                                        dropna=False)
        out = pd.DataFrame(index=wide.index)
        counts = self.metrics.set_index(["placement", "arm", "metric"])
        ctr = counts.xs("click_through_rate", level="metric")
        out["impressions"] = ctr["denominator"].reindex(out.index)
        out["clicks"] = ctr["numerator"].reindex(out.index)
        attach = counts.xs("attach_rate", level="metric")
        out["orders"] = attach["denominator"].reindex(out.index)
        out["orders_with_rec"] = attach["numerator"].reindex(out.index)
        for metric in METRICS:
            if ("estimate", metric) in wide.columns:
                out[metric] = wide[("estimate", metric)]
                out[f"{metric}_low"] = wide[("low", metric)]
                out[f"{metric}_high"] = wide[("high", metric)]
        return out.reset_index()


def _per_unit(frame: pd.DataFrame, columns: dict[str, pd.Series]) -> pd.DataFrame:
    return pd.DataFrame({"unit": frame["unit"].to_numpy(), **{
        k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}}).groupby("unit").sum()


def _exposure_groups(prepared: pd.DataFrame) -> pd.DataFrame:
    """Each unit's "arm" replaced by its exposure group: any impression or click, or none."""
    kind = prepared["event_type"].to_numpy(dtype=object)
    shown = prepared.loc[np.isin(kind, ("impression", "click")), "unit"].unique()
    group = np.where(prepared["unit"].isin(shown).to_numpy(), EXPOSED, NOT_EXPOSED)
    return prepared.assign(arm=pd.array(group, dtype="string"))


def measure_outcomes(events: pd.DataFrame, config: ExperimentConfig, *,
                     experiment: bool = True) -> Outcomes:
    """Every metric per placement (and "all") and arm, with bootstrap intervals and the uplift of
    each arm over the control (module docstring). ``events``: raw stored events. Without an
    ``experiment`` the "arms" are the exposure groups and there is no uplift."""
    prepared = prepare_events(events, config)
    if not experiment:
        prepared = _exposure_groups(prepared)
    att = attribute(prepared, config)
    responses, lines = att.responses, att.lines
    arms = sorted(config.split) if experiment else [EXPOSED, NOT_EXPOSED]
    control = config.control_arm if experiment else ""
    placements = [ALL, *sorted(responses["placement"].unique().tolist())]

    orders = (lines.assign(any_rec=lines["placement"].notna())
              .groupby("order", sort=False)
              .agg(unit=("unit", "first"), arm=("arm", "first"), value=("value", "sum"),
                   with_rec=("any_rec", "any")).reset_index())
    hits = (lines[lines["placement"].notna()].groupby(["order", "placement"])["value"].sum()
            .unstack(fill_value=0.0) if lines["placement"].notna().any() else pd.DataFrame())

    unit_arm = prepared.groupby("unit")["arm"].first()
    unit_value = orders.groupby("unit")["value"].sum()
    rows: list[dict[str, Any]] = []
    intervals: dict[tuple[str, str, str], Interval] = {}
    for p_i, placement in enumerate(placements):  # a loop over placements x arms x metrics
        resp = responses if placement == ALL else responses[responses["placement"] == placement]
        if placement == ALL:
            value_rec = orders["value"].where(orders["with_rec"], 0.0).to_numpy()
            with_rec = orders["with_rec"].to_numpy(bool)
            attributed = (hits.sum(axis=1).reindex(orders["order"], fill_value=0.0).to_numpy()
                          if len(hits) else np.zeros(len(orders)))
        else:
            attributed = (hits[placement].reindex(orders["order"], fill_value=0.0).to_numpy()
                          if placement in hits.columns else np.zeros(len(orders)))
            with_rec = (orders["order"].isin(hits.index[hits[placement] > 0]).to_numpy()
                        if placement in hits.columns else np.zeros(len(orders), bool))
            value_rec = np.where(with_rec, orders["value"].to_numpy(), 0.0)
        o = orders.assign(with_p=with_rec, value_rec=value_rec, attributed=attributed)
        for a_i, arm in enumerate(arms):
            r_arm = resp[resp["arm"] == arm]
            o_arm = o[o["arm"] == arm]
            r_units = _per_unit(r_arm, {"n": np.ones(len(r_arm)), "clicked": r_arm["clicked"],
                                        "added": r_arm["added"]})
            o_units = _per_unit(o_arm, {
                "n": np.ones(len(o_arm)), "with": o_arm["with_p"],
                "value": o_arm["value"], "value_with": o_arm["value_rec"],
                "value_without": o_arm["value"] - o_arm["value_rec"],
                "attributed": o_arm["attributed"]})
            n_o = max(len(o_units), 1)
            arm_units = unit_arm.index[(unit_arm == arm).to_numpy()]
            spend = unit_value.reindex(arm_units, fill_value=0.0).to_numpy(np.float64)
            inputs = {
                "click_through_rate": (r_units["clicked"], r_units["n"]),
                "add_to_cart_rate": (r_units["added"], r_units["n"]),
                "attach_rate": (o_units["with"], o_units["n"]),
                "attributed_revenue": (o_units["attributed"], np.full(len(o_units), 1.0 / n_o)),
                "attributed_revenue_per_order": (o_units["attributed"], o_units["n"]),
                "revenue_per_unit": (spend, np.ones(len(spend))),
                "order_value": (o_units["value"], o_units["n"]),
                "order_value_with_rec": (o_units["value_with"], o_units["with"]),
                "order_value_without_rec": (o_units["value_without"],
                                            o_units["n"] - o_units["with"]),
            }
            for m_i, (metric, (num, den)) in enumerate(inputs.items()):
                num_a = np.asarray(num, dtype=np.float64)
                den_a = np.asarray(den, dtype=np.float64)
                used = den_a > 0 if metric != "attributed_revenue" else np.ones(len(den_a), bool)
                interval = bootstrap_ratio(num_a[used], den_a[used],
                                           samples=config.bootstrap_samples,
                                           confidence=config.confidence,
                                           seed=[config.seed, p_i, a_i, m_i],
                                           max_units=config.bootstrap_max_units)
                intervals[(placement, arm, metric)] = interval
                counted = metric != "attributed_revenue"
                rows.append({"placement": placement, "arm": arm, "metric": metric,
                             "estimate": interval.estimate, "low": interval.low,
                             "high": interval.high, "numerator": float(num_a.sum()),
                             "denominator": float(den_a.sum()) if counted else float(len(den_a)),
                             "units": int(used.sum())})
    uplift_rows = []
    for placement in placements if experiment else []:
        for arm in arms:
            if arm == config.control_arm:
                continue
            for metric in UPLIFT_METRICS:
                if placement != ALL and metric in _PLACEMENT_FREE:
                    continue  # the same for every placement: compared once, under "all"
                est, low, high = relative_uplift(intervals[(placement, arm, metric)],
                                                 intervals[(placement, config.control_arm,
                                                            metric)],
                                                 confidence=config.confidence)
                uplift_rows.append({"placement": placement, "arm": arm, "metric": metric,
                                    "uplift": est, "low": low, "high": high})
    figures: dict[str, Any] = {**att.figures, "orders": len(orders),
                               "units": int(prepared["unit"].nunique()),
                               "placements": placements[1:], "arms": arms,
                               "control_arm": control, "design": "experiment" if experiment
                               else "observational",
                               "attribution_window_hours": config.attribution_window_hours}
    return Outcomes(metrics=pd.DataFrame(rows), uplift=pd.DataFrame(
        uplift_rows, columns=["placement", "arm", "metric", "uplift", "low", "high"]),
        orders=orders[["order", "arm", "value", "with_rec"]], control_arm=control,
        figures=figures, observational=not experiment)
