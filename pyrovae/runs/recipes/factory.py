"""``pyrovae train package.module:function``: a user's own (model, guide) pair.

The factory is imported (from the working directory, as ``python -m`` would, or from
``sys.path``) and called with no registration. It receives, by keyword, whichever of these its
signature names: ``input_dim``, ``latent_dim``, ``hidden_dims``, ``image_shape``, ``data`` (a
:class:`~pyrovae.data.DataSplits`), ``config`` (the :class:`~pyrovae.runs.TrainConfig`); it
returns ``(model, guide)`` or ``(model, guide, data)``. Its data are one of:

- a tensor x (N, D) (or images (N, H, W), (N, C, H, W), flattened to rows);
- :class:`FactoryData` ``(x, args=(...), labels=None)`` (or a dict with those keys): ``args``
  are further arguments of the programs, tensors (N, ...) such as sequence lengths, masks or
  covariates, passed after x as ``model(x, *args)`` and ``guide(x, *args)`` in training,
  ``evaluate`` (``log_marginal(model, guide, (x, *args))``), ``plot`` and ``sample``;
  ``labels`` (N,) integers are used for the figures only and never reach the programs;
  with ``args``, x must be rows (N, D) (a 3-D x may be sequences: refused, not flattened);
- a plain pair ``(x, y)``, read as x with labels y only where y is (N,) integers (and said
  so in the log); any other second tensor is refused, naming :class:`FactoryData`;
- a :class:`~pyrovae.data.DataSplits`, already split.

x, its args and its labels are split into train/test together, by the run's seed. The
programs' signatures are checked against the arguments they will get before training.
``sample``, and the samples, traversals and interpolations of the figures, give the
programs the first test example's args (they cannot be drawn from the model).

A factory's model brings its own density: ``--likelihood`` and ``--binarize`` only decide how
x is prepared (its args never change), and a factory may read them from its config argument.
Data a factory returns are kept in the run directory (:data:`~pyrovae.runs.record.DATA_COPY`,
a pickle-free ``.npz`` with the args as ``train_args_0``, ``test_args_0``, ...; and
``config.json``'s ``dataset`` says "(factory data)"), so that the run reopens (``evaluate``,
``plot``, ``sample``, ``--resume``) on the same rows and arguments without using the data
the factory returns then.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ...data import DataSplits, split_arrays
from ..config import TrainConfig
from ..data import load_data
from ..factory_import import ModelSpecError, load_factory
from ..inputs import Inputs
from ..recipe import Built, TrainingPlan
from .observed import ARCHITECTURE, BETA, ObservedOptions, ObservedRecipe, beta_clause

FACTORY_ARGUMENTS = ("input_dim", "latent_dim", "hidden_dims", "image_shape", "data", "config")
#: How ``config.dataset`` marks a run whose data its factory returned.
FACTORY_SUFFIX = "(factory data)"


@dataclass(frozen=True)
class FactoryData:
    """What a factory's data are, said explicitly: the rows x, the programs' further
    arguments, and labels.

    Args:
        x: examples (N, D), given to the programs as rows (N, D); without ``args`` also
            images (N, H, W) / (N, C, H, W), flattened to rows as a bare tensor x is (with
            ``args``, flatten x yourself: a 3-D x may be sequences (N, T, D), which a model
            reading their steps must not get as (N, T * D)).
        args: tensors (N, ...), one row per example (lengths (N,), a mask (N, T), covariates
            (N, C), any dtype), passed to the model and the guide after x:
            ``model(x, *args)``. A single tensor is taken as ``(tensor,)``.
        labels: (N,) integers 0..K-1 or None: for the figures (the latent space coloured by
            class) only, never passed to the programs.

    Returned as ``(model, guide, FactoryData(x, args=(lengths,)))``; x, args and labels are
    split into train/test together by the run's seed.
    """

    x: torch.Tensor
    args: tuple[torch.Tensor, ...] | torch.Tensor = ()
    labels: torch.Tensor | None = None


@dataclass(frozen=True)
class FactoryOptions(ObservedOptions):
    """What a factory may read from its config: the VAE's options."""

    architecture: str = ARCHITECTURE
    beta: float = BETA


def _check_pair(spec: str, result: object) -> tuple[Callable, Callable, object]:
    if not isinstance(result, tuple) or len(result) not in (2, 3):
        raise ModelSpecError(
            f"the factory {spec} returned {type(result).__name__}; it must return a tuple "
            "(model, guide) or (model, guide, data)"
        )
    model, guide = result[:2]
    for role, program in (("model", model), ("guide", guide)):
        if not callable(program):
            raise ModelSpecError(
                f"the factory {spec} returned a {role} of type {type(program).__name__}, which is "
                "not callable; a model and a guide are Pyro programs (functions or PyroModules)"
            )
    return model, guide, result[2] if len(result) == 3 else None


def _as_splits(spec: str, data: object, config: TrainConfig) -> tuple[DataSplits, list[str]]:
    """The factory's data as splits, and lines saying what its tensors were taken to be."""
    if isinstance(data, DataSplits):
        return data, []
    split = dict(seed=config.seed, test_fraction=config.test_fraction)
    if isinstance(data, torch.Tensor):
        return split_arrays(data.numpy(), None, spec, **split), []
    pair = isinstance(data, tuple) and all(isinstance(t, torch.Tensor) for t in data)
    if pair and len(data) == 2:
        x, y = data
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.dim() != 1:
            raise ModelSpecError(
                f"the factory {spec} returned (x, t) with t {y.dtype} {tuple(y.shape)}: a plain "
                "pair (x, y) means labels y, one integer per example. To pass t to the model "
                "and the guide, return pyrovae.runs.FactoryData(x, args=(t,)); for labels, "
                "FactoryData(x, labels=t.long())"
            )
        data = FactoryData(x, labels=y)
        note = (
            f"labels: the second tensor of the (x, y) the factory returned ({len(y)} integers), "
            "for the figures only, never passed to the model; to pass it to the model (e.g. "
            "lengths), return pyrovae.runs.FactoryData(x, args=(y,))"
        )
        return _split_factory_data(spec, data, split), [note]
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - {"x", "args", "labels"})
        if unknown or "x" not in data:
            raise ModelSpecError(
                f"the factory {spec} returned data as a dict with keys {sorted(data)}; its keys "
                "are x (required), args and labels, as pyrovae.runs.FactoryData's fields"
            )
        data = FactoryData(**data)
    if isinstance(data, FactoryData):
        return _split_factory_data(spec, data, split), _notes(data)
    if pair:
        raise ModelSpecError(
            f"the factory {spec} returned a tuple of {len(data)} tensors; return "
            "pyrovae.runs.FactoryData(x, args=(...), labels=...) to say which tensors are "
            "arguments of the model and which are labels"
        )
    raise ModelSpecError(
        f"the factory {spec} returned data of type {type(data).__name__}; data must be a "
        "tensor x of shape (N, D), pyrovae.runs.FactoryData(x, args=(...), labels=...), a "
        "tuple (x, y) with integer labels y, or a pyrovae.data.DataSplits"
    )


def _split_factory_data(spec: str, data: FactoryData, split: dict) -> DataSplits:
    """x, args and labels checked (one line naming what is wrong) and split together."""
    args = (data.args,) if isinstance(data.args, torch.Tensor) else data.args
    if not isinstance(args, tuple | list):
        raise ModelSpecError(
            f"the factory {spec} returned FactoryData.args of type {type(args).__name__}; "
            "give a tuple of tensors, e.g. args=(lengths,)"
        )
    for name, value in (("x", data.x), ("labels", data.labels)):
        if value is not None and not isinstance(value, torch.Tensor):
            raise ModelSpecError(
                f"the factory {spec} returned FactoryData.{name} of type "
                f"{type(value).__name__}; it must be a torch.Tensor"
            )
    rows = data.x.shape[0] if data.x.dim() else 0
    if args and data.x.dim() > 2:
        # Flattened as images are, sequences (N, T, D) would reach a model that reads their
        # steps with its lengths as (N, T * D): refused rather than reshaped behind its back.
        raise ModelSpecError(
            f"the factory {spec} returned FactoryData.x of shape {tuple(data.x.shape)} with "
            "model arguments; the programs are given x as rows (N, D), so give it as "
            "x.reshape(len(x), -1) and restore its shape inside the model and the guide"
        )
    for i, arg in enumerate(args):
        if not isinstance(arg, torch.Tensor):
            raise ModelSpecError(
                f"the factory {spec} returned FactoryData.args[{i}] of type "
                f"{type(arg).__name__}; every model argument must be a torch.Tensor with one "
                f"row per example (N = {rows}), e.g. torch.as_tensor(...)"
            )
        if arg.dim() == 0 or arg.shape[0] != rows or arg.is_complex():
            raise ModelSpecError(
                f"the factory {spec} returned FactoryData.args[{i}] of shape "
                f"{tuple(arg.shape)} for x of {rows} rows; every model argument needs one row "
                "per example of x (N, ...), so that it is split with x"
            )
    labels = data.labels
    if labels is not None and (labels.is_floating_point() or labels.dtype == torch.bool):
        raise ModelSpecError(
            f"the factory {spec} returned FactoryData.labels of dtype {labels.dtype}; labels "
            "are class indices, one integer 0..K-1 per example (labels.long())"
        )
    y = None if labels is None else labels.detach().cpu().numpy()
    return split_arrays(data.x.detach().cpu().numpy(), y, spec, args=tuple(args), **split)


def _notes(data: FactoryData) -> list[str]:
    args = (data.args,) if isinstance(data.args, torch.Tensor) else data.args
    notes = []
    if args:
        shapes = ", ".join(f"{a.dtype} {tuple(a.shape[1:])}" for a in args)
        notes.append(
            f"model arguments after x: {len(args)} per-example tensor(s) ({shapes} per example), "
            "split with x and passed as model(x, *args) and guide(x, *args)"
        )
    if data.labels is not None:
        notes.append("labels: FactoryData.labels, for the figures only, never passed to the model")
    return notes


def _check_arity(spec: str, model: Callable, guide: Callable, data: DataSplits) -> None:
    """The programs take x and the data's further arguments, positionally: refused before
    anything trains when a program needs more (a ``lengths`` the data do not give) or
    takes fewer."""
    given = 1 + len(data.train_args)
    for role, program in (("model", model), ("guide", guide)):
        # A torch module's __call__ takes (*args, **kwargs): its forward says what it takes.
        target = program.forward if isinstance(program, torch.nn.Module) else program
        try:
            parameters = list(inspect.signature(target).parameters.values())
        except (TypeError, ValueError):  # no signature to read: Pyro will say
            continue
        positional = [
            p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        required = [p.name for p in positional if p.default is p.empty]
        varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
        if len(required) > given:
            raise ModelSpecError(
                f"the factory {spec}'s {role} takes {', '.join(required)}, but the data give it "
                f"{given} argument(s) (x and {given - 1} more); return the others with x as "
                "pyrovae.runs.FactoryData(x, args=(...))"
            )
        if not varargs and len(positional) < given:
            raise ModelSpecError(
                f"the factory {spec}'s {role} takes {len(positional)} positional argument(s) "
                f"({', '.join(p.name for p in positional)}), but the data give it {given} (x "
                "and FactoryData.args); give the program a parameter for each"
            )


class FactoryRecipe(ObservedRecipe):
    """A user's ``module:function`` pair, trained as a VAE is (objective from the program)."""

    name = "package.module:function"
    summary = "your own factory returning (model, guide) or (model, guide, data)"
    options = FactoryOptions

    def __init__(self, known: tuple[str, ...] = ()) -> None:
        self.known = known  # the built-in model names, for the error on a name that is neither

    def build(
        self,
        config: TrainConfig,
        saved: DataSplits | None = None,
        code_path: tuple[str, ...] | None = None,
    ) -> Built:
        """Call the factory with what its signature asks for; data come from ``saved`` (a
        reopened run's copy), else from ``--dataset`` when the factory needs them before it
        runs, else from what it returns, else from ``--dataset``."""
        factory = load_factory(config.model, self.known, code_path)
        module = sys.modules.get(config.model.partition(":")[0])
        code = f"factory {config.model} from {getattr(module, '__file__', None) or 'its module'}"
        wanted = set(inspect.signature(factory).parameters) & set(FACTORY_ARGUMENTS)
        data, messages = saved, []
        if data is None and wanted & {"input_dim", "image_shape", "data"}:
            data = load_data(config)
        if data is not None:
            config, messages = self.prepare(config, data)
        available = {
            "input_dim": config.input_dim,
            "latent_dim": config.latent_dim,
            "hidden_dims": tuple(config.hidden_dims),
            "image_shape": tuple(config.image_shape) if config.image_shape else None,
            "data": data,
            "config": config,
        }
        try:
            result = factory(**{k: available[k] for k in wanted})
        except ValueError as e:  # the factory refusing these settings, in its own words
            raise ModelSpecError(f"the factory {config.model} refused the settings: {e}") from e
        model, guide, own_data = _check_pair(config.model, result)
        keep = own_data is not None and saved is None
        if keep:
            data, notes = _as_splits(config.model, own_data, config)
            config = config.replace(dataset=f"{config.model} {FACTORY_SUFFIX}")
            config, messages = self.prepare(config, data)
            messages += notes
        elif data is None:
            data = load_data(config)
            config, messages = self.prepare(config, data)
        _check_arity(config.model, model, guide, data)
        return Built(config, model, guide, data, tuple(messages), keep_data=keep, code=code)

    def test_inputs(self, config: TrainConfig, data: DataSplits) -> Inputs:
        """The test rows (binarized once where ``--binarize`` says) and, where the factory
        gave them, the further arguments: ``(x, *args)``."""
        x = super().test_inputs(config, data)
        return (x, *data.test_args) if data.test_args else x

    def plan(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path
    ) -> TrainingPlan:
        """SVI on the training rows and their further arguments, batched together (a
        dynamic binarization redraws x only)."""
        return TrainingPlan(data, (data.train_x, *data.train_args))

    def resolve(self, config: TrainConfig, data: DataSplits) -> tuple[TrainConfig, list[str]]:
        """The likelihood and binarization decide only how the data are prepared: the
        factory's model brings its own density."""
        config, _ = super().resolve(config, data)
        if config.binarize == "dynamic":
            treatment = (
                "training rows binarized dynamically (0/1 redrawn each epoch), test rows once "
                "(seed 0), as --likelihood bernoulli asks"
            )
        else:
            values = (
                "binary"
                if data.is_binary
                else "values in [0, 1]"
                if data.is_unit_interval
                else "real values outside [0, 1]"
            )
            treatment = f"used as they are ({values})"
            if data.is_unit_interval and not data.is_binary:
                treatment += "; for a Bernoulli model pass --likelihood bernoulli to binarize"
        return config, [
            f"data for the factory's model, which brings its own density: {treatment} "
            f"(a factory taking a config argument reads likelihood={config.likelihood!r})",
        ]

    def units(self, config: TrainConfig) -> str:
        return beta_clause(config.beta)
