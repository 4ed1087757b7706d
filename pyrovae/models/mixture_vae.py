"""The mixture-prior VAE: a Gaussian mixture over a VAE's latent space, c summed exactly.

Generative process, for each row n of the data plate::

    c_n ~ Categorical(pi)                 the cluster (site "c"), enumerated in parallel
    z_n ~ N(mu_{c_n}, Sigma_{c_n})        the code (site "z"), drawn by the guide q(z | x)
    x_n ~ p(x | f_theta(z_n))             decoder network and likelihood (site "x")

so the prior over codes is p(z) = sum_k pi_k N(z; mu_k, Sigma_k) and the ELBO, with c
summed by :class:`~pyro.infer.TraceEnum_ELBO` (never sampled), is

    E_q(z|x)[log p(x | z) + log sum_k pi_k N(z; mu_k, Sigma_k) - log q(z | x)].

This is VaDE's generative model (Jiang et al., "Variational Deep Embedding", IJCAI 2017)
and, with fixed uniform weights, that of Dilokthanakul et al.'s GMVAE (2016) with one
Gaussian per cluster; here c is summed out of the model exactly instead of given a guide
q(c | x). The cluster posterior is p(c | z) = pi_c N(z; mu_c, Sigma_c) / p(z)
(:meth:`~pyrovae.models.MixturePriorVAE.cluster_posterior`), and p(c | x) is its expectation under
the posterior of z (:func:`pyrovae.infer.assign` draws z from the guide; VaDE's rule, argmax
p(c | E_q[z]), is :meth:`~pyrovae.models.MixturePriorVAE.cluster`).

Against the collapse of the mixture onto a few components, each optional:

- ``weights="fixed"``: pi = 1/K, not learned (GMVAE);
- ``min_weight`` = m: pi_k = m + (1 - K m) softmax(logits)_k >= m, a floor that keeps every
  component in the model (m = 0: plain softmax);
- :meth:`MixturePriorVAE.initialize_prior`: the mixture set by EM on latent codes
  (:func:`pyrovae.models.fit_mixture`), VaDE's initialisation after pretraining;
- KL warm-up, :class:`pyrovae.infer.Trainer`'s ``kl_warmup``: both latent sites scaled by
  w_e < 1 in model and guide for the first epochs, E_q[log p(x | z)] + w_e E_q[log p(z) -
  log q(z | x)] (Bowman et al. 2016; Sønderby et al. 2016).

Shapes: x (N, D); z (N, L); under enumeration c arrives as (K, 1) and z's log-density as
(K, N). The mixture's parameters are those of a :class:`~pyrovae.models.GaussianMixture`
over codes (the submodule ``mixture``: ``logits`` (K,), ``loc`` (K, L), covariance
parameters by type).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ..likelihoods import Likelihood
from ..module import LocalPyroModule
from ..nn import make_decoder
from .mixture import COVARIANCE_TYPES, GaussianMixture
from .mixture_em import fit_mixture

#: How the mixture weights pi are treated: learned by SVI, or fixed at 1/K.
WEIGHTS = ("learned", "fixed")


class MixturePriorVAE(LocalPyroModule):
    """p(x, z, c) = pi_c N(z; mu_c, Sigma_c) p(x | decoder(z)) over rows x (N, D).

    Args:
        input_dim: D, the length of a flattened example.
        num_components: K, the number of clusters.
        latent_dim: L, the dimension of z.
        hidden_dims: widths of the decoder's hidden layers.
        likelihood: ``"bernoulli"``, ``"continuous-bernoulli"`` or ``"gaussian"``.
        architecture: ``"mlp"`` or ``"conv"`` (needs ``image_shape``).
        image_shape: (C, H, W) with C*H*W == D, for convolutional decoders and figures.
        covariance: each component's covariance over z: ``"diag"`` (VaDE), ``"spherical"``,
            ``"full"`` or ``"tied"``.
        weights: ``"learned"`` (pi by SVI) or ``"fixed"`` (pi = 1/K).
        min_weight: m in [0, 1/K): every pi_k >= m; learned weights only.
    """

    def __init__(
        self,
        input_dim: int,
        num_components: int = 10,
        latent_dim: int = 10,
        hidden_dims: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
        architecture: str = "mlp",
        image_shape: tuple[int, int, int] | None = None,
        covariance: str = "diag",
        weights: str = "learned",
        min_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if num_components < 1:
            raise ValueError(f"num_components must be at least 1, got {num_components}")
        if covariance not in COVARIANCE_TYPES:
            raise ValueError(f"covariance must be one of {COVARIANCE_TYPES}, got {covariance!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be 'learned' or 'fixed', got {weights!r}")
        if not 0 <= min_weight < 1 / num_components:
            raise ValueError(
                f"min_weight must be in [0, 1/K) = [0, {1 / num_components:.4g}) so that the "
                f"weights can still be learned, got {min_weight}"
            )
        if min_weight > 0 and weights == "fixed":
            raise ValueError("min_weight applies to learned weights; fixed weights are all 1/K")
        self.input_dim = input_dim
        self.num_components = num_components
        self.latent_dim = latent_dim
        self.image_shape = image_shape
        self.covariance = covariance
        self.weights_kind = weights
        self.min_weight = float(min_weight)
        self.decoder = make_decoder(latent_dim, input_dim, hidden_dims, architecture, image_shape)
        self.likelihood = Likelihood(likelihood, input_dim)
        mixture = GaussianMixture(num_components, latent_dim, covariance)
        if weights == "fixed":  # a buffer: saved with the model, never trained
            del mixture.logits
            mixture.register_buffer("logits", torch.zeros(num_components))
        self.mixture = mixture

    # ---- the prior over codes --------------------------------------------------------------

    @property
    def weights(self) -> torch.Tensor:
        """pi (K,): m + (1 - K m) softmax(logits) (exactly 1/K for fixed weights)."""
        k, m = self.num_components, self.min_weight
        probs = self.mixture.logits.softmax(-1)
        return probs if m == 0 else m + (1 - k * m) * probs

    def component(self, c: torch.Tensor | None = None) -> dist.TorchDistribution:
        """p(z | c) for cluster indices c (any shape; None: all K, batch shape (K,))."""
        return self.mixture.component(c)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = logsumexp_k [log pi_k + log N(z; mu_k, Sigma_k)] for codes z (N, L): (N,)."""
        return self.log_joint_codes(z).logsumexp(0)

    def log_joint_codes(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(z_n; mu_k, Sigma_k) (K, N) for codes z (N, L)."""
        c = torch.arange(self.num_components, device=z.device).unsqueeze(-1)  # (K, 1)
        return self.weights.log().unsqueeze(-1) + self.component(c).log_prob(z)

    def cluster_posterior(self, z: torch.Tensor) -> torch.Tensor:
        """p(c | z) (N, K) for codes z (N, L); rows sum to 1."""
        return self.log_joint_codes(z).softmax(0).T

    def cluster(self, z: torch.Tensor) -> torch.Tensor:
        """argmax_c p(c | z) (N,) for codes z (N, L), e.g. the guide's means (VaDE's rule)."""
        return self.log_joint_codes(z).argmax(0)

    @torch.no_grad()
    def initialize_prior(
        self,
        codes: torch.Tensor,
        *,
        n_init: int = 1,
        seed: int | None = 0,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        progress: bool = False,
    ) -> GaussianMixture:
        """Set the mixture over z by EM on latent codes (N, L), e.g. the guide's means after
        pretraining (VaDE's initialisation): :func:`~pyrovae.models.fit_mixture` with this
        model's K and covariance, in float64. Fixed weights stay 1/K; learned weights are
        raised to ``min_weight`` where EM left them below it. Returns the fitted mixture."""
        fitted, _ = fit_mixture(
            codes.detach().to("cpu", torch.float64),
            self.num_components,
            covariance=self.covariance,
            n_init=n_init,
            seed=seed,
            reg_covar=reg_covar,
            max_iter=max_iter,
            progress=progress,
        )
        self._set_prior(fitted.weights, fitted.loc, fitted.covariances)
        return fitted

    @torch.no_grad()
    def initialize_prior_from_clusters(
        self, codes: torch.Tensor, clusters: torch.Tensor, *, reg_covar: float = 1e-6
    ) -> None:
        """Set the mixture over z from a hard partition of the codes (N, L): component k is
        the maximum-likelihood Gaussian of the codes with ``clusters`` (N,) = k (weight: their
        share; covariance in this model's type, plus ``reg_covar`` on the diagonal), in
        float64: one M-step on hard responsibilities. E.g. the clusters of k-means on the
        data rows themselves. Every cluster in 0..K-1 needs a row."""
        k = self.num_components
        z = codes.detach().to("cpu", torch.float64)
        labels = clusters.detach().to("cpu", torch.long)
        counts = torch.bincount(labels, minlength=k).double()
        if len(counts) != k or bool((counts == 0).any()):
            raise ValueError(f"every one of the K = {k} clusters needs at least one code")
        r = torch.nn.functional.one_hot(labels, k).double()  # (N, K)
        loc = (r.T @ z) / counts.unsqueeze(-1)  # (K, L)
        centred = z.unsqueeze(0) - loc.unsqueeze(1)  # (K, N, L)
        scatter = torch.einsum("kn,kni,knj->kij", r.T, centred, centred)
        full = scatter / counts[:, None, None]  # (K, L, L)
        eye = torch.eye(z.shape[1], dtype=z.dtype)
        covariances = {
            "full": full + reg_covar * eye,
            "tied": scatter.sum(0) / counts.sum() + reg_covar * eye,
            "diag": full.diagonal(dim1=-2, dim2=-1) + reg_covar,
            "spherical": full.diagonal(dim1=-2, dim2=-1).mean(-1) + reg_covar,
        }[self.covariance]
        self._set_prior(counts / counts.sum(), loc, covariances)

    def _set_prior(
        self, weights: torch.Tensor, loc: torch.Tensor, covariances: torch.Tensor
    ) -> None:
        """The mixture's parameters from float64 values, with this model's weight options."""
        like = self.mixture.loc
        if self.weights_kind == "fixed":
            weights = torch.full_like(weights, 1 / self.num_components)
        elif self.min_weight > 0:  # invert the floor: softmax(logits) = (pi - m) / (1 - K m)
            k, m = self.num_components, self.min_weight
            weights = (weights.clamp_min(m * (1 + 1e-6)) - m) / (1 - k * m)
        self.mixture.set_parameters(weights.to(like), loc.to(like), covariances.to(like))

    # ---- the program -----------------------------------------------------------------------

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Enumerate c (N,), score z (N, L) and observe x (N, D); ``y`` is accepted and ignored."""
        n = x.shape[0]
        with pyro.plate("data", n):
            c = pyro.sample(
                "c", dist.Categorical(probs=self.weights), infer={"enumerate": "parallel"}
            )
            z = pyro.sample("z", self.component(c))
            pyro.sample("x", self.decode(z), obs=x)
        return z

    def decode(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z) for codes z of shape (B, L): a distribution with event shape (D,)."""
        return self.likelihood(self.decoder(z))

    @torch.no_grad()
    def sample_codes(self, c: torch.Tensor) -> torch.Tensor:
        """z ~ p(z | c) for cluster indices c (B,): (B, L)."""
        return self.component(c).sample()
