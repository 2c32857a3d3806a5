"""The artifact layout: every file of an artifact version, declared once.

Each entry names a file (its path inside the version folder), the pipeline job that writes it,
whether a complete version may lack it, and what it holds: Parquet columns with their kinds,
``.npy`` / ``.npz`` arrays with dtypes and shapes, or the keys of a JSON object. Writers and
readers both take paths from here (``RULES.at(folder)``), never spell a file name, and
``check_version`` compares a version on disk with the declarations.

Shapes name their dimensions (``"items"``, ``"customers"``, ...); one name means one size
across the whole version, and a file with ``rows=`` binds its row count to a name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Column", "Array", "ArtifactFile", "FILES", "JOBS", "NEIGHBOUR_ARRAYS",
           "NEIGHBOUR_TABLES", "NeighbourTable", "by_path", "check_file", "check_version",
           "ITEMS", "CATALOG", "POPULAR", "RULES", "ITEMSETS", "CATEGORY_RULES", "SUBSTITUTES",
           "BUNDLES", "RULES_REPORT", "RANKING", "COLD_START", "SESSION_WEIGHTS", "ALS", "CUSTOMERS", "PURCHASES", "REPURCHASE",
           "CLV_CUSTOMERS", "RFM_SEGMENTS", "COHORTS", "CUSTOMER_SEGMENTS", "CLV_REPORT",
           "LIFECYCLE", "LIFECYCLE_FLOWS", "CUSTOMER_RECOMMENDATIONS", "REPLENISHMENT", "WINBACK",
           "HIGH_VALUE", "ACTION_FILES", "INGEST_REPORT", "ALSO_VIEWED", "BOUGHT_TOGETHER", "BOUGHT_TOGETHER_KNN",
           "CONTENT_TERMS", "CONTENT_VECTORS", "CONTENT_SIMILAR", "SESSIONS", "SESSIONS_BY_ITEM",
           "VIEWED_BOUGHT", "UPSELL_PRIOR", "PRICE_SENSITIVITY", "DISCOUNT_CUSTOMERS"]

#: The jobs that write artifact files: ``recsys.pipeline.JOBS`` plus the pipeline itself.
JOBS = ("catalog", "popularity", "rules", "models", "upsell", "content", "cold_start",
        "session_tuning", "customer_value", "pipeline")

_SIZE = re.compile(r"^([a-z_]+)(\+1)?$")


@dataclass(frozen=True)
class Column:
    """A Parquet column: ``kind`` is string, int8, int64, float64, bool, timestamp or
    list<KIND>; dictionary-encoded and large strings are strings."""

    name: str
    kind: str
    required: bool = True


@dataclass(frozen=True)
class Array:
    """An array of a ``.npy`` / ``.npz`` file: allowed dtypes (``"int32|int64"``) and shape,
    each dimension a fixed size or a name (``"customers+1"`` is one more than ``customers``)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact version."""

    path: str  # inside the version folder, POSIX separators
    job: str
    doc: str
    optional: bool = False  # a complete version may lack it (no such data, or an older version)
    columns: tuple[Column, ...] = ()
    open_columns: bool = False  # further columns are allowed (wide analytic tables)
    rows: str | None = None  # the dimension name the row count binds
    arrays: tuple[Array, ...] = ()
    keys: tuple[str, ...] = ()  # JSON: keys the object must hold

    @property
    def name(self) -> str:
        """The file name, without the folder (what a job writing into a sub-folder uses)."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def kind(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    def at(self, folder: Path | str) -> Path:
        """This file inside the version folder ``folder``."""
        return Path(folder) / self.path


def _s(name: str, required: bool = True) -> Column:
    return Column(name, "string", required)


def _i(name: str) -> Column:
    return Column(name, "int64")


def _f(name: str, required: bool = True) -> Column:
    return Column(name, "float64", required)


ITEMS = ArtifactFile("items.parquet", "catalog", "the product vocabulary: row = product code",
                     columns=(_s("id"),), rows="items")
CATALOG = ArtifactFile(
    "catalog.parquet", "catalog", "the catalog the API shows", optional=True,
    columns=(_s("product_id"), _s("name", False), _s("category", False), _s("brand", False),
             _f("price", False), _f("margin", False), Column("in_stock", "bool", False),
             Column("is_active", "bool", False), Column("durable", "bool", False)))
POPULAR = ArtifactFile(
    "popular.parquet", "popularity", "best sellers per scope ('*' = global, else a category)",
    columns=(_s("scope"), _i("rank"), _s("product_id"), _i("orders"), _f("units"),
             _f("revenue")))

_RULE_METRICS = (_i("antecedent_count"), _i("consequent_count"), _i("count"), _f("support"),
                 _f("confidence"), _f("lift"), _f("leverage"), _f("conviction"),
                 _f("zhangs_metric"), _f("jaccard"), _f("kulczynski"), _f("fisher_p"))
_RULE_SIDES = (Column("antecedents", "list<string>"), Column("consequents", "list<string>"))
_NAMES = tuple(Column(f"{side}_{what}", "list<string>", False)
               for side in ("antecedent", "consequent") for what in ("names", "categories"))
RULES = ArtifactFile("rules.parquet", "rules", "association rules, names from the catalog",
                     columns=_RULE_SIDES + _RULE_METRICS + _NAMES)
ITEMSETS = ArtifactFile(
    "itemsets.parquet", "rules", "frequent itemsets",
    columns=(Column("items", "list<string>"), _i("length"), _i("count"), _f("support")))
CATEGORY_RULES = ArtifactFile("category_rules.parquet", "rules",
                              "rules between categories (when the catalog has categories)",
                              optional=True, columns=_RULE_SIDES + _RULE_METRICS)
SUBSTITUTES = ArtifactFile(
    "substitutes.parquet", "rules", "viewed together, bought together less than chance",
    columns=(_i("coviews"), _f("view_lift"), _i("copurchases"), _f("purchase_lift"),
             _s("product_a"), _s("product_b")))
BUNDLES = ArtifactFile(
    "bundles.parquet", "rules", "bundles by expected gain over what is bought anyway",
    columns=(Column("products", "list<string>"), _i("size"), _i("count"), _f("support"),
             _s("anchor"), _f("anchor_confidence"), _f("others_share"), _f("expected_gain"),
             _f("bundle_value"), _f("min_pair_lift"),
             Column("product_names", "list<string>", False),
             Column("product_categories", "list<string>", False)))
RULES_REPORT = ArtifactFile("rules_report.json", "rules", "the rules job's figures",
                            keys=("rules", "n_orders", "min_count", "bundles"))

#: The arrays of one neighbour table folder: (n_items, k), best first, -1 / 0 padded.
NEIGHBOUR_ARRAYS = (Array("ids", "int32", ("items", "k")),
                    Array("scores", "float32", ("items", "k")),
                    Array("support", "int64", ("items", "k")))


def _neighbours(folder: str, doc: str, optional: bool = False,
                job: str = "models") -> tuple[ArtifactFile, ...]:
    return tuple(ArtifactFile(f"{folder}/{a.name}.npy", job, doc, optional=optional,
                              arrays=(a,)) for a in NEIGHBOUR_ARRAYS)


@dataclass(frozen=True)
class NeighbourTable:
    """A folder of ``NEIGHBOUR_ARRAYS`` as ``.npy`` files (memory-mapped when served)."""

    folder: str
    files: tuple[ArtifactFile, ...]

    def at(self, version_folder: Path | str) -> Path:
        return Path(version_folder) / self.folder


ALSO_VIEWED = NeighbourTable("also_viewed", _neighbours(
    "also_viewed", "item-kNN over view sessions (co-purchase without views)"))
BOUGHT_TOGETHER = NeighbourTable("bought_together", _neighbours(
    "bought_together", "EASE (or item-kNN) over orders"))
BOUGHT_TOGETHER_KNN = NeighbourTable("bought_together_knn", _neighbours(
    "bought_together_knn", "co-purchase item-kNN blended into EASE", optional=True))
CONTENT_SIMILAR = NeighbourTable("content_similar", _neighbours(
    "content_similar", "content neighbours by TF-IDF cosine (support: shared features)",
    optional=True, job="content"))
NEIGHBOUR_TABLES = (ALSO_VIEWED, BOUGHT_TOGETHER, BOUGHT_TOGETHER_KNN, CONTENT_SIMILAR)

CONTENT_TERMS = ArtifactFile(
    "content/terms.parquet", "content", "content features (name tokens, category prefixes, "
    "brand, price band) and their idf", optional=True, columns=(_s("term"), _f("idf")),
    rows="content_terms")
CONTENT_VECTORS = ArtifactFile(
    "content/vectors.npz", "content", "product x feature TF-IDF CSR, rows L2-normalised",
    optional=True,
    arrays=(Array("indptr", "int64", ("items+1",)), Array("indices", "int32", ("content_nnz",)),
            Array("data", "float32", ("content_nnz",))))
RANKING = ArtifactFile("ranking.json", "models", "the blend weights the API applies, and "
                       "what also_viewed/ counted (also_viewed_counts: sessions or orders)",
                       keys=("cart_knn_weight", "rule_weight", "also_viewed_support_weight",
                             "als_min_history"))
COLD_START = ArtifactFile(
    "cold_start.json", "cold_start", "the cold-start settings the API applies (also viewed of "
    "a product without co-view data: also cold_start_prior_scope, category or shop, where "
    "the version has it) and who chose them: validation (the cold_start job, on held-out "
    "products), config (pinned) or default", optional=True,
    keys=("cold_start_neighbours", "cold_start_prior", "chosen_by"))
SESSION_WEIGHTS = ArtifactFile(
    "session_weights.json", "session_tuning", "the session's weights in bought-together "
    "(session_weight, session_decay) and the cart add-ons (line_decay) and who chose them: "
    "validation (the session_tuning job, on cart sessions the previous version never saw), "
    "previous (kept from it), config or default; data_until: the latest order or event time "
    "this version was trained on", optional=True, keys=("bought_together", "cart", "data_until"))
SESSIONS = ArtifactFile(
    "sessions.npz", "models", "training view sessions x products (CSR, 1 = viewed), "
    "in the order of their last view: the V-SKNN part of session-aware lists", optional=True,
    arrays=(Array("indptr", "int32|int64", ("sessions+1",)),
            Array("indices", "int32|int64", ("session_views",)), Array("shape", "int64", (2,))))
SESSIONS_BY_ITEM = ArtifactFile(
    "sessions_by_item.npz", "models", "sessions.npz transposed: per product, the training "
    "sessions that viewed it, in increasing order (V-SKNN's lookup; older versions lack it "
    "and the server transposes sessions.npz itself)", optional=True,
    arrays=(Array("indptr", "int64", ("items+1",)),
            Array("indices", "int32|int64", ("session_views",))))
ALS = ArtifactFile(
    "als.npz", "models", "ALS factors (when orders name customers)", optional=True,
    arrays=(Array("user_factors", "float32", ("customers", "factors")),
            Array("item_factors", "float32", ("items", "factors")),
            Array("regularization", "float32", ()), Array("alpha", "float32", ())))
CUSTOMERS = ArtifactFile("customers.parquet", "models", "the customer vocabulary of als.npz",
                         optional=True, columns=(_s("id"),), rows="customers")
PURCHASES = ArtifactFile(
    "purchases.npz", "models", "customer x product CSR: last purchase day, orders; durables",
    optional=True,
    arrays=(Array("indptr", "int32|int64", ("customers+1",)),
            Array("indices", "int32|int64", ("purchase_pairs",)),
            Array("last_day", "int64", ("purchase_pairs",)),
            Array("orders", "int32", ("purchase_pairs",)),
            Array("durable", "bool", ("items",)), Array("shape", "int64", (2,))))
REPURCHASE = ArtifactFile(
    "repurchase.parquet", "models", "repurchase cycles of consumables",
    columns=(_s("product_id"), _f("cycle_days"), _i("intervals"), _f("repeat_share")))

VIEWED_BOUGHT = ArtifactFile(
    "viewed_bought.parquet", "models", "sessions that viewed product_a, did not buy it and "
    "bought product_b (upsell evidence; top_k per product_a)", optional=True,
    columns=(_s("product_a"), _s("product_b"), _i("sessions")))
UPSELL_PRIOR = ArtifactFile(
    "upsell_prior.json", "upsell", "the upsell prior's weights, fitted on viewed_bought.parquet "
    "(recsys.models.upsell_prior)", optional=True,
    keys=("weights", "prior_sessions", "band", "features"))

_A = "analytics/"
CLV_CUSTOMERS = ArtifactFile(
    _A + "customers.parquet", "customer_value", "one row per customer: CLV, RFM, churn",
    optional=True, open_columns=True,
    columns=(_s("customer_id"), _i("orders"), Column("first_order", "timestamp"),
             Column("last_order", "timestamp"), _f("revenue"), _f("historical_clv"),
             _f("predicted_clv"), _f("p_alive"), Column("churn_risk", "bool"), _s("segment")))
RFM_SEGMENTS = ArtifactFile(
    _A + "rfm_segments.parquet", "customer_value", "customers and revenue per RFM segment",
    optional=True,
    columns=(_s("segment"), _i("customers"), _f("customer_share"), _f("revenue"),
             _f("revenue_share"), _f("mean_predicted_clv")))
COHORTS = ArtifactFile(
    _A + "cohorts.parquet", "customer_value", "monthly cohort retention, long form",
    optional=True,
    columns=(_s("cohort"), _i("period"), _i("customers"), _i("cohort_size"), _f("retention")))
CUSTOMER_SEGMENTS = ArtifactFile(
    _A + "customer_segments.parquet", "customer_value", "per customer segment (served)",
    optional=True,
    columns=(_s("customer_id"), _s("segment"), Column("churn_risk", "bool"),
             _f("predicted_clv"), _f("p_alive")))
CLV_REPORT = ArtifactFile(_A + "clv_report.json", "customer_value", "the CLV job's figures",
                          optional=True, keys=("customers", "predicted_clv_total"))
LIFECYCLE = ArtifactFile(
    _A + "lifecycle.parquet", "customer_value", "per customer lifecycle stage",
    optional=True, open_columns=True, columns=(_s("customer_id"), _s("stage")))
LIFECYCLE_FLOWS = ArtifactFile(
    _A + "lifecycle_flows.parquet", "customer_value", "customers moved stage to stage since "
    "the previous version", optional=True, open_columns=True,
    columns=(_s("from_stage"), _s("to_stage"), _i("customers")))
CUSTOMER_RECOMMENDATIONS = ArtifactFile(
    _A + "recommendations.parquet", "customer_value", "per customer top products never bought",
    optional=True, open_columns=True, columns=(_s("customer_id"),))
REPLENISHMENT = ArtifactFile(
    _A + "replenishment.parquet", "customer_value", "customer x consumable pairs due soon",
    optional=True, open_columns=True, columns=(_s("customer_id"), _s("product_id")))
WINBACK = ArtifactFile(
    _A + "winback.parquet", "customer_value", "declining and at-risk customers with offers",
    optional=True, open_columns=True, columns=(_s("customer_id"),))
HIGH_VALUE = ArtifactFile(
    _A + "high_value.parquet", "customer_value", "top customers by predicted CLV",
    optional=True, open_columns=True, columns=(_s("customer_id"),))
PRICE_SENSITIVITY = ArtifactFile(
    _A + "price_sensitivity.parquet", "customer_value", "per segment and category: revenue "
    "share bought on discount, price bands bought", optional=True,
    columns=(_s("segment"), _s("category"), _i("lines"), _f("revenue"),
             _f("discount_revenue_share"), _f("median_unit_price"), _f("low_band_share"),
             _f("mid_band_share"), _f("high_band_share")))
DISCOUNT_CUSTOMERS = ArtifactFile(
    _A + "discount_customers.parquet", "customer_value", "per customer: revenue share bought "
    "on discount, discount-only flag (served: upsell)", optional=True,
    columns=(_s("customer_id"), _i("orders"), _f("revenue"), _f("discount_revenue_share"),
             Column("discount_only", "bool")))
ACTION_FILES = (LIFECYCLE, LIFECYCLE_FLOWS, CUSTOMER_RECOMMENDATIONS, REPLENISHMENT, WINBACK,
                HIGH_VALUE)
INGEST_REPORT = ArtifactFile(
    "ingest_report.json", "pipeline", "the ingest report of the run",
    keys=("rows_read", "rows_accepted", "rows_rejected", "rejected_by_reason", "tables"))

FILES: tuple[ArtifactFile, ...] = (
    ITEMS, CATALOG, POPULAR, RULES, ITEMSETS, CATEGORY_RULES, SUBSTITUTES, BUNDLES, RULES_REPORT,
    *ALSO_VIEWED.files, *BOUGHT_TOGETHER.files, *BOUGHT_TOGETHER_KNN.files,
    *CONTENT_SIMILAR.files, CONTENT_TERMS, CONTENT_VECTORS, RANKING, COLD_START, SESSION_WEIGHTS, SESSIONS,
    SESSIONS_BY_ITEM, ALS,
    CUSTOMERS, PURCHASES, REPURCHASE, VIEWED_BOUGHT, UPSELL_PRIOR, CLV_CUSTOMERS, RFM_SEGMENTS, COHORTS,
    CUSTOMER_SEGMENTS, CLV_REPORT, *ACTION_FILES, PRICE_SENSITIVITY, DISCOUNT_CUSTOMERS,
    INGEST_REPORT)
_BY_PATH = {f.path: f for f in FILES}


def by_path(path: str) -> ArtifactFile:
    """The declaration of ``path`` (relative to the version folder); KeyError names it."""
    try:
        return _BY_PATH[path]
    except KeyError:
        raise KeyError(f"{path} is not an artifact file declared in recsys.layout") from None


def _kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_kind(t.value_type)}>"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return {"double": "float64", "float": "float32"}.get(str(t), str(t))


def _bind(dims: dict[str, int], shape: tuple[int | str, ...], actual: tuple[int, ...],
          where: str) -> list[str]:
    if len(shape) != len(actual):
        return [f"{where}: {len(actual)} dimensions, declared {len(shape)}"]
    problems = []
    for want, got in zip(shape, actual, strict=True):
        if isinstance(want, int):
            size = want
        else:
            match = _SIZE.match(want)
            assert match, want
            extra = 1 if match.group(2) else 0
            size = dims.setdefault(match.group(1), got - extra) + extra
        if size != got:
            problems.append(f"{where}: dimension {want!r} is {got}, elsewhere {size}")
    return problems


def _check_array(dtype: np.dtype, shape: tuple[int, ...], spec: Array, dims: dict[str, int],
                 where: str) -> list[str]:
    if str(dtype) not in spec.dtype.split("|"):
        return [f"{where}: dtype {dtype}, declared {spec.dtype}"]
    return _bind(dims, spec.shape, shape, where)


def _npy_header(data: np.lib.npyio.NpzFile, name: str) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and shape of an ``.npz`` member, from its header (the data is not read)."""
    if data.zip is None:
        raise ValueError("the archive is closed")
    with data.zip.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(member)
    return dtype, shape


def check_file(folder: Path | str, entry: ArtifactFile,
               dims: dict[str, int] | None = None) -> list[str]:
    """What in ``entry``'s file under ``folder`` breaks its declaration (empty: nothing).
    ``dims`` carries dimension sizes between the files of one version."""
    dims = {} if dims is None else dims
    path = entry.at(folder)
    if entry.kind == "parquet":
        schema = pq.read_schema(path)
        rows = pq.read_metadata(path).num_rows
        found = {f.name: _kind(f.type) for f in schema}
        # an empty table's column types are whatever its writer guessed: no value to misread
        problems = [f"{entry.path}: column {c.name} is {found[c.name]}, declared {c.kind}"
                    for c in entry.columns
                    if rows and c.name in found and found[c.name] != c.kind]
        problems += [f"{entry.path}: lacks the column {c.name}"
                     for c in entry.columns if c.required and c.name not in found]
        if not entry.open_columns:
            declared = {c.name for c in entry.columns}
            problems += [f"{entry.path}: undeclared column {name}"
                         for name in found if name not in declared]
        if entry.rows:
            problems += _bind(dims, (entry.rows,), (rows,), entry.path)
        return problems
    if entry.kind == "npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return _check_array(arr.dtype, arr.shape, entry.arrays[0], dims, entry.path)
    if entry.kind == "npz":
        with np.load(path, allow_pickle=False) as data:
            problems = [f"{entry.path}: lacks the array {a.name}"
                        for a in entry.arrays if a.name not in data.files]
            for a in entry.arrays:
                if a.name in data.files:
                    dtype, shape = _npy_header(data, a.name)
                    problems += _check_array(dtype, shape, a, dims, f"{entry.path}:{a.name}")
            return problems
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return [f"{entry.path}: not a JSON object"]
    return [f"{entry.path}: lacks the key {k}" for k in entry.keys if k not in data]


def check_version(folder: Path | str, files: list[str]) -> list[str]:
    """Compare the files of a version (``files``: paths relative to ``folder``, e.g. a
    manifest's) with the layout: undeclared files, missing required ones, unreadable files,
    broken declarations."""
    present = set(files)
    problems = [f"{rel}: not declared in recsys.layout" for rel in sorted(present - set(_BY_PATH))]
    problems += [f"{f.path}: missing (required)" for f in FILES
                 if not f.optional and f.path not in present]
    dims: dict[str, int] = {}
    for entry in FILES:
        if entry.path in present:
            try:
                problems += check_file(folder, entry, dims)
            except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException) as exc:
                what = {"parquet": "readable Parquet", "json": "valid JSON"}.get(
                    entry.kind, f"a readable .{entry.kind} file")
                problems.append(f"{entry.path}: not {what} ({exc})")
    return problems
