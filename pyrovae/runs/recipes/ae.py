"""``pyrovae train ae``: the deterministic autoencoder baseline (the VAE's decoder, a
point-mass guide), whose 'ELBO' is log p(x, z = f(x)), not a bound.

Its evaluation says so: importance sampling from a point mass estimates no log p(x)
(:func:`pyrovae.log_marginal` refuses it), so ``eval.json`` holds the joint density at the
encoder's code, log p(x, z = f(x)) = log p(x | z = f(x)) + log p(z = f(x)), and its two
terms, with ``test_log_likelihood`` and ``test_elbo`` null and ``estimand`` naming what was
computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...guides import DeltaEncoder
from ...infer.terms import elbo_terms
from ...models import VAE
from ..config import TrainConfig
from ..inputs import Inputs, num_examples
from ..recipe import Evaluation
from ..record import Run
from .observed import ARCHITECTURE, ObservedOptions, ObservedRecipe
from .vae import network_kwargs

#: What an autoencoder's evaluation reports in place of log p(x).
ESTIMAND = "log p(x, z = f(x)): the joint at the encoder's code (a point-mass guide: no log p(x))"


@dataclass(frozen=True)
class AutoencoderOptions(ObservedOptions):
    architecture: str = ARCHITECTURE


class AutoencoderRecipe(ObservedRecipe):
    name = "ae"
    summary = "deterministic autoencoder baseline: the VAE's decoder, a point-mass guide"
    options = AutoencoderOptions

    def pair(self, config: TrainConfig) -> tuple[VAE, DeltaEncoder]:
        kwargs = network_kwargs(config)
        return VAE(likelihood=config.likelihood, **kwargs), DeltaEncoder(**kwargs)

    def units(self, config: TrainConfig) -> str:
        return "with a point-mass guide the 'ELBO' is log p(x, z = f(x)), not a bound"

    def evaluate(
        self, run: Run, x: Inputs, *, num_samples: int, batch_size: int | None, progress: bool
    ) -> Evaluation:
        """log p(x, z = f(x)) and its terms per test example (exact: nothing is sampled);
        ``num_samples`` is not used, since a point mass has one draw."""
        terms = elbo_terms(
            run.model, run.guide, x, batch_size=batch_size or 1000, device=run.config.device
        )
        report = {
            "units": "nats per example, higher is better",
            "num_examples": num_examples(x),
            "estimand": ESTIMAND,
            "test_log_joint": float(terms.elbo.mean()),
            "test_reconstruction": float(terms.reconstruction.mean()),
            "test_log_prior_at_code": float(-terms.kl.mean()),
            "test_elbo": None,
            "test_log_likelihood": None,
        }
        return Evaluation(report)

    def table(self, report: dict) -> list[tuple[str, str]]:
        return [
            ("test log p(x, z = f(x))", f"{report['test_log_joint']:.2f}"),
            ("  log p(x | z = f(x))", f"{report['test_reconstruction']:.2f}"),
            ("  log p(z = f(x))", f"{report['test_log_prior_at_code']:.2f}"),
            ("test log p(x)", "not estimated: a point-mass guide gives no proposal density"),
        ]
