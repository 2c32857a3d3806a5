"""Configuration: the commented default file equals the built-in defaults; bad keys fail early."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.cli import main
from recsys.config import Config, load_config
from recsys.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_file_documents_the_builtin_defaults() -> None:
    from_file = load_config(REPO / "configs" / "recsys.toml")
    assert from_file.model_dump() == Config().model_dump()
    assert from_file.hash() == Config().hash()


def test_default_file_mentions_every_key() -> None:
    text = (REPO / "configs" / "recsys.toml").read_text()
    config = Config()
    for section, value in config.model_dump().items():
        assert section in text
        if isinstance(value, dict):
            for key in value:
                assert (f"{key} =" in text or f"[{section}.{key}]" in text), \
                    f"{section}.{key} undocumented"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[popularity]\ntop_kk = 5\n", "popularity.top_kk: unknown key"),
        ("[popularity]\ntop_k = 0\n", "popularity.top_k"),
        ("[serving]\nport = 70000\n", "serving.port"),
        ("[serving.placements.cart]\nmin_score_share = 1.5\n",
         "serving.placements.cart.min_score_share"),
        ("[serving.placements.kiosk]\nfill = false\n", "serving.placements.kiosk"),
        ("[interactions]\nquantity = \"squared\"\n", "interactions.quantity"),
        ("nonsense = 1\n", "nonsense: unknown key"),
        ("[popularity\n", "not valid TOML"),
    ],
)
def test_bad_config_fails_with_the_key(tmp_path: Path, body: str, expected: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value) and str(path) in str(err.value)
    # The CLI says the same and exits 1 before doing any work.
    assert main(["-q", "run", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert expected in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "var").exists()


def test_environment_overrides_serving_file_values(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config.model_validate({"serving": {"port": 7000, "host": "0.0.0.0"}})
    assert config.serving_settings().port == 7000
    monkeypatch.setenv("RECSYS_SERVING_PORT", "9100")
    settings = config.serving_settings()
    assert settings.port == 9100 and settings.host == "0.0.0.0"
    assert config.serving_settings(port=9200).port == 9200  # a CLI flag wins


def test_serving_follows_artifacts_root_unless_set() -> None:
    assert Config.model_validate({"artifacts": {"root": "x/a"}}).serving_settings().artifacts == "x/a"
    both = Config.model_validate({"artifacts": {"root": "x/a"}, "serving": {"artifacts": "y"}})
    assert both.serving_settings().artifacts == "y"


def test_production_refuses_the_default_key(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config.model_validate({"serving": {"environment": "production"}})
    with pytest.raises(ConfigError, match="default api_key"):
        config.serving_settings()
    monkeypatch.setenv("RECSYS_SERVING_API_KEY", "a-long-secret-key-of-32-characters")
    monkeypatch.setenv("RECSYS_SERVING_STOREFRONT_KEY", "a-public-storefront-key")
    assert config.serving_settings().api_key == "a-long-secret-key-of-32-characters"


def test_config_hash_changes_with_values() -> None:
    assert Config().hash() != Config.model_validate({"popularity": {"top_k": 7}}).hash()


def test_serving_overrides_of_unconstrained_fields() -> None:
    """``recsys serve --host H`` overrides a field that has no constraints."""
    assert Config().serving_settings(host="0.0.0.0").host == "0.0.0.0"
    with pytest.raises(ConfigError, match="port"):
        Config().serving_settings(port=0)


def test_defaults_point_a_run_at_no_demo_file() -> None:
    ingest = Config().ingest
    assert (ingest.orders, ingest.events, ingest.catalog) == (None, None, None)
    text = (REPO / "configs" / "recsys.toml").read_text()
    assert "var/demo/" not in text  # the demo shop is configs/demo.toml's


def test_a_run_without_orders_fails_before_any_work(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n[artifacts]\nroot = "{tmp_path / "a"}"\n')
    assert main(["-q", "run", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "[ingest] orders is not set" in err and "configs/demo.toml" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "a").exists()


def test_the_demo_config_reads_the_demo_shop_only() -> None:
    demo = load_config(REPO / "configs" / "demo.toml")
    sources = demo.ingest.sources()
    assert set(sources) == {"orders", "events", "catalog"}
    assert all(Path(p).parent == Path(demo.demo.out) for p in sources.values())
    assert Path(demo.data_dir).is_relative_to(demo.demo.out)
    assert Path(demo.artifacts.root).is_relative_to(demo.demo.out)


def test_generate_if_missing_is_accepted_but_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text("[demo]\ngenerate_if_missing = false\n")
    assert load_config(path).hash() == Config().hash()


def test_placements_are_read_per_kind_of_list(tmp_path: Path) -> None:
    path = tmp_path / "recsys.toml"
    path.write_text("[serving.placements.cart]\nmin_score_share = 0.2\nfill = false\n"
                    "max_p_value = 0.01\n")
    placements = load_config(path).serving_settings().placements
    assert (placements.cart.min_score_share, placements.cart.fill,
            placements.cart.max_p_value) == (0.2, False, 0.01)
    assert placements.bought_together == Config().serving.placements.bought_together
