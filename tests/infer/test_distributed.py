"""Training across processes: two gloo ranks on this machine against one process.

With a point-mass guide (the autoencoder's DeltaEncoder) the loss is a deterministic
function of the parameters and the batch, so two ranks with batch B each must take the
same steps as one process with batch 2B: the same parameters after training, to float
tolerance. With sampling noise the two reach the same test ELBO within Monte Carlo error.
What a rank gathers from the others (the worst rows of EM) is also checked in one process,
against the other rank's share written by hand; importance sampling's shares are checked so in
``tests/infer/test_shares.py``.
"""

from __future__ import annotations

import os
import socket
import types
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyrovae.data.semisupervised import InterleavedBatches, SemiSupervisedData
from pyrovae.guides import DeltaEncoder, GaussianEncoder
from pyrovae.infer import Trainer
from pyrovae.infer.batches import TensorBatches
from pyrovae.infer.distributed import (
    all_reduce_sums,
    data_parallel,
    is_main_process,
    shard_bounds,
    world,
)
from pyrovae.infer.evaluate import evaluate_elbo
from pyrovae.infer.importance import log_marginal
from pyrovae.infer.marginal import NonFiniteWeights
from pyrovae.infer.streams import random_streams
from pyrovae.models import VAE, GaussianMixture, fit_mixture
from pyrovae.models.mixture import empty_guide
from pyrovae.models.mixture_stats import MixtureStatistics, _all_reduce, mixture_m_step
from pyrovae.runs.processes import leave

D, L = 12, 3


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(100, D, generator=g) < 0.4).float()
    return x[:80], x[80:]


def pair(point_mass: bool):
    torch.manual_seed(3)
    model = VAE(D, L, hidden_dims=(16,))
    guide = (DeltaEncoder if point_mass else GaussianEncoder)(D, L, hidden_dims=(16,))
    return model, guide


def train(
    point_mass: bool, batch_size: int, epochs: int, capture: bool, device=None, rows: int = 80
):
    model, guide = pair(point_mass)
    train_x, test_x = data()
    train_x = train_x[:rows]
    trainer = Trainer(
        model,
        guide,
        train_x,
        test_data=test_x,
        batch_size=batch_size,
        lr=0.01,
        seed=0,
        progress=False,
        capture=capture,
        device=device,
    )
    trainer.run(epochs)
    params = {
        **{f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()},
        **{f"guide.{k}": v.detach().clone() for k, v in guide.state_dict().items()},
    }
    return params, list(trainer.history), trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, port: int, out: str, job: dict) -> None:
    """One rank: run ``job``, save its result, and end without the interpreter's
    finalization, as the CLI's ranks do (:func:`pyrovae.runs.processes.leave`): gloo's worker
    threads outlive destroy_process_group, and one that takes the GIL while Python finalizes
    aborts the process (SIGABRT, "terminate called without an active exception") after its
    work is saved, about one run in twenty on two busy cores. A failure still raises, so that
    the spawner reports it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        assert world() == (rank, size)
        job = dict(job)
        kind = job.pop("kind", "train")
        if kind == "log_marginal":
            result = marginals(**job)
        elif kind == "em":
            result = mixture_fit(**job)
        else:
            params, history, trainer = train(**job)
            captured = sum(g is not None for g in trainer.loss.graphs.values())
            steps = len(trainer.batches)
            result = {"params": params, "history": history, "captured": captured, "steps": steps}
            # What a checkpoint saved now holds of every rank's random streams, and this
            # rank's own.
            result["saved"] = trainer.state_dict()["rng"].get("ranks")
            result["own"] = random_streams(trainer.generator)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    leave(0)  # only after a success: the result is saved and closed


def mixture_fit(covariance: str) -> dict:
    """fit_mixture on 301 rows of three blobs, two restarts, seed 0."""
    g = torch.Generator().manual_seed(2)
    centres = torch.tensor([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 6.0, 4.0]])
    x = (centres[torch.arange(301) % 3] + torch.randn(301, 3, generator=g)).double()
    model, history = fit_mixture(x, 3, covariance=covariance, n_init=2, max_iter=40, progress=False)
    with torch.no_grad():
        per_example = model.log_prob(x)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state": state, "log_prob": per_example, "history": history}


def marginals(on_nonfinite: str, far_row: int | None = None) -> dict:
    """log_marginal of a fixed mixture (z summed exactly: the estimate is exact) on 11 rows."""
    torch.manual_seed(4)
    model = GaussianMixture(3, 2, "diag").double()
    x = torch.randn(11, 2, dtype=torch.float64)
    if far_row is not None:
        x[far_row] = 1e200  # log p(x) = -inf under every component: no estimate
    try:
        result = log_marginal(
            model,
            empty_guide,
            x,
            num_samples=4,
            keep_log_weights=True,
            progress=False,
            on_nonfinite=on_nonfinite,
        )
    except NonFiniteWeights as error:
        return {"error": str(error)}
    with torch.no_grad():
        exact = model.log_prob(x)
    return {"result": result, "exact": exact}


def run_ranks(tmp_path: Path, job: dict, size: int = 2) -> list[dict]:
    mp.start_processes(
        _worker, args=(size, _free_port(), str(tmp_path), job), nprocs=size, start_method="spawn"
    )
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(size)]


@pytest.mark.parametrize(
    "capture", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["captured", "eager"]
)
def test_two_ranks_take_the_steps_of_one_process_with_twice_the_batch(tmp_path, capture):
    # 79 rows: global batches of 2 x 12 = 24 rows, the last one 7 rows (4 and 3): each rank's
    # loss is divided by the global batch's rows over the ranks (3.5), not its own, so the
    # averaged gradient is the global batch's mean. The ranks name their device, "cpu", as
    # the CLI does.
    job = {"point_mass": True, "batch_size": 12, "epochs": 3, "capture": capture, "device": "cpu"}
    ranks = run_ranks(tmp_path, {**job, "rows": 79})
    single, history, one = train(point_mass=True, batch_size=24, epochs=3, capture=capture, rows=79)
    for rank in ranks:
        assert rank["steps"] == 4
        for name, value in single.items():
            torch.testing.assert_close(rank["params"][name], value, rtol=1e-5, atol=1e-6)
        for got, want in zip(rank["history"], history, strict=True):
            assert got["train_elbo"] == pytest.approx(want["train_elbo"], rel=1e-5)
            assert got["test_elbo"] == pytest.approx(want["test_elbo"], rel=1e-5)
    assert ranks[0]["captured"] == ranks[1]["captured"] == (2 if capture else 0)
    # A checkpoint written by either rank holds both ranks' streams, rank r's at index r, so
    # that each rank of a resumed run continues its own noise; one process's holds none.
    assert "ranks" not in one.state_dict()["rng"]
    for rank in ranks:
        assert len(rank["saved"]) == 2
        for saved, other in zip(rank["saved"], ranks, strict=True):
            assert torch.equal(saved["torch"], other["own"]["torch"])
            assert torch.equal(saved["data"], other["own"]["data"])
    assert not torch.equal(ranks[0]["own"]["torch"], ranks[1]["own"]["torch"])


@pytest.mark.slow
def test_with_noise_two_ranks_reach_the_test_elbo_of_one_process(tmp_path):
    ranks = run_ranks(
        tmp_path, {"point_mass": False, "batch_size": 8, "epochs": 30, "capture": True}
    )
    _, history, trainer = train(point_mass=False, batch_size=16, epochs=30, capture=True)
    model, guide = trainer.model, trainer.guide
    test_x = data()[1]
    # The test ELBO's Monte Carlo error at the end, from repeated one-sample estimates.
    draws = torch.tensor([evaluate_elbo(model, guide, test_x) for _ in range(50)])
    spread = float(draws.std())
    distributed = ranks[0]["history"][-1]["test_elbo"]
    assert ranks[1]["history"][-1]["test_elbo"] == pytest.approx(distributed, rel=1e-9)
    # Two one-sample estimates of equally trained pairs: their difference has standard
    # deviation about sqrt(2) x spread (0.04 nats apart here, spread 0.05).
    assert abs(distributed - history[-1]["test_elbo"]) < 4 * 2**0.5 * spread
    assert distributed > history[0]["test_elbo"] + 10 * spread  # trained past epoch 1


def test_sharded_log_marginal_gathers_every_example_in_order(tmp_path):
    ranks = run_ranks(tmp_path, {"kind": "log_marginal", "on_nonfinite": "raise"})
    single = marginals("raise")
    for rank in ranks:
        got, want = rank["result"], single["result"]
        torch.testing.assert_close(got.log_likelihood, single["exact"])
        for name in ("log_likelihood", "stderr", "elbo", "log_weights"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name))
        assert got.log_weights.shape == (11, 4) and got.masked is None
        assert got.summary() == want.summary()


@pytest.mark.slow
def test_sharded_log_marginal_names_a_bad_row_by_its_place_in_the_data(tmp_path):
    ranks = run_ranks(tmp_path, {"kind": "log_marginal", "on_nonfinite": "raise", "far_row": 8})
    for rank in ranks:  # row 8 is in rank 1's share (rows 6-10); both ranks refuse alike
        assert "1 example(s) [8]" in rank["error"]
    masked = run_ranks(tmp_path, {"kind": "log_marginal", "on_nonfinite": "mask", "far_row": 8})
    for rank in masked:
        assert rank["result"].masked.nonzero().flatten().tolist() == [8]


@pytest.mark.parametrize("covariance", ["full", pytest.param("diag", marks=pytest.mark.slow)])
def test_em_across_ranks_equals_em_in_one_process(tmp_path, covariance):
    ranks = run_ranks(tmp_path, {"kind": "em", "covariance": covariance})
    single = mixture_fit(covariance)
    for rank in ranks:
        history = rank["history"]
        assert history.iterations == single["history"].iterations
        assert history.restarts == pytest.approx(single["history"].restarts, rel=1e-10)
        torch.testing.assert_close(rank["log_prob"], single["log_prob"], rtol=0, atol=1e-6)
        # The two restarts reach the same optimum in different label orders, with equal
        # log-likelihoods up to rounding: which one is kept may differ with the order of the
        # ranks' sums, so the components are compared in one order (by their means).
        ours, theirs = in_label_order(rank["state"]), in_label_order(single["state"])
        for name, value in theirs.items():
            torch.testing.assert_close(ours[name], value, rtol=1e-8, atol=1e-8)


def in_label_order(state: dict) -> dict:
    """A mixture's state with its components (the leading dimension of every entry) sorted
    by the second coordinate of their means (0, 5 and 6 for the three blobs)."""
    order = state["loc"][:, 1].argsort()
    return {name: value[order] for name, value in state.items()}


def test_batches_are_disjoint_shares_of_one_permutation():
    x = torch.arange(50).unsqueeze(-1)
    seen = []
    for rank in range(3):
        g = torch.Generator().manual_seed(5)
        batches = TensorBatches((x,), 4, shuffle=True, generator=g, shard=(rank, 3))
        assert len(batches) == 4  # 50 = 4 x 12 + 2: the last 2 rows are fewer than 3 ranks
        seen.append([b[0].flatten().tolist() for b in batches])
    g = torch.Generator().manual_seed(5)
    whole = [b[0].flatten().tolist() for b in TensorBatches((x,), 12, shuffle=True, generator=g)]
    for step in range(4):
        assert seen[0][step] + seen[1][step] + seen[2][step] == whole[step]


@pytest.mark.parametrize("unlabeled", [23, 0])
def test_semi_supervised_batches_are_shares_of_the_global_ones(unlabeled):
    """Two ranks with batch 3 take, step by step, the halves of what one process with batch
    6 takes: unlabelled and labelled batches alike, transformed as one global batch."""
    data = SemiSupervisedData(
        torch.arange(10.0).unsqueeze(-1),
        torch.arange(10),
        torch.arange(100.0, 100 + unlabeled)[:, None],
    )

    def flip(x, generator):  # a random transform: it must see the global batch
        return x * torch.randint(1, 3, x.shape, generator=generator)

    def batches(batch_size, shard):
        generator = torch.Generator().manual_seed(5)
        return InterleavedBatches(data, batch_size, True, generator, flip, shard)

    whole = batches(6, (0, 1))
    halves = [batches(3, (rank, 2)) for rank in range(2)]
    assert len(halves[0]) == len(halves[1]) == len(whole)
    for step, (a, b, c) in enumerate(zip(whole, *halves, strict=True)):
        for full, first, second in zip(a, b, c, strict=True):
            assert torch.equal(torch.cat([first, second]), full)
        assert halves[0].global_rows(step) == whole.global_rows(step) == len(a[0])
    seen = sum(len(batch[0]) for batch in whole)
    assert halves[0].num_examples == whole.num_examples == seen
    with pytest.raises(ValueError, match="10 labelled rows cannot be shared by 11 ranks"):
        InterleavedBatches(data, 3, shard=(0, 11))


def test_shares_cover_the_rows_once_and_differ_by_at_most_one():
    for rows in range(0, 30):
        for size in (1, 2, 3, 7):
            bounds = [shard_bounds(rows, r, size) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def fake_group(rank: int, size: int, other: list[float] | None = None, seen: list | None = None):
    """torch.distributed as rank ``rank`` of ``size`` gloo ranks sees it; ``all_reduce`` adds
    the other ranks' ``other`` and records each tensor it is given in ``seen``."""

    def all_reduce(tensor: torch.Tensor) -> None:
        if seen is not None:
            seen.append(tensor.clone())
        tensor += torch.tensor(other, dtype=tensor.dtype)

    return types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        get_rank=lambda: rank,
        get_world_size=lambda: size,
        get_backend=lambda: "gloo",
        all_reduce=all_reduce,
    )


def test_one_process_is_rank_zero_of_one(monkeypatch):
    """One process is rank 0, the one that shows and writes; of two ranks only rank 0 is."""
    assert world() == (0, 1) and is_main_process()
    for rank in (0, 1):
        monkeypatch.setattr(torch, "distributed", fake_group(rank, 2))
        assert world() == (rank, 2) and is_main_process() == (rank == 0)


def test_the_epochs_totals_are_summed_over_ranks_in_float64(monkeypatch):
    """Each rank's (ELBO total, rows) summed over the ranks in float64: 0.1 + 0.2 to the
    last bit, and a count past 2^24 rows exact (float32 would round 2^24 + 1 to 2^24)."""
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(torch, "distributed", fake_group(0, 2, [0.2, 1.0], seen))
    sums = all_reduce_sums([0.1, 2**24 + 1])
    monkeypatch.undo()
    assert sums == [0.1 + 0.2, 2**24 + 2]
    assert seen[0].dtype == torch.float64 and seen[0].device.type == "cpu"
    assert all_reduce_sums([0.5, 3]) == [0.5, 3.0]  # one process: the values themselves


def test_a_parameter_in_pyros_param_store_is_refused_under_ranks():
    """DistributedDataParallel averages only module parameters: a pyro.param outside the
    model's and guide's modules would train apart on each rank, so it is refused, saying
    where the parameters must live."""
    module = torch.nn.Linear(2, 1)
    loose = pyro.param("loose", torch.zeros(2))
    with pytest.raises(ValueError, match=r"must belong to the model's or the guide's torch "):
        data_parallel(lambda x: module(x).sum(), [module], [*module.parameters(), loose])
    with pytest.raises(ValueError, match=r"Pyro's param store \(pyro.param\)"):
        data_parallel(lambda x: module(x).sum(), [module], [loose])


class OtherRank:
    """torch.distributed's collectives as rank 0 of two sees them: the other rank holds
    ``packed`` (its sums) and ``worst``, ``rows`` (its K worst scores and their rows)."""

    def __init__(self, packed: torch.Tensor, worst: torch.Tensor, rows: torch.Tensor) -> None:
        self.packed, self.worst, self.rows = packed, worst, rows

    def all_reduce(self, tensor: torch.Tensor) -> None:
        tensor += self.packed

    def get_world_size(self) -> int:
        return 2

    def all_gather(self, out: list, tensor: torch.Tensor) -> None:
        out[0].copy_(tensor)
        out[1].copy_(self.worst if tensor.dim() == 1 else self.rows)


def test_an_emptied_component_moves_to_the_worst_row_of_all_ranks(monkeypatch):
    """K = 2, component 1 explains no row. Rank 0's worst scores are -5, -2 (rows (1, 1),
    (2, 2)), rank 1's -7, -1 (rows (3, 3), (4, 4)): the gathered worst are -7, -5 and the
    emptied component moves to (3, 3), the worst-explained row of the whole data."""
    d = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    theirs = OtherRank(
        torch.cat([d(2.0), d(4.0, 0.0), torch.zeros(4, dtype=torch.float64), d(4, 4, 0, 0)]),
        d(-7.0, -1.0),
        d([3.0, 3.0], [4.0, 4.0]),
    )
    fake = types.SimpleNamespace(
        all_reduce=theirs.all_reduce,
        get_world_size=theirs.get_world_size,
        all_gather=theirs.all_gather,
    )
    monkeypatch.setattr(torch, "distributed", fake)
    sums = _all_reduce(
        d(1.0), d(3.0, 0.0), torch.zeros(2, 2, dtype=torch.float64), d([3, 3], [0, 0]),
        d(-5.0, -2.0), d([1.0, 1.0], [2.0, 2.0]),
    )  # fmt: skip
    monkeypatch.undo()
    total, nk, s1, s2, worst, worst_rows = sums
    assert float(total) == 3.0 and nk.tolist() == [7.0, 0.0] and s2.tolist() == [[7, 7], [0, 0]]
    assert worst.tolist() == [-7.0, -5.0] and worst_rows.tolist() == [[3.0, 3.0], [1.0, 1.0]]
    model = GaussianMixture(2, 2, "diag").double()
    stats = MixtureStatistics(7, total, nk, s1, s2, worst, worst_rows)
    weights, means, _, reseeded = mixture_m_step(model, stats, torch.zeros(1, 2).double())
    assert reseeded == [1] and means[1].tolist() == [3.0, 3.0] and means[0].tolist() == [0, 0]
    torch.testing.assert_close(weights, d(1.0, 1 / 7) / (1 + 1 / 7))  # N_1 = 0 -> 1 / N
