"""The evaluation's outputs: ``metrics.json`` ({task: {model: {metric: value}}}),
``evaluation.json`` (cases, windows, chosen settings, validation scores, notes, skipped tasks),
``report.html`` (self-contained: tables and HR@k curves as inline SVG) and the console table.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.evaluation.tasks import TaskResult

__all__ = ["EvaluationResult", "write_outputs", "TASK_COLUMNS", "MODEL_ORDER"]

TASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "basket_completion": ("hr@10", "mrr@10", "ndcg@10", "revenue_hr@10", "coverage@10"),
    "also_viewed": ("hr@10", "mrr@10", "ndcg@10", "coverage@10"),
    "next_basket": ("recall@10", "ndcg@10", "hr@10", "coverage@10"),
}
MODEL_ORDER = ("popularity", "cooccurrence", "bm25_itemknn", "cosine_itemknn", "als",
               "own_most_bought", "engine", "engine_candidate")
TASK_TITLES = {"basket_completion": "Basket completion", "also_viewed": "Also viewed",
               "next_basket": "Personalised next basket"}

Reference = Mapping[str, Mapping[str, Mapping[str, float]]]


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(
        float(value), 6)


def _models(task: TaskResult) -> list[str]:
    return sorted(task.metrics, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER
                                               else len(MODEL_ORDER), m))


@dataclass
class EvaluationResult:
    """Every task's result, the tasks skipped (task -> why) and general notes."""

    tasks: dict[str, TaskResult]
    skipped: dict[str, str] = field(default_factory=dict)
    title: str = "Offline evaluation"
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """{task: {model: {metric: value}}} (NaN as None)."""
        return {name: {model: {m: _clean(v) for m, v in task.metrics[model].items()}
                       for model in _models(task)} for name, task in self.tasks.items()}

    def details(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "notes": self.notes,
            "skipped": self.skipped,
            "tasks": {name: {
                "cases": t.cases, "split": t.split, "selected_by": t.select_metric,
                "params": t.params, "seconds": t.seconds, "notes": t.notes,
                "validation": {m: [{"setting": s, t.select_metric: _clean(v)} for s, v in rows]
                               for m, rows in t.validation.items()},
                "hr_curve": {m: [_clean(v) for v in c] for m, c in t.curves.items()},
            } for name, t in self.tasks.items()},
        }

    def table(self, *, reference: Reference | None = None) -> str:
        """The console table: one block per task, a row per model, key metrics at 10."""
        lines = [self.title]
        for name, task in self.tasks.items():
            cols = [c for c in TASK_COLUMNS.get(name, ()) if any(
                c in task.metrics[m] for m in task.metrics)]
            ref_metric = cols[0] if cols else ""
            header = ["model", *cols] + ([f"ref {ref_metric}"] if reference else []) + ["setting"]
            rows = []
            for model in _models(task):
                values = task.metrics[model]
                cells = [model] + [_fmt(values.get(c)) for c in cols]
                if reference:
                    ref = reference.get(name, {}).get(model, {}).get(ref_metric)
                    cells.append("" if ref is None else f"{ref:.3f}")
                cells.append(task.params.get(model, "")[:60])
                rows.append(cells)
            widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
            lines.append("")
            lines.append(f"{name}: {task.cases:,} cases")
            lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
            lines.extend("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
                         for r in rows)
            lines.extend(f"  note: {n}" for n in task.notes)
        for name, why in self.skipped.items():
            lines.append("")
            lines.append(f"{name}: skipped: {why}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.4f}")


_FAMILIES = ("hr", "recall", "mrr", "ndcg", "revenue_hr", "coverage")


def _column_order(metric: str) -> tuple[int, int, str]:
    family, _, k = metric.partition("@")
    rank = _FAMILIES.index(family) if family in _FAMILIES else len(_FAMILIES)
    return (int(k) if k.isdigit() else 0, rank, metric)


def _plain(value: Any) -> str:
    """A split description as text: ``key value, ...`` for dicts."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                         for k, v in value.items())
    return str(value)


def _curve_svg(task: TaskResult) -> str:
    """HR@1..k of every model as an inline SVG (matplotlib, imported here only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for model in _models(task):
        curve = task.curves.get(model, [])
        if curve:
            style = "-" if model.startswith("engine") else "--"
            ax.plot(range(1, len(curve) + 1), curve, style, marker=".", label=model)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k")
    ax.set_ylabel("HR@k" if task.task != "next_basket" else "share with a hit in the first k")
    ax.set_title(TASK_TITLES.get(task.task, task.task))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.find("<svg"):]


def _html(result: EvaluationResult) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(result.title)}"
             "</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}td:first-child,th:first-child,td.s{text-align:left}"
             ".note{color:#555}</style></head><body>",
             f"<h1>{esc(result.title)}</h1>",
             f"<p class='note'>{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Models are tuned on the "
             "validation window and scored once on the test window; the engine is built from "
             "the training window with its own config.</p>"]
    for name, task in result.tasks.items():
        models = _models(task)
        cols = sorted({c for m in models for c in task.metrics[m]}, key=_column_order)
        parts.append(f"<h2>{esc(TASK_TITLES.get(name, name))} (<code>{esc(name)}</code>)</h2>")
        parts.append(f"<p>{task.cases:,} test cases; settings chosen by "
                     f"{esc(task.select_metric)} on the validation window.</p>")
        parts.append("<ul>" + "".join(f"<li>{esc(k)}: {esc(_plain(v))}</li>"
                                      for k, v in task.split.items()) + "</ul>")
        parts.append("<table><tr><th>model</th>" + "".join(f"<th>{esc(c)}</th>" for c in cols)
                     + "<th>setting</th></tr>")
        for model in models:
            parts.append(f"<tr><td>{esc(model)}</td>" + "".join(
                f"<td>{_fmt(task.metrics[model].get(c))}</td>" for c in cols)
                + f"<td class='s'>{esc(task.params.get(model, ''))}</td></tr>")
        parts.append("</table>")
        parts.append(_curve_svg(task))
        if task.validation:
            parts.append(f"<details><summary>validation ({esc(task.select_metric)} per "
                         "setting)</summary><table>")
            for model, rows in task.validation.items():
                for setting, value in rows:
                    parts.append(f"<tr><td>{esc(model)}</td><td class='s'>{esc(setting)}</td>"
                                 f"<td>{_fmt(value)}</td></tr>")
            parts.append("</table></details>")
        parts.extend(f"<p class='note'>{esc(n)}</p>" for n in task.notes)
    for name, why in result.skipped.items():
        parts.append(f"<h2>{esc(TASK_TITLES.get(name, name))}: skipped</h2><p>{esc(why)}</p>")
    parts.extend(f"<p class='note'>{esc(n)}</p>" for n in result.notes)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(result: EvaluationResult, out: Path | str) -> dict[str, Path]:
    """Write metrics.json, evaluation.json and report.html into ``out``; returns their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": folder / "metrics.json", "details": folder / "evaluation.json",
             "report": folder / "report.html"}
    _write(paths["metrics"], json.dumps(result.metrics(), indent=2) + "\n")
    _write(paths["details"], json.dumps(result.details(), indent=2, default=str) + "\n")
    _write(paths["report"], _html(result))
    return paths

