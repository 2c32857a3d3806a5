"""Offline evaluation (`recsys evaluate --data DATA_DIR --out DIR`): one global time split,
hyperparameters chosen on a validation window before the test window, three tasks (basket
completion, also viewed, next basket); every model under the ranker contract, the baselines
and the engine's served lists (``engine``) alike.
"""

from recsys.evaluation.baselines import (
    ALSRanker,
    Cooccurrence,
    CosineItemKNN,
    ItemKNNRanker,
    OwnMostBought,
    Popularity,
)
from recsys.evaluation.candidate import CartCandidate, HistoryCandidate, ViewCandidate
from recsys.evaluation.engine import (
    EngineAlsoViewed,
    EngineBuilder,
    EngineCarts,
    EngineForCustomers,
    EngineRanker,
)
from recsys.evaluation.report import EvaluationResult, write_outputs
from recsys.evaluation.run import TASKS, run_evaluation
from recsys.evaluation.split import Windows, time_windows
from recsys.evaluation.tasks import (
    TaskResult,
    evaluate_also_viewed,
    evaluate_basket_completion,
    evaluate_next_basket,
)
from recsys.models.ranker import Ranker, load_ranker

__all__ = [
    "run_evaluation",
    "TASKS",
    "EvaluationResult",
    "TaskResult",
    "write_outputs",
    "Windows",
    "time_windows",
    "EngineBuilder",
    "EngineRanker",
    "EngineCarts",
    "EngineAlsoViewed",
    "EngineForCustomers",
    "evaluate_basket_completion",
    "evaluate_also_viewed",
    "evaluate_next_basket",
    "Ranker",
    "Popularity",
    "Cooccurrence",
    "ItemKNNRanker",
    "CosineItemKNN",
    "ALSRanker",
    "OwnMostBought",
    "CartCandidate",
    "ViewCandidate",
    "HistoryCandidate",
    "load_ranker",
]
