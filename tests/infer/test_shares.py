"""``log_marginal`` across ranks, in one process: each rank's share of the rows, merged in
the rows' order (``merge_shares``), the worst example and the non-finite rows named by their
place in the whole data. The same runs across two real gloo ranks are in
``tests/infer/test_distributed.py``; these reach the merging code in the test's own process,
where a mutation test can see it.
"""

from __future__ import annotations

import warnings

import pyro
import pytest
import torch

from pyrovae.infer import importance
from pyrovae.infer.importance import log_marginal
from pyrovae.infer.marginal import NonFiniteWeights, NonFiniteWeightsWarning, merge_shares
from pyrovae.models import GaussianMixture
from pyrovae.models.mixture import empty_guide


def test_the_worst_example_of_gathered_shares_is_named_by_its_row_in_the_data():
    """Shares of rows 0-4 and 5-9 merged: the example with the largest k-hat (x = 4, far
    from the prior proposal's mass, in the second share) is row 8 of the whole data."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
            pyro.sample("x", pyro.distributions.Normal(z, 0.3), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pyro.distributions.Normal(torch.zeros_like(x), 1.0))

    x = torch.tensor([0.1, -0.3, 0.5, 0.0, 0.2, -0.1, 0.3, 0.4, 4.0, -0.2], dtype=torch.float64)
    pyro.set_rng_seed(0)
    parts = [
        log_marginal(model, guide, x[a:b], num_samples=100, keep_log_weights=True, progress=False)
        for a, b in ((0, 5), (5, 10))
    ]
    merged = merge_shares(parts, [0, 5])
    assert parts[1].worst_index == 3 and int(merged.khat.argmax()) == 8
    assert merged.worst_index == 8
    assert torch.equal(merged.worst_log_weights, merged.log_weights[8])


@pytest.mark.parametrize("on_nonfinite", ["raise", "mask"])
def test_rank_zero_of_two_merges_the_other_share_and_refuses_or_masks_by_the_datas_row(
    monkeypatch, on_nonfinite
):
    """Rank 0 of two, in this process: its share (rows 0-5) is computed here and rank 1's
    (rows 6-10, computed beforehand as rank 1 computes it: masked, silently) arrives through a
    stand-in ``all_gather_object``. Row 8 has no estimate (p(x_8) underflows to 0 under every
    component): "raise" refuses it by its row in the whole data, "mask" warns once and leaves
    it out; every other row is exact (the mixture's z is summed), with the caller's
    num_samples and kept weights. (The same run across two real gloo ranks is the slow test
    test_sharded_log_marginal_names_a_bad_row_by_its_place_in_the_data.)"""
    torch.manual_seed(4)
    model = GaussianMixture(3, 2, "diag").double()
    x = torch.randn(11, 2, dtype=torch.float64)
    x[8] = 1e200
    options = dict(num_samples=4, keep_log_weights=True, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWeightsWarning)
        theirs = log_marginal(model, empty_guide, x[6:], on_nonfinite="mask", **options)

    def all_gather_object(out: list, mine: tuple) -> None:
        assert mine[0] == 0 and mine[1].log_weights.shape == (6, 4)  # rank 0's share
        out[0], out[1] = mine, (6, theirs)

    monkeypatch.setattr(importance, "world", lambda: (0, 2))
    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if on_nonfinite == "raise":
            with pytest.raises(NonFiniteWeights, match=r"1 example\(s\) \[8\]"):
                log_marginal(model, empty_guide, x, on_nonfinite="raise", **options)
            assert not caught
            return
        got = log_marginal(model, empty_guide, x, on_nonfinite="mask", **options)
    said = [str(w.message) for w in caught if issubclass(w.category, NonFiniteWeightsWarning)]
    assert len(said) == 1 and "1 of 11 example(s) [8]" in said[0]
    assert got.masked.nonzero().flatten().tolist() == [8]
    assert got.log_weights.shape == (11, 4) and got.num_samples == 4
    keep = ~got.masked
    with torch.no_grad():
        torch.testing.assert_close(got.log_likelihood[keep], model.log_prob(x)[keep])
