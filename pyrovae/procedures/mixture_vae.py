"""The mixture-prior VAE's procedure (VaDE, Jiang et al. 2017), as ``pyrovae train
mixture-vae`` runs it before and during SVI:

1. :func:`pretrain`: the model's decoder and the guide's encoder trained as an autoencoder
   under a N(0, I) prior on z (the mixture is not used yet): ``"ae"``, the code is the
   encoder's mean (:class:`MeanCodeGuide`), objective log p(x | f(x)) + log N(f(x); 0, I);
   ``"dae"``, the same with a share ``noise`` of the encoder's input values set to 0 (the
   denoising autoencoder DEC and VaDE pretrain); ``"vae"``, the Gaussian guide itself;
2. :func:`initialize_prior`: the mixture over z set from the pretrained codes:
   ``"data-kmeans"`` (k-means on the rows x, component k the Gaussian of the mean codes of
   k-means cluster k), ``"code-kmeans"`` (DEC's start: k-means on the mean codes themselves,
   component k the Gaussian of cluster k's codes), ``"em"`` (VaDE's: EM on the mean codes,
   :func:`~pyrovae.models.fit_mixture`) or ``"random"`` (left as constructed);
3. SVI on the whole model (:func:`pyrovae.fit`, c summed by TraceEnum_ELBO) with
   :func:`clustering_metric` recording, each epoch, the clustering of held-out rows and the
   state of the latent space.

Example:
    >>> import pyrovae, torch
    >>> from pyrovae.guides import GaussianEncoder
    >>> from pyrovae.models import MixturePriorVAE
    >>> from pyrovae.procedures.mixture_vae import initialize_prior, pretrain
    >>> x = (torch.rand(64, 12) > 0.5).float()
    >>> model = MixturePriorVAE(12, num_components=3, latent_dim=2, hidden_dims=(8,))
    >>> guide = GaussianEncoder(12, 2, (8,))
    >>> history = pretrain(model, guide, x, epochs=2, batch_size=32, seed=0)
    >>> initialize_prior(model, guide, x, init="data-kmeans", restarts=2, seed=0)["init"]
    'data-kmeans'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from ..diagnostics.clustering import clustering_scores
from ..diagnostics.mixture_vae_figures import mean_codes, predict_clusters
from ..guides import GaussianEncoder
from ..infer import Trainer
from ..infer.modes import program_mode
from ..kmeans import kmeans
from ..models import VAE, MixturePriorVAE
from ..module import LocalPyroModule

#: How the encoder and decoder are pretrained (see the module docstring).
PRETRAINING = ("dae", "ae", "vae")
#: How the mixture over z is initialised from the pretrained codes.
INITIALISATIONS = ("em", "data-kmeans", "code-kmeans", "random")
#: At most this many training rows are encoded for each epoch's code statistics.
CODE_ROWS = 10_000


class MeanCodeGuide(LocalPyroModule):
    """q(z | x) = delta(z - mu(x)) with mu the mean of a Gaussian encoder: the encoder
    pretrained as an autoencoder, its own parameters (the scale head receives no gradient).

    With ``noise`` = r > 0, while training, each value of x (N, D) is set to 0 with
    probability r before it is encoded (masking noise: the denoising autoencoder of Vincent
    et al., JMLR 2010, which DEC and VaDE pretrain); the decoder still scores the clean x."""

    def __init__(self, encoder: GaussianEncoder, noise: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.noise = noise

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.noise > 0:
            x = x * (torch.rand_like(x) >= self.noise)
        loc, _ = self.encoder.encode(x)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample(self.encoder.site, dist.Delta(loc).to_event(1))


class _StandardPriorVAE(VAE):
    """The VAE p(z) = N(0, I), x ~ p(x | decoder(z)) whose decoder and likelihood are a
    mixture-prior VAE's own (shared, not copied): what :func:`pretrain` trains."""

    def __init__(self, model: MixturePriorVAE) -> None:
        LocalPyroModule.__init__(self)  # VAE's own networks are the model's
        self.input_dim, self.latent_dim = model.input_dim, model.latent_dim
        self.image_shape, self.beta = model.image_shape, 1.0
        self.decoder, self.likelihood = model.decoder, model.likelihood


def pretrain(
    model: MixturePriorVAE,
    guide: GaussianEncoder,
    x: torch.Tensor,
    *,
    kind: str = "dae",
    noise: float = 0.2,
    epochs: int = 200,
    batch_size: int = 128,
    lr: float = 2e-3,
    transform: Callable | None = None,
    seed: int | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
    capture: bool = True,
    callbacks: Sequence[Callable[[Trainer], None]] = (),
    state: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train the model's decoder and the guide's encoder for ``epochs`` epochs on rows
    x (N, D) under a N(0, I) prior on z (a VAE sharing the model's decoder and likelihood):
    as an autoencoder of kind ``"ae"``, ``"dae"`` (masking noise ``noise``) or ``"vae"``.
    Returns the Trainer's history (one record per epoch, those of ``state`` included;
    ``train_elbo`` is the pretraining objective per example).

    ``callbacks`` are called with the pretraining :class:`~pyrovae.infer.Trainer` after every
    epoch; ``state``, a ``trainer.state_dict()`` one of them kept, continues that pretraining
    (parameters, optimizer, epoch and random streams) to the same end as an uninterrupted
    one (on CPU).

    Raises:
        ValueError: an unknown kind, or noise outside [0, 1).
    """
    if kind not in PRETRAINING:
        raise ValueError(f"kind must be one of {PRETRAINING}, got {kind!r}")
    if not 0 <= noise < 1:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    vae = _StandardPriorVAE(model)
    program = guide if kind == "vae" else MeanCodeGuide(guide, noise if kind == "dae" else 0)
    trainer = Trainer(
        vae,
        program,
        (x,),
        batch_size=batch_size,
        lr=lr,
        transform=transform,
        seed=seed,
        progress=progress,
        device=device,
        capture=capture,
        callbacks=callbacks,
    )
    if state is not None:
        trainer.load_state_dict(state)
    return list(trainer.run(epochs))


@torch.no_grad()
def initialize_prior(
    model: MixturePriorVAE,
    guide: GaussianEncoder,
    x: torch.Tensor,
    *,
    init: str = "data-kmeans",
    restarts: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Set the mixture over z from the (pretrained) encoder's mean codes of rows x (N, D):
    ``"data-kmeans"`` (k-means on x, ``restarts`` k-means++ starts, component k the Gaussian
    of the codes of cluster k), ``"code-kmeans"`` (k-means on the codes, as DEC starts,
    component k the Gaussian of the codes of cluster k), ``"em"`` (EM on the codes,
    ``restarts`` starts) or ``"random"`` (unchanged). Returns what was done: ``init``,
    ``codes`` (N), and but for ``"random"`` the mean ``code_log_likelihood`` log p(z) of the
    codes under the new mixture (``"em"``: under the fitted mixture, in float64) and the
    ``weights`` pi_k.

    On MNIST's pretrained codes (``benchmarks/mixture_vae_pretraining_codes.py``) k-means on
    the codes starts at 67-74% accuracy where diagonal EM, the likeliest diagonal partition,
    starts at 53-59% (docs/benchmarks/models.md).

    Raises:
        ValueError: an unknown ``init``.
    """
    if init not in INITIALISATIONS:
        raise ValueError(f"init must be one of {INITIALISATIONS}, got {init!r}")
    report: dict[str, Any] = {"init": init, "codes": len(x)}
    if init == "random":
        return report
    device = model.mixture.loc.device
    codes = mean_codes(guide, x.to(device)).cpu()
    if init in ("data-kmeans", "code-kmeans"):
        generator = torch.Generator().manual_seed(seed)
        rows = x.cpu() if init == "data-kmeans" else codes
        result = kmeans(
            rows, model.num_components, n_init=restarts, generator=generator, dtype=torch.float64
        )
        model.initialize_prior_from_clusters(codes, result.labels)
        score = float(model.prior_log_prob(codes.to(device)).mean())
    else:
        fitted = model.initialize_prior(codes, n_init=restarts, seed=seed, progress=False)
        score = fitted.score(codes.double())
    report.update(code_log_likelihood=score, weights=model.weights.tolist())
    return report


def clustering_metric(
    train_x: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor | None
) -> Callable[[Trainer], dict[str, float]]:
    """A Trainer metric: how the clustering and the latent space stand after an epoch.

    - ``test_accuracy``, ``test_adjusted_rand_index``, ``test_normalized_mutual_info``: the
      clusters argmax_c p(c | E_q[z | x]) of the test rows (N_test, D) against their labels
      (with labels only);
    - ``code_log_likelihood``: the mixture's mean log p(z) at the mean codes of the first
      :data:`CODE_ROWS` training rows (N, D), nats per code;
    - ``posterior_scale``: the geometric mean of q(z | x)'s standard deviations over those rows
      and the L dimensions; ``component_scale``: that of the components' standard deviations
      (the square roots of the diagonals of Sigma_k); ``code_scale``: the root mean variance
      of the mean codes across rows, per dimension (the size of the latent space they share);
    - ``weight_min``, ``weight_max``: the smallest and largest pi_k.

    It draws nothing, so a run's random streams are those of a run without it.
    """
    rows = train_x[:CODE_ROWS]

    @torch.no_grad()
    def metric(trainer: Trainer) -> dict[str, float]:
        model, guide = trainer.model, trainer.guide
        device = model.mixture.loc.device
        with program_mode(guide, training=False):
            loc, scale = guide.encode(rows.to(device))
        record: dict[str, float] = {}
        if test_y is not None:
            clusters = predict_clusters(model, guide, test_x.to(device))
            scores = clustering_scores(clusters, test_y[: len(test_x)])
            record.update({f"test_{key}": value for key, value in scores.items()})
        component = model.mixture.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
        record.update(
            code_log_likelihood=float(model.prior_log_prob(loc).mean()),
            posterior_scale=float(scale.log().mean().exp()),
            component_scale=float(component.log().mean().exp()),
            code_scale=float(loc.var(0).mean().sqrt()),
            weight_min=float(model.weights.min()),
            weight_max=float(model.weights.max()),
        )
        return record

    return metric
