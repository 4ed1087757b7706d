"""The mixture-prior VAE against exact answers: the enumerated loss against a sum over c by
hand (with and without the KL warm-up's weight), log p(x) against the closed form of a
linear-Gaussian decoder, assign against p(c | z), the EM initialisation and the options
against collapse."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from contract import Pair, PairContract
from pyro.infer import TraceEnum_ELBO

from pyrovae.guides import GaussianEncoder
from pyrovae.infer import Trainer, assign, fit, log_marginal
from pyrovae.infer.scale import LatentScaling
from pyrovae.models import MixturePriorVAE
from pyrovae.models.mixture import COVARIANCE_TYPES


class TestMixturePriorVAEContract(PairContract):
    """The mixture-prior VAE with its Gaussian encoder: c enumerated, z drawn by the guide."""

    def make_pair(self, variant=None) -> Pair:
        torch.manual_seed(0)
        model = MixturePriorVAE(12, 3, 2, (8,), covariance="full", min_weight=0.05)
        x = (torch.rand(16, 12) > 0.5).float()
        return Pair(model, GaussianEncoder(12, 2, (8,)), (x,), "enum")


def binary_rows(n: int = 40, d: int = 12, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def random_pair(covariance: str = "diag", weights: str = "learned", min_weight: float = 0.0):
    torch.manual_seed(3)
    model = MixturePriorVAE(
        12, 3, 2, (8,), covariance=covariance, weights=weights, min_weight=min_weight
    )
    with torch.no_grad():  # components apart and unequal, so that every term matters
        model.mixture.loc.copy_(torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -3.0]]))
        if weights == "learned":
            model.mixture.logits.copy_(torch.tensor([0.5, -0.3, 0.1]))
    return model, GaussianEncoder(12, 2, (8,))


def hand_loss(model, guide, x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """-sum_n [log p(x_n | z_n) + w (log sum_c pi_c N(z_n; mu_c, Sigma_c) - log q(z_n | x_n))]
    with z_n = mu(x_n) + sigma(x_n) eps_n, eps drawn as the guide draws it."""
    loc, scale = guide.encode(x)
    z = loc + scale * torch.randn_like(loc)
    components = [model.weights[c].log() + _component_log_prob(model, c, z) for c in range(3)]
    log_prior = torch.stack(components).logsumexp(0)
    log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
    log_lik = model.decode(z).log_prob(x)
    return -(log_lik + weight * (log_prior - log_q)).sum()


def _component_log_prob(model, c: int, z: torch.Tensor) -> torch.Tensor:
    """log N(z; mu_c, Sigma_c) from torch's MultivariateNormal, not the model's code."""
    sigma = model.mixture.covariance_matrix[c].double()
    mvn = torch.distributions.MultivariateNormal(model.mixture.loc[c].double(), sigma)
    return mvn.log_prob(z.double()).float()


@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
@pytest.mark.parametrize(("weights", "floor"), [("learned", 0.0), ("fixed", 0.0), ("learned", 0.2)])
def test_the_enumerated_loss_is_the_sum_over_c_by_hand(covariance, weights, floor):
    model, guide = random_pair(covariance, weights, floor)
    x = binary_rows()
    pyro.set_rng_seed(1)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x)
    pyro.set_rng_seed(1)
    expected = hand_loss(model, guide, x)
    assert loss == pytest.approx(float(expected.detach()), rel=1e-5)
    if weights == "fixed":
        assert torch.equal(model.weights, torch.full((3,), 1 / 3))
    assert float(model.weights.detach().min()) >= floor


@pytest.mark.parametrize("weight", [0.25, 0.5])
def test_the_warm_up_weight_scales_the_whole_latent_term_under_enumeration(weight):
    """Both latent sites weighted by w: Pyro's TraceEnum_ELBO contracts c with one common
    scale, giving w log sum_c p(c) p(z | c), and the guide's entropy is weighted alike."""
    model, guide = random_pair()
    x = binary_rows()
    scaling = LatentScaling()
    scaling.factor = weight
    pyro.set_rng_seed(2)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(scaling.wrap(model), scaling.wrap(guide), x)
    pyro.set_rng_seed(2)
    assert loss == pytest.approx(float(hand_loss(model, guide, x, weight).detach()), rel=1e-5)
    with torch.no_grad():
        pyro.set_rng_seed(2)
        weighted = float(hand_loss(model, guide, x, weight))
        pyro.set_rng_seed(2)
        assert weighted != pytest.approx(float(hand_loss(model, guide, x)), rel=1e-3)


def test_training_with_a_warm_up_records_the_schedule_and_a_resumed_trainer_continues_it():
    model, guide = random_pair()
    x = binary_rows(64)
    trainer = Trainer(model, guide, x, batch_size=16, kl_warmup=3, seed=0, progress=False)
    trainer.run(2)
    state = trainer.state_dict()
    resumed = Trainer(model, guide, x, batch_size=16, kl_warmup=3, seed=0, progress=False)
    resumed.load_state_dict(state)
    history = resumed.run(5)
    assert [r["kl_weight"] for r in history] == [0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ValueError, match="kl_warmup must be >= 0"):
        Trainer(model, guide, x, kl_warmup=-1, progress=False)


class LinearGaussianPair:
    """A linear decoder with Gaussian noise: p(x) = sum_c pi_c N(x; W mu_c + b, W Sigma_c W^T
    + diag s^2) exactly, and a guide that samples a broadened moment match of the exact
    posterior p(z | x) (a mixture of K Gaussians), so importance sampling converges."""

    def __init__(self, covariance: str) -> None:
        torch.manual_seed(5)
        self.model = MixturePriorVAE(
            3, 2, 1, (), likelihood="gaussian", covariance=covariance
        ).double()
        with torch.no_grad():
            self.model.mixture.loc.copy_(torch.tensor([[-1.5], [1.0]]))
            self.model.mixture.logits.copy_(torch.tensor([0.3, -0.2]))

    def parts(self):
        m = self.model
        linear = m.decoder[0]
        w, b = linear.weight, linear.bias  # (3, 1), (3,)
        noise = torch.diag((torch.nn.functional.softplus(m.likelihood.raw_scale) + 0.01) ** 2)
        return w, b, noise, m.mixture.loc, m.mixture.covariance_matrix

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        w, b, noise, mu, sigma = self.parts()
        terms = [
            self.model.weights[c].log()
            + dist.MultivariateNormal(w @ mu[c] + b, w @ sigma[c] @ w.T + noise).log_prob(x)
            for c in range(2)
        ]
        return torch.stack(terms).logsumexp(0)

    def guide(self, x: torch.Tensor, y=None) -> None:
        w, b, noise, mu, sigma = self.parts()
        precision = torch.linalg.inv(noise)
        means, variances, logs = [], [], []
        for c in range(2):
            post_var = torch.linalg.inv(torch.linalg.inv(sigma[c]) + w.T @ precision @ w)
            rhs = torch.linalg.solve(sigma[c], mu[c]) + (x - b) @ precision @ w  # (N, 1)
            means.append(rhs @ post_var)
            variances.append(post_var[0, 0])
            marginal = dist.MultivariateNormal(w @ mu[c] + b, w @ sigma[c] @ w.T + noise)
            logs.append(self.model.weights[c].log() + marginal.log_prob(x))
        r = torch.stack(logs).softmax(0)  # p(c | x): (2, N)
        m = torch.stack(means).squeeze(-1)  # (2, N)
        v = torch.stack(variances).unsqueeze(-1)
        mean = (r * m).sum(0)
        var = (r * (v + m.square())).sum(0) - mean.square()
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "z", dist.Normal(mean.unsqueeze(-1), (2 * var).sqrt().unsqueeze(-1)).to_event(1)
            )


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_log_marginal_sums_c_inside_every_weight_to_the_closed_form(covariance):
    pair = LinearGaussianPair(covariance)
    torch.manual_seed(0)
    x = torch.randn(30, 3, dtype=torch.float64) * 2
    with torch.no_grad():
        exact = pair.exact(x)
        pyro.set_rng_seed(0)
        result = log_marginal(pair.model, pair.guide, x, num_samples=2000, progress=False)
    stderr = result.stderr
    assert torch.all((result.log_likelihood - exact).abs() <= 5 * stderr + 1e-4)
    assert float(result.elbo.mean()) <= float(exact.mean())


def test_assign_is_the_map_of_p_c_given_the_guides_draw_of_z():
    model, guide = random_pair("full")
    x = binary_rows(200)
    pyro.set_rng_seed(0)
    clusters = assign(model, guide, x)["c"]
    pyro.set_rng_seed(0)
    loc, scale = guide.encode(x)
    z = loc + scale * torch.randn_like(loc)
    assert torch.equal(clusters, model.cluster(z))
    assert torch.equal(model.cluster(z), model.cluster_posterior(z).argmax(-1))
    assert torch.allclose(model.cluster_posterior(z).sum(-1), torch.ones(200))
    assert len(set(clusters.tolist())) > 1  # the comparison is not between constants


def blobs(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
    labels = torch.arange(n) % 3
    return centres[labels] + 0.5 * torch.randn(n, 2, generator=g), labels, centres


def test_the_em_initialisation_finds_the_clusters_of_the_codes_and_keeps_the_options():
    codes, labels, centres = blobs()
    model = MixturePriorVAE(10, 3, 2)
    model.initialize_prior(codes, seed=0)
    order = model.mixture.loc.detach()[:, 0].argsort()
    assert torch.allclose(model.mixture.loc.detach()[order], centres[[0, 2, 1]], atol=0.1)
    assert torch.allclose(model.weights, torch.full((3,), 1 / 3), atol=0.01)
    assert torch.equal(model.cluster(codes).bincount(), torch.tensor([200, 200, 200]))

    fixed = MixturePriorVAE(10, 3, 2, weights="fixed")
    fixed.initialize_prior(codes[:400], seed=0)  # two clusters of three in these rows' codes
    assert torch.equal(fixed.weights, torch.full((3,), 1 / 3))
    floored = MixturePriorVAE(10, 3, 2, min_weight=0.1)
    floored.initialize_prior(torch.cat([codes[:597], codes[597:598]]), seed=0)
    assert float(floored.weights.detach().min()) >= 0.1 - 1e-6
    assert float(floored.weights.detach().sum()) == pytest.approx(1.0)


def test_a_weight_floor_starts_from_the_em_weights_raising_only_those_below_it():
    """min_weight = m: EM's weights pi, where all are >= m, are the model's weights exactly
    (pi = m + (1 - K m) softmax(logits) inverted); a pi_k < m is raised to m and the others
    share the remaining 1 - K m in proportion to their excess pi_j - m."""
    codes, labels, _ = blobs()
    sizes = {0: 200, 1: 150, 2: 10}  # EM weights about 0.56, 0.42, 0.03
    keep = torch.cat([(labels == k).nonzero()[:size, 0] for k, size in sizes.items()])
    for m in (0.02, 0.1):
        model = MixturePriorVAE(10, 3, 2, min_weight=m)
        em = model.initialize_prior(codes[keep], seed=0).weights.detach().float()
        assert sorted(em.tolist()) == pytest.approx([10 / 360, 150 / 360, 200 / 360], abs=1e-3)
        if m < em.min():
            torch.testing.assert_close(model.weights.detach(), em, rtol=0, atol=1e-6)
            continue
        small = em < m
        excess = torch.where(small, 0.0, em - m)
        expected = m + (1 - 3 * m) * excess / excess.sum()
        torch.testing.assert_close(model.weights.detach(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("covariance", COVARIANCE_TYPES)
def test_the_mixture_from_a_partition_is_each_clusters_maximum_likelihood_gaussian(covariance):
    """One M-step on hard responsibilities, against numpy's means and covariances per cluster."""
    codes, labels, _ = blobs(n=300)
    codes = codes.double() * torch.tensor([1.0, 0.3], dtype=torch.float64)  # unequal axes
    labels = (labels + (codes[:, 1] > 0).long()) % 3  # not the blobs: clusters of any shape
    model = MixturePriorVAE(10, 3, 2, covariance=covariance).double()
    model.initialize_prior_from_clusters(codes, labels, reg_covar=0.0)
    x, y = codes.numpy(), labels.numpy()
    covs = [np.cov(x[y == k].T, bias=True) for k in range(3)]
    shares = np.bincount(y) / len(y)
    expected = {
        "full": np.stack(covs),
        "tied": sum(w * c for w, c in zip(shares, covs, strict=True))[None].repeat(3, 0),
        "diag": np.stack([np.diag(np.diag(c)) for c in covs]),
        "spherical": np.stack([np.eye(2) * np.diag(c).mean() for c in covs]),
    }[covariance]
    means = np.stack([x[y == k].mean(0) for k in range(3)])
    assert np.allclose(model.weights.detach().numpy(), shares, atol=1e-12)
    assert np.allclose(model.mixture.loc.detach().numpy(), means, atol=1e-10)
    covariance_matrix = model.mixture.covariance_matrix.detach().numpy()
    assert np.allclose(covariance_matrix, expected, atol=1e-10)

    fixed = MixturePriorVAE(10, 3, 2, weights="fixed")
    fixed.initialize_prior_from_clusters(codes, labels)
    assert torch.equal(fixed.weights, torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="every one of the K = 3 clusters needs"):
        fixed.initialize_prior_from_clusters(codes, labels.clamp_max(1))


def test_fixed_weights_are_not_trained_and_a_floor_holds_under_training():
    """Data from one cluster pull the learned weights to one component; the floor holds, and
    fixed weights stay 1/K (a buffer, not a parameter)."""
    x = torch.zeros(64, 12)
    for weights, floor in (("fixed", 0.0), ("learned", 0.15)):
        model, guide = random_pair(weights=weights, min_weight=floor)
        fit(model, guide, x, epochs=15, batch_size=32, lr=0.05, seed=0, progress=False)
        if weights == "fixed":
            assert "mixture.logits" not in dict(model.named_parameters())
            assert torch.equal(model.weights, torch.full((3,), 1 / 3))
        else:
            assert float(model.weights.detach().min()) >= 0.15 - 1e-6
            assert float(model.weights.detach().max()) > 0.4  # learned: moved from where it started


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(num_components=0), "num_components must be at least 1"),
        (dict(covariance="banded"), "covariance must be one of"),
        (dict(weights="equal"), "weights must be 'learned' or 'fixed'"),
        (dict(min_weight=0.5), r"min_weight must be in \[0, 1/K\)"),
        (dict(weights="fixed", min_weight=0.01), "min_weight applies to learned weights"),
    ],
)
def test_bad_options_are_refused_with_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        MixturePriorVAE(10, **{"num_components": 3, **options})


def test_one_component_is_a_gaussian_prior_and_the_default_is_ten_clusters():
    """K = 1 is legal (the refusal starts at 0): p(z) = N(z; mu, Sigma) exactly, and every
    code is in cluster 0. Without num_components, K = 10 (one per digit)."""
    model = MixturePriorVAE(12, 1, 2, (8,))
    with torch.no_grad():
        model.mixture.loc.copy_(torch.tensor([[1.0, -2.0]]))
    z = torch.randn(5, 2)
    gaussian = dist.Normal(torch.tensor([1.0, -2.0]), 1.0).to_event(1)
    torch.testing.assert_close(model.prior_log_prob(z), gaussian.log_prob(z))
    assert model.cluster(z).tolist() == [0] * 5
    assert MixturePriorVAE(12).weights.shape == (10,)
