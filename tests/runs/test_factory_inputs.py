"""A CLI factory whose programs take further arguments after x (lengths, masks), end to end.

A factory says what its tensors are with :class:`pyrovae.runs.FactoryData` (x, ``args``
passed to the programs as ``model(x, *args)``, ``labels`` for the figures only). The
reference model is a mixture over sequences of different lengths, padded with zeros and
masked by ``poutine.mask`` from the lengths, with its class c enumerated and an empty
guide, so that ``evaluate``'s log p(x) is exact: it must equal the mixture's density of the
unpadded steps, computed by hand from the trained parameters. Scoring the padding (the
lengths taken as labels, as before) gives another number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from images import assert_png

from pyrovae.cli import main
from pyrovae.runs import load_run

FACTORY = '''
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, PyroParam

from pyrovae.runs import FactoryData

K, T, N = 3, 12, 90


def sequences(seed=0):
    """x (N, T) zero-padded past each length, lengths (N,) in [3, T], classes c (N,)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, T + 1, (N,), generator=g)
    c = torch.randint(0, K, (N,), generator=g)
    x = torch.tensor([-2.0, 0.5, 3.0])[c][:, None] + 0.5 * torch.randn(N, T, generator=g)
    return torch.where(torch.arange(T) < lengths[:, None], x, torch.zeros(())), lengths, c


class Mixture(PyroModule):
    """c ~ Cat(softmax(logits)), x_t | c ~ N(locs[c], scale) for the steps t < length."""

    def __init__(self):
        super().__init__()
        self.logits = PyroParam(torch.zeros(K))
        self.locs = PyroParam(torch.linspace(-1.0, 1.0, K))
        self.scale = PyroParam(torch.tensor(1.0), constraint=dist.constraints.positive)

    def forward(self, x, lengths):
        mask = torch.arange(x.shape[1], device=x.device) < lengths[:, None]  # (N, T)
        with pyro.plate("data", x.shape[0], dim=-2):
            c = pyro.sample(
                "c", dist.Categorical(logits=self.logits), infer={"enumerate": "parallel"}
            )
            with pyro.plate("steps", x.shape[1], dim=-1), poutine.mask(mask=mask):
                pyro.sample("x", dist.Normal(self.locs[c], self.scale), obs=x)


def guide(x, lengths):
    pass  # c is enumerated: nothing to sample


def with_lengths():
    x, lengths, _ = sequences()
    return Mixture(), guide, FactoryData(x, args=(lengths,))


def with_lengths_and_labels():
    x, lengths, c = sequences()
    return Mixture(), guide, FactoryData(x, args=(lengths,), labels=c)


def as_dict():
    x, lengths, c = sequences()
    return Mixture(), guide, {"x": x, "args": (lengths,), "labels": c}


def plain_pair():  # the ambiguous form: its second tensor is labels, never an argument
    x, lengths, _ = sequences()
    return Mixture(), guide, (x, lengths)


class MaskedVAE(PyroModule):
    """z ~ N(0, I), x_d | z ~ N(W z + b, 1) for the observed pixels d (mask true)."""

    def __init__(self):
        super().__init__()
        self.decoder = torch.nn.Linear(2, 16)

    def forward(self, x, mask):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 1.0).mask(mask).to_event(1), obs=x)


class MaskedEncoder(PyroModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(32, 4)

    def forward(self, x, mask):
        loc, raw = self.net(torch.cat([x * mask, mask.float()], -1)).split(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, torch.nn.functional.softplus(raw)).to_event(1))


def masked_images():
    """4 x 4 images (N, 16), a random quarter of their pixels missing (mask false), labels."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (N,), generator=g)
    x = torch.randn(N, 16, generator=g) + 2.0 * y[:, None]
    mask = torch.rand(N, 16, generator=g) > 0.25
    return MaskedVAE(), MaskedEncoder(), FactoryData(x * mask, args=(mask,), labels=y)


def rows_differ():
    x, lengths, _ = sequences()
    return Mixture(), guide, FactoryData(x, args=(lengths[:-1],))


def not_a_tensor():
    x, lengths, _ = sequences()
    return Mixture(), guide, FactoryData(x, args=(lengths.tolist(),))


def float_second():
    x, lengths, _ = sequences()
    return Mixture(), guide, (x, lengths.float())


def three_tensors():
    x, lengths, c = sequences()
    return Mixture(), guide, (x, lengths, c)


def unknown_key():
    x, lengths, _ = sequences()
    return Mixture(), guide, {"x": x, "lengths": lengths}


def sequences_3d():
    x, lengths, _ = sequences()
    return Mixture(), guide, FactoryData(x[..., None], args=(lengths,))


def one_too_many():
    x, lengths, _ = sequences()
    return Mixture(), guide, FactoryData(x, args=(lengths, lengths))
'''

QUICK = ["--epochs", "2", "--batch-size", "32", "--quiet"]


@pytest.fixture
def factory(tmp_path, monkeypatch) -> str:
    (tmp_path / "seqmix.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "seqmix", raising=False)
    return "seqmix"


def split_rows(n: int, seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, ...]:
    """The train and test rows of a run with this seed (pyrovae.data's permutation)."""
    n_test = int(np.ceil(test_fraction * n))
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n - n_test], perm[n - n_test :]


def exact_log_p(model, x: torch.Tensor, lengths: torch.Tensor, *, masked: bool = True):
    """log p(x_n) (N,) of the mixture by hand, in float64: log sum_k pi_k prod_t
    N(x_nt; mu_k, sigma) over the steps t < length_n (every step with ``masked`` False)."""
    logits, locs = model.logits.detach().double(), model.locs.detach().double()
    scale = float(model.scale.detach())
    x = torch.as_tensor(x).double()
    steps = torch.distributions.Normal(locs, scale).log_prob(x[..., None])  # (N, T, K)
    if masked:
        keep = torch.arange(x.shape[1]) < torch.as_tensor(lengths)[:, None]
        steps = steps * keep[..., None]
    return torch.logsumexp(logits.log_softmax(-1) + steps.sum(1), -1)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m pyrovae ARGS`` in a new process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pyrovae", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ),
        timeout=300,
    )


def test_lengths_reach_training_and_evaluate_scores_no_padding(tmp_path):
    """Trained and evaluated in their own processes: evaluate's log p(x) (exact: c
    enumerated, empty guide) is the mixture's density of the real steps, on the test rows and
    lengths the run kept, whatever the factory returns when the run is reopened."""
    (tmp_path / "seqmix.py").write_text(textwrap.dedent(FACTORY))
    out = tmp_path / "run"
    trained = run_cli("train", "seqmix:with_lengths", "--out", "run", *QUICK, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    with np.load(out / "factory_data.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == ["test_args_0", "test_x", "train_args_0", "train_x"]
        test_x, test_lengths = saved["test_x"], saved["test_args_0"]
        train_lengths = saved["train_args_0"]
    # The lengths are split with x by the run's seed, and kept as integers.
    sys.path.insert(0, str(tmp_path))
    try:
        import seqmix

        x, lengths, _ = seqmix.sequences()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("seqmix", None)
    train_rows, test_rows = split_rows(len(x))
    np.testing.assert_array_equal(test_x, x[test_rows].numpy())
    np.testing.assert_array_equal(test_lengths, lengths[test_rows].numpy())
    np.testing.assert_array_equal(train_lengths, lengths[train_rows].numpy())
    assert test_lengths.dtype == np.int64

    # Reopening uses the run's copy: the data this factory returns now would be refused.
    source = (tmp_path / "seqmix.py").read_text()
    (tmp_path / "seqmix.py").write_text(
        source.replace("args=(lengths,))\n\n\ndef with_lengths_and", "args=(lengths[:5],))\n\n\n"
                       "def with_lengths_and")
    )  # fmt: skip
    evaluated = run_cli(
        "evaluate", "run", "--num-samples", "2", "--quiet", "--factory-path", ".", cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((out / "eval.json").read_text())
    assert report["num_examples"] == len(test_rows)
    assert report["test_log_likelihood_stderr"] == 0.0  # c summed out: exact

    model = load_run(out, factory_path=(str(tmp_path),)).model
    exact = exact_log_p(model, test_x, test_lengths).mean().item()
    assert report["test_log_likelihood"] == pytest.approx(exact, abs=1e-4)
    assert report["test_elbo"] == pytest.approx(exact, abs=1e-4)  # an empty guide: no gap
    # Training's own test ELBO, after the last step, is the same exact number.
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history[-1]["test_elbo"] == pytest.approx(exact, abs=1e-4)
    padded = exact_log_p(model, test_x, test_lengths, masked=False).mean().item()
    assert abs(padded - exact) > 1.0, "the padding must matter for this check to mean anything"


def test_lengths_are_never_labels_and_declared_labels_are(tmp_path, factory):
    out = tmp_path / "lengths"
    args = ["--out", str(out), "--no-figures", *QUICK]  # no continuous latent to draw
    assert main(["train", f"{factory}:with_lengths", *args]) == 0
    run = load_run(out, factory=f"{factory}:with_lengths")
    assert run.data.train_y is None and run.data.test_y is None
    x, lengths = run.test_inputs()
    assert x.shape == (18, 12) and lengths.dtype == torch.int64
    pyro.clear_param_store()  # as in a new process: PyroModules keep Pyro's store
    resumed = ["--out", str(out), "--no-figures", *QUICK, "--epochs", "3", "--resume"]
    assert main(["train", f"{factory}:with_lengths", *resumed]) == 0  # lengths from the copy
    assert load_run(out, factory=f"{factory}:with_lengths").data.test_args[0].equal(lengths)

    for name in ("with_lengths_and_labels", "as_dict"):
        out = tmp_path / name
        assert main(["train", f"{factory}:{name}", "--out", str(out), "--no-figures", *QUICK]) == 0
        run = load_run(out, factory=f"{factory}:{name}")
        _, lengths, c = sys.modules[factory].sequences()
        train_rows, test_rows = split_rows(len(c))
        np.testing.assert_array_equal(run.data.test_y.numpy(), c[test_rows].numpy())
        np.testing.assert_array_equal(run.data.train_y.numpy(), c[train_rows].numpy())
        np.testing.assert_array_equal(run.test_inputs()[1].numpy(), lengths[test_rows].numpy())
        named = ["--factory", f"{factory}:{name}"]
        assert main(["evaluate", str(out), "--num-samples", "2", "--quiet", *named]) == 0


def test_a_plain_pair_gives_labels_so_a_model_that_needs_lengths_is_refused(
    tmp_path, factory, capsys
):
    """The issue's case: (x, lengths) used to train with the lengths taken as labels and the
    padding scored. A plain pair still means labels; the model needs its lengths, so the
    run is refused before anything is written, naming FactoryData."""
    out = tmp_path / "run"
    assert main(["train", f"{factory}:plain_pair", "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "model takes x, lengths" in err and "FactoryData(x, args=(...))" in err
    assert not out.exists()


def test_a_mask_reaches_plot_and_sample_and_labels_the_figures(tmp_path, factory, capsys):
    """A VAE whose pixels are partly missing: the mask is an argument of model and guide
    (required: a program called without it fails), so figures, plot and sample all pass it."""
    out = tmp_path / "run"
    assert main(["train", f"{factory}:masked_images", "--out", str(out), *QUICK[:-1]]) == 0
    printed = capsys.readouterr().out
    assert "model arguments after x: 1 per-example tensor(s) (torch.bool (16,)" in printed
    assert "labels: FactoryData.labels, for the figures only" in printed
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"latent_space.png", "samples.png", "reconstructions.png"} <= figures
    named = ["--factory", f"{factory}:masked_images"]
    run = load_run(out, factory=named[1])
    assert run.data.test_y is not None and run.test_inputs()[1].dtype == torch.bool
    assert main(["plot", str(out), "--out", str(tmp_path / "figures"), *named]) == 0
    assert_png(tmp_path / "figures" / "latent_space.png")
    assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "s.png"), *named]) == 0
    assert_png(tmp_path / "s.png")
    assert main(["evaluate", str(out), "--num-samples", "4", "--quiet", *named]) == 0


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("rows_differ", "FactoryData.args[0] of shape (89,) for x of 90 rows"),
        ("not_a_tensor", "FactoryData.args[0] of type list; every model argument must be a"),
        ("float_second", "a plain pair (x, y) means labels y, one integer per example"),
        ("three_tensors", "a tuple of 3 tensors; return pyrovae.runs.FactoryData("),
        ("unknown_key", "keys are x (required), args and labels"),
        ("sequences_3d", "FactoryData.x of shape (90, 12, 1) with model arguments"),
        ("one_too_many", "model takes 2 positional argument(s) (x, lengths), but the data"),
    ],
)
def test_bad_factory_data_are_refused_in_one_line(tmp_path, factory, capsys, function, message):
    out = tmp_path / "run"
    assert main(["train", f"{factory}:{function}", "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_args_split_with_x_and_round_trip_the_run_copy_as_they_are(tmp_path):
    """split_arrays cuts every argument by x's permutation, keeping its dtype and shape, and
    the run's copy (read with allow_pickle=False) gives them back unchanged."""
    from pyrovae.data import DataError, DataSplits, split_arrays
    from pyrovae.runs.data import load_splits, save_splits

    x = torch.arange(40.0).reshape(10, 4)
    lengths, mask = torch.arange(10), torch.arange(30).reshape(10, 3) % 2 == 0
    data = split_arrays(x, None, "own", seed=3, test_fraction=0.3, args=(lengths, mask))
    for split in ("train", "test"):
        rows = getattr(data, f"{split}_x")[:, 0].long() // 4  # row i of x holds 4 i, ...
        got_lengths, got_mask = getattr(data, f"{split}_args")
        assert got_lengths.dtype == torch.int64 and got_lengths.equal(lengths[rows])
        assert got_mask.dtype == torch.bool and got_mask.equal(mask[rows])
    again = load_splits(save_splits(tmp_path / "copy.npz", data), "own")
    for split in ("train", "test"):
        for ours, theirs in zip(
            getattr(data, f"{split}_args"), getattr(again, f"{split}_args"), strict=True
        ):
            assert ours.dtype == theirs.dtype and ours.equal(theirs)
    with pytest.raises(DataError, match=r"test_args\[0\] must be a tensor of 3 rows"):
        DataSplits("own", x[:7], x[7:], None, None, None, train_args=(x[:7],), test_args=(x,))
    with pytest.raises(DataError, match="2 train arguments but 1 test arguments"):
        DataSplits(
            "own", x[:7], x[7:], None, None, None, train_args=(x[:7],) * 2, test_args=(x[7:],)
        )
