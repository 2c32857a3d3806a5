"""The merchandiser glossary of rule measures (formula and range of each, from
``recsys/rules/mining.py``) and the labels of the mining summary, shared by every export."""

from __future__ import annotations

import json
import numbers
from typing import Any

__all__ = ["GLOSSARY", "GLOSSARY_NOTE", "MEANING", "SUMMARY_LABELS", "summary_text"]

GLOSSARY: list[dict[str, str]] = [
    {"metric": "antecedent_count",
     "meaning": "Number of orders that contain all the 'if' products (the antecedent, A).",
     "formula": "count(A)", "range": "1 to N (whole orders)"},
    {"metric": "consequent_count",
     "meaning": "Number of orders that contain all the 'then' products (the consequent, C).",
     "formula": "count(C)", "range": "1 to N (whole orders)"},
    {"metric": "count",
     "meaning": "Number of orders that contain every product of the rule, both sides together.",
     "formula": "count(A ∪ C)", "range": "1 to N (whole orders)"},
    {"metric": "support",
     "meaning": "Share of all orders that contain every product of the rule.",
     "formula": "s(A ∪ C) = count(A ∪ C) / N", "range": "0 to 1 (0% to 100%)"},
    {"metric": "confidence",
     "meaning": "Of the orders with the 'if' products, the share that also have the 'then' "
                "products: how often the recommendation would have been right.",
     "formula": "s(A ∪ C) / s(A)", "range": "0 to 1 (0% to 100%)"},
    {"metric": "lift",
     "meaning": "How many times more often the products are bought together than if they were "
                "unrelated. 1 = no relation; 2 = twice as often as chance; below 1 = less often.",
     "formula": "confidence / s(C)", "range": "0 to infinity; 1 = independent"},
    {"metric": "leverage",
     "meaning": "Share of orders with both sides minus the share expected by chance: how many "
                "extra orders (as a fraction of all orders) the association accounts for.",
     "formula": "s(A ∪ C) - s(A) × s(C)", "range": "-0.25 to 0.25; 0 = independent"},
    {"metric": "conviction",
     "meaning": "How much less often the rule is wrong than it would be by chance. Higher = a "
                "more dependable rule; inf when the rule was never wrong in the data.",
     "formula": "(1 - s(C)) / (1 - confidence)",
     "range": "0 to infinity (inf when confidence = 1); 1 = independent"},
    {"metric": "zhangs_metric",
     "meaning": "Strength of the association on a fixed scale: 1 = always bought together, "
                "0 = unrelated, -1 = never bought together.",
     "formula": "leverage / max(s(A ∪ C) × (1 - s(A)), s(A) × (s(C) - s(A ∪ C)))",
     "range": "-1 to 1; 0 = independent"},
    {"metric": "jaccard",
     "meaning": "Of the orders with either side, the share that contain both.",
     "formula": "s(A ∪ C) / (s(A) + s(C) - s(A ∪ C))", "range": "0 to 1"},
    {"metric": "kulczynski",
     "meaning": "Average of the confidence in both directions (if A then C, and if C then A); "
                "0.5 = neutral, near 1 = each side strongly implies the other.",
     "formula": "(confidence(A → C) + confidence(C → A)) / 2", "range": "0 to 1"},
    {"metric": "fisher_p",
     "meaning": "Chance of seeing at least this many orders with both sides if the products "
                "were unrelated (one-sided Fisher exact test). Small (below 0.01) = unlikely "
                "to be a coincidence. Empty when significance testing was switched off.",
     "formula": "P[X ≥ count(A ∪ C)], X ~ Hypergeometric(N orders, count(C), count(A) draws)",
     "range": "0 to 1; smaller = stronger evidence"},
]
GLOSSARY_NOTE = ("A = the 'if' products (antecedent), C = the 'then' products (consequent), "
                 "N = number of orders mined, s(X) = support of X = count(X) / N.")
MEANING = {entry["metric"]: entry["meaning"] for entry in GLOSSARY}

SUMMARY_LABELS = {
    "n_orders": "Orders mined", "min_count": "Minimum count (orders)",
    "min_confidence": "Minimum confidence", "max_len": "Maximum products per rule",
    "baskets_excluded": "Bulk orders left out", "lines_excluded": "Order lines left out",
    "max_basket_items": "Largest order mined (products)",
    "itemsets_by_length": "Frequent itemsets by size", "rules": "Rules mined",
}


def summary_text(value: Any) -> str:
    """A summary figure as text: thousands separators, lists and dicts spelled out."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {summary_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(summary_text(v) for v in value)
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):g}"
    return json.dumps(value, default=str)
