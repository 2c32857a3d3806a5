"""Typed configuration: one TOML file (``configs/recsys.toml`` documents every key).

Unknown keys and bad values fail before any work with the file, the key and what is wrong.
Serving settings can be overridden by environment variables ``RECSYS_SERVING_<KEY>`` (for
example ``RECSYS_SERVING_PORT=9000``), which win over the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from recsys.analytics.settings import AnalyticsConfig, ExperimentConfig
from recsys.errors import ConfigError
from recsys.matrices import InteractionWeights
from recsys.models.settings import ModelsConfig
from recsys.redact import redact
from recsys.rules.settings import RulesConfig
from recsys.tomlfile import format_validation_error, load_toml_model

__all__ = [
    "Config",
    "IngestConfig",
    "DemoConfig",
    "PopularityConfig",
    "ArtifactsConfig",
    "ServingSettings",
    "DEFAULT_API_KEY",
    "MIN_PRODUCTION_KEY",
    "load_config",
    "format_validation_error",
]

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "change-me"
MIN_PRODUCTION_KEY = 32  # characters of api_key in production (token_urlsafe(32) has 43)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestConfig(_Section):
    """Where the raw data is (paths or SQLAlchemy URLs) and how to map it."""

    orders: str | None = Field(None, description="orders: CSV/Parquet path or SQL URL#table; "
                                                 "required by `recsys run`")
    events: str | None = Field(None, description="events source, optional")
    catalog: str | None = Field(None, description="catalog source, optional")
    mapping: str | None = Field(None, description="column-mapping file (TOML)")

    def sources(self) -> dict[str, str]:
        """The configured sources by table; ConfigError when orders are not set."""
        if not self.orders:
            raise ConfigError("[ingest] orders is not set: point it at your order lines (see "
                              "the README, 'Your own data'); the demo shop has its own config, "
                              "configs/demo.toml (`make demo`)")
        found = {"orders": self.orders, "events": self.events, "catalog": self.catalog}
        return {k: v for k, v in found.items() if v}


class DemoConfig(_Section):
    """The generated demo shop that `recsys demo` writes to ``out`` and runs the pipeline on."""

    generate_if_missing: bool | None = Field(
        None, exclude=True, description="no longer used: `recsys run` never generates the "
                                        "demo shop (`recsys demo` does); accepted and ignored")
    out: str = "var/demo"
    seed: int = 42
    orders: int = Field(20_000, ge=100)
    products: int = Field(300, ge=20)

    @field_validator("generate_if_missing")
    @classmethod
    def _no_longer_used(cls, value: bool | None) -> bool | None:
        if value:
            log.warning("[demo] generate_if_missing is no longer used: `recsys run` never "
                        "generates the demo shop; run `recsys demo` (or `make demo`)")
        return value


class PopularityConfig(_Section):
    """Best sellers, the fallback of every list."""

    window_days: int = Field(90, ge=0, description="count orders of the last N days; 0 = all")
    top_k: int = Field(100, ge=1, le=10_000, description="how many best sellers to keep")


class ArtifactsConfig(_Section):
    root: str = "var/artifacts"
    keep_last: int = Field(5, ge=1, description="versions kept on disk (the current one always)")


class ServingSettings(BaseSettings):
    """API server settings: file values, overridden by RECSYS_SERVING_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_SERVING_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    artifacts: str = Field("var/artifacts", description="artifact store root to serve from")
    environment: Literal["development", "production"] = "development"
    api_key: str = Field(DEFAULT_API_KEY, min_length=8, repr=False, description="admin API key")
    cors_origins: list[str] = Field(default_factory=list)
    storefront: bool = Field(True, description="serve the demo storefront pages at "
                                               "/storefront/ (the widget script is always served)")
    reload_interval_s: float = Field(5.0, ge=0, description="CURRENT pointer poll; 0 = off")
    database_url: str = Field("sqlite:///var/recsys.db", repr=False,
                              description="events and merchandiser decisions (SQLAlchemy URL)")
    decisions_refresh_s: float = Field(2.0, ge=0, description="decisions re-read interval")
    category_cap: int = Field(0, ge=0, description="max items per category in a list; 0 = off")
    best_sellers_first_segments: list[str] = Field(
        default_factory=lambda: ["at_risk", "hibernating", "lost"],
        description="RFM segments whose personalised list puts best sellers before ALS")
    upsell_band: tuple[float, float] = Field(
        (1.1, 2.0), description="upsell alternatives cost this many times the product's "
                                "price (lowest, highest)")
    ab_test: bool = Field(False, description="assign customers/sessions to experiment arms")
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig,
                                         description="from [analytics.experiment]")

    @field_validator("upsell_band")
    @classmethod
    def _band(cls, band: tuple[float, float]) -> tuple[float, float]:
        if not 0 < band[0] <= band[1]:
            raise ValueError(f"upsell_band needs 0 < lowest <= highest, got {list(band)}")
        return band

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


class Config(_Section):
    """The whole configuration of the offline pipeline and the server."""

    data_dir: str = Field("var/data", description="canonical data directory (ingest output)")
    ingest: IngestConfig = IngestConfig()
    demo: DemoConfig = DemoConfig()
    interactions: InteractionWeights = InteractionWeights()
    popularity: PopularityConfig = PopularityConfig()
    rules: RulesConfig = Field(default_factory=RulesConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    artifacts: ArtifactsConfig = ArtifactsConfig()
    serving: ServingSettings = Field(default_factory=ServingSettings)

    def serving_settings(self, **overrides: Any) -> ServingSettings:
        """Serving settings: CLI overrides > environment > file > defaults.

        Serves ``[artifacts] root`` unless ``[serving] artifacts`` is set. Refuses production
        mode with the default API key or one shorter than 32 characters.
        """
        values = {"artifacts": self.artifacts.root,
                  "experiment": self.analytics.experiment.model_dump(),
                  **self.serving.model_dump(exclude_unset=True)}
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            settings = ServingSettings(**values)
            for key, value in given.items():  # checked one by one: the env must not win here
                field = ServingSettings.model_fields[key]
                try:
                    annotated: Any = field.annotation
                    if field.metadata:
                        annotated = Annotated[annotated, *field.metadata]
                    TypeAdapter(annotated).validate_python(value)
                except ValidationError as exc:
                    raise ConfigError(f"serving {key}={value!r}: "
                                      f"{format_validation_error(exc)}") from None
            settings = settings.model_copy(update=given)
        except ValidationError as exc:
            raise ConfigError(f"serving settings: {format_validation_error(exc)}") from None
        if settings.environment == "production" and settings.api_key == DEFAULT_API_KEY:
            raise ConfigError("production mode refuses the default api_key; set "
                              "RECSYS_SERVING_API_KEY (or [serving] api_key) to a secret")
        if settings.environment == "production" and len(settings.api_key) < MIN_PRODUCTION_KEY:
            raise ConfigError(f"production mode needs an api_key of at least "
                              f"{MIN_PRODUCTION_KEY} characters (it has {len(settings.api_key)});"
                              " make one with: python -c 'import secrets; "
                              "print(secrets.token_urlsafe(32))'")
        return settings

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """sha256 of the canonical JSON form: identifies what an artifact was built with."""
        blob = json.dumps(self.to_json_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def load_config(path: Path | str | None) -> Config:
    """Load a config file (None: the embedded defaults). Raises ConfigError on any problem."""
    if path is None:
        return Config()
    path = Path(path)
    config = load_toml_model(path, Config, "config file")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    if redact(raw) != raw and path.stat().st_mode & 0o077:
        log.warning("%s holds a secret (an api_key or a password in a URL) and others may read "
                    "it: chmod 600 %s, or set it in the environment instead", path, path)
    return config
