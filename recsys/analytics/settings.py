"""Configuration of the customer-value analytics (light to import: the config loader reads it).

One ``[analytics]`` section: lifetime and CLV settings at the top, ``[analytics.rfm]``,
``[analytics.lifecycle]``, ``[analytics.actions]``, ``[analytics.pricing]`` and
``[analytics.experiment]`` below it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AnalyticsConfig", "RfmConfig", "ExperimentConfig", "LifecycleConfig", "ActionsConfig",
           "PricingConfig"]


class RfmConfig(BaseModel):
    """RFM scoring: quintile scores 1..5 and the six named segments (see recsys.analytics.rfm)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    monetary: Literal["revenue", "profit"] = Field(
        "revenue", description="what M scores: revenue, or profit (revenue x margin; revenue "
                               "where the catalog has no margins)")
    frequency: Literal["orders", "orders_per_year"] = Field(
        "orders", description="what F scores: order count, or orders per year of tenure")


class LifecycleConfig(BaseModel):
    """Lifecycle stage thresholds (see recsys.analytics.lifecycle for the rules and their order).
    A gap is measured in multiples of the customer's expected days between orders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    new_days: int = Field(30, ge=1, description="new: first order at most this many days ago "
                                                "(or one order, not yet past due)")
    at_risk_factor: float = Field(1.5, gt=1, description="at risk: days since the last order > "
                                                         "this x the expected gap")
    churned_factor: float = Field(3.0, gt=1, description="churned: days since the last order > "
                                                         "this x the expected gap")
    trend_window_days: int = Field(
        90, ge=7, le=1825, description="spend trend: spend in the last window vs the "
                                       "customer's usual spend per window before it")
    spend_drop: float = Field(0.5, gt=0, lt=1, description="declining: last window's spend < "
                                                           "this x the usual")
    spend_growth: float = Field(1.5, gt=1, description="growing: last window's spend >= this x "
                                                       "the usual")

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleConfig:
        if self.churned_factor <= self.at_risk_factor:
            raise ValueError("churned_factor must be greater than at_risk_factor")
        return self


class ActionsConfig(BaseModel):
    """Action lists of the nightly job (see recsys.analytics.actions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    due_within_days: int = Field(7, ge=0, le=365, description="replenishment: expected date "
                                                              "at most this many days ahead")
    max_overdue_cycles: float = Field(
        1.0, gt=0, description="replenishment: drop pairs overdue by more than this many "
                               "cycles (the customer stopped buying it)")
    own_cycle_min_intervals: int = Field(
        2, ge=1, description="the customer's own median gap is used once they have this many "
                             "repurchase intervals of the product; else the product's cycle")
    recommendations: int = Field(10, ge=1, le=50, description="recommendations kept per customer "
                                                              "(exports take the top k of them)")
    offers: int = Field(5, ge=1, le=50, description="win-back: products offered per customer")
    high_value_share: float = Field(0.05, gt=0, le=1, description="high-value: this share of "
                                                                  "customers, by predicted CLV")


class PricingConfig(BaseModel):
    """Price and discount sensitivity (see recsys.analytics.pricing): who counts as a
    discount-only buyer, to whom the upsell list offers nothing pricier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    discount_only_min_orders: int = Field(
        2, ge=1, le=1000, description="discount-only: at least this many orders (one "
                                      "discounted order says little)")
    discount_only_share: float = Field(
        1.0, gt=0, le=1, description="discount-only: at least this share of the customer's "
                                     "order lines bought on discount (1.0 = every line)")


class ExperimentConfig(BaseModel):
    """A/B test of recommendations against a popularity control, and how outcomes are measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    salt: str = Field("recsys-ab-1", min_length=1,
                      description="experiment salt: a new salt re-draws every assignment")
    split: dict[str, float] = Field(
        default_factory=lambda: {"control": 0.5, "recommendations": 0.5},
        description="arm name -> share of units (normalised to sum to 1)")
    control_arm: str = Field("control", min_length=1,
                             description="the arm served best sellers (popularity lists)")
    unit: Literal["customer", "session"] = Field(
        "customer", description="randomisation unit: the customer id (session id for guests), "
                                "or the session id (customer id when there is no session)")
    attribution_window_hours: float = Field(
        24.0, gt=0, le=24 * 90,
        description="a purchase or add-to-cart counts for a recommendation clicked at most "
                    "this many hours before it, by the same session or customer")
    bootstrap_samples: int = Field(1000, ge=100, le=100_000)
    bootstrap_max_units: int = Field(
        20_000, ge=100, description="above this many units per arm and placement, intervals "
                                    "use the normal approximation instead of resampling")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = Field(0, description="bootstrap random seed")

    @field_validator("split")
    @classmethod
    def _split(cls, value: dict[str, float]) -> dict[str, float]:
        if len(value) < 1:
            raise ValueError("split needs at least one arm")
        bad = [k for k, v in value.items() if not (math.isfinite(v) and v >= 0) or not k]
        if bad:
            raise ValueError(f"arm share(s) must be finite and >= 0: {bad}")
        if sum(value.values()) <= 0:
            raise ValueError("arm shares must not all be 0")
        return value

    @model_validator(mode="after")
    def _control_in_split(self) -> ExperimentConfig:
        if self.control_arm not in self.split:
            raise ValueError(f"control_arm {self.control_arm!r} is not an arm of split "
                             f"({', '.join(self.split)})")
        return self


class AnalyticsConfig(BaseModel):
    """Customer lifetime value, RFM segments, retention and measured recommendation outcomes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: datetime | None = Field(
        None, description="end of the observation period; orders after it are ignored; "
                          "unset = the last order in the data")
    lifetime_years: float | None = Field(
        None, gt=0, le=100, description="expected customer lifetime for historical CLV; unset = "
                                        "estimated from the data (see churn_window_days)")
    churn_window_days: int = Field(
        180, ge=7, le=3650,
        description="lifetime estimate: share q of customers who ordered in the window before "
                    "the last one and not in the last one; annual retention (1-q)^(365.25/w); "
                    "lifetime 1/(1 - annual retention) years")
    fallback_lifetime_years: float = Field(
        3.0, gt=0, le=100, description="used when the data span is shorter than two churn "
                                       "windows or nobody ordered in the earlier one")
    max_lifetime_years: float = Field(10.0, gt=0, le=100,
                                      description="cap on the estimated lifetime")
    min_observation_days: float = Field(
        90.0, gt=0, description="purchase frequency = orders / max(tenure, this) per year")
    use_margin: bool = Field(True, description="margin-adjusted CLV when the catalog has margins")
    horizon_months: int = Field(12, ge=1, le=120, description="predicted CLV horizon")
    annual_discount_rate: float = Field(0.10, ge=0, le=1,
                                        description="predicted CLV discount rate per year")
    penalizer: float = Field(0.0, ge=0, description="L2 penalty on BG/NBD and Gamma-Gamma "
                                                    "parameters; 0 = plain maximum likelihood")
    churn_risk_factor: float = Field(
        1.5, ge=1, description="churn risk: days since the last order > this x the expected "
                               "days between orders")
    rfm: RfmConfig = Field(default_factory=RfmConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)

    @model_validator(mode="after")
    def _consistent(self) -> AnalyticsConfig:
        if self.fallback_lifetime_years > self.max_lifetime_years:
            raise ValueError("fallback_lifetime_years must not exceed max_lifetime_years")
        return self
