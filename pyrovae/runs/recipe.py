"""What a model family brings to a run: :class:`Recipe`, the hooks the orchestration asks.

The orchestration (:mod:`pyrovae.runs.training`, :mod:`~pyrovae.runs.reopen`,
:mod:`~pyrovae.runs.evaluation`) treats every family alike and writes every file itself; a
recipe answers questions about its family. Each hook takes what it needs and returns its
answer; none changes the (frozen) config it is given, and none writes to the run directory
(``fit`` hands each result to the ``save`` it is given instead).

A recipe declares:

- ``name``, ``summary``: its model name on the command line and a line for ``--help``;
- ``options``: a frozen dataclass of its options (fields made options with
  :func:`~pyrovae.runs.config.setting`, resolved fields without), with ``validate()``;
- ``objective``: the objective it always trains with, or None for ``--objective``;
- ``files``: files of its own in a run directory (ssvae: ``best.pt``);
- ``sequences``: whether its models take sequences (N, T, D) with lengths (seqvae, dmm);
- ``defaults``: its own defaults for settings every run has (e.g. ``{"lr": 2e-3}``), which
  ``pyrovae train MODEL`` (and its ``--help``) and :func:`~pyrovae.runs.config_for` use
  where the caller gives none;

and implements ``pair`` (the model and guide for a resolved config). The other hooks have
defaults for a pair trained by SVI on the unlabelled training rows, evaluated by importance
sampling, with the VAE's figures.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..data import DataSplits
from ..diagnostics import figures, views, write_figures
from ..diagnostics.vae_figures import SAMPLES_TITLE
from ..infer import LogMarginal
from .config import NoOptions, TrainConfig, flag_of
from .data import describe, load_data, with_shape
from .estimates import importance_report, importance_rows
from .inputs import Inputs, as_args
from .limits import check_sample_count
from .memory import check_pair_memory
from .record import Run, RunError

Log = Callable[[str], None]


@dataclass(frozen=True)
class Built:
    """A pair built for a config, and the config with what was resolved from the data."""

    config: TrainConfig
    model: Callable
    guide: Callable
    data: DataSplits
    messages: tuple[str, ...] = ()
    #: The data came from no dataset name (a factory returned them): the run keeps a copy.
    keep_data: bool = False
    #: The user code the build imported ("module from file"), said when a run is reopened.
    code: str | None = None


@dataclass
class TrainingPlan:
    """What :class:`~pyrovae.infer.Trainer` is given, besides the pair and the settings."""

    #: The splits the run uses (e.g. with a validation split carved from the training rows).
    data: DataSplits
    #: The training data in any form :func:`~pyrovae.infer.batches.make_batches` accepts.
    train_data: Any
    #: None: the run's ``config.objective`` (a name of :data:`~pyrovae.infer.OBJECTIVES`, or
    #: ``"auto"``, which the Trainer resolves from the program and the run records); a
    #: ``pyro.infer.ELBO`` instance only where the family's objective takes settings of its
    #: own (the semi-supervised ELBO's alpha). The name is decided in :meth:`Recipe.prepare`.
    objective: Any = None
    metrics: list[Callable] = field(default_factory=list)
    callbacks: list[Callable] = field(default_factory=list)
    messages: tuple[str, ...] = ()
    #: KL warm-up epochs (:class:`~pyrovae.infer.Trainer`'s ``kl_warmup``); 0: none.
    kl_warmup: int = 0
    #: ``metrics`` evaluated once more before the first epoch of a fresh run, on the pair as
    #: ``initialize`` left it, and recorded in the history as epoch 0.
    record_start: bool = False


@dataclass(frozen=True)
class Fitted:
    """A fit by the recipe's own algorithm (not SVI), as the run directory records it."""

    config: TrainConfig
    model: Callable
    guide: Callable
    history: list[dict]
    #: metrics.json (with its ``units`` and ``history``).
    metrics: dict
    #: What the checkpoint calls its epoch (EM: the iterations of the kept fit).
    epoch: int


@dataclass(frozen=True)
class Finished:
    """After the last epoch: notes on the run, entries for metrics.json, lines to log."""

    notes: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """``eval.json``'s numbers, and the importance-sampling result behind them (None when
    the recipe computed them exactly)."""

    report: dict
    result: LogMarginal | None = None


class Recipe:
    """A model family's hooks; see the module docstring."""

    name: ClassVar[str]
    summary: ClassVar[str]
    options: ClassVar[type] = NoOptions
    objective: ClassVar[str | None] = None
    files: ClassVar[tuple[str, ...]] = ()
    #: The family's models take sequences (N, T, D) with lengths (seqvae, dmm), not rows.
    sequences: ClassVar[bool] = False
    #: The family's own defaults for common settings of :class:`TrainConfig` (``lr``,
    #: ``epochs``, ...), in place of TrainConfig's where the caller sets none.
    defaults: ClassVar[dict[str, Any]] = {}
    #: None: the Trainer estimates each epoch's ``test_elbo`` (one sample). Otherwise one of
    #: the plan's ``metrics`` records it (the Trainer does not evaluate it a second time), and
    #: this is what metrics.json's ``units`` says of it.
    test_elbo_note: ClassVar[str | None] = None

    # ---- building ---------------------------------------------------------------------------

    def build(
        self,
        config: TrainConfig,
        saved: DataSplits | None = None,
        code_path: tuple[str, ...] | None = None,
    ) -> Built:
        """Load the data (or use ``saved``, a run's own copy), resolve the settings that
        depend on them, and build the pair. ``code_path`` is None when training; when a run
        is reopened, the only directories besides the installed environment that code named
        in its config may be imported from (a factory's)."""
        data = saved if saved is not None else load_data(config, sequences=self.sequences)
        config, messages = self.prepare(config, data)
        check_pair_memory(
            lambda: self.pair(config),
            rows=min(config.batch_size, len(data.train_x)),
            particles=config.num_particles,
            training=code_path is None,
            sizes=_sizes(config),
        )
        model, guide = self.pair(config)
        return Built(config, model, guide, data, tuple(messages))

    def prepare(self, config: TrainConfig, data: DataSplits) -> tuple[TrainConfig, list[str]]:
        """The config with the data's shape, the objective and :meth:`resolve`'s settings,
        and lines describing the data and what was resolved.

        The objective's name is decided here, once for every run: the family's own
        (:attr:`objective`, e.g. ``"enum"`` for a mixture whose component is summed out) where
        it has one, else the run's ``--objective`` (``"auto"``: the Trainer picks ``"enum"`` or
        ``"elbo"`` from the program, and the run records its choice).

        Raises:
            ValueError: an objective other than the family's own, for a family that has one.
        """
        if self.objective is not None and config.objective != self.objective:
            if config.objective != "auto":
                raise ValueError(
                    f"{self.name} trains with the objective {self.objective!r} only (its "
                    f"discrete latents are summed out exactly), not {config.objective!r}"
                )
            config = config.replace(objective=self.objective)
        config, messages = self.resolve(with_shape(config, data), data)
        return config, [describe(data), *messages]

    def resolve(self, config: TrainConfig, data: DataSplits) -> tuple[TrainConfig, list[str]]:
        """The config with the settings resolved from the data, and lines explaining them."""
        return config, []

    def pair(self, config: TrainConfig) -> tuple[Callable, Callable]:
        """The (model, guide) pair for a resolved config."""
        raise NotImplementedError(f"the recipe {self.name!r} builds no pair")

    def test_inputs(self, config: TrainConfig, data: DataSplits) -> Inputs:
        """The test inputs as the model sees them: the rows x, or a tuple of the programs'
        arguments (the sequence models' (x, lengths))."""
        return data.test_x

    # ---- training ---------------------------------------------------------------------------

    def refuse_resume(self, config: TrainConfig) -> str | None:
        """Why a saved run cannot continue, or None."""
        return None

    def fit(
        self,
        config: TrainConfig,
        data: DataSplits,
        *,
        save: Callable[[Fitted], None],
        progress: bool,
        log: Log,
    ) -> Fitted | None:
        """Fit by an algorithm of the family's own, handing every result worth keeping to
        ``save``; return the final one. None: train by SVI."""
        return None

    def plan(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path
    ) -> TrainingPlan:
        """What SVI trains on and with (``out``: where the run's own files go)."""
        return TrainingPlan(data, (data.train_x,))

    def transform(self, config: TrainConfig) -> Callable | None:
        """A per-epoch transform of the training rows (e.g. dynamic binarization), or None."""
        return None

    def initialize(
        self,
        config: TrainConfig,
        model: Callable,
        guide: Callable,
        data: DataSplits,
        *,
        log: Log,
        progress: bool,
        save: Callable[[dict], None],
        state: dict | None = None,
    ) -> dict[str, float] | None:
        """Set a fresh pair's parameters from the data before SVI, e.g. by pretraining;
        ``log`` takes lines for the run's log; what it returns (e.g. the pretraining's
        seconds) goes into the history's epoch-0 record where the plan keeps one
        (``record_start``). A long initialisation hands ``save`` a state
        it can continue from (a dict of tensors and plain values, e.g. a pretraining
        Trainer's ``state_dict`` after each epoch): it becomes the run's checkpoint, and a run
        interrupted there is continued by ``--resume``, which calls this again with that
        ``state``. Not called on a resume of SVI itself."""

    def finish(self, run: Run) -> Finished:
        """After the last epoch: notes, metrics entries, messages."""
        return Finished()

    def closing(self, run: Run) -> str:
        """The last line of ``train``'s log."""
        last = run.history[-1]
        return (
            f"done: epoch {last['epoch']}, train ELBO {last['train_elbo']:.2f}, test ELBO "
            f"{last['test_elbo']:.2f} nats per example; run saved in {run.path}"
        )

    def units(self, config: TrainConfig) -> str:
        """The family's clause of metrics.json's ``units`` note ("" for none)."""
        return ""

    # ---- a run reopened ---------------------------------------------------------------------

    def reopen(self, run: Run) -> Run:
        """A run rebuilt from its directory, completed with what it needs beyond its
        checkpoint (a new :class:`Run`; the one given is not changed)."""
        return run

    def figures(self, run: Run, out_dir: Path) -> list[Path]:
        """Write the run's figures into ``out_dir``; return their paths. The programs take
        the test rows x and, where the data have them, their further arguments."""
        x, *args = as_args(run.test_inputs())
        return write_figures(
            run.model,
            run.guide,
            x,
            out_dir,
            args=tuple(args),
            labels=run.data.test_y,
            image_shape=run.data.image_shape,
            history=run.history,
            seed=run.config.seed,
        )

    def draw(self, run: Run, n: int) -> tuple[np.ndarray, str]:
        """``n`` images from the model (flattened, (n, D)) and a title; seeded by the caller.
        Programs with further arguments after x (a mask, a covariate) are given the first
        test example's for every draw: they cannot be drawn from the model."""
        inputs = as_args(run.test_inputs())
        sites = views.find_sites(run.model, run.guide, tuple(a[:8] for a in inputs))
        means = views.prior_means(run.model, views.repeat_first(inputs, n), sites)
        title = SAMPLES_TITLE.format(n=n)
        if len(inputs) > 1:
            title += ", with the model arguments of test example 0"
        return means.cpu().numpy(), title

    def write_samples(self, run: Run, n: int, path: Path) -> Path:
        """``pyrovae sample``: ``n`` draws of :meth:`draw` as a grid of images at ``path``
        (seeded by the caller)."""
        if run.data.image_shape is None:
            raise RunError(
                f"{run.path} was trained on data that are not images (no image shape); "
                "sampling to a picture needs image data"
            )
        check_sample_count(n, run.data.image_shape)
        images, title = self.draw(run, n)
        grid = images.reshape(n, *run.data.image_shape)
        return figures.save_image_grid(grid, path, title=title)

    def evaluate(
        self, run: Run, x: Inputs, *, num_samples: int, batch_size: int | None, progress: bool
    ) -> Evaluation:
        """``eval.json``'s numbers for the test inputs x: by default the importance-sampled
        log-likelihood and the ELBO from the same draws."""
        report, result = importance_report(
            run.model,
            run.guide,
            x,
            num_samples=num_samples,
            batch_size=batch_size,
            progress=progress,
            device=run.config.device,
        )
        return Evaluation(report, result)

    def table(self, report: dict) -> list[tuple[str, str]]:
        """``eval.json``'s numbers as rows (name, value) of the printed table."""
        return importance_rows(report)


#: Options that set a pair's size (``latent_dim``, ``hidden_dims``, ``components``, ...).
_SIZE_WORDS = re.compile(r"dim|hidden|components")


def _sizes(config: TrainConfig) -> str:
    """The settings that set a pair's size, as flags: ``--latent-dim 10, --hidden 400, ...``."""
    common = [f for f in dataclasses.fields(config) if f.name in ("batch_size", "num_particles")]
    own = [f for f in dataclasses.fields(config.options) if _SIZE_WORDS.search(f.name)]
    shown = []
    for owner, fields in ((config.options, own), (config, common)):
        for f in fields:
            value = getattr(owner, f.name)
            if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
                shown.append(f"{flag_of(f)} {','.join(map(str, value))}")
            elif isinstance(value, int) and not isinstance(value, bool):
                shown.append(f"{flag_of(f)} {value}")
    return ", ".join(shown)
