"""The sequence VAE against exact answers: padding masked out (a padded batch has the numbers
of its unpadded sequences), log p(x) against quadrature over z with the decoder's states
written out by hand, input dropout only while training, and its refusals."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from contract import Pair, PairContract
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyrovae.guides import SequenceEncoder
from pyrovae.infer import fit, log_marginal
from pyrovae.infer.modes import program_mode
from pyrovae.models import SequenceVAE

D, L, H = 3, 2, 8


def sequences(n: int = 6, t: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary sequences (n, t, D) with lengths 1..t; the padding is random, not zeros, so
    that reading it would show."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, t, D, generator=g) > 0.6).float()
    lengths = torch.tensor([t, 1, 3, t - 1, 2, 5][:n])
    return x, lengths


def pair(input_dropout: float = 0.0) -> tuple[SequenceVAE, SequenceEncoder]:
    torch.manual_seed(1)
    return SequenceVAE(D, L, H, input_dropout=input_dropout), SequenceEncoder(D, L, H)


class TestSequenceVAEContract(PairContract):
    def make_pair(self, variant=None) -> Pair:
        model, guide = pair(0.2)
        return Pair(model, guide, sequences())


def conditional_log_prob(model, x, lengths, z) -> torch.Tensor:
    """log p(x_n | z_n) per sequence (N,), from the model's trace with z given."""
    trace = poutine.trace(poutine.condition(model, {"z": z})).get_trace(x, lengths)
    trace.compute_log_prob()
    return trace.nodes["x"]["log_prob"]


def test_a_padded_batch_has_the_numbers_of_its_unpadded_sequences():
    model, guide = pair()
    x, lengths = sequences()
    z = torch.randn(len(x), L)
    with torch.no_grad():
        batch_lp = conditional_log_prob(model, x, lengths, z)
        loc, scale = guide.encode(x, lengths)
        for n, t in enumerate(lengths.tolist()):
            alone = x[n : n + 1, :t]
            assert batch_lp[n] == pytest.approx(
                float(conditional_log_prob(model, alone, None, z[n : n + 1])), abs=1e-5
            )
            loc_n, scale_n = guide.encode(alone)
            assert torch.allclose(loc[n], loc_n[0], atol=1e-6)
            assert torch.allclose(scale[n], scale_n[0], atol=1e-6)
    # The padding is not read: changing it changes nothing.
    noisy = x.clone()
    for n, t in enumerate(lengths.tolist()):
        noisy[n, t:] = 1 - noisy[n, t:]
    with torch.no_grad():
        assert torch.equal(conditional_log_prob(model, noisy, lengths, z), batch_lp)
        assert torch.equal(guide.encode(noisy, lengths)[0], loc)


def hand_states(model: SequenceVAE, z: torch.Tensor, steps: int) -> torch.Tensor:
    """h_1..h_T (G, T, H) for codes z (G, L) of a GRU whose input and recurrent weights are
    zero: r = s(b_ir + b_hr), u = s(b_iz + b_hz), n = tanh(b_in + r * b_hn),
    h_t = (1 - u) n + u h_{t-1}, from h_0 = tanh(W_z z + b_z) (PyTorch's GRU equations)."""
    b_ih, b_hh = model.gru.bias_ih_l0, model.gru.bias_hh_l0
    r_i, u_i, n_i = b_ih.chunk(3)
    r_h, u_h, n_h = b_hh.chunk(3)
    r, u = torch.sigmoid(r_i + r_h), torch.sigmoid(u_i + u_h)
    n = torch.tanh(n_i + r * n_h)
    h = torch.tanh(z @ model.initial.weight.T + model.initial.bias)
    states = []
    for _ in range(steps):
        h = (1 - u) * n + u * h
        states.append(h)
    return torch.stack(states, 1)


def test_log_marginal_matches_quadrature_over_z_with_the_states_by_hand():
    """L = 1 and a decoder whose GRU ignores its inputs: p(x | z) = prod_t Bernoulli(x_t;
    s(W_o h_t(z) + b_o)) with h_t(z) written out by hand, and log p(x) = log int N(z; 0, 1)
    p(x | z) dz on a grid; the guide proposes the prior, so importance sampling converges."""
    torch.manual_seed(2)
    model = SequenceVAE(D, 1, H).double()
    guide = SequenceEncoder(D, 1, H).double()
    with torch.no_grad():
        for name, p in model.gru.named_parameters():
            if name.startswith("weight"):
                p.zero_()
        model.initial.weight.mul_(3)  # z moves the states a lot
        guide.head.weight.zero_()
        guide.head.bias.copy_(torch.tensor([0.0, math.log(math.e - 1)]))  # N(0, 1)
    x, lengths = sequences(t=5)
    x = x.double()
    grid = torch.linspace(-9, 9, 20001, dtype=torch.float64).unsqueeze(-1)  # (G, 1)
    with torch.no_grad():
        logits = hand_states(model, grid, 5) @ model.emit.weight.T + model.emit.bias  # (G,T,D)
        per_step = torch.distributions.Bernoulli(logits=logits.unsqueeze(1)).log_prob(x)
        mask = (torch.arange(5) < lengths.unsqueeze(-1)).unsqueeze(-1)  # (N, T, 1)
        log_lik = (per_step * mask).sum((-2, -1))  # (G, N)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(grid)  # (G, 1)
        step = float(grid[1] - grid[0])
        exact = (log_lik + log_prior).logsumexp(0) + math.log(step)
        pyro.set_rng_seed(0)
        result = log_marginal(model, guide, (x, lengths), num_samples=4000, progress=False)
    assert torch.all((result.log_likelihood - exact).abs() <= 5 * result.stderr + 1e-6), (
        result.log_likelihood,
        exact,
        result.stderr,
    )
    assert exact[1] > exact[0]  # one step is likelier than seven: lengths are used


def every_binary_sequence(t: int, d: int) -> torch.Tensor:
    """All 2^(t d) binary sequences (2^(t d), t, d), in float64."""
    bits = torch.arange(2 ** (t * d)).unsqueeze(-1) >> torch.arange(t * d) & 1
    return bits.double().reshape(-1, t, d)


def chain_log_prob(model: SequenceVAE, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) (N,) for one code z (L,) and sequences x (N, T, D), the decoder run one
    step at a time as the generative process reads: h_t = GRU(x_{t-1}, h_{t-1}) with
    x_0 = 0, each x_t scored under Bernoulli(s(W_o h_t + b_o))."""
    n, t, _ = x.shape
    h = torch.tanh(model.initial(z)).expand(1, n, -1).contiguous()
    previous = torch.zeros_like(x[:, :1])
    total = x.new_zeros(n)
    for step in range(t):
        state, h = model.gru(previous, h)
        logits = model.emit(state[:, 0])
        total = total + torch.distributions.Bernoulli(logits=logits).log_prob(x[:, step]).sum(-1)
        previous = x[:, step : step + 1]
    return total


def test_p_x_given_z_is_a_distribution_over_sequences_read_one_step_late():
    """A decoder whose GRU reads its inputs (weights as initialised, made larger): p(x | z)
    sums to one over all 2^(T D) binary sequences, as only a decoder fed the steps before the
    one it predicts can, and equals the chain run step by step on x_{t-1}."""
    t, d = 3, 2
    torch.manual_seed(4)
    model = SequenceVAE(d, L, H).double().eval()
    with torch.no_grad():
        model.gru.weight_ih_l0.mul_(4)  # what the decoder reads moves its output a lot
        model.emit.weight.mul_(3)
    x = every_binary_sequence(t, d)  # (64, T, D)
    with torch.no_grad():
        for z in 2 * torch.randn(3, L, dtype=torch.float64):
            log_p = conditional_log_prob(model, x, None, z.expand(len(x), L))
            assert float(log_p.logsumexp(0)) == pytest.approx(0.0, abs=1e-10)
            torch.testing.assert_close(log_p, chain_log_prob(model, z, x), rtol=0, atol=1e-10)
            assert float(log_p.max() - log_p.min()) > 1.0  # the sequences are not all alike


def test_a_gaussian_sequence_vae_scores_each_value_with_its_own_learned_noise():
    """likelihood="gaussian": one noise scale per value of a step, softplus(raw) + 0.01 (D,),
    and log p(x | z) = sum over the real steps of log N(x_t; W_o h_t + b_o, scale), h_t read
    from x_{t-1} as in the Bernoulli chain."""
    torch.manual_seed(5)
    model = SequenceVAE(D, L, H, likelihood="gaussian").double().eval()
    assert model.likelihood.raw_scale.shape == (D,)
    with torch.no_grad():
        model.likelihood.raw_scale.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    scale = torch.nn.functional.softplus(torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)) + 1e-2
    x = torch.randn(4, 5, D, dtype=torch.float64)
    z = torch.randn(L, dtype=torch.float64)
    with torch.no_grad():
        log_p = conditional_log_prob(model, x, None, z.expand(len(x), L))
        h = torch.tanh(model.initial(z)).expand(1, len(x), -1).contiguous()
        previous, expected = torch.zeros_like(x[:, :1]), x.new_zeros(len(x))
        for step in range(x.shape[1]):
            state, h = model.gru(previous, h)
            mean = model.emit(state[:, 0])
            expected += torch.distributions.Normal(mean, scale).log_prob(x[:, step]).sum(-1)
            previous = x[:, step : step + 1]
    torch.testing.assert_close(log_p, expected, rtol=0, atol=1e-10)


def test_input_dropout_changes_training_and_not_the_evaluated_density():
    x, lengths = sequences()
    plain, guide = pair(0.0)
    dropped, _ = pair(0.5)
    dropped.load_state_dict(plain.state_dict())
    numbers = []
    for model in (plain, dropped):
        with torch.no_grad():
            pyro.set_rng_seed(0)
            numbers.append(log_marginal(model, guide, (x, lengths), num_samples=10, progress=False))
    assert torch.equal(numbers[0].log_likelihood, numbers[1].log_likelihood)
    losses = []
    for model in (plain, dropped):
        with torch.no_grad(), program_mode(model, training=True):
            pyro.set_rng_seed(0)
            losses.append(Trace_ELBO().loss(model, guide, x, lengths))
    assert losses[0] != pytest.approx(losses[1], rel=1e-4)


def test_fit_with_warm_up_and_dropout_lowers_the_loss_and_generates_sequences():
    x, lengths = sequences(6, 7)
    x, lengths = x.repeat(8, 1, 1), lengths.repeat(8)
    model, guide = pair(0.25)
    history = fit(model, guide, (x, lengths), epochs=8, batch_size=16, lr=1e-2, kl_warmup=3,
                  seed=0, progress=False)  # fmt: skip
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]
    assert [r["kl_weight"] for r in history[:4]] == [0.25, 0.5, 0.75, 1.0]
    drawn = model.generate(torch.randn(4, L), 9)
    assert drawn.shape == (4, 9, D) and set(drawn.unique().tolist()) <= {0.0, 1.0}
    means = model.generate(torch.randn(4, L), 9, sample=False)
    assert torch.all((means > 0) & (means < 1))


@pytest.mark.parametrize(
    ("x", "lengths", "message"),
    [
        (torch.zeros(4, 5), None, r"must be a tensor \(N, T, D\)"),
        (torch.zeros(4, 5, D), torch.tensor([1, 2, 3]), "lengths must be N = 4 integers"),
        (torch.zeros(4, 5, D), torch.ones(4), "lengths must be N = 4 integers"),
        (torch.zeros(4, 5, D), torch.tensor([1, 2, 6, 3]), "between 1 and the T = 5 steps"),
        (torch.zeros(4, 5, D), torch.tensor([1, 0, 2, 3]), "between 1 and the T = 5 steps"),
    ],
)
def test_bad_sequences_are_refused_by_name(x, lengths, message):
    model, guide = pair()
    with pytest.raises(ValueError, match=message):
        model(x, lengths)
    with pytest.raises(ValueError, match=message):
        guide(x, lengths)
    with pytest.raises(ValueError, match=r"input_dropout must be in \[0, 1\)"):
        SequenceVAE(D, input_dropout=1.0)
