"""The settings of a run: what ``pyrovae train`` turns its arguments into.

A :class:`TrainConfig` holds the settings every run has (data, training, device) and the
options of its recipe (an ``Options`` dataclass of :mod:`pyrovae.runs.recipes`), read through
as attributes: ``config.latent_dim`` is ``config.options.latent_dim``. Both are frozen:
code that resolves a setting returns a new config (:meth:`TrainConfig.replace`,
:meth:`TrainConfig.with_options`) instead of changing the one it was given.

Saved flat as ``config.json`` in the run directory, with the settings resolved from the data
(input shape, likelihood, ...), so that a run can be rebuilt. Every field with an ``option``
in its metadata is a ``pyrovae train`` option (:mod:`pyrovae.cli` builds them from here).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


def option(help: str, *, flag: str | None = None, parse: Callable | None = None, **extra) -> dict:
    """A field's metadata that makes it a command-line option: its help, its flag (default
    ``--field-name``), how to parse its text (default: the type of its default value) and any
    further ``argparse.add_argument`` keywords (``choices``, ``action``)."""
    return {"option": {"help": help, "flag": flag, "parse": parse, **extra}}


def setting(default: Any, help: str, *, minimum: int | None = None, **kwargs) -> Any:
    """A dataclass field with a command-line option; mutable defaults are copied per use.
    ``minimum``: the least value (of each entry, for a tuple), checked by
    :meth:`OptionsBase.validate` for every option that declares one."""
    metadata = option(help, **kwargs)
    if minimum is not None:
        metadata["minimum"] = minimum
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a field (``--field-name`` unless its option names another)."""
    spec = f.metadata.get("option") or {}
    return spec.get("flag") or "--" + f.name.replace("_", "-")


#: The largest value of an integer option (a size, a count): beyond it nothing can be held.
MAX_INT = 2**31 - 1
#: The largest magnitude of a float option (a weight, a rate, a tolerance).
MAX_FLOAT = 1e6
#: The largest learning rate: an Adam step moves every weight by about ``lr``, and a step of
#: more than this many units makes the loss diverge whatever the model.
MAX_LR = 10.0
#: The largest seed: NumPy's and Pyro's seeds are 32-bit.
MAX_SEED = 2**32 - 1


def parse_int(text: str) -> int:
    """An integer option's value: an integer from -MAX_INT to MAX_INT (``1e20`` or ``10.5``
    is refused, and so is a size no machine could hold)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be an integer, got {text!r}") from None
    if abs(value) > MAX_INT:
        raise ValueError(f"must be an integer of at most {MAX_INT}, got {text}")
    return value


def parse_seed(text: str) -> int:
    """A seed: an integer from 0 to :data:`MAX_SEED` (what ``pyro.set_rng_seed`` takes)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be an integer from 0 to {MAX_SEED}, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"must be an integer from 0 to {MAX_SEED}, got {text}")
    return value


def check_finite(values: object) -> None:
    """Raise ValueError naming the first float field of the dataclass ``values`` that is not
    finite, or larger than :data:`MAX_FLOAT` in magnitude: ``--lr inf`` or ``--beta nan``
    parse as floats, but no run can work with them, nor with a weight of 1e30 on a float32
    loss."""
    for f in dataclasses.fields(values):
        value = getattr(values, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{flag_of(f)} must be a finite number, got {value}")
        if isinstance(value, float) and abs(value) > MAX_FLOAT:
            raise ValueError(
                f"{flag_of(f)} must be at most {MAX_FLOAT:g} in magnitude (float32 losses and "
                f"weights hold about 7 digits), got {value:g}"
            )


def check_minimums(values: object) -> None:
    """Raise ValueError naming the first field of the dataclass ``values`` below the
    ``minimum`` its :func:`setting` declares (for a tuple: any of its entries)."""
    for f in dataclasses.fields(values):
        minimum = f.metadata.get("minimum")
        if minimum is None:
            continue
        value = getattr(values, f.name)
        if isinstance(value, tuple | list):
            if not all(v >= minimum for v in value):
                raise ValueError(f"{flag_of(f)} must be at least {minimum} each, got {list(value)}")
        elif value is not None and value < minimum:
            raise ValueError(f"{flag_of(f)} must be at least {minimum}, got {value}")


class OptionsBase:
    """What every recipe's ``Options`` dataclass can do: validate itself."""

    def validate(self) -> None:
        """Raise ValueError naming the first option that cannot work (here: a float option
        that is not finite, an option below its declared minimum; a subclass checks the rest
        of its own and calls this)."""
        check_finite(self)
        check_minimums(self)


@dataclass(frozen=True)
class NoOptions(OptionsBase):
    """A recipe without options of its own."""


def _objective_choices() -> tuple[str, ...]:
    from ..infer import OBJECTIVES

    return ("auto", *OBJECTIVES)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one run; see the module docstring."""

    model: str = "vae"
    out: str = "runs/vae"
    dataset: str = setting(
        "digits",
        "one of digits, mnist, fashion-mnist, binarized-mnist, or a path to your own .npy, .npz "
        "or .csv array (rows are examples; labels optional)",
    )
    data_dir: str | None = setting(
        None,
        "directory with the dataset's files (MNIST: the four original idx files, gzipped or "
        "not, or torchvision's MNIST/raw layout); default $PYROVAE_DATA_DIR or ./data",
        parse=str,
    )
    download: bool = setting(
        False,
        "let torchvision download missing MNIST / Fashion-MNIST files into --data-dir (needs a "
        "network and pip install 'pyrovae[download]')",
        action="store_true",
    )
    test_fraction: float = setting(
        0.2, "share of your own array held out as test data (split by --seed)"
    )
    epochs: int = setting(100, "passes over the training data")
    batch_size: int = setting(128, "examples per step")
    lr: float = setting(1e-3, "Adam learning rate")
    lr_decay: float = setting(
        1.0,
        "multiply the learning rate by this every --lr-decay-epochs epochs (1: constant; "
        "VaDE: 0.9 every 10)",
    )
    lr_decay_epochs: int = setting(1, "epochs between two --lr-decay steps")
    objective: str = setting(
        "auto",
        "auto: enum when the program enumerates a site (or leaves a discrete latent to the "
        "model), elbo otherwise; elbo: Pyro's Trace_ELBO; meanfield: TraceMeanField_ELBO "
        "(analytic KL); enum: TraceEnum_ELBO (enumerated sites summed exactly); iwae: the "
        "importance-weighted bound with K = --particles (Burda et al. 2016)",
        choices=_objective_choices(),
    )
    num_particles: int = setting(
        1,
        "samples of z per example in the training estimate (K of the IWAE bound)",
        flag="--particles",
    )
    dreg: bool = setting(
        False,
        "with --objective iwae: doubly reparameterised guide gradients (Tucker et al. 2019)",
        action="store_true",
    )
    capture: bool = setting(
        True,
        "run the Pyro program on every step instead of replaying the loss graph captured on "
        "the first step (for a model whose Python changes between steps)",
        flag="--eager",
        action="store_false",
    )
    seed: int = setting(0, "seed for weights, data order and sampling", parse=parse_seed)
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    figures: bool = setting(True, "skip the figures", flag="--no-figures", action="store_false")
    # Resolved from the data when the run starts.
    input_dim: int | None = None
    image_shape: tuple[int, ...] | None = None
    #: The recipe's own options (an ``Options`` dataclass); read through as attributes.
    options: Any = field(default_factory=NoOptions)

    def __getattr__(self, name: str) -> Any:
        # Only called when ``name`` is not a field: the recipe's options answer.
        if name.startswith("__") or name == "options":
            raise AttributeError(name)
        options = self.__dict__.get("options")
        if options is not None and name in {f.name for f in dataclasses.fields(options)}:
            return getattr(options, name)
        raise AttributeError(
            f"{type(self).__name__} of model {self.__dict__.get('model')!r} has no setting {name!r}"
        )

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some common settings changed."""
        return dataclasses.replace(self, **changes)

    def with_options(self, **changes: Any) -> TrainConfig:
        """A copy with some of the recipe's options changed."""
        return dataclasses.replace(self, options=dataclasses.replace(self.options, **changes))

    def to_dict(self) -> dict[str, Any]:
        """The flat dictionary of ``config.json``: common settings and options side by side."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.pop("options")
        values.update(dataclasses.asdict(self.options))
        return _jsonable(values)

    def validate(self) -> None:
        """Raise ValueError naming the first setting (or option) that cannot work."""
        if math.isfinite(self.lr) and self.lr > MAX_LR:  # before the bound of every float
            raise ValueError(
                f"--lr {self.lr:g}: Adam moves every weight by about lr per step, so the loss "
                f"diverges; use at most {MAX_LR:g} (typically 1e-4 to 1e-2)"
            )
        check_finite(self)
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 < self.lr_decay <= 1, f"--lr-decay must be in (0, 1], got {self.lr_decay}"),
            (
                self.lr_decay_epochs >= 1,
                f"--lr-decay-epochs must be at least 1, got {self.lr_decay_epochs}",
            ),
            (self.num_particles >= 1, f"--particles must be at least 1, got {self.num_particles}"),
            (
                0 <= self.seed <= MAX_SEED,
                f"--seed must be an integer from 0 to {MAX_SEED}, got {self.seed}",
            ),
            (not self.dreg or self.objective == "iwae", "--dreg goes with --objective iwae"),
            (
                0 < self.test_fraction < 1,
                f"--test-fraction must be in (0, 1), got {self.test_fraction}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.options.validate()


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def check_types(values: object) -> None:
    """Raise ValueError naming the first field whose value is not of its declared type
    (``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]``, each optionally ``| None``):
    what a hand-edited or damaged config.json gets wrong, e.g. ``"latent_dim": "ten"``."""
    for f in dataclasses.fields(values):
        if f.name == "options":
            check_types(values.options)
            continue
        value = getattr(values, f.name)
        kinds = [k.strip() for k in str(f.type).split("|")]
        if value is None and "None" in kinds:
            continue
        ok = False
        for kind in kinds:
            if kind.startswith("tuple"):
                ok |= isinstance(value, tuple) and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value
                )
            elif kind in _TYPES:
                ok |= isinstance(value, _TYPES[kind]) and (
                    kind == "bool" or not isinstance(value, bool)
                )
            elif kind not in ("None", "Any"):
                ok = True  # a type this check does not know: trust it
        if not ok:
            raise ValueError(f"{f.name} must be {f.type}, got {value!r}")
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, int) and abs(v) > MAX_SEED for v in numbers):
            raise ValueError(f"{f.name} is {value!r}, beyond what any machine can hold")


def common_fields() -> tuple[dataclasses.Field, ...]:
    """The settings every run has (not the recipe's options)."""
    return tuple(f for f in dataclasses.fields(TrainConfig) if f.name != "options")


def make_config(
    options_type: type,
    values: dict[str, Any],
    *,
    ignore: Iterable[str] = (),
) -> TrainConfig:
    """A :class:`TrainConfig` from flat ``values`` (``config.json``, or keyword arguments):
    the common settings and the fields of ``options_type``. Names in ``ignore`` (options of
    other recipes, e.g. in a config.json written before recipes had options of their own) are
    dropped; any other unknown name is an error naming it."""
    common = {f.name for f in common_fields()}
    own = {f.name for f in dataclasses.fields(options_type)}
    unknown = set(values) - common - own - set(ignore)
    if unknown:
        raise ValueError(
            f"unknown settings {sorted(unknown)} for model {values.get('model', 'vae')!r}; "
            f"its options are {sorted(own)}"
        )
    options = options_type(**_tuples({k: v for k, v in values.items() if k in own}))
    settings = _tuples({k: v for k, v in values.items() if k in common})
    return TrainConfig(**settings, options=options)


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """Lists (from JSON or a caller) as tuples, so that a frozen config stays unchanged."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
