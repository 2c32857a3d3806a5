"""Charts and the shared style of the self-contained HTML reports: matplotlib ``Figure``
objects (no pyplot, no GUI backend) rendered to SVG elements that can be inlined in a page that
opens offline."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["inline_svg", "chart_style", "REPORT_CSS"]

REPORT_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1d232b;line-height:1.4}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ccd}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:.2rem 1.5rem}
dl.summary dt{font-weight:600}dl.summary dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border-bottom:1px solid #e2e6ec;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
small{color:#66707d}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption{color:#445;font-size:.9rem}
"""  # the look shared by the self-contained HTML reports (rules, customer value)


def inline_svg(fig: Any, prefix: str) -> str:
    """A figure as an SVG element to inline in HTML: no XML prolog, metadata, comments or
    namespace URLs, and ids prefixed so two charts on one page cannot clash."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    return re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)


@contextmanager
def chart_style(salt: str) -> Iterator[None]:
    """Deterministic SVG (fixed hash salt), glyphs as paths so no font is needed to view it."""
    import matplotlib as mpl

    with mpl.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path", "font.size": 9}):
        yield
