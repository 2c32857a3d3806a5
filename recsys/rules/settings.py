"""Configuration of the rules job (light to import: the config loader reads it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.rules.filters import RuleFilterConfig

__all__ = ["RulesConfig", "BundleConfig", "SubstituteConfig", "FULL_SET", "CLI_OVERRIDES"]


class SubstituteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_coviews: int = Field(5, ge=1, description="sessions that viewed both")
    min_view_lift: float = Field(2.0, ge=0)
    max_purchase_lift: float = Field(0.5, ge=0)


class BundleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int = Field(4, ge=2, le=4, description="products per bundle, 2..4")
    min_count: int = Field(5, ge=1, description="orders that hold the whole bundle")
    use_margin: bool = Field(True, description="rank by profit when the catalog has margins")
    max_p_value: float = Field(0.05, ge=0, le=1, description="every pair of a bundle needs "
                                                             "a Fisher p-value at most this")
    top: int = Field(1000, ge=1, description="bundles kept, best first")
    max_pair_repeats: int = Field(2, ge=0, description="bundles sharing one pair of products, "
                                                       "at most; 0 = no limit")
    max_itemsets: int = Field(2_000_000, ge=1, description="itemsets of 3+ products mined for "
                                                          "bundles; past it min_count doubles")


class RulesConfig(BaseModel):
    """Association rules, bundles and substitutes. The defaults give a reviewable, bounded
    rule set on a real shop (README, "Association rules and bundles"); FULL_SET gives
    the full set: no redundancy pruning, lift or p-value floor, or cap per antecedent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_support: float = Field(0.002, ge=0, le=1, description="share of orders holding the itemset")
    min_count: int = Field(20, ge=0, description="orders holding the itemset, as well as "
                                                 "min_support (the larger count wins); 0 = none")
    min_confidence: float = Field(0.05, ge=0, le=1, description="count(A + c) / count(A)")
    min_lift: float = Field(1.5, ge=0, description="0 = no lift threshold")
    max_p_value: float = Field(0.001, ge=0, le=1, description="Fisher p-value floor; 1 = none "
                                                               "(none without significance)")
    max_len: int = Field(3, ge=2, le=10, description="products per rule, antecedent + consequent")
    multi_consequent: bool = False
    prune_redundant: bool = True
    max_per_antecedent: int = Field(10, ge=0, description="most confident rules kept per "
                                                          "antecedent set; 0 = all")
    max_itemsets: int = Field(5_000_000, ge=0, description="itemsets of 3+ products; past it "
                                                           "min_count doubles; 0 = no cap")
    max_rules: int = Field(1_000_000, ge=0, description="rules estimated before building them; "
                                                        "past it min_count rises; 0 = no cap")
    max_basket_items: int = Field(1000, ge=0, description="larger orders are left out; 0 = none")
    significance: bool = Field(True, description="compute the Fisher exact p-value")
    category_depth: int = Field(2, ge=0, description="category-level rules at this path depth; 0 = off")
    filter: RuleFilterConfig = Field(default_factory=RuleFilterConfig)
    bundles: BundleConfig = Field(default_factory=BundleConfig)
    substitutes: SubstituteConfig = Field(default_factory=SubstituteConfig)

    @model_validator(mode="after")
    def _consistent(self) -> RulesConfig:
        if self.multi_consequent and self.prune_redundant:
            raise ValueError("prune_redundant works with single-item consequents only")
        if "max_p_value" in self.model_fields_set and self.max_p_value < 1 and not (
                self.significance):
            raise ValueError("max_p_value below 1 needs significance = true")
        return self

    def thresholds(self) -> dict[str, Any]:
        """Keyword arguments for ``mine`` (0 and 1 mean "none" as documented above)."""
        return {"min_support": self.min_support, "min_count": self.min_count or None,
                "min_confidence": self.min_confidence,
                "min_lift": self.min_lift or None, "max_len": self.max_len,
                "multi_consequent": self.multi_consequent,
                "prune_redundant": self.prune_redundant,
                "max_basket_items": self.max_basket_items or None,
                "significance": self.significance,
                "max_p_value": self.max_p_value if self.significance and (
                    self.max_p_value < 1) else None,
                "max_per_antecedent": self.max_per_antecedent or None,
                "max_itemsets": self.max_itemsets or None, "max_rules": self.max_rules or None}


FULL_SET: dict[str, Any] = {"prune_redundant": False, "min_lift": 0, "max_p_value": 1,
                            "max_per_antecedent": 0}  # every rule the counts allow
CLI_OVERRIDES = ("min_support", "min_count", "min_confidence", "min_lift", "max_p_value",
                 "max_len", "max_per_antecedent", "max_rules")  # `recsys mine-rules --...`
