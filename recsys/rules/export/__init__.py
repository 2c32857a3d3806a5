"""Merchandiser exports of mined rules, flattened to text and written as CSV, XLSX or HTML
(rules picked with ``recsys.rules.query.select_rules``).

Input is a rules DataFrame from :func:`recsys.rules.mining.mine_rules` (list<string> columns
``antecedents`` / ``consequents`` plus counts and measures), optionally passed through
:func:`recsys.rules.mining.annotate`, which adds ``antecedent_names``, ``consequent_names``,
``antecedent_categories`` and ``consequent_categories`` (lists aligned with the ids).
Modules: ``files`` (flat table, safe writing), ``glossary``, ``sheets`` (CSV, XLSX),
``report`` and ``charts`` (the HTML report).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.errors import InputError
from recsys.rules.export.files import flat_rules
from recsys.rules.export.glossary import GLOSSARY
from recsys.rules.export.report import export_html
from recsys.rules.export.sheets import export_csv, export_xlsx

__all__ = ["GLOSSARY", "flat_rules", "export_csv", "export_xlsx", "export_html", "export_rules"]

_WRITERS: dict[str, Callable[..., Path]] = {
    "csv": export_csv, "xlsx": export_xlsx, "html": export_html,
}


def export_rules(rules: pd.DataFrame, fmt: str, path: Path, **kwargs: Any) -> Path:
    """Write ``rules`` as ``fmt`` ("csv", "xlsx" or "html") to ``path``; keyword arguments go
    to that format's writer."""
    writer = _WRITERS.get(str(fmt).strip().lower().lstrip("."))
    if writer is None:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(_WRITERS)}")
    return writer(rules, path, **kwargs)

