"""Training steps in training mode, every evaluation in evaluation mode: a model with dropout
is trained with it and evaluated without it, and every submodule's own flag comes back."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyrovae.infer import Trainer, assign, evaluate_elbo, log_marginal
from pyrovae.module import LocalPyroModule

ENUM = {"enumerate": "parallel"}


class DropoutModel(LocalPyroModule):
    """c ~ Cat(1/2) (enumerated), z ~ N(0, 1), x ~ N(net(z) + c, 1): net drops half its units
    in training mode; ``seen`` records the mode of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, 32), nn.Dropout(0.5), nn.Linear(32, 1))
        self.frozen = nn.BatchNorm1d(1)  # a submodule its user keeps in evaluation mode
        self.frozen.eval()
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> None:
        self.seen.append(self.net.training)
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample(
                "c", dist.Categorical(logits=x.new_zeros(2)), infer={"enumerate": "parallel"}
            )
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0).to_event(1))
            loc = self.net(z) + c.unsqueeze(-1).to(z.dtype)
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


class Guide(LocalPyroModule):
    def __init__(self) -> None:
        super().__init__()
        self.loc = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc(x), 1.0).to_event(1))


def test_evaluations_run_without_dropout_and_restore_every_flag():
    torch.manual_seed(0)
    model, guide = DropoutModel(), Guide()
    x = torch.randn(50, 1)
    for evaluate in (
        lambda: log_marginal(model, guide, x, num_samples=20, progress=False).log_likelihood,
        lambda: torch.tensor(evaluate_elbo(model, guide, x, objective="enum")),
        lambda: assign(model, guide, x)["c"],
    ):
        model.seen.clear()
        pyro.set_rng_seed(1)
        first = evaluate()
        pyro.set_rng_seed(1)
        assert torch.equal(first, evaluate())  # deterministic given the draws: no dropout
        assert model.seen and not any(model.seen)
        assert model.net.training and not model.frozen.training  # flags as they were


def test_training_steps_drop_units_and_the_test_elbo_does_not():
    torch.manual_seed(0)
    model, guide = DropoutModel(), Guide()
    model.eval()  # whatever mode the user left: steps train, evaluation evaluates
    model.frozen.eval()
    x = torch.randn(64, 1)
    trainer = Trainer(model, guide, x, test_data=(x,), batch_size=32, progress=False, seed=0)
    model.seen.clear()
    trainer.run(1)
    assert True in model.seen and False in model.seen  # training steps, then the test ELBO
    assert not model.net.training  # the user's mode comes back


@pytest.mark.parametrize("capture", [True, False])
def test_a_captured_step_with_dropout_matches_pyros_eager_loss(capture):
    torch.manual_seed(0)
    model, guide = DropoutModel(), Guide()
    x = torch.randn(64, 1)
    history = Trainer(model, guide, x, batch_size=32, progress=False, seed=0, capture=capture).run(
        2
    )
    assert all(torch.isfinite(torch.tensor(r["train_elbo"])) for r in history)
