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
from recsys.spark.settings import SparkConfig
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
    "DEFAULT_LINE_DECAY",
    "load_config",
    "format_validation_error",
]

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "change-me"
MIN_PRODUCTION_KEY = 32  # characters of api_key in production (token_urlsafe(32) has 43)
DEFAULT_LINE_DECAY = 0.8  # the cart add-ons' when neither the config nor the artifact sets it


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestConfig(_Section):
    """Where the raw data is (paths or SQLAlchemy URLs) and how to map it."""

    orders: str | None = Field(None, description="orders: CSV/Parquet path or SQL URL#table; "
                                                 "required by `recsys run`")
    events: str | None = Field(None, description="events source, optional")
    catalog: str | None = Field(None, description="catalog source, optional")
    mapping: str | None = Field(None, description="column-mapping file (TOML)")
    server_events: bool = Field(True, description="also read the events the API stored "
                                                  "([serving] database_url) by `recsys run`")

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


class Placement(_Section):
    """The evidence every item of one kind of list must clear (issue #16,
    ``recsys.serving.evidence``), and what a list left short by it gets: best sellers of the
    seed's category (named in ``fallback``), or nothing (the list ends shorter); and, where
    set, how much the session weighs in it (else ``[serving]``'s ``session_weight`` and
    ``session_decay``)."""

    min_score_share: float = Field(
        0.05, ge=0, le=1, description="leave out engine items scoring below this share of the "
                                     "list's best, and co-purchases not above chance (lift <= "
                                     "1 with every seed); 0 (with max_p_value 1) = off")
    max_p_value: float = Field(
        0.001, gt=0, le=1, description="leave out co-purchases not significantly above chance "
                                       "with any seed (one-sided Fisher p-value above this, "
                                       "as the rules' max_p_value); 1 = off")
    fill: bool = Field(True, description="fill a short list from best sellers; false: shorter")
    session_weight: float | None = Field(
        None, ge=0, description="this list's weight of the session's most recent other product; "
                                "unset: [serving] session_weight")
    session_decay: float | None = Field(
        None, gt=0, le=1, description="this list's factor for each older session product; "
                                      "unset: [serving] session_decay")


class CartPlacement(Placement):
    """The cart add-ons' placement, with how much more the cart's latest lines count."""

    line_decay: float | None = Field(
        None, gt=0, le=1, description="each cart line the session touched before the latest "
                                      "counts this times less (the session's events give the "
                                      "order; 1 = every line alike); unset: the artifact's "
                                      f"choice (the session_tuning job), else {DEFAULT_LINE_DECAY}")


class Placements(_Section):
    """Per kind of list: ``[serving.placements.cart]`` and so on."""

    # also-viewed items count views: the significance test does not apply to them
    also_viewed: Placement = Field(default_factory=lambda: Placement(max_p_value=1.0))
    bought_together: Placement = Field(default_factory=Placement)
    cart: CartPlacement = Field(default_factory=CartPlacement)


class ServingSettings(BaseSettings):
    """API server settings: file values, overridden by RECSYS_SERVING_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_SERVING_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    artifacts: str = Field("var/artifacts", description="artifact store root to serve from")
    environment: Literal["development", "production"] = "development"
    api_key: str = Field(DEFAULT_API_KEY, min_length=8, repr=False,
                         description="server key: customer lists, admin")
    storefront_key: str = Field("", max_length=256, repr=False,
                                description="public storefront key; empty = open (development)")
    customer_token_max_s: int = Field(3600, ge=60, le=7 * 86400,
                                      description="longest validity of a customer token")
    session_secret: str = Field("", repr=False, description="console session-signing secret; "
                                "empty = generated at first start (session_secret_file)")
    session_secret_file: str = Field("", description="where the generated secret is kept; "
                                     "empty = beside the SQLite database, else the artifacts")
    redis_url: str = Field("", repr=False, description="Redis for the live session state, "
                           "trending counts and events rate limit shared by all workers; "
                           "empty = each worker on its own (one worker only)")
    redis_prefix: str = Field("recsys", min_length=1, max_length=64,
                              description="prefix of the Redis keys")
    events_per_minute: int = Field(120, ge=0, description="events per client; 0 = no limit")
    event_max_price: float = Field(100_000.0, gt=0, le=1e9)
    event_max_quantity: float = Field(1_000.0, gt=0, le=1_000_000)
    events_retention_days: int = Field(0, ge=0, description="delete older events; 0 = keep")
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies are "
                                                                "answered 413 unread")
    storefront: bool = Field(True, description="serve the demo storefront pages at "
                                               "/storefront/ (the widget script is always served)")
    reload_interval_s: float = Field(5.0, ge=0, description="CURRENT pointer poll; 0 = off")
    database_url: str = Field("sqlite:///var/recsys.db", repr=False,
                              description="events and merchandiser decisions (SQLAlchemy URL)")
    decisions_refresh_s: float = Field(2.0, ge=0, description="decisions re-read interval")
    data_dir: str = Field("var/data", description="events are buffered here while the "
                                                  "database is down (from data_dir)")
    event_buffer_bytes: int = Field(64 * 2**20, ge=0, description="cap of that buffer; "
                                                                  "beyond it events get 503")
    database_retry_s: float = Field(5.0, gt=0, description="database re-check interval")
    category_cap: int = Field(0, ge=0, description="max items per category in a list; 0 = off")
    catalog_watch: str | None = Field(
        None, description="catalogue file (CSV/Parquet, catalog columns) polled every "
                          "reload_interval_s; its rows update the served catalogue")
    content_min_support: int = Field(
        3, ge=0, description="also-viewed lists whose strongest co-view support (sessions) is "
                             "below this are completed from content neighbours; 0 = only "
                             "products without any co-viewed neighbour")
    best_sellers_first_segments: list[str] = Field(
        default_factory=lambda: ["at_risk", "hibernating", "lost"],
        description="RFM segments whose personalised list puts best sellers before ALS")
    placements: Placements = Field(default_factory=Placements,
                                   description="minimum evidence and fill per kind of list")
    upsell_band: tuple[float, float] = Field(
        (1.1, 2.0), description="upsell alternatives cost this many times the product's "
                                "price (lowest, highest)")
    ab_test: bool = Field(False, description="assign customers/sessions to experiment arms")
    session_length: int = Field(20, ge=1, le=200, description="recent products kept per "
                                                              "session and per customer")
    session_ttl_s: float = Field(1800.0, gt=0, description="a session's recent products "
                                                           "expire this long after its last event")
    customer_ttl_s: float = Field(30 * 86400.0, gt=0, description="same, per customer")
    session_weight: float = Field(0.3, ge=0, description="weight of the session's other "
                                                         "products in session-aware lists")
    session_decay: float = Field(0.5, gt=0, le=1, description="each older session product "
                                                              "counts this much less")
    session_knn_weight: float = Field(2.0, ge=0, description="weight of V-SKNN (the training "
                                      "sessions most like this one) in session-aware lists")
    session_knn_k: int = Field(100, ge=1, le=10_000, description="V-SKNN: similar training "
                                                                 "sessions that vote")
    session_knn_sample: int = Field(20, ge=0, description="V-SKNN: each session product "
                                    "brings its latest N training sessions as candidate "
                                    "neighbours (0: all; bounds a request's work on a large "
                                    "shop)")
    trending_hours: int = Field(3, ge=1, le=48, description="trending: the recent window")
    trending_baseline_hours: int = Field(24, ge=1, le=168, description="trending: the usual "
                                                                        "rate's window")
    trending_min_count: int = Field(5, ge=1, description="trending: fewest recent events")
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
    spark: SparkConfig = Field(default_factory=SparkConfig)
    serving: ServingSettings = Field(default_factory=ServingSettings)

    def serving_settings(self, **overrides: Any) -> ServingSettings:
        """Serving settings: CLI overrides > environment > file > defaults.

        Serves ``[artifacts] root`` unless ``[serving] artifacts`` is set. Refuses production
        mode with the default API key or one shorter than 32 characters.
        """
        values = {"artifacts": self.artifacts.root, "data_dir": self.data_dir,
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
        if settings.session_secret and len(settings.session_secret) < MIN_PRODUCTION_KEY:
            raise ConfigError(f"[serving] session_secret needs at least {MIN_PRODUCTION_KEY} "
                              "characters (or leave it empty: one is generated)")
        if settings.environment == "production" and settings.api_key == DEFAULT_API_KEY:
            raise ConfigError("production mode refuses the default api_key; set "
                              "RECSYS_SERVING_API_KEY (or [serving] api_key) to a secret")
        if settings.environment == "production" and len(settings.api_key) < MIN_PRODUCTION_KEY:
            raise ConfigError(f"production mode needs an api_key of at least "
                              f"{MIN_PRODUCTION_KEY} characters (it has {len(settings.api_key)});"
                              " make one with: python -c 'import secrets; "
                              "print(secrets.token_urlsafe(32))'")
        if settings.environment == "production":
            _check_production(settings)
        return settings

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """sha256 of the canonical JSON form: identifies what an artifact was built with."""
        blob = json.dumps(self.to_json_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _check_production(settings: ServingSettings) -> None:
    """Production needs a storefront key other than the server key."""
    if not settings.storefront_key:
        raise ConfigError("production mode needs a storefront_key (the public key of the shop's "
                          "pages; set RECSYS_SERVING_STOREFRONT_KEY or [serving] storefront_key)")
    if settings.storefront_key == settings.api_key:
        raise ConfigError("the storefront_key is public: it must differ from the api_key")


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
