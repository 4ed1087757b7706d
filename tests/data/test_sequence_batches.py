"""Sequences batched by length: every sequence once per pass, each batch cut to its bucket,
pools of similar lengths, and training on the cut batches equal to training on the padded."""

from __future__ import annotations

import pytest
import torch

from pyrovae.data import SequenceData
from pyrovae.data.sequence_batches import SequenceBatches, bucket_length
from pyrovae.guides import SequenceEncoder
from pyrovae.infer import Trainer
from pyrovae.infer.batches import make_batches
from pyrovae.models import SequenceVAE


def rolls(n: int = 50, t: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary sequences (n, t, 5), lengths spread over [3, t], padding zero."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, t + 1, (n,), generator=generator)
    x = (torch.rand(n, t, 5, generator=generator) < 0.3).float()
    x *= (torch.arange(t) < lengths.unsqueeze(-1)).unsqueeze(-1)
    return x, lengths


def test_bucket_lengths_are_multiples_of_8_growing_by_a_quarter_and_capped_at_t():
    buckets = sorted({bucket_length(m, 10_000) for m in range(1, 400)})
    assert buckets[:12] == [8, 16, 24, 32, 40, 56, 72, 96, 120, 152, 192, 240]
    assert all(b % 8 == 0 for b in buckets)
    assert all(1.25 * b <= c < 1.25 * b + 8 for b, c in zip(buckets[3:], buckets[4:], strict=False))
    assert [bucket_length(m, 50) for m in (1, 8, 9, 41, 50)] == [8, 8, 16, 50, 50]


@pytest.mark.parametrize("pool", [0, 1, 3])
def test_a_pass_holds_every_sequence_once_each_batch_cut_to_its_bucket(pool):
    x, lengths = rolls()
    ids = torch.arange(len(lengths))
    batches = SequenceBatches(
        SequenceData(x, lengths, (ids,), pool=pool), 8, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    seen = []
    for batch_x, batch_lengths, batch_ids in batches:
        assert batch_x.shape[1] == bucket_length(int(batch_lengths.max()), x.shape[1])
        torch.testing.assert_close(batch_x, x[batch_ids, : batch_x.shape[1]])  # rows kept whole
        torch.testing.assert_close(batch_lengths, lengths[batch_ids])
        seen.append(batch_ids)
    assert [len(b) for b in seen] == [8] * 6 + [2]  # the smaller batch last
    assert sorted(torch.cat(seen).tolist()) == ids.tolist()


def test_pools_group_similar_lengths_and_still_change_the_batches_every_pass():
    x, lengths = rolls(n=200, t=120)
    steps = {}
    for pool in (0, 4):
        batches = SequenceBatches(
            SequenceData(x, lengths, (torch.arange(200),), pool=pool), 10, shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        passes = [[set(ids.tolist()) for _, _, ids in batches] for _ in range(2)]
        steps[pool] = sum(b[0].shape[0] * b[0].shape[1] for b in batches) / (200 * 120)
        assert passes[0] != passes[1]  # new batch mates each pass
    assert steps[4] < 0.8 * steps[0]  # less padding computed than with random batches


def test_evaluation_order_is_the_stored_order_and_peek_is_cut():
    x, lengths = rolls(n=20)
    data = SequenceData(x, lengths)
    batches = make_batches(data, 8, shuffle=False)
    first = next(iter(batches))
    torch.testing.assert_close(first[1], lengths[:8])
    peek = batches.peek()
    assert peek[0].shape[1] == bucket_length(int(lengths[:8].max()), x.shape[1])
    torch.testing.assert_close(peek[0], first[0])


def test_ranks_share_a_global_batch_each_cut_to_its_own_share():
    x, lengths = rolls(n=30)
    ids = torch.arange(30)
    one = SequenceBatches(
        SequenceData(x, lengths, (ids,), pool=2), 8, True, torch.Generator().manual_seed(3)
    )
    ranks = [
        SequenceBatches(
            SequenceData(x, lengths, (ids,), pool=2), 4, True,
            torch.Generator().manual_seed(3), shard=(rank, 2),
        )
        for rank in range(2)
    ]  # fmt: skip
    for whole, *shares in zip(one, *ranks, strict=True):
        assert torch.cat([share[2] for share in shares]).tolist() == whole[2].tolist()
        for share_x, share_lengths, _ in shares:
            assert share_x.shape[1] == bucket_length(int(share_lengths.max()), x.shape[1])


def test_training_on_cut_batches_equals_training_on_the_padded_ones():
    """The sequence VAE masks the padding and draws one code per sequence, so the cut
    batches give the padded batches' losses and gradients: the same fit, less work."""
    x, lengths = rolls(n=24, t=32)
    lengths = (lengths // 3).clamp_min(1)  # 1..10 of 32 steps, the rest padding (not zeros)
    histories, states = [], []
    for data in ((x, lengths), SequenceData(x, lengths, pool=0)):
        torch.manual_seed(0)
        model, guide = SequenceVAE(5, 2, 16), SequenceEncoder(5, 2, 16)
        trainer = Trainer(model, guide, data, batch_size=8, seed=0, progress=False)
        histories.append(trainer.run(2).column("train_elbo"))
        states.append(model.state_dict())
    assert histories[0] == pytest.approx(histories[1], rel=1e-5)
    cuts = {batch[0].shape[1] for batch in SequenceBatches(SequenceData(x, lengths, pool=0), 8)}
    assert cuts == {8, 16}  # every batch cut, to one of two lengths, each captured once
    for name, value in states[0].items():
        torch.testing.assert_close(states[1][name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "x, lengths, message",
    [
        (torch.zeros(4), torch.ones(4, dtype=torch.long), "padded sequences"),
        (torch.zeros(4, 6, 2), torch.ones(3, dtype=torch.long), "lengths must be"),
        (torch.zeros(4, 6, 2), torch.ones(4), "integers"),
        (torch.zeros(4, 6, 2), torch.tensor([1, 2, 7, 3]), r"\[1, T\] = \[1, 6\]"),
        (torch.zeros(4, 6, 2), torch.tensor([1, 0, 2, 3]), r"\[1, T\]"),
    ],
)
def test_bad_sequence_data_are_refused_by_name(x, lengths, message):
    with pytest.raises(ValueError, match=message):
        SequenceData(x, lengths)
    with pytest.raises(ValueError, match="pool"):
        SequenceData(torch.zeros(2, 3, 1), torch.ones(2, dtype=torch.long), pool=-1)


def test_extra_tensors_need_a_row_per_sequence_and_travel_with_the_sequences():
    x, lengths = rolls(n=4, t=6)
    labels, weights = torch.arange(4), torch.rand(4, 2)
    with pytest.raises(ValueError, match="every extra tensor needs 4 rows, got 3"):
        SequenceData(x, lengths, (labels, weights[:3]))
    data = SequenceData(x, lengths, (labels, weights), pool=3)
    moved = data.to("cpu")
    assert len(moved.extra) == 2 and moved.pool == 3
    assert all(torch.equal(a, b) for a, b in zip(moved.tensors, data.tensors, strict=True))
    assert data.to(None) is data  # no device: nothing copied
