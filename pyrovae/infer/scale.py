"""Per-site weights on latent sites, applied with Pyro's scale mechanism in model and guide.

Scaling a latent site z by beta in *both* programs multiplies its term
E_q[log p(z) - log q(z | x)] = -KL(q || p) in the ELBO by beta: the beta-VAE
objective E_q[log p(x | z)] - beta KL(q(z | x) || p(z)). Scaling only the model's
site would weight log p(z) alone and leave the entropy of q unweighted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pyro.poutine.messenger import Messenger


class SiteScaleMessenger(Messenger):
    """Multiply ``msg["scale"]`` of the named, unobserved sample sites by fixed weights."""

    def __init__(self, scales: Mapping[str, float]) -> None:
        super().__init__()
        self.scales = dict(scales)

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and msg["name"] in self.scales:
            msg["scale"] = msg["scale"] * self.scales[msg["name"]]


def scale_latents(
    model: Callable, guide: Callable, scales: Mapping[str, float]
) -> tuple[Callable, Callable]:
    """Return (model, guide) with the named latent sites weighted by ``scales`` in both."""
    if not scales:
        return model, guide
    return _wrap(model, scales), _wrap(guide, scales)


def _wrap(fn: Callable, scales: Mapping[str, float]) -> Callable:
    def scaled(*args, **kwargs):
        with SiteScaleMessenger(scales):
            return fn(*args, **kwargs)

    scaled.__wrapped__ = fn  # type: ignore[attr-defined]
    return scaled
