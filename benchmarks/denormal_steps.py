"""Benchmark: the cost of denormal floats in a trained run's training step, on CPU.

Loads a run (for an SSVAE the model with the best validation accuracy), then times
forward and backward of its training objective on one batch of test rows (unlabelled),
alternately with the CPU computing denormals and with them flushed to zero
(:mod:`pyrovae.infer.denormals`, which ``Trainer`` uses), and prints the median of each
and their ratio.

    python benchmarks/denormal_steps.py runs/ssvae-mnist --repeats 10

Late in training an SSVAE's confident classifier weighs the enumerated classes' guide
gradients by q(y | x) < 1e-38, and steps that compute those denormals slow down several-fold.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from pyrovae.infer import make_objective
from pyrovae.infer.denormals import flushed_denormals
from pyrovae.runs import load_run
from pyrovae.runs.recipes.ssvae import objective as ssvae_objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory written by pyrovae train")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run)
    model, guide = run.model, run.guide
    x = run.test_inputs()[: args.batch_size]
    if run.config.model == "ssvae":
        elbo = ssvae_objective(run.config)
    else:
        elbo = make_objective(run.config.objective, run.config.num_particles)

    def step() -> float:
        start = time.perf_counter()
        elbo.differentiable_loss(model, guide, x).backward()
        return time.perf_counter() - start

    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for flush in (False, True):
            with flushed_denormals(enabled=flush):
                times[flush].append(step())
    kept, flushed = statistics.median(times[False]), statistics.median(times[True])
    print(f"step with denormals   {kept:.4f} s")
    print(f"step, flushed to zero {flushed:.4f} s")
    print(f"ratio {kept / flushed:.2f}")


if __name__ == "__main__":
    main()
