"""Diagnostics: what a fitted model learned, as figures computed from traces."""

from ..infer.psis import pareto_khat
from .arviz import compare_log_likelihoods, to_inference_data
from .report import write_figures
from .views import Sites, find_sites

__all__ = [
    "Sites",
    "compare_log_likelihoods",
    "find_sites",
    "pareto_khat",
    "to_inference_data",
    "write_figures",
]
