"""pyrovae: latent-variable models as Pyro programs, fit by SVI, inspected with figures."""

import warnings

from ._launch import guard

guard()  # before anything else is imported: see pyrovae._launch

with warnings.catch_warnings():
    # Pyro imports tqdm.auto, which in a Jupyter kernel without ipywidgets warns "IProgress
    # not found", naming a local path; its bars are plain text there, as ours are
    # (pyrovae.infer.progress).
    warnings.filterwarnings("ignore", message="IProgress not found")
    from . import guides, models
    from .infer import fit, log_marginal

__version__ = "0.1.0"

__all__ = ["fit", "guides", "log_marginal", "models"]
