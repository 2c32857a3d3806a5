"""Configuration of the training job (light to import: the config loader reads it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelsConfig"]


class ModelsConfig(BaseModel):
    """Collaborative-filtering models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    similarity: Literal["bm25", "cosine"] = Field("bm25", description="item-kNN similarity")
    knn_k: int = Field(100, ge=1, description="neighbours kept by the item-kNN model")
    top_k: int = Field(50, ge=1, le=500, description="neighbours precomputed per product")
    als_factors: int = Field(64, ge=2, le=1024)
    als_regularization: float = Field(0.05, ge=0)
    als_alpha: float = Field(1.0, gt=0)
    als_iterations: int = Field(15, ge=1, le=200)
    seed: int = 42
    repurchase_min_intervals: int = Field(5, ge=1)
    repurchase_min_share: float = Field(0.3, ge=0, le=1)
