"""Benchmark: one process with T threads against R processes (torch.distributed, gloo) with
T / R threads each, on the same data, for an SVI epoch and an EM iteration.

- SVI: the 784-400-50 VAE of ``svi_step.py`` (Bernoulli likelihood, Adam at 1e-3) on
  ``--rows`` binarised MNIST training images (``--dataset digits`` for a quick try): one
  process with batch R x B against R ranks with batch B each under
  ``DistributedDataParallel`` (the same global batches and steps, :class:`pyrovae.infer.Trainer`).
- EM: ``fit_mixture`` on the same rows (K = 10, diagonal covariances, float64), ``--em-iters``
  iterations after k-means++: one process against R ranks that each stream their share of the
  rows and all-reduce the statistics.

Each configuration runs one untimed warm-up epoch, then ``--repeats`` timed ones; the
medians are compared. The ranks are started with ``torch.multiprocessing`` (as ``torchrun``
would start them) and synchronised with a barrier around every timed epoch. Prints
``ratio X.XX`` last: the distributed SVI epoch over the single-process one (lower is better
for the distributed run; 1 / R would be perfect scaling).

    python benchmarks/distributed.py                      # R = 2 ranks, 1 thread each
    python benchmarks/distributed.py --dataset digits --rows 1000 --repeats 1
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyrovae.data import load_dataset
from pyrovae.guides import GaussianEncoder
from pyrovae.infer import Trainer
from pyrovae.infer.em import em
from pyrovae.models import VAE, GaussianMixture
from pyrovae.runs.processes import leave


def images(args: argparse.Namespace) -> torch.Tensor:
    x = load_dataset(args.dataset, args.data_dir).train_x[: args.rows]
    return (x > 0.5).float()


def measure(args: argparse.Namespace, rank: int, ranks: int) -> dict[str, list[float]]:
    """Warm-up and timed SVI epochs and EM iterations in this process (one rank of ``ranks``)."""
    x = images(args)
    torch.manual_seed(0)
    model = VAE(x.shape[1], 50, hidden_dims=(400,))
    guide = GaussianEncoder(x.shape[1], 50, hidden_dims=(400,))
    trainer = Trainer(
        model, guide, x, batch_size=args.batch_size * (args.ranks // ranks), seed=0, progress=False
    )

    def barrier() -> None:
        if ranks > 1:
            dist.barrier()

    def timed(step) -> float:
        barrier()
        start = time.perf_counter()
        step()
        barrier()
        return time.perf_counter() - start

    svi = [timed(lambda: trainer.run(trainer.epoch + 1)) for _ in range(args.repeats + 1)][1:]
    mixture = GaussianMixture(10, x.shape[1], "diag").double()
    rows = x.double()
    mixture.initialize(rows, seed=0)
    iterations = [
        timed(lambda: em(mixture, rows, max_iter=args.em_iters, tol=-math.inf, progress=False))
        / args.em_iters
        for _ in range(args.repeats + 1)
    ][1:]
    return {"svi": svi, "em": iterations, "steps": len(trainer.batches)}


def _rank(rank: int, args: argparse.Namespace, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, args.threads // args.ranks))
    dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    try:
        result = measure(args, rank, args.ranks)
        if rank == 0:
            torch.save(result, Path(out) / "distributed.pt")
    finally:
        dist.destroy_process_group()
    leave(0)  # no interpreter finalization under gloo's threads (pyrovae.runs.processes.leave)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2, help="R, processes of the distributed run")
    parser.add_argument("--threads", type=int, default=2, help="T, threads of the single process")
    parser.add_argument("--batch-size", type=int, default=64, help="B, rows per rank and step")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dataset", default="mnist", help="mnist (or digits, for a quick try)")
    parser.add_argument("--data-dir", default=None, help="where MNIST is ($PYROVAE_DATA_DIR)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--em-iters", type=int, default=5, help="EM iterations per timing")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    single = measure(args, 0, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_rank, args=(args, port, out), nprocs=args.ranks, start_method="spawn")
        ranked = torch.load(Path(out) / "distributed.pt")
    rows, dim = images(args).shape
    print(
        f"# {args.dataset} {rows} rows, VAE {dim}-400-50, global batch "
        f"{args.ranks * args.batch_size}, {single['steps']} steps per epoch; EM K = 10 diag; "
        f"torch {torch.__version__}, gloo"
    )
    for key, unit in (("svi", "s/epoch"), ("em", "s/iteration")):
        one, many = statistics.median(single[key]), statistics.median(ranked[key])
        print(
            f"{key}: 1 process x {args.threads} threads {one:.3f} {unit}, {args.ranks} ranks x "
            f"{max(1, args.threads // args.ranks)} thread(s) {many:.3f} {unit}: "
            f"ratio {many / one:.2f}"
        )
    svi = statistics.median(ranked["svi"]) / statistics.median(single["svi"])
    print(f"ratio {svi:.2f}")


if __name__ == "__main__":
    main()
