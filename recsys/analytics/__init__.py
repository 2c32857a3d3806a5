"""Customer-value analytics: historical and predicted CLV (``clv``, ``btyd``), RFM segments
(``rfm``), cohort retention (``retention``), lifecycle stages (``lifecycle``), action lists
(``actions``), campaign exports (``export``), A/B assignment and bootstrap (``experiments``),
measured recommendation outcomes (``outcomes``), the CLV job (``job``) and the HTML report
(``report``). Names are imported on first use, so importing the package is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "AnalyticsConfig", "ExperimentConfig", "RfmConfig",
    "run_clv_job", "compute_clv", "clv_inputs_missing", "ClvResult", "build_report",
    "assign_arm", "assign_arms", "bootstrap_ratio",
    "measure_outcomes", "load_events", "Outcomes",
    "fit_bgnbd", "fit_gamma_gamma", "historical_clv",
    "LifecycleConfig", "ActionsConfig", "lifecycle_stages", "stage_flows", "STAGES",
    "replenishment_list", "winback_list", "high_value_list", "export_customers", "ExportRequest",
]

_WHERE = {
    "AnalyticsConfig": "settings", "ExperimentConfig": "settings", "RfmConfig": "settings",
    "run_clv_job": "job", "compute_clv": "job", "clv_inputs_missing": "job", "ClvResult": "job",
    "build_report": "report",
    "assign_arm": "experiments", "assign_arms": "experiments", "bootstrap_ratio": "experiments",
    "measure_outcomes": "outcomes", "load_events": "outcomes", "Outcomes": "outcomes",
    "fit_bgnbd": "btyd", "fit_gamma_gamma": "btyd", "historical_clv": "clv",
    "LifecycleConfig": "settings", "ActionsConfig": "settings",
    "lifecycle_stages": "lifecycle", "stage_flows": "lifecycle", "STAGES": "lifecycle",
    "replenishment_list": "actions", "winback_list": "actions", "high_value_list": "actions",
    "export_customers": "export", "ExportRequest": "export",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"recsys.analytics.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'recsys.analytics' has no attribute {name!r}")
