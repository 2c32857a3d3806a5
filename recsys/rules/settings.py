"""Configuration of the rules job (light to import: the config loader reads it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.rules.filters import RuleFilterConfig

__all__ = ["RulesConfig", "BundleConfig", "SubstituteConfig"]


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
    top: int = Field(1000, ge=1, description="bundles kept, best first")
    max_itemsets: int = Field(10_000_000, ge=1, description="itemsets of 3+ products mined for "
                                                           "bundles; past it min_count doubles")


class RulesConfig(BaseModel):
    """Association rules, bundles and substitutes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_support: float = Field(0.001, ge=0, le=1, description="used when min_count is 0")
    min_count: int = Field(0, ge=0, description="orders holding the itemset; 0 = use min_support")
    min_confidence: float = Field(0.05, ge=0, le=1)
    min_lift: float = Field(1.0, ge=0, description="0 = no lift threshold")
    max_len: int = Field(3, ge=2, le=10, description="products per rule, antecedent + consequent")
    multi_consequent: bool = False
    prune_redundant: bool = False
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
        return self

    def thresholds(self) -> dict[str, Any]:
        """Keyword arguments for ``mine``."""
        support = {"min_count": self.min_count} if self.min_count else {
            "min_support": self.min_support}
        return {**support, "min_confidence": self.min_confidence,
                "min_lift": self.min_lift or None, "max_len": self.max_len,
                "multi_consequent": self.multi_consequent,
                "prune_redundant": self.prune_redundant,
                "max_basket_items": self.max_basket_items or None,
                "significance": self.significance}
