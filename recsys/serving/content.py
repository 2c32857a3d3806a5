"""Content neighbours as served: the artifact's table for its products, and the lists of
products added since (computed from their catalogue rows against the stored vocabulary when
the catalogue overlay is applied, see ``recsys.serving.catalog_overlay``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys import layout
from recsys.models.content import ContentModel
from recsys.models.neighbours import Neighbours

__all__ = ["ContentIndex", "load_content"]


@dataclass(frozen=True)
class ContentIndex:
    """The content model of a version, its neighbour table (rows = product codes) and the
    neighbours of products added since: id -> [(code, cosine, shared features)] best first.

    ``min_support``: also-viewed lists whose strongest co-view support (sessions holding the
    product and its best neighbour) is below it are completed from content neighbours."""

    model: ContentModel
    table: Neighbours | None
    added: dict[str, list[tuple[int, float, int]]] = field(default_factory=dict)
    min_support: int = 0

    def neighbours(self, code: int | None, product_id: str,
                   limit: int) -> list[tuple[int, float, int]]:
        """Up to ``limit`` content neighbours of a product (by code, or an added product)."""
        if code is not None and self.table is not None and code < len(self.table.ids):
            ids = np.asarray(self.table.ids[code][:limit])
            keep = ids >= 0
            return list(zip(ids[keep].tolist(),
                            np.asarray(self.table.scores[code][:limit])[keep].tolist(),
                            np.asarray(self.table.support[code][:limit])[keep].tolist(),
                            strict=True))
        return self.added.get(product_id, [])[:limit]


def load_content(folder: Path, n_items: int) -> ContentIndex | None:
    """The content part of a version folder; None when the version has none."""
    model = ContentModel.load(folder, n_items)
    if model is None:
        return None
    table_dir = layout.CONTENT_SIMILAR.at(folder)
    return ContentIndex(model, Neighbours.load(table_dir) if table_dir.exists() else None)
