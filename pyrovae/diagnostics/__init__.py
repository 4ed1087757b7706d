"""Diagnostics: what a fitted model learned, as figures computed from traces."""

from .report import write_figures
from .views import Sites, find_sites

__all__ = ["Sites", "find_sites", "write_figures"]
