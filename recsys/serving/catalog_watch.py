"""A catalogue file the server watches (``[serving] catalog_watch``): every worker reads it,
so that an update reaches all of them (``POST /admin/catalog`` reaches one).

The file is a catalog source like ingest's (CSV or Parquet, contract column names), validated
the same way; refused rows are logged with their reasons and left out. When the file changes
(size or modification time), its rows go to the catalogue overlay; a flag column the file
lacks is not set (the products keep their availability).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from recsys.errors import RecsysError
from recsys.ingest import source_spec
from recsys.mapping import SourceMapping, resolve_columns
from recsys.readers import read_columns, read_source
from recsys.serving.catalog_overlay import CatalogRow
from recsys.validate import validate_table

__all__ = ["CatalogWatch"]

log = logging.getLogger("recsys.serving")


class CatalogWatch:
    """Reads the watched file when it changed since the last read."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None

    def changed_rows(self) -> list[CatalogRow] | None:
        """The file's valid rows if it changed since the last call, else None."""
        try:
            stat = self.path.stat()
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        if key == self._seen:
            return None
        self._seen = key
        mapping = SourceMapping()
        try:
            spec = source_spec(str(self.path), "catalog", mapping)
            raw = read_source(spec)
            columns = resolve_columns("catalog", mapping.for_table("catalog"),
                                      read_columns(spec), raw.label)
            result = validate_table("catalog", raw, columns, mapping.for_table("catalog"))
        except RecsysError as exc:
            log.error("catalog_watch %s not applied: %s", self.path, exc)
            return None
        if len(result.quarantine):
            log.warning("catalog_watch %s: %d rows refused (%s)", self.path,
                        len(result.quarantine), result.rejected_by_reason)
        given = [c for c in CatalogRow.model_fields if c in columns]
        rows = []
        for record in result.accepted[given].astype(object).to_dict("records"):
            try:
                rows.append(CatalogRow(**{k: v for k, v in record.items() if not pd.isna(v)}))
            except ValidationError as exc:
                log.warning("catalog_watch %s: product %s refused: %s", self.path,
                            record.get("product_id"), exc.errors()[0]["msg"])
        return rows
