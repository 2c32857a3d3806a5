"""Content similarity from the catalogue, so that a product without traffic is never blind.

A product's features are its name's word tokens (``w:``), every prefix of its category path
(``c:``), its brand (``b:``) and its price band (``p:``, half-octaves: floor(2 log2 price)).
Each feature is present or not (tf = 1), weighted by idf = ln((1 + n) / (1 + df)) + 1 over
the n catalogue rows, and each product's row is L2-normalised: the cosine of two products is
the dot product of their rows. Products without a catalogue row have an empty row.

The job writes the feature vocabulary with its idf (``content/terms.parquet``), the product x
feature matrix (``content/vectors.npz``, CSR, rows = the artifact's product codes) and each
product's top-K neighbours by cosine (``content_similar/``, a neighbour table whose support is
the number of shared features). A product added after the artifact was built is vectorised
from its catalogue row against the stored vocabulary and idf (``ContentModel.transform``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import layout
from recsys.artifact_io import load_npz, load_parquet, save_npz, save_parquet
from recsys.errors import ArtifactError
from recsys.models.neighbours import Neighbours
from recsys.vocab import Vocabulary

__all__ = ["ContentModel", "features", "run_content_job"]

_TOKEN = r"[^\W_]{2,}"  # letters and digits, two or more
_CELLS = 20_000_000  # dense similarity cells computed at once (80 MB of float32)


def features(catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(row positions, feature strings) of every distinct feature of each catalogue row."""
    catalog = catalog.reset_index(drop=True)
    parts: list[pd.Series] = []
    if "name" in catalog:
        words = catalog["name"].astype("string").str.lower().str.findall(_TOKEN).explode()
        parts.append("w:" + words.dropna().astype(str))
    if "category" in catalog:
        path = catalog["category"].astype("string").str.lower().str.split(">")
        path = path.dropna().map(lambda p: [s.strip() for s in p])  # a few levels per row
        depth = int(path.map(len).max()) if len(path) else 0
        for d in range(1, depth + 1):
            prefix = path[path.map(len) >= d].map(lambda p, d=d: " > ".join(p[:d]))
            parts.append("c:" + prefix[prefix.str.len() > 0])
    if "brand" in catalog:
        brand = catalog["brand"].astype("string").str.strip().str.lower().dropna()
        parts.append("b:" + brand[brand.str.len() > 0].astype(str))
    if "price" in catalog:
        price = pd.to_numeric(catalog["price"], errors="coerce")
        price = price[price > 0]
        band = np.floor(2 * np.log2(price.to_numpy(float))).astype(np.int64)
        parts.append("p:" + pd.Series(band, index=price.index).astype(str))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, dtype=object)
    long = pd.concat(parts)
    frame = pd.DataFrame({"row": long.index.to_numpy(np.int64),
                          "term": long.astype(str).to_numpy(dtype=object)}).drop_duplicates()
    return frame["row"].to_numpy(np.int64), frame["term"].to_numpy(dtype=object)


def _normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix, dtype=np.float32)


@dataclass(frozen=True)
class ContentModel:
    """TF-IDF product vectors: ``vectors`` is (n_items, n_terms) CSR, rows L2-normalised."""

    terms: np.ndarray  # feature strings, column order
    idf: np.ndarray  # float64, per column
    vectors: sp.csr_matrix

    @classmethod
    def fit(cls, catalog: pd.DataFrame, items: Vocabulary) -> ContentModel:
        """Vectorise the catalogue over the product vocabulary ``items``."""
        rows, terms = features(catalog)
        codes = items.lookup(catalog["product_id"].astype(str).reset_index(drop=True),
                             on_unknown="mask")[rows] if len(rows) else np.zeros(0, np.int64)
        keep = codes >= 0
        cols, vocabulary = pd.factorize(pd.Series(terms[keep], dtype=object), sort=True)
        n_rows = int(len(np.unique(codes[keep]))) if keep.any() else 0
        df = np.bincount(cols, minlength=len(vocabulary))
        idf = np.log((1.0 + n_rows) / (1.0 + df)) + 1.0
        raw = sp.csr_matrix((idf[cols].astype(np.float32), (codes[keep], cols)),
                            shape=(len(items), len(vocabulary)))
        raw.sum_duplicates()
        return cls(np.asarray(vocabulary, dtype=object), idf, _normalised(raw))

    def transform(self, catalog: pd.DataFrame) -> sp.csr_matrix:
        """Vectors of catalogue rows (e.g. products added since) against the stored
        vocabulary and idf; features the vocabulary lacks are left out."""
        rows, terms = features(catalog)
        cols = pd.Index(self.terms).get_indexer(terms) if len(terms) else np.zeros(0, np.int64)
        known = cols >= 0
        raw = sp.csr_matrix((self.idf[cols[known]].astype(np.float32),
                             (rows[known], cols[known])), shape=(len(catalog), len(self.terms)))
        return _normalised(raw)

    def similar(self, queries: sp.csr_matrix, k: int, *, first_code: int | None = None
                ) -> Neighbours:
        """Each query row's k most similar products by cosine (positive only; ties: lower
        code first); ``first_code``: query row i is product ``first_code + i``, left out of
        its own list. Support = features the two share."""
        base = self.vectors.T.tocsr()
        base_bin = base.copy()
        base_bin.data[:] = 1.0
        n, m = self.vectors.shape[0], queries.shape[0]
        k_eff = min(k, max(n - 1, 0))
        ids = np.full((m, k), -1, np.int32)
        scores = np.zeros((m, k), np.float32)
        support = np.zeros((m, k), np.int64)
        step = max(1, _CELLS // max(n, 1))
        for start in range(0, m, step):
            stop = min(m, start + step)
            sims = (queries[start:stop] @ base).toarray()
            if first_code is not None:
                sims[np.arange(stop - start), first_code + np.arange(start, stop)] = 0.0
            if k_eff == 0:
                continue
            top = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff] if k_eff < n else (
                np.tile(np.arange(n), (stop - start, 1)))
            top_scores = np.take_along_axis(sims, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)[:, :k_eff]
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            q_bin = queries[start:stop].copy()
            q_bin.data[:] = 1.0
            shared = np.take_along_axis((q_bin @ base_bin).toarray(), top, axis=1)
            ok = top_scores > 1e-6
            ids[start:stop, :k_eff] = np.where(ok, top, -1)
            scores[start:stop, :k_eff] = np.where(ok, top_scores, 0.0)
            support[start:stop, :k_eff] = np.where(ok, np.rint(shared), 0).astype(np.int64)
        return Neighbours(ids=ids, scores=scores, support=support)

    def save(self, folder: Path) -> None:
        """Write the vocabulary with its idf and the product vectors into a version folder."""
        layout.CONTENT_TERMS.at(folder).parent.mkdir(parents=True, exist_ok=True)
        save_parquet(pd.DataFrame({"term": pd.Series(self.terms, dtype="string"),
                                   "idf": self.idf.astype(np.float64)}),
                     layout.CONTENT_TERMS.at(folder))
        save_npz(layout.CONTENT_VECTORS.at(folder), indptr=self.vectors.indptr.astype(np.int64),
                 indices=self.vectors.indices.astype(np.int32),
                 data=self.vectors.data.astype(np.float32))

    @classmethod
    def load(cls, folder: Path, n_items: int) -> ContentModel | None:
        """The stored model of a version folder; None when the version has none."""
        if not layout.CONTENT_TERMS.at(folder).exists():
            return None
        terms = load_parquet(layout.CONTENT_TERMS.at(folder))
        arrays = load_npz(layout.CONTENT_VECTORS.at(folder))
        try:
            vectors = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]),
                                    shape=(n_items, len(terms)))
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"{layout.CONTENT_VECTORS.at(folder)}: not a product x "
                                f"feature matrix of {n_items} products ({exc})") from None
        return cls(terms["term"].astype(str).to_numpy(dtype=object),
                   terms["idf"].to_numpy(np.float64), vectors)


def run_content_job(catalog: pd.DataFrame | None, items: Vocabulary, k: int,
                    out: Path) -> dict[str, Any]:
    """Fit the content model on the catalogue and write it with every product's top-k
    content neighbours; skipped (no files) without a catalogue."""
    if catalog is None or not len(catalog):
        return {"skipped": "no catalog"}
    model = ContentModel.fit(catalog, items)
    model.save(out)
    table = model.similar(model.vectors, k, first_code=0)
    table.save(layout.CONTENT_SIMILAR.at(out))
    with_list = int((table.ids[:, 0] >= 0).sum()) if k else 0
    return {"features": len(model.terms), "products_with_neighbours": with_list,
            "products_without_features": int((np.diff(model.vectors.indptr) == 0).sum())}
