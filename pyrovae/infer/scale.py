"""Per-site weights on latent sites, applied with Pyro's scale mechanism in model and guide.

Scaling a latent site z by beta in *both* programs multiplies its term
E_q[log p(z) - log q(z | x)] = -KL(q || p) in the ELBO by beta: the beta-VAE
objective E_q[log p(x | z)] - beta KL(q(z | x) || p(z)). Scaling only the model's
site would weight log p(z) alone and leave the entropy of q unweighted.

A model asks for such weights through the pair contract's one optional attribute,
:data:`LATENT_SCALES`: :class:`~pyrovae.infer.Trainer` reads ``model.latent_scales`` and
trains on :func:`scale_latents` of the pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pyro.poutine.messenger import Messenger

#: The name of the optional model attribute of the (model, guide) contract that
#: :class:`~pyrovae.infer.Trainer` reads: ``model.latent_scales``, a mapping
#: {latent site name: scale > 0}, or absent / empty for none. Each named latent site is scaled
#: by its value in both model and guide while training, so the ELBO's KL term of that site,
#: E_q[log p(z) - log q(z | x)], is multiplied by the scale (the beta-VAE's beta; see
#: :attr:`pyrovae.models.VAE.latent_scales`). The test ELBO, ``log_marginal`` and ``evaluate``
#: stay unweighted.
LATENT_SCALES = "latent_scales"


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
