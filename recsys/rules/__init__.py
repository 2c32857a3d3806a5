"""Association rules and bundles: exact frequent itemsets, rules with their metrics, exports."""

from recsys.rules.itemsets import FrequentItemsets, frequent_itemsets

__all__ = ["FrequentItemsets", "frequent_itemsets"]
