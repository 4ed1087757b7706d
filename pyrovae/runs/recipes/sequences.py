"""``pyrovae train seqvae | dmm``: latent-variable models of sequences (N, T, D) with lengths.

Two pairs of one family, trained and evaluated on the same data (``--dataset chorales``, or
a user's ``.npz`` with ``x`` (N, T, D) and ``lengths`` (N,)):

- ``seqvae``: :class:`~pyrovae.models.SequenceVAE` (one code z per sequence, a GRU decoder
  teacher-forced on the previous steps) with :class:`~pyrovae.guides.SequenceEncoder`
  (bidirectional GRU); ``--kl-warmup`` and ``--input-dropout`` against posterior collapse
  (Bowman et al. 2016);
- ``dmm``: :class:`~pyrovae.models.DeepMarkovModel` (a state z_t per step, gated
  transition) with :class:`~pyrovae.guides.MarkovEncoder` (q(z_t | z_{t-1}, x_{t:T}),
  Krishnan et al. 2017).

The data plate is per sequence, so every number of the run directory is per sequence; padded
steps are masked out of both programs. Each epoch records, besides the ELBO, its two terms
on the test sequences (``test_reconstruction``, ``test_kl``: :func:`pyrovae.infer.terms.
elbo_terms`, a fixed-seed estimate that leaves the training streams alone): a KL near zero
is posterior collapse. ``evaluate`` adds to the importance-sampled log p(x) per sequence the
number the literature reports, per time step: sum_n log p(x_n) / sum_n T_n (the negative of
which is the "NLL per time step" of Boulanger-Lewandowski et al. 2012 and Krishnan et al.).
Figures: piano rolls of test sequences beside their reconstructions, samples, an
interpolation between the codes of two test sequences (seqvae), and the terms over epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyro
import torch
from pyro import poutine

from ...data import DataSplits, SequenceData
from ...diagnostics.figures import save_elbo_curves
from ...diagnostics.sequence_figures import save_piano_rolls, save_terms_curves
from ...guides import MarkovEncoder, SequenceEncoder
from ...infer.modes import program_mode
from ...infer.terms import elbo_terms
from ...likelihoods import LIKELIHOODS
from ...models import DeepMarkovModel, SequenceVAE
from ...procedures.sequences import TERMS_DRAWS, per_step, terms_metric
from ..config import OptionsBase, TrainConfig, setting
from ..data import resolve_likelihood
from ..estimates import importance_rows
from ..inputs import Inputs
from ..recipe import Evaluation, Recipe, TrainingPlan
from ..record import Run
from .observed import KL_WARMUP, latent_dim_setting, positive_ints, warmup_clause

#: Draws per test sequence of the terms ``evaluate`` reports.
EVALUATE_TERMS_DRAWS = 32
#: The most piano rolls ``pyrovae sample`` draws into one figure.
MAX_ROLLS = 32


@dataclass(frozen=True)
class SequenceOptions(OptionsBase):
    """What both sequence models take: the code size, the recurrent width, the likelihood
    and the KL warm-up."""

    latent_dim: int = latent_dim_setting(
        16, "dimension of z (seqvae: one per sequence; dmm: one per step)"
    )
    hidden_dim: int = setting(
        256, "state width of the recurrent networks (the guide's GRU; seqvae's decoder GRU)"
    )
    likelihood: str = setting(
        "auto",
        "p(x_t | ...) per value of a step; auto: Bernoulli for binary data (piano rolls), "
        "continuous Bernoulli for other values in [0, 1], Gaussian otherwise",
        choices=("auto", *LIKELIHOODS),
    )
    kl_warmup: int = KL_WARMUP

    def validate(self) -> None:
        super().validate()
        if self.hidden_dim < 1:
            raise ValueError(f"--hidden-dim must be at least 1, got {self.hidden_dim}")
        if self.kl_warmup < 0:
            raise ValueError(f"--kl-warmup must be >= 0, got {self.kl_warmup}")


@dataclass(frozen=True)
class SequenceVAEOptions(SequenceOptions):
    input_dropout: float = setting(
        0.0,
        "probability of zeroing each previous step fed to the decoder in training "
        "(Bowman et al.'s word dropout, against posterior collapse); 0: none",
    )

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError(f"--input-dropout must be in [0, 1), got {self.input_dropout}")


@dataclass(frozen=True)
class DMMOptions(SequenceOptions):
    latent_dim: int = latent_dim_setting(32, "dimension of each step's state z_t")
    hidden_dim: int = setting(128, "state width of the guide's backward network")
    transition_dim: int = setting(128, "hidden width of the gated transition's networks")
    guide_rnn: str = setting(
        "gru",
        "the guide's backward network: gru, or rnn (an Elman RNN with ReLU, as in Krishnan et "
        "al.'s code and Pyro's examples/dmm; a third of a GRU's arithmetic)",
        choices=("gru", "rnn"),
    )
    emission_dims: tuple[int, ...] = setting(
        (64, 64),
        "hidden layer widths of the emission network p(x_t | z_t), comma-separated",
        flag="--emission-hidden",
        parse=positive_ints("positive hidden layer widths, e.g. 64,64"),
    )

    def validate(self) -> None:
        super().validate()
        if self.transition_dim < 1:
            raise ValueError(f"--transition-dim must be at least 1, got {self.transition_dim}")


class SequenceRecipe(Recipe):
    """What ``seqvae`` and ``dmm`` share: sequence data, the likelihood resolved from them,
    the terms recorded each epoch, the per-step numbers and the piano-roll figures."""

    sequences = True
    test_elbo_note = (
        f"test_elbo = test_reconstruction - test_kl, an estimate of the ELBO from {TERMS_DRAWS} "
        "draws per test sequence (fixed seed)"
    )
    #: Titles of the figures: the third column of the reconstructions, the two suptitles.
    regenerated_title: ClassVar[str] = "generated"
    reconstruction_title: ClassVar[str] = ""
    samples_title: ClassVar[str] = ""

    def resolve(self, config: TrainConfig, data: DataSplits) -> tuple[TrainConfig, list[str]]:
        chosen = resolve_likelihood(config.likelihood, "none", data)
        config = config.with_options(likelihood=chosen.likelihood)
        return config, [f"likelihood: {chosen.likelihood} ({chosen.why})"]

    def test_inputs(self, config: TrainConfig, data: DataSplits) -> Inputs:
        return data.test_x, data.test_lengths

    def plan(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path
    ) -> TrainingPlan:
        return TrainingPlan(
            data,
            SequenceData(data.train_x, data.train_lengths),
            metrics=[terms_metric(self.test_inputs(config, data), config.seed)],
            kl_warmup=config.kl_warmup,
        )

    def units(self, config: TrainConfig) -> str:
        clause = (
            "nats per sequence (the data plate is per sequence); test_reconstruction and "
            "test_kl are the test ELBO's terms E_q[log p(x | z)] and KL(q(z | x) || p(z)) per "
            "sequence, from the draws of test_elbo"
        )
        warmup = warmup_clause(config.kl_warmup)
        return f"{clause}; {warmup}" if warmup else clause

    def closing(self, run: Run) -> str:
        last = run.history[-1]
        elbo_per_step = per_step(last["test_elbo"], run.data.test_lengths)
        return (
            f"done: epoch {last['epoch']}, train ELBO {last['train_elbo']:.2f}, test ELBO "
            f"{last['test_elbo']:.2f} nats per sequence ({elbo_per_step:.3f} per "
            f"step), test KL {last['test_kl']:.2f}; run saved in {run.path}"
        )

    # ---- evaluate ---------------------------------------------------------------------------

    def evaluate(
        self, run: Run, x: Inputs, *, num_samples: int, batch_size: int | None, progress: bool
    ) -> Evaluation:
        """The importance-sampled numbers per sequence and per time step, and the ELBO's
        terms per sequence."""
        evaluation = super().evaluate(
            run, x, num_samples=num_samples, batch_size=batch_size, progress=progress
        )
        report = dict(evaluation.report)
        _, lengths = x
        report["units"] = "nats per sequence (per_step: per time step), higher is better"
        report["num_steps"] = int(lengths.sum())
        keys = ("test_elbo", "test_log_likelihood", "test_log_likelihood_stderr")
        report["per_step"] = {key: per_step(report[key], lengths) for key in keys}
        terms = elbo_terms(run.model, run.guide, x, num_samples=EVALUATE_TERMS_DRAWS)
        report["test_kl"] = float(terms.kl.mean())
        report["test_reconstruction"] = float(terms.reconstruction.mean())
        return Evaluation(report, evaluation.result)

    def table(self, report: dict) -> list[tuple[str, str]]:
        rows = importance_rows(report)
        per_step, steps = report["per_step"], report["num_steps"]
        ll, se = per_step["test_log_likelihood"], per_step["test_log_likelihood_stderr"]
        rows += [
            ("test ELBO per step", f"{per_step['test_elbo']:.3f}"),
            (f"test log p(x) per step, over {steps} steps", f"{ll:.3f} ± {se:.3f}"),
            ("test KL(q(z | x) || p(z))", f"{report['test_kl']:.2f}"),
            ("test E_q[log p(x | z)]", f"{report['test_reconstruction']:.2f}"),
        ]
        return rows

    # ---- figures ----------------------------------------------------------------------------

    def figures(self, run: Run, out_dir: Path) -> list[Path]:
        out = Path(out_dir)
        written = []
        if run.history:
            written.append(save_elbo_curves(run.history, out / "elbo.png"))
            if "test_kl" in run.history[0]:
                written.append(save_terms_curves(run.history, out / "terms.png"))
        x, lengths = run.test_inputs()
        shown = min(4, len(lengths))
        with torch.random.fork_rng(devices=[]):
            pyro.set_rng_seed(run.config.seed)
            data, reconstructed, generated = self.reconstructions(run, x[:shown], lengths[:shown])
            steps = [int(t) for t in lengths[:shown]]
            rolls = [
                [data[i][: steps[i]], reconstructed[i][: steps[i]], generated[i][: steps[i]]]
                for i in range(shown)
            ]
            titles = [
                [f"test sequence {i}", "reconstruction", self.regenerated_title]
                for i in range(shown)
            ]
            written.append(
                save_piano_rolls(
                    rolls,
                    out / "reconstructions.png",
                    titles=titles,
                    suptitle=self.reconstruction_title,
                )
            )
            samples = self.samples(run, 6, int(lengths.float().median()))
            rows, titles = rows_of(list(samples), 3, "sample")
            written.append(
                save_piano_rolls(
                    rows, out / "samples.png", titles=titles, suptitle=self.samples_title
                )
            )
            written += self.extra_figures(run, x, lengths, out)
        return written

    def reconstructions(
        self, run: Run, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sequences, what the model makes of them, and what it generates from their
        code alone, each (n, T, D)."""
        raise NotImplementedError

    def samples(self, run: Run, n: int, steps: int) -> np.ndarray:
        """``n`` sequences (n, steps, D) drawn from the model's prior."""
        raise NotImplementedError

    def extra_figures(
        self, run: Run, x: torch.Tensor, lengths: torch.Tensor, out: Path
    ) -> list[Path]:
        return []

    def write_samples(self, run: Run, n: int, path: Path) -> Path:
        """``pyrovae sample``: ``n`` sequences from the prior as piano rolls, each as long as
        the median test sequence."""
        if n > MAX_ROLLS:
            raise ValueError(f"--n: at most {MAX_ROLLS} piano rolls fit one figure, got {n}")
        steps = int(run.data.test_lengths.float().median())
        rows, titles = rows_of(list(self.samples(run, n, steps)), 4, "sample")
        return save_piano_rolls(rows, path, titles=titles, suptitle=self.samples_title)


def rows_of(rolls: list[np.ndarray], ncols: int, label: str) -> tuple[list, list]:
    """Rolls in rows of ``ncols``, and their titles "label i"."""
    rows = [rolls[i : i + ncols] for i in range(0, len(rolls), ncols)]
    titles = [[f"{label} {i + j}" for j in range(len(row))] for i, row in zip(
        range(0, len(rolls), ncols), rows, strict=True
    )]  # fmt: skip
    return rows, titles


class SequenceVAERecipe(SequenceRecipe):
    """One code z per sequence, a GRU decoder; KL warm-up and input dropout optional."""

    name = "seqvae"
    summary = (
        "sequence VAE: z ~ N(0, I) per sequence, a GRU decoder over the steps (Bowman et al. "
        "2016); --kl-warmup, --input-dropout against posterior collapse"
    )
    options = SequenceVAEOptions
    regenerated_title = "generated from its code"
    reconstruction_title = (
        "test sequences; p(x_t | x_<t, z) at z = E_q[z | x]; a draw from the code alone"
    )
    samples_title = "samples: z ~ p(z), x_t drawn step by step"

    def pair(self, config: TrainConfig) -> tuple[SequenceVAE, SequenceEncoder]:
        model = SequenceVAE(
            config.input_dim,
            config.latent_dim,
            config.hidden_dim,
            likelihood=config.likelihood,
            input_dropout=config.input_dropout,
        )
        return model, SequenceEncoder(config.input_dim, config.latent_dim, config.hidden_dim)

    @staticmethod
    def _decode(model: SequenceVAE, guide: SequenceEncoder, x, lengths):
        """E_q[z | x] (n, L) and p(x_t | x_<t, z) at it (n, T, D), in evaluation mode."""
        with program_mode(model, guide, training=False), torch.no_grad():
            code, _ = guide.encode(x, lengths)
            predicted = model.likelihood(model.step_outputs(code, x)).base_dist.mean
        return code, predicted

    def reconstructions(self, run, x, lengths):
        code, predicted = self._decode(run.model, run.guide, x, lengths)
        generated = run.model.generate(code, x.shape[1])
        return x.cpu().numpy(), predicted.cpu().numpy(), generated.cpu().numpy()

    def samples(self, run: Run, n: int, steps: int) -> np.ndarray:
        z = torch.randn(n, run.model.latent_dim, device=run.config.device)
        return run.model.generate(z, steps).cpu().numpy()

    def extra_figures(self, run, x, lengths, out) -> list[Path]:
        """Draws along the line between the codes of the first two test sequences, each with
        the same random stream (so that what changes is the code's doing)."""
        if len(lengths) < 2:
            return []
        code, _ = self._decode(run.model, run.guide, x[:2], lengths[:2])
        steps = int(lengths[:2].max())
        rolls = []
        for alpha in np.linspace(0.0, 1.0, 6):
            z = (1 - alpha) * code[:1] + alpha * code[1:]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(run.config.seed)
                rolls.append(run.model.generate(z, steps)[0].cpu().numpy())
        titles = [f"{1 - a:.1f} z_0 + {a:.1f} z_1" for a in np.linspace(0.0, 1.0, 6)]
        path = save_piano_rolls(
            [rolls[:3], rolls[3:]],
            out / "interpolation.png",
            titles=[titles[:3], titles[3:]],
            suptitle="between the codes of test sequences 0 and 1 (same noise in every draw)",
        )
        return [path]


class DeepMarkovRecipe(SequenceRecipe):
    """A state z_t per step with a gated transition, a structured guide."""

    name = "dmm"
    summary = (
        "deep Markov model: z_t ~ N(mu(z_{t-1}), s(z_{t-1})^2), x_t ~ p(x | e(z_t)) under "
        "pyro.markov, structured guide q(z_t | z_{t-1}, x_{t:T}) (Krishnan et al. 2017)"
    )
    options = DMMOptions
    regenerated_title = "generated from the prior"
    reconstruction_title = "test sequences; E[x_t | z_t] at z ~ q(z | x); a draw from the prior"
    samples_title = "samples: z_t ~ p(z_t | z_{t-1}), x_t ~ p(x_t | z_t)"

    def pair(self, config: TrainConfig) -> tuple[DeepMarkovModel, MarkovEncoder]:
        model = DeepMarkovModel(
            config.input_dim,
            config.latent_dim,
            config.transition_dim,
            tuple(config.emission_dims),
            likelihood=config.likelihood,
        )
        guide = MarkovEncoder(
            config.input_dim, config.latent_dim, config.hidden_dim, rnn=config.guide_rnn
        )
        return model, guide

    def reconstructions(self, run, x, lengths):
        with program_mode(run.model, run.guide, training=False), torch.no_grad():
            trace = poutine.trace(run.guide).get_trace(x, lengths)
            z = torch.stack([trace.nodes[f"z_{t + 1}"]["value"] for t in range(x.shape[1])], 1)
            predicted = run.model.decode(z).base_dist.mean
        generated = run.model.generate(len(lengths), x.shape[1])
        return x.cpu().numpy(), predicted.cpu().numpy(), generated.cpu().numpy()

    def samples(self, run: Run, n: int, steps: int) -> np.ndarray:
        return run.model.generate(n, steps).cpu().numpy()
