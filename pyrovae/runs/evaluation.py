"""``pyrovae evaluate``: a trained run's test numbers, by its recipe, into ``eval.json``.

By default (:mod:`pyrovae.runs.estimates`) one pass of K draws z_k ~ q(z | x) per test
example gives the importance-sampled log-likelihood (with its standard error, effective
sample size and Pareto k-hat) and the ELBO from the same draws; a recipe adds its own numbers
(the ssvae's accuracy) or computes them exactly (the mixture, z summed out). Every number is
per example, in nats, higher is better. With importance sampling, the figures of the k-hat of
every test example (``figures/khat.png``) and of the weights of the worst one
(``figures/weights_worst.png``). ``eval.json`` records the epoch whose model it evaluated,
the test rows (their number and a SHA-256 digest) and, where log p(x) is estimated, each
test example's log p(x), standard error and k-hat (``per_example``), which
``pyrovae compare`` (:mod:`pyrovae.runs.comparison`) reads.
The table is printed before anything is written: a run that cannot be written to (read-only,
a full disk) still shows its numbers, and the one-line error says so.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch

from ..diagnostics.importance_figures import save_khat_plot, save_weights_plot
from ..infer.distributed import world
from ..rng import initialised_cuda_devices
from .comparison import PER_EXAMPLE, TEST_ROWS, per_example, rows_digest
from .estimates import aligned
from .record import EVAL, FIGURES, Run, RunError, write_json
from .registry import recipe_for

Log = Callable[[str], None]


def check_arguments(num_samples: int, batch_size: int | None) -> None:
    """Refuse a K or a batch size below 1 (the CLI asks before it loads the run)."""
    if num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {num_samples}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")


def evaluate(
    run: Run,
    *,
    num_samples: int = 1000,
    batch_size: int | None = None,
    progress: bool = True,
    log: Log = print,
    seed: int = 0,
) -> dict:
    """Estimate the run's test numbers, write ``RUN_DIR/eval.json`` and print a table.

    The draws are seeded (``seed``, recorded in eval.json), so evaluating a run twice gives
    the same numbers, and so does ``log_marginal(run.model, run.guide, run.test_inputs(),
    num_samples=K)`` after ``pyro.set_rng_seed(seed)``; the caller's random streams are left
    as they were.

    Under torch.distributed (``torchrun ... -m pyrovae evaluate``) ``log_marginal`` splits the
    test examples over the ranks, rank r drawing from seed + r, and rank 0 alone prints and
    writes; every rank returns the report."""
    check_arguments(num_samples, batch_size)
    recipe = recipe_for(run.config.model)
    x = run.test_inputs()
    rank = world()[0]
    with torch.random.fork_rng(devices=initialised_cuda_devices()):
        pyro.set_rng_seed(seed + rank)
        evaluation = recipe.evaluate(
            run, x, num_samples=num_samples, batch_size=batch_size, progress=progress and not rank
        )
    report = {**evaluation.report, "epoch": evaluated_epoch(run), "seed": seed}
    if rank != 0:
        return report
    # What `pyrovae compare` needs: which test rows, and each one's log p(x).
    report[TEST_ROWS] = rows_digest(x)
    result = evaluation.result
    if result is not None and PER_EXAMPLE not in report:
        report[PER_EXAMPLE] = per_example(result.log_likelihood, result.stderr, result.khat)
    log(aligned(recipe.table(report), report["num_examples"]))
    target = run.path / EVAL
    try:  # the numbers are printed: a run that cannot be written to still shows them
        write_json(target, report)
        result = evaluation.result
        if result is not None:
            target = run.path / FIGURES / "khat.png"
            save_khat_plot(result.khat.numpy(), target)
            if result.worst_log_weights is not None:
                target = run.path / FIGURES / "weights_worst.png"
                save_weights_plot(
                    result.worst_log_weights.numpy(),
                    target,
                    example=result.worst_index,
                    khat=float(result.khat[result.worst_index]),
                )
    except OSError as e:
        raise RunError(
            f"the numbers are printed above but were not saved: cannot write {target} "
            f"({e.strerror or e}); make {run.path} writable (or copy the run) and evaluate again"
        ) from e
    return report


def evaluated_epoch(run: Run) -> int | None:
    """The epoch whose model is evaluated: the one the recipe selected (the ssvae's best.pt),
    else the last checkpoint's (an EM fit: its iterations)."""
    selected = run.notes.get("selected")
    if selected is not None:
        return int(selected["epoch"])
    if not run.history:
        return None
    return int(run.history[-1].get("epoch", len(run.history)))
