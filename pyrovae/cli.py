"""``pyrovae train | evaluate | sample | plot | compare``: arguments become a recipe's config;
the run layer does the work (:mod:`pyrovae.runs.commands`, a function per command).

``train``'s options are the fields of :class:`~pyrovae.runs.TrainConfig` and of the named
recipe's ``Options`` dataclass (each field's ``option`` metadata gives its flag and help), so
``pyrovae train MODEL --help`` shows that recipe's options only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence

from . import __version__


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except where there is none to show (None) or the option is a switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action) or ""


class _Parser(argparse.ArgumentParser):
    """A parser whose errors are one line, the problem and where the options are explained
    (argparse's own prints the whole usage first: 15 lines for ``train``)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _add_debug(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the traceback of every error (also PYROVAE_DEBUG=1)",
    )


def _argparse_type(parse: Callable) -> Callable:
    """A parser whose ValueError message argparse shows as it is."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            kind = {int: "an integer", float: "a number"}.get(parse)
            message = f"must be {kind}, got {text!r}" if kind else str(e)
            raise argparse.ArgumentTypeError(message) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


class _Given(argparse._StoreAction):
    """Stores the value and notes the option as given (``args._given``): ``train --resume``
    keeps the run's own setting where the user did not name one."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace._given = {*getattr(namespace, "_given", ()), self.dest}


def _int(text: str) -> int:
    from .runs.config import parse_int

    return _argparse_type(parse_int)(text)


def _seed(text: str) -> int:
    from .runs.config import parse_seed

    return _argparse_type(parse_seed)(text)


def _add_options(group, fields: Sequence[dataclasses.Field], defaults: object) -> None:
    """One argument per field with ``option`` metadata, defaulting to ``defaults``' values."""
    from .runs.config import parse_int

    for f in fields:
        spec = dict(f.metadata.get("option") or {})
        if not spec:
            continue
        flag = spec.pop("flag") or "--" + f.name.replace("_", "-")
        parse = spec.pop("parse")
        default = getattr(defaults, f.name)
        kwargs = {"dest": f.name, "default": default, **spec}
        if "action" not in spec:
            kind = parse or type(default)
            if kind is int:
                kind = parse_int
            kwargs["type"] = _argparse_type(kind)
            kwargs["action"] = _Given
            if isinstance(default, tuple):
                kwargs["default"] = list(default)
        group.add_argument(flag, **kwargs)


def _train_parser(sub: argparse._SubParsersAction, model: str | None) -> None:
    from .runs.config import TrainConfig, common_fields
    from .runs.registry import RECIPES, recipe_for

    models = "; ".join(f"{name}: {r.summary}" for name, r in RECIPES.items())
    p = sub.add_parser(
        "train",
        help="fit a model and guide by SVI (a mixture by EM); writes a run directory",
        description=(
            "Fit a (model, guide) pair and write RUN_DIR: checkpoint.pt (after every epoch), "
            "config.json, metrics.json (train/test ELBO per epoch, nats per example) and "
            "figures/. `pyrovae train MODEL --help` lists MODEL's own options."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help=f"a built-in model ({models}) or your own factory as package.module:function "
        "returning (model, guide) or (model, guide, data)",
    )
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/MODEL)")
    recipe = recipe_for(model) if model else None
    # The common settings' defaults, as the recipe has its own (shown by --help too).
    defaults = TrainConfig(**(recipe.defaults if recipe is not None else {}))
    fields = {f.name: f for f in common_fields()}
    groups = {
        "data": ("dataset", "data_dir", "download", "test_fraction"),
        "training": (
            "epochs",
            "batch_size",
            "lr",
            "lr_decay",
            "lr_decay_epochs",
            "objective",
            "num_particles",
            "dreg",
            "capture",
            "seed",
            "device",
        ),
    }
    fixed = recipe is not None and recipe.objective is not None
    for title, names in groups.items():
        chosen = [fields[n] for n in names]
        if fixed:  # the recipe's own objective: no --objective, --particles, --dreg
            chosen = [f for f in chosen if f.name not in ("objective", "num_particles", "dreg")]
        _add_options(p.add_argument_group(title), chosen, defaults)
    if recipe is not None:
        options = recipe.options()
        title = f"{recipe.name} options" if model in RECIPES else "factory options"
        _add_options(p.add_argument_group(title), dataclasses.fields(options), options)
    run = p.add_argument_group("run directory")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN_DIR from its last checkpoint, with its saved settings "
        "(only --epochs, when given, and --device apply; another value of any other setting "
        "is refused)",
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing run in RUN_DIR")
    _add_options(run, [fields["figures"]], defaults)
    run.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    _add_factory_path(run, reopen=False)
    p.set_defaults(command="train")


def _model_in(argv: Sequence[str]) -> str | None:
    """The MODEL of ``pyrovae train ...`` (the first positional after ``train``), before the
    parser that knows its options exists."""
    from .runs.config import common_fields
    from .runs.registry import every_recipe

    if "train" not in argv:
        return None
    switches = {"--resume", "--overwrite", "--quiet", "--debug", "-h", "--help"}
    fields = [*common_fields()]
    for recipe in every_recipe():
        fields += dataclasses.fields(recipe.options)
    for f in fields:
        spec = f.metadata.get("option") or {}
        if spec.get("action"):
            switches.add(spec.get("flag") or "--" + f.name.replace("_", "-"))
    tokens = list(argv[argv.index("train") + 1 :])
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("-"):
            return token
        i += 1 if token in switches or "=" in token else 2
    return None


def _add_factory_path(parser, reopen: bool = True) -> None:
    if reopen:
        parser.add_argument(
            "--factory",
            metavar="MODULE:FUNCTION",
            help="a run trained with your own package.module:function is reopened only when "
            "you name that factory here (it must be the one the run names) or pass "
            "--factory-path; it is then imported and called. Name only code you trust",
        )
    parser.add_argument(
        "--factory-path",
        metavar="DIR",
        action="append",
        default=[],
        help="a run trained with your own package.module:function imports it from the "
        "installed environment, or from DIR (repeatable); never implicitly from the working "
        "or the run directory. Without --factory, the factory the run names is trusted only "
        "when its module is in DIR. Pass only directories whose code you trust",
    )


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="draw from a trained model's prior into a PNG (images, or piano rolls)",
        description="Draw z ~ p(z) and write the grid of E[x | z] to a PNG file (a sequence "
        "model: sequences drawn step by step, as piano rolls).",
        formatter_class=_Formatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by pyrovae train")
    p.add_argument("--n", type=_int, default=64, help="number of samples")
    p.add_argument(
        "--out", metavar="FILE.png", default="samples.png", help="where to write the grid"
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed for the draws")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    _add_factory_path(p)
    p.set_defaults(command="sample")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test ELBO and importance-sampled log-likelihood; writes RUN_DIR/eval.json",
        description="Estimate, for every test example, log p(x) by importance sampling with the "
        "guide as proposal (log-mean-exp of K weights p(x, z)/q(z | x)), with its standard "
        "error, effective sample size and Pareto k-hat, and the ELBO from the same draws "
        "(exactly, without sampling, where the model sums every latent). "
        "Writes RUN_DIR/eval.json and prints a table (nats per example).",
        formatter_class=_Formatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by pyrovae train")
    p.add_argument(
        "--num-samples", type=_int, default=1000, help="K, importance samples per test example"
    )
    p.add_argument(
        "--batch-size", type=_int, help="test examples per pass (default: fits the memory budget)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=_seed, default=0, help="seeds the importance draws")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_factory_path(p)
    p.set_defaults(command="evaluate")


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="(re)write a run's figures",
        description="Write the run's figures as PNG files (a VAE: reconstructions, prior "
        "samples, latent traversals, interpolations, the latent space coloured by label and the "
        "ELBO curves; other models their own).",
        formatter_class=_Formatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by pyrovae train")
    p.add_argument(
        "--out", metavar="DIR", help="where to write the figures (default: RUN_DIR/figures)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    _add_factory_path(p)
    p.set_defaults(command="plot")


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="rank evaluated runs by their held-out log-likelihood (az.compare's table)",
        description="Rank runs by elpd = the sum of log p(x) over their test examples, from "
        "each run's eval.json (pyrovae evaluate), with az.compare: the difference from the best "
        "run and its paired standard error over the same examples. Runs evaluated on "
        "different test rows are refused.",
        formatter_class=_Formatter,
    )
    p.add_argument(
        "run_dirs", metavar="RUN_DIR", nargs="+", help="two or more evaluated run directories"
    )
    p.set_defaults(command="compare")


def build_parser(model: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``model`` chooses which recipe's options ``train`` takes."""
    parser = _Parser(
        prog="pyrovae",
        description="Latent-variable models as Pyro programs: train by SVI, evaluate by "
        "importance sampling, sample, plot. "
        "Numbers are per example, in nats, higher is better.",
    )
    parser.add_argument("--version", action="version", version=f"pyrovae {__version__}")
    _add_debug(parser, default=False)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _train_parser(sub, model)
    _add_evaluate(sub)
    _add_sample(sub)
    _add_plot(sub)
    _add_compare(sub)
    for command in sub.choices.values():
        _add_debug(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_model_in(argv)).parse_args(argv)
    from .errors import command_line_names
    from .runs.errors import one_line

    try:
        with command_line_names():  # the library's messages name our options
            from .runs import commands

            getattr(commands, args.command)(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        line = None if args.debug else one_line(e)
        if line is None:
            raise
        print(f"pyrovae: error: {line}", file=sys.stderr)
        return 2
    return 0


def entry() -> None:
    """The ``pyrovae`` command and ``python -m pyrovae``: :func:`main`, then exit with its
    status. A rank that torchrun launched ends without the interpreter's finalization,
    which gloo's worker threads can abort (:func:`pyrovae.runs.processes.leave`)."""
    from .runs.processes import launched_ranks, leave

    code = main()
    if launched_ranks() > 1:
        leave(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
