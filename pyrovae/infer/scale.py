"""Per-site weights on latent sites, applied with Pyro's scale mechanism in model and guide.

Scaling a latent site z by beta in *both* programs multiplies its term
E_q[log p(z) - log q(z | x)] = -KL(q || p) in the ELBO by beta: the beta-VAE
objective E_q[log p(x | z)] - beta KL(q(z | x) || p(z)). Scaling only the model's
site would weight log p(z) alone and leave the entropy of q unweighted.

A model asks for such weights through the pair contract's one optional attribute,
:data:`LATENT_SCALES`: :class:`~pyrovae.infer.Trainer` reads ``model.latent_scales`` and
trains on the pair scaled by :class:`LatentScaling` (:func:`scale_latents`).

KL warm-up (Bowman et al., "Generating Sentences from a Continuous Space", CoNLL 2016;
Sønderby et al., "Ladder Variational Autoencoders", NeurIPS 2016) is the same mechanism with
one weight w_e for every latent site, rising over the first epochs: the objective of epoch e
is E_q[log p(x | z)] + w_e E_q[log p(z) - log q(z | x)] for all latents z together
(:func:`warmup_weight`; :class:`LatentScaling` holds the weight the Trainer sets). A site the
model enumerates is scaled with the others, so Pyro's TraceEnum_ELBO, which needs one scale
for the sites it sums over together, weights log sum_c p(c) p(z | c) by w_e as a whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
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
    """Multiply ``msg["scale"]`` of every unobserved sample site by ``factor`` and, for the
    named sites, by their weight in ``scales``. A tensor ``factor`` (0-dimensional) is
    always multiplied in, whatever its value, so that a graph captured from the programs
    reads its current value."""

    def __init__(self, scales: Mapping[str, float], factor: float | torch.Tensor = 1.0) -> None:
        super().__init__()
        self.scales = dict(scales)
        self.factor = factor if isinstance(factor, torch.Tensor) else float(factor)

    def _process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        scale = self.scales.get(msg["name"], 1.0) * self.factor
        if isinstance(scale, torch.Tensor) or scale != 1.0:
            msg["scale"] = msg["scale"] * scale


def warmup_weight(epoch: int, epochs: int) -> float:
    """The KL weight of epoch ``epoch`` (0-based) in a linear warm-up over ``epochs`` epochs:
    (epoch + 1) / (epochs + 1) while epoch < epochs, then 1 (never 0, so no site's scale
    vanishes); ``epochs`` 0 is no warm-up."""
    if epochs < 0 or epoch < 0:
        raise ValueError(f"epochs must be >= 0, got epoch {epoch} of a {epochs}-epoch warm-up")
    return 1.0 if epoch >= epochs else (epoch + 1) / (epochs + 1)


class LatentScaling:
    """Per-site weights and one common factor (the KL warm-up's w_e) on the latent sites of a
    (model, guide) pair; :meth:`~pyrovae.infer.scale.LatentScaling.wrap` gives programs that read
    both at every call, so the factor may change between steps.

    With ``varying``, the factor is held in a 0-dimensional tensor that :attr:`factor`
    changes in place: a loss graph captured from the wrapped programs
    (:class:`~pyrovae.infer.captured.CapturedLoss`) reads its current value at every replay,
    so a warm-up schedule needs no new capture when the weight moves. Without it the factor
    is a float (no tensor enters programs whose weights never change)."""

    def __init__(self, scales: Mapping[str, float] | None = None, varying: bool = False) -> None:
        self.scales = dict(scales or {})
        self._weight: float | torch.Tensor = torch.ones(()) if varying else 1.0

    @property
    def factor(self) -> float:
        """The common weight of every latent site (1: none)."""
        return float(self._weight)

    @factor.setter
    def factor(self, value: float) -> None:
        if isinstance(self._weight, torch.Tensor):
            self._weight.fill_(float(value))
        else:
            self._weight = float(value)

    def wrap(self, fn: Callable) -> Callable:
        """``fn`` run with its latent sites' log-densities scaled by their weights (read
        at each call, so a changed weight applies at once)."""

        def scaled(*args, **kwargs):
            with SiteScaleMessenger(self.scales, self._weight):
                return fn(*args, **kwargs)

        scaled.__wrapped__ = fn  # type: ignore[attr-defined]
        return scaled


def scale_latents(
    model: Callable, guide: Callable, scales: Mapping[str, float]
) -> tuple[Callable, Callable]:
    """Return (model, guide) with the named latent sites weighted by ``scales`` in both."""
    if not scales:
        return model, guide
    scaling = LatentScaling(scales)
    return scaling.wrap(model), scaling.wrap(guide)
