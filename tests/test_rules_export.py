"""Merchandiser exports of rules: selection, flat text, CSV / XLSX / HTML files, edge cases.

Fixture: 8 hand-made orders over 5 products (one named like an XSS attack, one missing from the
catalog), so every rule, lift and filter result below is known by hand:
counts H=4 M=4 T=3 G=3 P=1; pairs HM=3 HT=2 MT=1 TG=1 GP=1; N=8; lift = count * N / (cA * cC).
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from recsys.errors import InputError
from recsys.rules.export import (
    GLOSSARY,
    export_csv,
    export_html,
    export_rules,
    export_xlsx,
    flat_rules,
)
from recsys.rules.mining import RULE_COLUMNS, annotate, mine, mine_rules
from recsys.rules.query import select_rules

if TYPE_CHECKING:
    from playwright.sync_api import Page

H, M, T, G, P = "85123A", "21232", "T1", "G7", "P9"
EVIL = '<script>alert(1)</script> & "Mug"'
MEASURES = RULE_COLUMNS[2:]  # every column but the two id lists

ORDERS = pd.DataFrame(
    [("1", H), ("1", M), ("2", H), ("2", M), ("3", H), ("3", M), ("3", T), ("4", T), ("4", G),
     ("5", G), ("5", P), ("6", H), ("6", T), ("7", G), ("8", M)],
    columns=["order_id", "product_id"])
CATALOG = pd.DataFrame({
    "product_id": [H, M, T, G],  # P9 is not in the catalog: its id stands in as its name
    "name": ["White Heart", EVIL, "Tea Towel", "Garden Gnome"],
    "category": ["Home > Kitchen", "Home > Kit", "Home > Kitchen > Textiles", "Garden"],
})
NAMES = dict(zip(CATALOG["product_id"], CATALOG["name"], strict=True)) | {P: P}


@pytest.fixture(scope="module")
def mined() -> tuple[pd.DataFrame, dict[str, object]]:
    result = mine(ORDERS, min_count=1)
    return annotate(result.rules, CATALOG), result.report.to_dict()


@pytest.fixture(scope="module")
def rules(mined: tuple[pd.DataFrame, dict[str, object]]) -> pd.DataFrame:
    return mined[0]


def _pairs(table: pd.DataFrame) -> set[frozenset[str]]:
    """The unordered product pair of each single-item rule."""
    return {frozenset(a) | frozenset(c)
            for a, c in zip(table["antecedents"], table["consequents"], strict=True)}


# ---------------------------------------------------------------------------- select_rules

def test_fixture_has_the_known_rules(rules: pd.DataFrame) -> None:
    assert len(rules) == 10  # 5 pairs, both directions
    lift = {frozenset([*a, *c]): v for a, c, v in
            zip(rules["antecedents"], rules["consequents"], rules["lift"], strict=True)}
    assert lift[frozenset([G, P])] == pytest.approx(8 / 3)
    assert lift[frozenset([H, M])] == pytest.approx(1.5)


def test_select_min_lift_and_sort(rules: pd.DataFrame) -> None:
    out = select_rules(rules, min_lift=1.4)
    assert _pairs(out) == {frozenset([G, P]), frozenset([H, M])}
    assert len(out) == 4
    assert list(out["lift"]) == sorted(out["lift"], reverse=True)
    assert _pairs(out.head(2)) == {frozenset([G, P])}  # lift 8/3 before 1.5


def test_select_product_either_side(rules: pd.DataFrame) -> None:
    out = select_rules(rules, product=T)
    assert _pairs(out) == {frozenset([H, T]), frozenset([M, T]), frozenset([T, G])}
    assert len(out) == 6
    assert select_rules(rules, product="nope").empty


@pytest.mark.parametrize(("category", "pairs"), [
    # "Home > Kit" is M only: "Home > Kitchen" shares the text prefix, not the component.
    ("Home > Kit", {(H, M), (M, T)}),
    ("Home > Kitchen", {(H, M), (H, T), (M, T), (T, G)}),  # H, and T below it
    ("home>kitchen >  textiles", {(H, T), (M, T), (T, G)}),  # spacing and case ignored
    ("Home", {(H, M), (H, T), (M, T), (T, G)}),
    ("Garden", {(T, G), (G, P)}),
    ("Gard", set()),
])
def test_select_category_matches_whole_path_components(
        rules: pd.DataFrame, category: str, pairs: set[tuple[str, str]]) -> None:
    out = select_rules(rules, category=category)
    assert _pairs(out) == {frozenset(p) for p in pairs}
    assert len(out) == 2 * len(pairs)


def test_select_category_needs_annotate(rules: pd.DataFrame) -> None:
    plain = mine_rules(ORDERS, min_count=1)
    with pytest.raises(InputError, match="annotate"):
        select_rules(plain, category="Home")


def test_select_top_sort_by_and_ties(rules: pd.DataFrame) -> None:
    out = select_rules(rules, top=3, sort_by="confidence")
    assert len(out) == 3
    assert list(out["confidence"]) == sorted(rules["confidence"], reverse=True)[:3]
    tied = select_rules(rules.assign(lift=1.0))  # every lift equal: count decides
    assert list(tied["count"]) == sorted(rules["count"], reverse=True)
    by_p = select_rules(rules, sort_by="fisher_p")  # p-values: smallest (strongest) first
    assert list(by_p["fisher_p"]) == sorted(rules["fisher_p"])
    assert len(select_rules(rules, top=0)) == 0
    assert len(select_rules(rules, top=100)) == 10


def test_select_rejects_bad_arguments(rules: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="cannot sort rules by 'antecedents'"):
        select_rules(rules, sort_by="antecedents")
    with pytest.raises(InputError, match="top"):
        select_rules(rules, top=-1)
    with pytest.raises(InputError, match="lift"):
        select_rules(rules.drop(columns="lift"))


# ------------------------------------------------------------------------------- flat_rules

def test_flat_rules_joins_ids_with_names_beside_them() -> None:
    rules3 = annotate(mine_rules(ORDERS, min_count=1, max_len=3), CATALOG)
    flat = flat_rules(rules3)
    assert len(flat) == len(rules3) == 13  # 10 pair rules + 3 splits of {H, M, T}
    cols = list(flat.columns)
    assert cols[:6] == ["antecedents", "antecedent_names", "antecedent_categories",
                        "consequents", "consequent_names", "consequent_categories"]
    assert set(MEASURES) <= set(cols)
    for column in MEASURES:
        np.testing.assert_array_equal(flat[column].to_numpy(), rules3[column].to_numpy())
    two = flat[flat["antecedents"].str.contains(" + ", regex=False)]
    assert len(two) == 3
    for side in ("antecedent", "consequent"):
        for ids, names in zip(flat[f"{side}s"], flat[f"{side}_names"], strict=True):
            assert [NAMES[i] for i in ids.split(" + ")] == names.split(" + ")
    row = two[two["consequents"] == T].iloc[0]
    assert set(row["antecedents"].split(" + ")) == {H, M}


def test_flat_rules_accepts_plain_python_lists(rules: pd.DataFrame) -> None:
    plain = rules.copy()
    for column in ("antecedents", "consequents", "antecedent_names", "consequent_names"):
        plain[column] = pd.Series([list(v) for v in rules[column]], dtype=object)
    pd.testing.assert_series_equal(flat_rules(plain)["antecedent_names"].astype(str),
                                   flat_rules(rules)["antecedent_names"].astype(str))


# ------------------------------------------------------------------------------------ CSV

def test_csv_round_trip(rules: pd.DataFrame, tmp_path: Path) -> None:
    path = export_csv(rules, tmp_path / "rules.csv")
    back = pd.read_csv(path, dtype={"antecedents": str, "consequents": str}, encoding="utf-8")
    assert len(back) == len(rules)
    assert list(back.columns) == list(flat_rules(rules).columns)
    assert back.columns.get_loc("antecedent_names") == back.columns.get_loc("antecedents") + 1
    assert set(back["antecedents"]) == {H, M, T, G, P}
    assert EVIL in set(back["consequent_names"])
    assert np.isinf(back["conviction"]).sum() == np.isinf(rules["conviction"]).sum() > 0
    np.testing.assert_array_equal(back["count"], rules["count"])
    assert [p.name for p in tmp_path.iterdir()] == ["rules.csv"]  # no temporary file left


# ----------------------------------------------------------------------------------- XLSX

def _xlsx(path: Path) -> tuple[dict[str, str], list[str], str]:
    """Sheet name -> sheet XML, the shared strings and styles.xml of an .xlsx file."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
          "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
          "p": "http://schemas.openxmlformats.org/package/2006/relationships"}
    with zipfile.ZipFile(path) as z:
        book = ET.fromstring(z.read("xl/workbook.xml"))
        rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        target = {r.get("Id"): r.get("Target") for r in rels.findall("p:Relationship", ns)}
        sheets = {str(s.get("name")): z.read("xl/" + str(target[s.get(f"{{{ns['r']}}}id")])).decode()
                  for s in book.findall("m:sheets/m:sheet", ns)}
        strings: list[str] = []
        if "xl/sharedStrings.xml" in z.namelist():
            sst = ET.fromstring(z.read("xl/sharedStrings.xml"))
            strings = ["".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t"))
                       for si in sst.findall("m:si", ns)]
        return sheets, strings, z.read("xl/styles.xml").decode()


def _cell_strings(sheet: str, strings: list[str]) -> set[str]:
    return {strings[int(i)] for i in re.findall(r't="s"[^>]*><v>(\d+)</v>', sheet)}


def _column_letter(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


def test_xlsx_sheets_header_formats_and_glossary(
        mined: tuple[pd.DataFrame, dict[str, object]], tmp_path: Path) -> None:
    rules, report = mined
    path = export_xlsx(rules, tmp_path / "rules.xlsx", summary=report)
    sheets, strings, styles = _xlsx(path)
    assert list(sheets) == ["rules", "summary", "glossary"]
    sheet = sheets["rules"]
    assert re.search(r'<pane ySplit="1" topLeftCell="A2"[^>]*state="frozen"', sheet)
    n_cols = len(flat_rules(rules).columns)
    assert f'<autoFilter ref="A1:{_column_letter(n_cols)}{len(rules) + 1}"/>' in sheet
    cells = _cell_strings(sheet, strings)
    assert {"antecedents", "antecedent_names", "conviction", EVIL, "inf"} <= cells
    for code in ("#,##0", "0.00%", "0.000", "0.00E+00"):
        assert f'formatCode="{code}"' in styles
    assert "<b/>" in styles
    glossary = _cell_strings(sheets["glossary"], strings)
    assert set(MEASURES) <= glossary
    assert {e["meaning"] for e in GLOSSARY} <= glossary
    assert "Orders mined" in _cell_strings(sheets["summary"], strings)


def test_xlsx_without_summary_has_no_summary_sheet(rules: pd.DataFrame, tmp_path: Path) -> None:
    sheets, _, _ = _xlsx(export_xlsx(rules, tmp_path / "rules.xlsx"))
    assert list(sheets) == ["rules", "glossary"]


def test_glossary_covers_every_measure() -> None:
    assert [e["metric"] for e in GLOSSARY] == list(MEASURES)
    for entry in GLOSSARY:
        assert set(entry) == {"metric", "meaning", "formula", "range"}
        assert all(entry.values())


# ----------------------------------------------------------------------------------- HTML

def _svgs(text: str) -> list[ET.Element]:
    """The inline SVGs, parsed as XML (namespaces added back, as the HTML parser does)."""
    out = []
    for svg in re.findall(r"<svg\b.*?</svg>", text, flags=re.S):
        svg = svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg" '
                                  'xmlns:xlink="http://www.w3.org/1999/xlink"', 1)
        out.append(ET.fromstring(svg))
    return out


@pytest.mark.parametrize("top", [4, 50])
def test_html_is_self_contained_and_escaped(
        mined: tuple[pd.DataFrame, dict[str, object]], tmp_path: Path, top: int) -> None:
    import matplotlib.pyplot as plt

    rules, report = mined
    figures_before = plt.get_fignums()
    path = export_html(rules, tmp_path / "rules.html", summary=report, top=top,
                       title="Rules <b>May</b>")
    text = path.read_text(encoding="utf-8")
    assert text.count("<svg") == 2
    assert len(_svgs(text)) == 2
    assert "<text" not in text  # glyphs drawn as paths: no font needed
    lowered = text.lower()
    assert "<script" not in lowered and "<link" not in lowered and "@import" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert html.escape(EVIL) in text
    assert "<title>Rules &lt;b&gt;May&lt;/b&gt;</title>" in text
    assert text.count('<tr class="rule">') == min(top, len(rules))
    assert "Orders mined</dt><dd>8</dd>" in text
    for entry in GLOSSARY:
        assert f"<b>{entry['metric']}</b>" in text
    assert plt.get_fignums() == figures_before
    assert [p.name for p in tmp_path.iterdir()] == ["rules.html"]


def test_html_is_deterministic(rules: pd.DataFrame, tmp_path: Path) -> None:
    first = export_html(rules, tmp_path / "a.html").read_bytes()
    assert export_html(rules, tmp_path / "b.html").read_bytes() == first


def test_html_without_annotation_uses_ids(tmp_path: Path) -> None:
    plain = mine_rules(ORDERS, min_count=1)
    text = export_html(plain, tmp_path / "rules.html").read_text(encoding="utf-8")
    assert text.count("<svg") == 2
    assert "<td>85123A</td>" in text


# ------------------------------------------------------------------------- edge cases

@pytest.mark.parametrize("fmt", ["csv", "xlsx", "html"])
def test_empty_rules_write_valid_files(fmt: str, tmp_path: Path) -> None:
    empty = annotate(mine_rules(ORDERS, min_count=100), CATALOG)
    assert empty.empty
    path = export_rules(empty, fmt, tmp_path / f"rules.{fmt}")
    if fmt == "csv":
        back = pd.read_csv(path)
        assert back.empty and list(back.columns) == list(flat_rules(empty).columns)
    elif fmt == "xlsx":
        sheets, strings, _ = _xlsx(path)
        assert list(sheets) == ["rules", "glossary"]
        assert f'<autoFilter ref="A1:{_column_letter(len(RULE_COLUMNS))}1"/>' in sheets["rules"]
        assert "support" in _cell_strings(sheets["rules"], strings)
    else:
        text = path.read_text(encoding="utf-8")
        assert "no rules" in text.lower()
        assert "<svg" not in text and '<tr class="rule">' not in text
        assert text.rstrip().endswith("</html>")


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "html"])
def test_missing_folder_is_an_input_error(rules: pd.DataFrame, fmt: str,
                                          tmp_path: Path) -> None:
    path = tmp_path / "missing" / f"rules.{fmt}"
    with pytest.raises(InputError, match=re.escape(str(path))):
        export_rules(rules, fmt, path)
    with pytest.raises(InputError, match="folder"):
        export_rules(rules, fmt, tmp_path)  # a folder, not a file
    assert not (tmp_path / "missing").exists()


def test_unknown_format_is_an_input_error(rules: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'pdf'.*csv, xlsx, html"):
        export_rules(rules, "pdf", tmp_path / "rules.pdf")


def test_export_rules_dispatches_with_options(rules: pd.DataFrame, tmp_path: Path) -> None:
    assert export_rules(rules, "CSV", tmp_path / "r.csv").read_text(encoding="utf-8").startswith(
        "antecedents,antecedent_names")
    html_text = export_rules(rules, "html", tmp_path / "r.html", top=2).read_text(
        encoding="utf-8")
    assert html_text.count('<tr class="rule">') == 2


def test_rules_without_rule_columns_are_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="mine_rules"):
        export_csv(pd.DataFrame({"antecedents": []}), tmp_path / "r.csv")


def test_html_network_draws_higher_lift_darker_as_its_caption_says(tmp_path: Path) -> None:
    """Issue #16: the brightest lines had the highest lift while the caption said darker."""
    text = export_html(mine_rules(ORDERS, min_count=1), tmp_path / "r.html").read_text()
    assert "thicker and darker lines mean higher lift" in text
    network = text[text.index('id="network'):]
    lines = [(float(width), int(colour[:2], 16) * 0.2126 + int(colour[2:4], 16) * 0.7152 +
              int(colour[4:], 16) * 0.0722) for colour, width in re.findall(
        r"stroke: #([0-9a-f]{6}); stroke-opacity: [0-9.]+; stroke-width: ([0-9.]+)", network)]
    assert len({w for w, _ in lines}) >= 3
    by_width = sorted(lines)
    assert [lum for _, lum in by_width] == sorted((lum for _, lum in by_width), reverse=True)


def test_html_table_headers_are_words_and_names_do_not_wrap_narrow(
        page: Page, tmp_path: Path) -> None:
    """Issue #16: on Online Retail II the name columns wrapped to 7 lines, headers were
    snake_case. Drawn by Chromium: a rule's names take at most 3 lines."""
    long_names = CATALOG.assign(name=["WHITE HANGING HEART T-LIGHT HOLDER",
                                      "REGENCY CAKESTAND 3 TIER PINK AND GREEN",
                                      "JUMBO BAG RED RETROSPOT WITH HANDLES",
                                      "SET OF 3 CAKE TINS PANTRY DESIGN"])
    rules = annotate(mine(ORDERS, min_count=1).rules, long_names)
    path = export_html(rules, tmp_path / "rules.html")
    text = path.read_text(encoding="utf-8")
    headers = re.findall(r"<th title=\"[^\"]*\">([^<]+)</th>", text)
    assert "orders with both" in headers and "Fisher p-value" in headers
    assert not [h for h in headers if "_" in h]
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(path.as_uri())
    lines = page.locator("tr.rule").evaluate_all("""rows => rows.flatMap(row =>
        [...row.children].slice(0, 2).map(cell => {  // the lines of the names' text
            const range = document.createRange();
            range.selectNodeContents(cell.firstChild);
            return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
        }))""")
    assert lines and max(lines) <= 3, lines
