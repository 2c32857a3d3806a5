"""The slow marker: the modules conftest marks slow exist, and the marker reaches their tests."""

from __future__ import annotations

import types

import pytest

from tests.conftest import REPO, SLOW_MODULES, SLOW_TESTS, pytest_collection_modifyitems


def test_every_slow_module_and_test_exists() -> None:
    missing = sorted(m for m in SLOW_MODULES if not (REPO / "tests" / f"{m}.py").is_file())
    assert missing == []
    for test in SLOW_TESTS:
        module, name = test.split("::")
        assert f"def {name}(" in (REPO / "tests" / module).read_text(), test


def test_this_module_is_not_slow(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("slow") is None


class _Item:
    """Just what the collection hook reads of a pytest item."""

    def __init__(self, module: str, fixtures: tuple[str, ...], name: str = "test_x") -> None:
        self.module = types.ModuleType(f"tests.{module}")
        self.fixturenames = fixtures
        self.name = self.originalname = name
        self.markers: list[str] = []

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.markers.append(marker.name)


def test_slow_modules_and_fixtures_mark_their_tests() -> None:
    items = [_Item("test_api", ()), _Item("test_vocab", ("datasets",)),
             _Item("test_vocab", ("tmp_path",)), _Item("test_ranking", (),
                                                        "test_cart_scores_by_hand")]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [item.markers for item in items] == [["slow"], ["slow"], [], ["slow"]]
