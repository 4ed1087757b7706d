"""The semi-supervised families' procedure as a Python user runs it: the validation split,
and the epoch selected by validation accuracy (kept, restored, saved through its hook)."""

from __future__ import annotations

import pyro
import pytest
import torch
from sklearn.datasets import load_digits

from pyrovae import fit
from pyrovae.data import split_labeled
from pyrovae.errors import command_line_names
from pyrovae.guides import SSVAEGuide
from pyrovae.infer import SemiSupervisedELBO
from pyrovae.models import SSVAE
from pyrovae.procedures import ValidationSelection, default_validation_size, validation_split


def test_the_default_validation_size_is_a_sixth_capped_at_ten_thousand():
    assert [default_validation_size(n) for n in (60, 61, 59_999, 60_000, 70_000)] == [
        10,
        10,
        9_999,
        10_000,
        10_000,
    ]


def test_the_split_is_a_seeded_partition_that_keeps_the_rows_order():
    x = torch.arange(60.0)[:, None]
    y = torch.arange(60) % 3
    split = validation_split(x, y, seed=4)
    assert len(split.valid_index) == 10 and len(split.train_index) == 50
    every = torch.sort(torch.cat([split.train_index, split.valid_index])).values
    assert torch.equal(every, torch.arange(60))  # disjoint and covering
    assert bool((split.valid_index.diff() > 0).all() and (split.train_index.diff() > 0).all())
    assert torch.equal(split.valid_x[:, 0], split.valid_index.float())
    assert torch.equal(split.valid_y, y[split.valid_index])
    again = validation_split(x, y, seed=4)
    other = validation_split(x, y, seed=5)
    assert torch.equal(again.valid_index, split.valid_index)
    assert not torch.equal(other.valid_index, split.valid_index)
    assert len(validation_split(x, y, size=7).valid_index) == 7


@pytest.mark.parametrize("size", [0, 60, 100])
def test_a_split_that_leaves_nothing_to_train_or_validate_on_is_refused(size):
    x, y = torch.zeros(60, 2), torch.zeros(60, dtype=torch.long)
    with pytest.raises(ValueError, match=f"validation_size={size} must be between 1 and the 59"):
        validation_split(x, y, size=size)
    with command_line_names(), pytest.raises(ValueError, match=f"--validation-size {size} must"):
        validation_split(x, y, size=size)


class ScriptedGuide(torch.nn.Module):
    """A guide whose argmax q(y | x) is scripted epoch by epoch, and whose one parameter
    records the epoch, so that a restored state says which epoch it came from."""

    def __init__(self, predictions: list[torch.Tensor]) -> None:
        super().__init__()
        self.predictions = predictions
        self.epoch = torch.nn.Parameter(torch.zeros(()))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions[int(self.epoch.item()) - 1]


class FakeTrainer:
    def __init__(self, guide: ScriptedGuide) -> None:
        self.model, self.guide = torch.nn.Linear(1, 1), guide
        self.history: list[dict] = []
        self.epoch = 0

    def run_epoch(self, selection: ValidationSelection) -> None:
        self.epoch += 1
        with torch.no_grad():
            self.guide.epoch.fill_(self.epoch)
            self.model.weight.fill_(self.epoch)
        self.history.append({"epoch": self.epoch, **selection.metric(self)})
        selection.keep(self)


def test_the_best_epoch_is_kept_ties_keep_the_earlier_and_restore_puts_it_back():
    y = torch.tensor([0, 1, 2, 0])
    three_right = [torch.tensor([0, 1, 0, 0]), torch.tensor([1, 1, 2, 0])]
    # accuracies by epoch: 3/4, 1, 3/4, 1 (a tie with epoch 2), 1/4
    scripted = [three_right[0], y, three_right[1], y, torch.tensor([2, 0, 2, 1])]
    guide = ScriptedGuide(scripted)
    trainer = FakeTrainer(guide)
    improved = []
    selection = ValidationSelection(
        guide, torch.zeros(4, 1), y, on_improve=lambda t, e, a: improved.append((e, a))
    )
    with pytest.raises(RuntimeError, match="no epoch's state is held"):
        selection.restore()
    for _ in range(5):
        trainer.run_epoch(selection)
    assert [r["valid_accuracy"] for r in trainer.history] == [0.75, 1.0, 0.75, 1.0, 0.25]
    assert improved == [(1, 0.75), (2, 1.0)]
    assert (selection.best_epoch, selection.best_accuracy) == (2, 1.0)
    selection.restore()
    assert guide.epoch.item() == 2.0 and trainer.model.weight.item() == 2.0
    # Where on_improve keeps the state (the CLI's best.pt), none is copied in memory.
    other = ScriptedGuide(scripted)
    elsewhere = ValidationSelection(other, torch.zeros(4, 1), y, keep_state=False)
    FakeTrainer(other).run_epoch(elsewhere)
    assert elsewhere.best_epoch == 1
    with pytest.raises(RuntimeError, match="leave keep_state=True"):
        elsewhere.restore()


def binary_digits():
    data = load_digits()
    return torch.tensor(data.data > 7, dtype=torch.float32), torch.tensor(data.target)


def test_fit_with_the_selection_restores_the_epoch_of_best_validation_accuracy():
    x, y = binary_digits()
    split = validation_split(x[:600], y[:600], size=200, seed=0)
    data = split_labeled(split.train_x, split.train_y, 50, seed=0)
    pyro.set_rng_seed(0)
    model, guide = SSVAE(64, 10, 4, (32,)), SSVAEGuide(64, 10, 4, (32,))
    selection = ValidationSelection(guide, split.valid_x, split.valid_y)
    history = fit(
        model,
        guide,
        data,
        epochs=4,
        batch_size=50,
        objective=SemiSupervisedELBO(alpha=10.0),
        metrics=[selection.metric],
        callbacks=[selection.keep],
        seed=0,
        progress=False,
    )
    accuracies = [record["valid_accuracy"] for record in history]
    best = max(accuracies)
    assert selection.best_epoch == accuracies.index(best) + 1
    assert selection.best_accuracy == best
    selection.restore()
    assert selection.metric(None)["valid_accuracy"] == best
