"""Interleaved labelled / unlabelled batches and the class-balanced labelled subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrovae.data import SemiSupervisedData, split_labeled
from pyrovae.data.semisupervised import InterleavedBatches, balanced_label_indices
from pyrovae.infer.batches import make_batches


def data(n_labeled: int = 7, n_unlabeled: int = 25) -> SemiSupervisedData:
    labeled_x = torch.arange(n_labeled, dtype=torch.float32)[:, None]
    unlabeled_x = 100 + torch.arange(n_unlabeled, dtype=torch.float32)[:, None]
    return SemiSupervisedData(labeled_x, torch.arange(n_labeled) % 3, unlabeled_x)


def test_unlabelled_and_labelled_batches_alternate_and_an_epoch_sees_every_unlabelled_row():
    batches = make_batches(data(), 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert isinstance(batches, InterleavedBatches)
    epoch = list(batches)
    assert len(epoch) == len(batches) == 2 * 7  # ceil(25 / 4) unlabelled batches, each paired
    assert [len(b) for b in epoch] == [1, 2] * 7
    unlabeled = torch.cat([b[0] for b in epoch[::2]]).flatten()
    assert sorted(unlabeled.tolist()) == list(range(100, 125))
    # Labelled rows come round in whole permutations: 7 batches of 4 = 28 = 4 * 7 rows.
    labeled = torch.cat([b[0] for b in epoch[1::2]]).flatten().long()
    assert torch.bincount(labeled, minlength=7).tolist() == [4] * 7
    for x, y in epoch[1::2]:
        assert torch.equal(y, x.flatten().long() % 3)  # labels travel with their rows


def test_the_generator_state_is_the_whole_state_so_a_resumed_epoch_repeats():
    generator = torch.Generator().manual_seed(1)
    batches = InterleavedBatches(data(), 4, generator=generator)
    list(batches)
    state = generator.get_state()
    second = [b[0] for b in batches]
    generator.set_state(state)
    again = [b[0] for b in batches]
    assert all(torch.equal(a, b) for a, b in zip(second, again, strict=True))


def test_without_unlabelled_rows_an_epoch_is_a_pass_over_the_labels():
    only = SemiSupervisedData(torch.zeros(10, 2), torch.zeros(10, dtype=torch.long), None)
    batches = InterleavedBatches(only, 4)
    assert [len(b[0]) for b in batches] == [4, 4, 2] and len(batches) == 3
    assert len(batches.peek()) == 2


def test_the_transform_applies_to_both_kinds_and_peek_does_not_advance():
    generator = torch.Generator().manual_seed(0)
    seen = []

    def transform(x, g):
        seen.append(len(x))
        return x + 0.5

    batches = InterleavedBatches(data(), 5, generator=generator, transform=transform)
    state = generator.get_state()
    peeked = batches.peek()
    assert len(peeked) == 1 and torch.equal(generator.get_state(), state)
    assert all(float(b[0].frac().min()) == 0.5 for b in batches)


def test_a_balanced_subset_has_equal_classes_and_the_remainder_spread():
    y = np.repeat(np.arange(10), 50)
    index = balanced_label_indices(y, 100, seed=0)
    assert np.bincount(y[index]).tolist() == [10] * 10
    counts = np.bincount(y[balanced_label_indices(y, 105, seed=0)])
    assert sorted(counts.tolist()) == [10] * 5 + [11] * 5
    assert not np.array_equal(index, balanced_label_indices(y, 100, seed=1))
    assert np.array_equal(index, balanced_label_indices(y, 100, seed=0))


def test_split_labeled_keeps_the_subset_and_the_rest_unlabelled():
    x = torch.arange(60, dtype=torch.float32)[:, None]
    y = torch.arange(60) % 3
    split = split_labeled(x, y, 9, seed=0)
    assert len(split.labeled_x) == 9 and len(split.unlabeled_x) == 51
    both = torch.cat([split.labeled_x, split.unlabeled_x]).flatten()
    assert sorted(both.tolist()) == list(range(60))
    assert torch.equal(split.labeled_y, split.labeled_x.flatten().long() % 3)


@pytest.mark.parametrize(
    "num_labels, message",
    [(2, "fewer than the 3 classes"), (61, "more than the 60"), (45, "class 2 has only")],
)
def test_impossible_label_counts_are_refused_with_the_fix(num_labels, message):
    y = np.array([0] * 25 + [1] * 25 + [2] * 10)
    with pytest.raises(ValueError, match=message):
        balanced_label_indices(y, num_labels)
