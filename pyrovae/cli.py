"""``pyrovae train | evaluate | sample | plot``: arguments become a config; the library does
the work."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .builders import BUILTIN_MODELS
from .config import TrainConfig
from .data import DATASETS
from .infer import OBJECTIVES
from .likelihoods import LIKELIHOODS
from .models.mixture import COVARIANCE_TYPES

DEFAULTS = TrainConfig()


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except where there is none to show (None) or the option is a switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action) or ""


def _positive_ints(what: str) -> Callable[[str], list[int]]:
    """An argparse type for comma-separated positive integers; ``what`` names them, with an
    example, in the error."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers, got {text!r}"
            ) from None
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(f"give {what}; got {text!r}")
        return values

    return parse


def _labels(text: str) -> int | None:
    """``--num-labels``: a positive count, or ``all``."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of labelled examples or 'all', got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"give at least 1 labelled example, got {text!r}")
    return value


_widths = _positive_ints("positive hidden layer widths, e.g. 400 or 512,256")
_components = _positive_ints("positive numbers of components, e.g. 10 or 2,4,8,16")


def _add_train(sub: argparse._SubParsersAction) -> None:
    models = "; ".join(f"{name}: {doc}" for name, (_, doc) in BUILTIN_MODELS.items())
    p = sub.add_parser(
        "train",
        help="fit a model and guide by SVI (a mixture by EM); writes a run directory",
        description=(
            "Fit a (model, guide) pair by stochastic variational inference and write RUN_DIR: "
            "checkpoint.pt (after every epoch), config.json, metrics.json (train/test ELBO per "
            "epoch, nats per example) and figures/. MODEL gmm fits a Gaussian mixture by EM "
            "instead (or by TraceEnum SVI with --inference svi)."
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
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default=DEFAULTS.dataset,
        help=f"one of {', '.join(DATASETS)}, or a path to your own .npy, .npz or .csv array "
        "(rows are examples; labels optional)",
    )
    data.add_argument(
        "--data-dir",
        help="directory with the dataset's files (MNIST: the four original idx files, gzipped "
        "or not, or torchvision's MNIST/raw layout); default $PYROVAE_DATA_DIR or ./data",
    )
    data.add_argument(
        "--download",
        action="store_true",
        help="let torchvision download missing MNIST / Fashion-MNIST files into --data-dir "
        "(needs a network and pip install 'pyrovae[download]')",
    )
    data.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULTS.test_fraction,
        help="share of your own array held out as test data (split by --seed)",
    )
    model = p.add_argument_group("model")
    model.add_argument("--latent-dim", type=int, default=DEFAULTS.latent_dim, help="dimension of z")
    model.add_argument(
        "--hidden",
        dest="hidden_dims",
        type=_widths,
        default=DEFAULTS.hidden_dims,
        help="hidden layer widths of encoder and decoder, comma-separated (e.g. 512,256)",
    )
    model.add_argument(
        "--architecture",
        choices=["mlp", "conv"],
        default=DEFAULTS.architecture,
        help="fully connected or convolutional encoder and decoder",
    )
    model.add_argument(
        "--likelihood",
        choices=["auto", *LIKELIHOODS],
        default=DEFAULTS.likelihood,
        help="p(x | z); auto: Bernoulli for binary data and MNIST, continuous Bernoulli for "
        "other values in [0, 1], Gaussian otherwise",
    )
    model.add_argument(
        "--binarize",
        choices=["auto", "dynamic", "none"],
        default=DEFAULTS.binarize,
        help="for a Bernoulli on grey values: dynamic resamples training images each epoch "
        "(test images once, fixed seed); auto does so when needed",
    )
    model.add_argument(
        "--beta", type=float, default=DEFAULTS.beta, help="KL weight (beta-VAE); 1 is the ELBO"
    )
    gmm = p.add_argument_group("Gaussian mixture (MODEL gmm)")
    gmm.add_argument(
        "--components",
        type=_components,
        default=DEFAULTS.components,
        help="K, or several comma-separated (e.g. 2,4,8,16): each is fit and the lowest "
        "training BIC wins",
    )
    gmm.add_argument(
        "--covariance",
        choices=COVARIANCE_TYPES,
        default=DEFAULTS.covariance,
        help="covariance of each component (tied: one shared by all)",
    )
    gmm.add_argument(
        "--inference",
        choices=["em", "svi"],
        default=DEFAULTS.inference,
        help="em: closed-form EM with an enumerated E-step; svi: TraceEnum_ELBO by minibatch "
        "(uses --epochs, --batch-size, --lr)",
    )
    gmm.add_argument(
        "--n-init", type=int, default=DEFAULTS.n_init, help="EM restarts; the best is kept"
    )
    gmm.add_argument(
        "--max-iter", type=int, default=DEFAULTS.max_iter, help="EM iterations per restart"
    )
    gmm.add_argument(
        "--tol",
        type=float,
        default=DEFAULTS.tol,
        help="EM stops once the mean log-likelihood gains less (nats per example)",
    )
    gmm.add_argument(
        "--reg-covar",
        type=float,
        default=DEFAULTS.reg_covar,
        help="added to the diagonal of every covariance",
    )
    ssvae = p.add_argument_group("semi-supervised VAE (MODEL ssvae)")
    ssvae.add_argument(
        "--num-labels",
        type=_labels,
        default=DEFAULTS.num_labels,
        help="training examples that keep their label, class-balanced and drawn with --seed "
        "(the others are used without it); 'all' keeps every label",
    )
    ssvae.add_argument(
        "--alpha",
        type=float,
        default=DEFAULTS.alpha,
        help="weight of the classification loss -log q(y | x) per labelled example (Kingma et "
        "al. 2014, eq. 9)",
    )
    ssvae.add_argument(
        "--validation-size",
        type=int,
        help="training examples held out, with their labels, to select the epoch with the best "
        "accuracy (default: a sixth of the training set, at most 10,000)",
    )
    fit = p.add_argument_group("training")
    fit.add_argument(
        "--epochs", type=int, default=DEFAULTS.epochs, help="passes over the training data"
    )
    fit.add_argument(
        "--batch-size", type=int, default=DEFAULTS.batch_size, help="examples per step"
    )
    fit.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam learning rate")
    fit.add_argument(
        "--objective",
        choices=["auto", *OBJECTIVES],
        default=DEFAULTS.objective,
        help="auto: enum when the program enumerates a site (or leaves a discrete latent to "
        "the model), elbo otherwise; elbo: Pyro's Trace_ELBO; meanfield: TraceMeanField_ELBO "
        "(analytic KL); enum: TraceEnum_ELBO (enumerated sites summed exactly); iwae: the "
        "importance-weighted bound with K = --particles (Burda et al. 2016)",
    )
    fit.add_argument(
        "--particles",
        dest="num_particles",
        type=int,
        default=DEFAULTS.num_particles,
        help="samples of z per example in the training estimate (K of the IWAE bound)",
    )
    fit.add_argument(
        "--dreg",
        action="store_true",
        help="with --objective iwae: doubly reparameterised guide gradients (Tucker et al. 2019)",
    )
    fit.add_argument(
        "--eager",
        dest="capture",
        action="store_false",
        help="run the Pyro program on every step instead of replaying the loss graph captured "
        "on the first step (for a model whose Python changes between steps)",
    )
    fit.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help="seed for weights, data order and sampling"
    )
    fit.add_argument("--device", default=DEFAULTS.device, help="cpu, cuda or cuda:N")
    run = p.add_argument_group("run directory")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN_DIR from its last checkpoint, with its saved settings "
        "(only --epochs and --device apply)",
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing run in RUN_DIR")
    run.add_argument("--no-figures", dest="figures", action="store_false", help="skip the figures")
    run.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(handler=_train)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="draw images from a trained model's prior into a PNG grid",
        description="Draw z ~ p(z) and write the grid of E[x | z] to a PNG file.",
        formatter_class=_Formatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by pyrovae train")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument(
        "--out", metavar="FILE.png", default="samples.png", help="where to write the grid"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the draws")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(handler=_sample)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test ELBO and importance-sampled log-likelihood; writes RUN_DIR/eval.json",
        description="Estimate, for every test example, log p(x) by importance sampling with the "
        "guide as proposal (log-mean-exp of K weights p(x, z)/q(z | x)), with its standard "
        "error, effective sample size and Pareto k-hat, and the ELBO from the same draws. "
        "Writes RUN_DIR/eval.json and prints a table (nats per example).",
        formatter_class=_Formatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by pyrovae train")
    p.add_argument(
        "--num-samples", type=int, default=1000, help="K, importance samples per test example"
    )
    p.add_argument(
        "--batch-size", type=int, help="test examples per pass (default: fits the memory budget)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seeds the importance draws")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_evaluate)


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="(re)write a run's figures",
        description="Write reconstructions, prior samples, latent traversals, interpolations, "
        "the latent space coloured by label and the ELBO curves as PNG files.",
        formatter_class=_Formatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by pyrovae train")
    p.add_argument(
        "--out", metavar="DIR", help="where to write the figures (default: RUN_DIR/figures)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(handler=_plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyrovae",
        description="Latent-variable models as Pyro programs: train by SVI, evaluate by "
        "importance sampling, sample, plot. "
        "Numbers are per example, in nats, higher is better.",
    )
    parser.add_argument("--version", action="version", version=f"pyrovae {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_sample(sub)
    _add_plot(sub)
    return parser


def _train(args: argparse.Namespace) -> None:
    from .run import train

    fields = set(TrainConfig.__dataclass_fields__)
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.num_labels is None:  # --num-labels all
        values["num_labels"] = None
    values.setdefault("out", f"runs/{args.model.replace(':', '_').replace('.', '_')}")
    log = (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))
    train(
        TrainConfig(**values),
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        log=log,
    )


def _sample(args: argparse.Namespace) -> None:
    from .run import load_run, sample

    path = sample(load_run(args.run_dir, device=args.device), args.n, args.out, seed=args.seed)
    print(f"wrote {path}")


def _evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate
    from .run import load_run

    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {args.num_samples}")
    run = load_run(args.run_dir, device=args.device)
    evaluate(
        run,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        progress=not args.quiet,
        seed=args.seed,
    )


def _plot(args: argparse.Namespace) -> None:
    from .run import load_run, plot

    run = load_run(args.run_dir, device=args.device)
    for path in plot(run, args.out):
        print(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import USER_ERRORS

    try:
        args.handler(args)
    except USER_ERRORS as e:
        print(f"pyrovae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
