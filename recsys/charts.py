"""Charts for the self-contained HTML reports: matplotlib ``Figure`` objects (no pyplot, no GUI
backend) rendered to SVG elements that can be inlined in a page that opens offline."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["inline_svg", "chart_style"]


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
