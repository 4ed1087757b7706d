"""pyrovae: latent-variable models as Pyro programs, fit by SVI, inspected with figures."""

from . import guides, models
from .infer import fit

__version__ = "0.1.0"

__all__ = ["fit", "guides", "models"]
