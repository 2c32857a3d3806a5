"""Configuration of the training job (light to import: the config loader reads it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelsConfig", "PriorScope", "DEFAULT_COLD_START_NEIGHBOURS",
           "DEFAULT_COLD_START_PRIOR", "DEFAULT_COLD_START_PRIOR_SCOPE"]

PriorScope = Literal["category", "shop"]
"""Whose best sellers a new product's also-viewed prior counts: its category's, or the shop's."""

#: The cold-start weights served when neither the config nor the cold_start job sets them.
DEFAULT_COLD_START_NEIGHBOURS = 10
DEFAULT_COLD_START_PRIOR = 0.5
DEFAULT_COLD_START_PRIOR_SCOPE: PriorScope = "category"


class ModelsConfig(BaseModel):
    """Collaborative-filtering models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    similarity: Literal["bm25", "cosine"] = Field("bm25", description="item-kNN similarity")
    bought_together: Literal["ease", "knn"] = Field(
        "ease", description="bought-together table: EASE weights blended with co-purchase "
                            "item-kNN, or the item-kNN table alone")
    ease_lambda: float = Field(1.0, gt=0, description="EASE L2 penalty")
    ease_max_items: int = Field(10_000, ge=2, le=30_000,
                                description="EASE covers the products in most orders "
                                            "(dense m x m float32 inverse: 4 m^2 bytes)")
    ease_memory_mb: int = Field(
        512, ge=1, description="MiB for EASE's dense m x m matrix: fewer products than "
                               "ease_max_items when they do not fit (a warning says so)")
    cart_knn_weight: float = Field(0.2, ge=0, description="share of the co-purchase item-kNN "
                                                          "scores added to EASE's")
    rule_weight: float = Field(0.1, ge=0, description="share of the best rule confidence "
                                                      "added to bought-together scores")
    also_viewed_support_weight: float = Field(
        3.0, ge=0, description="also viewed: similarity plus this share of co-view support "
                               "(each scaled to the product's best)")
    cold_start_neighbours: int | None = Field(
        None, ge=0, le=500, description="also viewed of a product without co-view data: the "
                                        "also-viewed lists of this many of its content "
                                        "neighbours, weighted by cosine (0 = content neighbours "
                                        "alone); unset = chosen per shop by the cold_start job")
    cold_start_prior: float | None = Field(
        None, ge=0, description="...plus this share of its category's (or the shop's: "
                                "cold_start_prior_scope) best-seller orders (each scaled to the "
                                "best); unset = chosen per shop by the cold_start job")
    cold_start_prior_scope: PriorScope | None = Field(
        None, description="whose best sellers that prior counts: the product's category's, or "
                          "the shop's (where staples go with everything, as in grocery "
                          "baskets); unset = chosen per shop by the cold_start job")
    cold_start_tune_products: int = Field(
        300, ge=0, description="cold_start job: products with co-views it holds out and scores "
                               "as if new (0 = no tuning: the defaults)")
    cold_start_tune_min_cases: int = Field(
        200, ge=1, description="cold_start job: fewer (held-out product, co-viewed product) "
                               "cases than this keep the defaults")
    session_tune_cases: int = Field(
        2000, ge=0, description="session_tuning job: at most this many next cart adds, of "
                                "sessions the served version never saw, score the session "
                                "weights of bought-together and the cart add-ons (0 = no "
                                "tuning)")
    session_tune_min_cases: int = Field(
        300, ge=1, description="session_tuning job: with fewer cases the previous version's "
                               "choice is kept (else the config's settings apply)")
    als_min_history: int = Field(
        10, ge=0, description="customers with fewer distinct products get best sellers "
                              "before ALS (too little history for a reliable taste)")
    durable_min_buyers: int = Field(
        0, ge=0, description="infer durable products (not offered again to a buyer who bought "
                             "one) from order history where the catalog's durable column is "
                             "empty: buyers needed; 0 = off, the catalog alone says")
    durable_max_repeat_share: float = Field(
        0.3, ge=0, le=1, description="inferred durable: bought again by less than this share "
                                     "of its buyers")
    knn_k: int = Field(100, ge=1, description="neighbours kept by the item-kNN model")
    top_k: int = Field(50, ge=1, le=500, description="neighbours precomputed per product")
    content_top_k: int = Field(50, ge=1, le=500, description="content neighbours (catalogue "
                                                             "TF-IDF cosine) kept per product")
    als_factors: int = Field(64, ge=2, le=1024)
    als_regularization: float = Field(0.05, ge=0)
    als_alpha: float = Field(1.0, gt=0)
    als_iterations: int = Field(15, ge=1, le=200)
    seed: int = 42
    repurchase_min_intervals: int = Field(5, ge=1)
    repurchase_min_share: float = Field(0.3, ge=0, le=1)
