"""What the console says about decisions: which product they concern, and which ones the
served version no longer has (kept and flagged, never dropped)."""

from __future__ import annotations

from typing import Any

from recsys.console.rules import RuleBrowserTable
from recsys.serving.index import ServingIndex

__all__ = ["rule_products", "label", "rule_label", "concerns", "missing_from", "flagged"]

_RULE_KINDS = ("approve_rule", "block_rule")


def rule_products(key: str) -> list[str]:
    """The product ids of a rule key ``A+B->C``."""
    antecedents, _, consequents = key.partition("->")
    return antecedents.split("+") + consequents.split("+")


def label(index: ServingIndex | None, product_id: str) -> str:
    """A product as merchandisers know it: "Name (id)" where the catalog names it."""
    name = index.names.get(product_id) if index is not None else None
    return f"{name} ({product_id})" if name else product_id


def rule_label(index: ServingIndex | None, key: str) -> str:
    """A rule key ``A+B->C`` with the products' names: "Name A (A) + B -> Name C (C)"."""
    antecedents, _, consequents = key.partition("->")
    return " -> ".join(" + ".join(label(index, p) for p in side.split("+"))
                       for side in (antecedents, consequents))


def concerns(decision: dict[str, Any], product_id: str) -> bool:
    """Whether a decision names the product (blocked, pinned, boosted, seed, or in the rule)."""
    if decision["kind"] in _RULE_KINDS:
        return product_id in rule_products(decision["rule_key"])
    return product_id in (decision["product_id"], decision["seed_id"])


def missing_from(decision: dict[str, Any], index: ServingIndex, rules: RuleBrowserTable) -> str | None:
    """Why a decision has nothing to act on in the served version, or None when it has."""
    if decision["kind"] in _RULE_KINDS:
        if decision["rule_key"] not in rules.row_of_key:
            return f"rule not found in version {index.version}"
        return None
    absent = [p for p in (decision["seed_id"], decision["product_id"])
              if p is not None and p not in index.code_of]
    if absent:
        return f"product {', '.join(absent)} not in version {index.version}"
    return None


def flagged(decisions: list[dict[str, Any]], index: ServingIndex,
            rules: RuleBrowserTable) -> list[tuple[dict[str, Any], str]]:
    """The decisions (with why) that the served version has no rule or product for."""
    out = []
    for decision in decisions:  # a merchandiser's decisions: thousands at most
        why = missing_from(decision, index, rules)
        if why is not None:
            out.append((decision, why))
    return out
