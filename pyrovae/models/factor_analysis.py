"""Factor analysis and probabilistic PCA: the linear-Gaussian latent model, with its exact marginal.

Generative process, for each row n of the data plate::

    z_n ~ N(0, I_L)                      latent factors (site "z")
    x_n ~ N(W z_n + b, Psi)              Psi = diag(psi) (site "x")

with W (D, L), b (D,) and noise variances psi (D,). With ``isotropic=True``,
Psi = sigma^2 I: probabilistic PCA. Everything about this model is Gaussian, so it is
the oracle the rest of pyrovae is tested against:

- marginal   p(x) = N(x; b, C),  C = W W^T + Psi                       (D, D)
- posterior  p(z | x) = N(z; Sigma W^T Psi^{-1} (x - b), Sigma),
             Sigma = M^{-1},  M = I_L + W^T Psi^{-1} W                  (L, L)

By the Woodbury identity and the matrix determinant lemma,
C^{-1} = Psi^{-1} - Psi^{-1} W M^{-1} W^T Psi^{-1} and log|C| = log|M| + sum_d log psi_d,
so log p(x) costs one L x L Cholesky factorisation instead of a D x D one: O(N D L).

References: Ghahramani & Hinton, "The EM Algorithm for Mixtures of Factor Analyzers",
Tech. Rep. CRG-TR-96-1, 1996 (EM for factor analysis); Tipping & Bishop, "Probabilistic
Principal Component Analysis", JRSS B 61(3), 1999 (the closed-form maximum likelihood and
EM for PPCA); Bishop, "Pattern Recognition and Machine Learning", 2006, section 12.2.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ..module import LocalPyroModule


class FactorAnalysis(LocalPyroModule):
    """p(x, z) = N(z; 0, I_L) N(x; W z + b, Psi) over rows x of shape (N, D).

    Args:
        input_dim: D, the length of an example.
        latent_dim: L, the number of factors.
        isotropic: Psi = sigma^2 I with one shared variance (probabilistic PCA) instead of
            a free diagonal (factor analysis).
        min_noise: floor on every noise variance, which keeps Psi invertible.

    Parameters (plain ``nn.Parameter``): ``W`` (D, L), ``b`` (D,) and ``log_noise``, of shape
    (D,) or, isotropic, () with psi = min_noise + exp(log_noise) (see :attr:`noise_variance`).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        isotropic: bool = False,
        min_noise: float = 1e-6,
    ) -> None:
        super().__init__()
        if input_dim < 1 or latent_dim < 1:
            raise ValueError(
                f"input_dim and latent_dim must be positive, got {input_dim} and {latent_dim}"
            )
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.isotropic = isotropic
        self.min_noise = float(min_noise)
        self.W = nn.Parameter(torch.randn(input_dim, latent_dim) / math.sqrt(latent_dim))
        self.b = nn.Parameter(torch.zeros(input_dim))
        self.log_noise = nn.Parameter(torch.zeros(() if isotropic else (input_dim,)))

    @property
    def noise_variance(self) -> torch.Tensor:
        """psi (D,): the diagonal of Psi, each entry at least ``min_noise``."""
        psi = self.min_noise + self.log_noise.exp()
        return psi.expand(self.input_dim)

    @torch.no_grad()
    def set_noise_variance(self, psi: torch.Tensor | float) -> None:
        """Set psi: a (D,) tensor, or a scalar (or equal entries) when isotropic.

        Values are floored at twice ``min_noise`` so that ``log_noise`` stays finite.
        """
        psi = torch.as_tensor(psi, dtype=self.log_noise.dtype, device=self.log_noise.device)
        if self.isotropic and psi.numel() > 1:
            if not torch.all(psi == psi.reshape(-1)[0]):
                raise ValueError("an isotropic model has one noise variance; got several values")
            psi = psi.reshape(-1)[0]
        psi = psi.clamp_min(2 * self.min_noise)
        self.log_noise.copy_((psi - self.min_noise).log().expand_as(self.log_noise))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample z (N, L) and observe x (N, D) at site "x"; ``y`` is accepted and ignored."""
        n = x.shape[0]
        with pyro.plate("data", n):
            prior = dist.Normal(x.new_zeros(n, self.latent_dim), 1.0).to_event(1)
            z = pyro.sample("z", prior)
            noise_scale = self.noise_variance.sqrt()
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, noise_scale).to_event(1), obs=x)
        return z

    def _precision_factor(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """psi (D,), Psi^{-1} W (D, L) and the lower Cholesky factor of M = I + W^T Psi^{-1} W."""
        psi = self.noise_variance
        scaled_w = self.W / psi.unsqueeze(-1)
        m = torch.eye(self.latent_dim, dtype=self.W.dtype, device=self.W.device)
        m = m + self.W.T @ scaled_w
        return psi, scaled_w, torch.linalg.cholesky(m)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x_n) = log N(x_n; b, W W^T + Psi) for rows x (N, D); returns (N,).

        With r = x - b and M = T T^T (Cholesky), u = T^{-1} W^T Psi^{-1} r::

            log p(x) = -1/2 [D log 2 pi + sum_d log psi_d + 2 sum_l log T_ll
                             + r^T Psi^{-1} r - |u|^2].
        """
        x = x.to(self.W)
        psi, scaled_w, tril = self._precision_factor()
        r = x - self.b  # (N, D)
        u = torch.linalg.solve_triangular(tril, (r @ scaled_w).T, upper=False)  # (L, N)
        mahalanobis = (r.square() / psi).sum(-1) - u.square().sum(0)
        log_det = psi.log().sum() + 2 * tril.diagonal().log().sum()
        return -0.5 * (self.input_dim * math.log(2 * math.pi) + log_det + mahalanobis)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact p(z | x) = N(mean, Sigma) for rows x (N, D): mean (N, L), Sigma (L, L).

        Sigma = (I + W^T Psi^{-1} W)^{-1} (the same for every row) and
        mean_n = Sigma W^T Psi^{-1} (x_n - b) (Bishop PRML section 12.2).
        """
        x = x.to(self.W)
        _, scaled_w, tril = self._precision_factor()
        covariance = torch.cholesky_inverse(tril)
        mean = torch.cholesky_solve(((x - self.b) @ scaled_w).T, tril).T
        return mean, covariance

    @torch.no_grad()
    def em_step(self, x: torch.Tensor) -> float:
        """One EM iteration on rows x (N, D); returns the mean log p(x_n) before the update.

        b <- mean of x (its maximum-likelihood value for any W, Psi). Then, with the centred
        rows r_n, the E-step's posterior moments m_n = E[z_n | x_n] (rows of Mz, (N, L)) and
        sum_n E[z_n z_n^T] = N Sigma + Mz^T Mz = A (L, L), the M-step sets

            W_new = (R^T Mz) A^{-1}                        (D, L)
            psi_new = diag(R^T R - W_new Mz^T R) / N        (D,)

        with R (N, D) the centred rows (Ghahramani & Hinton 1996); isotropic:
        sigma^2_new = mean_d psi_new,d (Tipping & Bishop 1999). Each update
        maximises a lower bound that touches log p(x) at the current parameters, so the
        returned values never decrease from one call to the next.
        """
        x = x.to(self.W)
        n = x.shape[0]
        log_likelihood = self.log_prob(x).mean().item()
        self.b.copy_(x.mean(0))
        mean, covariance = self.posterior(x)  # E-step at the new b
        r = x - self.b  # (N, D)
        cross = r.T @ mean  # sum_n r_n m_n^T: (D, L)
        second_moment = n * covariance + mean.T @ mean  # A: (L, L)
        new_w = torch.linalg.solve(second_moment, cross.T).T  # A symmetric: (D, L)
        psi = (r.square().sum(0) - (new_w * cross).sum(-1)) / n  # (D,)
        self.W.copy_(new_w)
        self.set_noise_variance(psi.mean() if self.isotropic else psi)
        return log_likelihood

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> FactorAnalysis:
        """Set b, W, psi from rows x (N, D) by principal components; returns ``self``.

        With eigenvalues lambda_1 >= ... >= lambda_D and eigenvectors U of the sample
        covariance S, sigma^2 = mean of lambda_{L+1..D} and W = U_L (Lambda_L - sigma^2 I)^{1/2}:
        the exact maximum-likelihood PPCA solution (Tipping & Bishop 1999; PRML
        eq. 12.45). Factor analysis then starts from psi = diag(S - W W^T) >= sigma^2.
        """
        x = x.to(self.W)
        self.b.copy_(x.mean(0))
        r = x - self.b
        # Eigen-decompose the D x D covariance in float64: float32 loses the small eigenvalues.
        cov = (r.T @ r).double() / x.shape[0]
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        eigenvalues = eigenvalues.flip(0).clamp_min(0.0)
        eigenvectors = eigenvectors.flip(1)
        rest = eigenvalues[self.latent_dim :]
        sigma2 = rest.mean() if rest.numel() else eigenvalues.new_tensor(0.0)
        sigma2 = sigma2.clamp_min(2 * self.min_noise)
        top = eigenvalues[: self.latent_dim]
        lead = eigenvectors[:, : self.latent_dim]
        w = lead * (top - sigma2).clamp_min(0.0).sqrt()
        if w.shape[1] < self.latent_dim:  # more factors than dimensions: pad with zeros
            w = torch.cat([w, w.new_zeros(self.input_dim, self.latent_dim - w.shape[1])], 1)
        self.W.copy_(w.to(self.W.dtype))
        psi = (cov.diagonal() - w.square().sum(-1)).clamp_min(sigma2)
        self.set_noise_variance(sigma2 if self.isotropic else psi.to(self.W.dtype))
        return self
