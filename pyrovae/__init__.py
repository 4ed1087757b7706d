"""pyrovae: latent-variable models as Pyro programs, fit by SVI, inspected with figures."""

from . import guides, models
from .infer import fit, log_marginal

__version__ = "0.1.0"

__all__ = ["fit", "guides", "log_marginal", "models"]
