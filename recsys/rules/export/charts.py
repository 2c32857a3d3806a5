"""The rules report's charts as inline SVG: support vs confidence coloured by lift, and a
network of the product pairs with the highest lift."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from recsys.charts import chart_style, inline_svg
from recsys.rules.query import SIDES, string_lists

__all__ = ["NETWORK_PAIRS", "scatter_svg", "network_svg"]

NETWORK_PAIRS = 30
_LABELS_PER_ROW = 5.0  # node labels side by side across the network chart
LIFT_COLOURS = "viridis_r"  # higher lift darker, as the captions say
_RASTER_POINTS = 2000  # scatter plots with more points embed a bitmap inside the SVG


def scatter_svg(rules: pd.DataFrame) -> str:
    # A bare Figure (no pyplot): no GUI backend is touched and nothing is left open to close.
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    with chart_style("scatter"):
        fig = Figure(figsize=(7.5, 4.8))
        ax = fig.add_subplot()
        order = np.argsort(rules["lift"].to_numpy())  # highest lift drawn last, on top
        points = ax.scatter(rules["support"].to_numpy()[order],
                            rules["confidence"].to_numpy()[order],
                            c=rules["lift"].to_numpy()[order], cmap=LIFT_COLOURS, s=18,
                            alpha=0.8, edgecolors="none", rasterized=len(rules) > _RASTER_POINTS)
        fig.colorbar(points, ax=ax, label="lift")
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.set_xlabel("support (share of all orders with the whole rule)")
        ax.set_ylabel("confidence")
        ax.grid(alpha=0.3)
        return inline_svg(fig, "scatter")


def _strongest_pairs(rules: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` unordered product pairs (single-product rules) with the highest lift."""
    ant, con = string_lists(rules["antecedents"]), string_lists(rules["consequents"])
    single = (pc.list_value_length(ant).to_numpy() == 1) & (
        pc.list_value_length(con).to_numpy() == 1)
    a = ant.flatten().to_numpy(zero_copy_only=False)
    c = con.flatten().to_numpy(zero_copy_only=False)
    a_row = pc.list_parent_indices(ant).to_numpy()
    c_row = pc.list_parent_indices(con).to_numpy()
    a_of = a[single[a_row]]
    c_of = c[single[c_row]]
    rows = np.flatnonzero(single)
    pairs = pd.DataFrame({
        "u": np.where(a_of < c_of, a_of, c_of), "v": np.where(a_of < c_of, c_of, a_of),
        "lift": rules["lift"].to_numpy()[rows], "count": rules["count"].to_numpy()[rows]})
    best = pairs.groupby(["u", "v"], as_index=False).agg(lift=("lift", "max"),
                                                          count=("count", "max"))
    return best.sort_values(["lift", "count"], ascending=False, kind="stable").head(n)


def _product_names(rules: pd.DataFrame) -> dict[str, str]:
    """Product id -> name from the annotated columns (empty when not annotated)."""
    names: dict[str, str] = {}
    for side in SIDES:
        if f"{side}_names" not in rules.columns:
            continue
        ids = string_lists(rules[f"{side}s"]).flatten().to_numpy(zero_copy_only=False)
        labels = pc.fill_null(string_lists(rules[f"{side}_names"]).flatten(), "").to_numpy(
            zero_copy_only=False)
        names.update(zip(ids.tolist(), labels.tolist(), strict=True))
    return names


def _label(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _packed_layout(graph: Any) -> tuple[dict[Any, np.ndarray], tuple[float, float]]:
    """spring_layout (fixed seed) of each connected component, packed in rows like shelves;
    positions and the (width, height) they span, in units of about one node label's width.

    One spring layout of a disconnected graph pushes the components to the far edges and
    squeezes each of them into a corner; laid out apart, every component keeps its room.
    """
    import networkx as nx

    boxes = []
    for nodes in sorted(nx.connected_components(graph), key=lambda c: (-len(c), min(c))):
        sub = graph.subgraph(nodes)
        scale = 0.55 * math.sqrt(len(nodes))
        pos = nx.spring_layout(sub, k=1.0 / math.sqrt(len(nodes)), iterations=200, seed=7,
                               scale=scale)
        xy = np.array([pos[n] for n in sub.nodes]).reshape(-1, 2)
        xy -= xy.min(axis=0)
        if xy[:, 0].max() > xy[:, 1].max():  # stand it upright: labels are wide, not tall
            xy = xy[:, ::-1]
        boxes.append((list(sub.nodes), xy, xy.max(axis=0) + (1.0, 0.4)))  # room for labels
    row_width = max(max(float(size[0]) for _, _, size in boxes), _LABELS_PER_ROW)
    out: dict[Any, np.ndarray] = {}
    x = y = row_height = 0.0
    for nodes, xy, (width, height) in boxes:  # a loop over components, at most 60
        if x > 0 and x + width > row_width:
            x, y, row_height = 0.0, y - row_height, 0.0
        for node, point in zip(nodes, xy + (x + 0.5, y - height), strict=True):
            out[node] = point
        x += float(width)
        row_height = max(row_height, float(height))
    return out, (row_width, row_height - y)


def network_svg(rules: pd.DataFrame) -> str | None:
    import networkx as nx
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    pairs = _strongest_pairs(rules, NETWORK_PAIRS)
    if pairs.empty:
        return None
    graph = nx.Graph()
    graph.add_weighted_edges_from(pairs[["u", "v", "lift"]].itertuples(index=False),
                                  weight="lift")
    pos, (width, height) = _packed_layout(graph)
    names = _product_names(rules)
    lifts = pairs["lift"].to_numpy(dtype=np.float64)
    low, high = float(lifts.min()), float(lifts.max())
    scaled = (lifts - low) / (high - low) if high > low else np.full(len(lifts), 0.5)
    segments = [(pos[u], pos[v]) for u, v in zip(pairs["u"], pairs["v"], strict=True)]
    with chart_style("network"):
        fig_width = 10.0  # inches: about five 24-character labels side by side
        fig = Figure(figsize=(fig_width, min(max(fig_width * height / width, 3.0), 18.0)))
        ax = fig.add_subplot()
        norm = Normalize(vmin=low, vmax=high if high > low else low + 1)
        edges = LineCollection(segments, linewidths=1.0 + 6.0 * scaled, cmap=LIFT_COLOURS,
                               norm=norm, alpha=0.75, zorder=1)
        edges.set_array(lifts)
        ax.add_collection(edges)
        xy = np.array([pos[node] for node in graph.nodes])
        ax.scatter(xy[:, 0], xy[:, 1], s=60, color="#e07a1f", edgecolors="white", zorder=2)
        for node, (x, y) in zip(graph.nodes, xy, strict=True):  # at most 2 x 30 labels
            ax.text(x, y + 0.04, _label(names.get(node, node)), ha="center", va="bottom",
                    fontsize=7, parse_math=False, zorder=3,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.7})
        fig.colorbar(edges, ax=ax, label="lift", shrink=0.6, location="bottom", pad=0.02)
        ax.set_axis_off()
        ax.set_xlim(-0.1, width + 0.1)
        ax.set_ylim(-height - 0.1, 0.3)
        return inline_svg(fig, "network")
