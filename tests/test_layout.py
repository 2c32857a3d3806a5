"""The artifact layout: what the jobs write is what recsys.layout declares, and no module
spells an artifact file name itself."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import layout
from recsys.artifacts import ArtifactStore
from recsys.config import load_config
from recsys.pipeline import JOBS, run_pipeline
from tests.conftest import REPO, write_small_config

PACKAGE = REPO / "recsys"


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The small shop's published version folder and its manifest's file list."""
    tmp = tmp_path_factory.mktemp("layout")
    _, manifest = run_pipeline(load_config(write_small_config(tmp)), show_progress=False)
    return ArtifactStore(tmp / "artifacts").path(manifest.version), sorted(manifest.files)


def test_the_pipeline_writes_every_declared_file_and_nothing_else(
        version: tuple[Path, list[str]]) -> None:
    folder, files = version
    assert files == sorted(f.path for f in layout.FILES)
    assert layout.check_version(folder, files) == []


def test_every_file_is_written_by_a_pipeline_job() -> None:
    assert set(layout.JOBS) == {*JOBS, "pipeline"} - {"basket_stats"}
    assert {f.job for f in layout.FILES} == set(layout.JOBS)
    assert len({f.path for f in layout.FILES}) == len(layout.FILES)


def test_check_version_names_what_breaks_the_declaration(version: tuple[Path, list[str]],
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "v"
    shutil.copytree(version[0], folder)
    pd.DataFrame({"scope": ["*"], "rank": [1.5], "product_id": ["mug"], "orders": [1],
                  "units": [1.0], "revenue": [1.0], "extra": [0]}).to_parquet(
        layout.POPULAR.at(folder))
    np.save(layout.ALSO_VIEWED.files[1].at(folder), np.zeros((3, 2), np.float32))
    layout.RANKING.at(folder).write_text("{}")
    (folder / "stray.json").write_text("{}")
    files = [*version[1], "stray.json"]
    files.remove(layout.ITEMS.path)
    problems = layout.check_version(folder, files)
    assert problems[:2] == ["stray.json: not declared in recsys.layout",
                            "items.parquet: missing (required)"]
    assert "popular.parquet: column rank is float64, declared int64" in problems
    assert "popular.parquet: undeclared column extra" in problems
    assert any(p.startswith("also_viewed/scores.npy: dimension 'items' is 3") for p in problems)
    assert "ranking.json: lacks the key rule_weight" in problems


def test_dimensions_bind_across_files(version: tuple[Path, list[str]]) -> None:
    dims: dict[str, int] = {}
    for entry in (layout.ITEMS, *layout.ALSO_VIEWED.files, layout.PURCHASES):
        assert layout.check_file(version[0], entry, dims) == []
    assert dims["items"] == 5 and dims["k"] > 0


def _string_constants(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals outside docstrings, with their line."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_module_but_layout_spells_an_artifact_file_name() -> None:
    names = {f.name for f in layout.FILES} | {f.path for f in layout.FILES}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "layout.py":
            continue
        for line, text in _string_constants(ast.parse(path.read_text(), str(path))):
            if any(text == n or text.endswith(("/" + n, " " + n)) for n in names):
                found.append(f"{path.relative_to(REPO)}:{line}: {text!r}")
    assert found == []


def test_every_declared_file_is_used_outside_the_layout() -> None:
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py") if p.name != "layout.py")
    constants = [name for name, value in vars(layout).items()
                 if isinstance(value, layout.ArtifactFile | layout.NeighbourTable)]
    tables = len(layout.NEIGHBOUR_TABLES)  # each a constant for its 3 array files
    assert len(constants) == len(layout.FILES) - 3 * tables + tables
    unused = [name for name in constants if f"layout.{name}" not in source]
    assert unused == []


def test_the_demo_artifact_matches_the_layout(demo_artifact: Path) -> None:
    """The demo shop has events, a catalog and customers: every optional file is there too."""
    store = ArtifactStore(demo_artifact)
    files = sorted(store.manifest().files)
    assert files == sorted(f.path for f in layout.FILES)
    assert layout.check_version(store.path(), files) == []
