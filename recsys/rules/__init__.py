"""Association rules and bundles: exact frequent itemsets (``itemsets``), rules and their
measures (``mining``), memory bounds (``bounds``), redundancy pruning, filters, bundles and
substitutes, the rules job and the merchandiser exports. Names are imported on first use, so importing the package is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["mine", "mine_rules", "MiningResult", "frequent_itemsets", "FrequentItemsets",
           "RuleFilterConfig", "filter_rules", "RulesConfig", "run_rules_job", "export_rules",
           "select_rules"]

_WHERE = {
    "mine": "mining", "mine_rules": "mining", "MiningResult": "mining",
    "frequent_itemsets": "itemsets", "FrequentItemsets": "itemsets",
    "RuleFilterConfig": "filters", "filter_rules": "filters",
    "RulesConfig": "job", "run_rules_job": "job",
    "export_rules": "export", "select_rules": "query",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"recsys.rules.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'recsys.rules' has no attribute {name!r}")
