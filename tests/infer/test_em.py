"""EM: monotone, reaches scikit-learn's maximum likelihood, stops by tol, generic over models."""

import math
import re

import numpy as np
import pytest
import torch
from fa_data import sample_fa
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis

from pyrovae.infer import TrainingDiverged
from pyrovae.infer.em import EMHistory, em
from pyrovae.models import VAE, FactorAnalysis

pytestmark = pytest.mark.usefixtures("one_thread")


def run_em(isotropic: bool, **kwargs) -> tuple[FactorAnalysis, EMHistory, torch.Tensor]:
    """EM from the random initial parameters (not from PCA), float64."""
    x = sample_fa()
    model = FactorAnalysis(8, 2, isotropic=isotropic).double()
    return model, em(model, x, progress=False, **kwargs), x


@pytest.mark.parametrize("isotropic", [False, True])
def test_em_never_decreases_the_log_likelihood(isotropic):
    _, history, _ = run_em(isotropic, max_iter=100, tol=-math.inf)  # never stop early
    values = np.array(history.log_likelihood)
    assert history.iterations == len(values) == 100 and not history.converged
    assert np.diff(values).min() >= -1e-10
    assert values[-1] > values[0] + 1.0  # and it does climb from the random start


def test_em_reaches_scikit_learns_factor_analysis():
    """EM and scikit-learn's SVD-based iteration climb to the same maximum: with both run to
    convergence they agree to 1e-8 (measured 1e-9). sklearn's defaults stop early (tol 1e-2
    on the *total* log-likelihood), 3e-5 nats per example short of it."""
    model, history, x = run_em(False, max_iter=2000, tol=1e-10)
    assert history.converged
    with torch.no_grad():
        ours = model.log_prob(x).mean().item()
    default = SkFactorAnalysis(n_components=2).fit(x.numpy()).score(x.numpy())
    assert abs(ours - default) < 1e-3 and ours >= default - 1e-10
    tight = SkFactorAnalysis(n_components=2, tol=1e-8, svd_method="lapack").fit(x.numpy())
    assert ours == pytest.approx(tight.score(x.numpy()), abs=1e-8)


def test_em_reaches_probabilistic_pca():
    """PCA.score is PPCA's likelihood at sklearn's solution, which divides by N - 1: a covariance
    c = N / (N - 1) times the ML one, exactly D/2 (log c + 1/c - 1) = 5e-7 below the maximum."""
    model, history, x = run_em(True, max_iter=2000, tol=1e-12)
    n, d = x.shape
    with torch.no_grad():
        ours = model.log_prob(x).mean().item()
    pca = PCA(n_components=2).fit(x.numpy()).score(x.numpy())
    assert abs(ours - pca) < 1e-4
    c = n / (n - 1)
    assert ours - pca == pytest.approx(d / 2 * (math.log(c) + 1 / c - 1), abs=1e-8)


def test_em_step_returns_the_log_likelihood_before_its_update():
    x = sample_fa(200)
    model = FactorAnalysis(8, 2).double()
    with torch.no_grad():
        before = model.log_prob(x).mean().item()
        assert model.em_step(x) == pytest.approx(before, abs=1e-12)
        assert model.em_step(x) > before


def test_em_works_in_float32():
    x = sample_fa(500).float()
    model = FactorAnalysis(8, 2).initialize(x)
    history = em(model, x, max_iter=50, tol=1e-4, progress=False)
    assert model.W.dtype == torch.float32
    assert all(math.isfinite(v) for v in history.log_likelihood)


class Scripted:
    """A stand-in model whose em_step returns -2^-t at call t = 0, 1, ..."""

    def __init__(self, values=None):
        self.calls = 0
        self.values = values

    def em_step(self, x):
        self.calls += 1
        return self.values[self.calls - 1] if self.values else -(2.0 ** -(self.calls - 1))


def test_em_stops_when_the_improvement_falls_below_tol():
    # Improvements are 2^-t; the first below 1e-3 is 2^-10, at the 11th call.
    seen = []
    history = em(Scripted(), None, tol=1e-3, progress=False, callback=lambda h: seen.append(h))
    assert history.converged and history.iterations == 11
    assert history.log_likelihood == [-(2.0**-t) for t in range(11)]
    assert len(seen) == 11 and seen[-1] is history


def test_em_stops_a_real_model_by_tol_and_reports_max_iter():
    _, history, _ = run_em(False, max_iter=500, tol=1e-2)
    steps = np.diff(history.log_likelihood)
    assert history.converged and steps[-1] < 1e-2 and (steps[:-1] >= 1e-2).all()
    _, capped, _ = run_em(False, max_iter=3, tol=1e-12)
    assert not capped.converged and capped.iterations == 3


def test_em_needs_an_em_step():
    with pytest.raises(TypeError, match="em_step"):
        em(VAE(8, 2, (4,), "gaussian"), sample_fa(10), progress=False)


def test_em_refuses_a_nan_log_likelihood():
    with pytest.raises(TrainingDiverged) as error:
        em(Scripted([-1.0, float("nan")]), None, progress=False)
    assert str(error.value) == (
        "the log-likelihood became nan at EM iteration 2; check the data for NaN, infinite "
        "or constant columns."
    )


def test_tol_zero_runs_every_iteration_even_at_a_fixed_point():
    # An improvement of exactly 0 is not below tol = 0: EM runs to max_iter (as scikit-learn's
    # GaussianMixture(tol=0) does), so a benchmark can fix the number of iterations.
    history = em(Scripted([-1.0] * 6), None, tol=0.0, max_iter=6, progress=False)
    assert history.iterations == 6 and not history.converged


def test_em_shows_progress(capsys):
    em(Scripted(), None, max_iter=3, tol=0.0, progress=True)
    assert "log-likelihood" in capsys.readouterr().err


class Climbing:
    """A model whose log-likelihood climbs by 1 per EM step: it never converges."""

    def __init__(self) -> None:
        self.steps = 0

    def em_step(self, x):
        self.steps += 1
        return float(self.steps)


def test_em_defaults_stop_at_500_iterations_and_show_a_bar(capfd):
    history = em(Climbing(), torch.zeros(3))
    assert history.iterations == 500 and not history.converged
    err = capfd.readouterr().err
    assert re.search(r"(^|\r)em: ", err), "the bar is labelled em"
    assert "500/500" in err and re.search(r"[\d.]+(iter/s|s/iter)", err), "counted in iter"
    em(Climbing(), torch.zeros(3), max_iter=3, progress=False)
    assert capfd.readouterr().err == ""


def test_em_names_a_model_without_an_m_step():
    class NoStep:
        pass

    with pytest.raises(TypeError, match=r"NoStep has none\. Fit it by SVI with pyrovae\.fit"):
        em(NoStep(), torch.zeros(3))


def test_em_redraws_its_bar_rarely_outside_a_terminal(capfd):
    # Every iteration changes the bar's postfix; outside a terminal (here, a captured stream)
    # the bar redraws at most every few seconds, not once per iteration.
    em(Climbing(), torch.zeros(3), max_iter=300, tol=0.0)
    err = capfd.readouterr().err
    assert "300/300" in err and err.count("em: ") <= 4, err.count("em: ")
