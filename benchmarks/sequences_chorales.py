"""Benchmark: test negative log-likelihood per time step on the Bach chorales.

Every model is trained on the same piano rolls (``--dataset chorales``: music21's corpus, 88
keys, one step per quarter note, split by piece 60/20/20) and scored on the same test
pieces, in nats per time step (sum over test sequences of -log p(x_n), over the sum of
their lengths), lower is better:

- ``floor``: independent Bernoulli keys per step, each key's frequency over the training
  steps (with one added count on and off): exact, no training;
- ``seqvae``: ``pyrovae train seqvae`` as a user runs it, then ``pyrovae evaluate`` (IS with
  K draws: log p(x) is estimated, the ELBO bounds it; the KL term per sequence tells whether
  z is used), without and with its anti-collapse options (``--kl-warmup``,
  ``--input-dropout``);
- ``dmm``: ``pyrovae train dmm`` with the networks of Pyro's example (z 100, transition
  200, emission 100-100, the guide's ReLU RNN 600: ``--guide-rnn rnn``), batch 20, Adam
  3e-4, then ``pyrovae evaluate``;
- ``pyro-dmm``: Pyro's own ``examples/dmm.py`` run unchanged on the same piano rolls
  (``--pyro-example PATH`` to a copy of it, ``--pyro-python`` to a Python whose Pyro matches
  it: the example asserts its version). It reads the rolls from the pickle its data loader
  caches (written here in its format into a temporary ``~/.data``, with ``CI`` set so that
  it looks there), and a stand-in ``torchvision`` module is put on its path (its utilities
  import torchvision for MNIST, which the DMM never uses). It reports the test ELBO per
  step (one draw, its KL annealing off at evaluation) every 50 epochs, so give ``--epochs``
  above 50 to have its number. It seeds nothing, and a fresh initialisation can diverge
  (NaN in its guide): a failed run is retried, up to 3 runs, and the failures are reported.

    python benchmarks/sequences_chorales.py --data-dir ~/data --epochs 51 \\
        --pyro-example /path/to/pyro/examples/dmm.py --pyro-python /path/to/python

Prints a line per model and a Markdown table; ``--json FILE`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pyrovae.cli import main
from pyrovae.data import load_chorales

PYRO_SIZES = [
    "--latent-dim", "100", "--transition-dim", "200", "--emission-hidden", "100,100",
    "--hidden-dim", "600", "--guide-rnn", "rnn",
]  # fmt: skip
OURS = {
    "seqvae": ["seqvae", "--latent-dim", "16", "--hidden-dim", "256"],
    "seqvae+warmup+dropout": [
        "seqvae", "--latent-dim", "16", "--hidden-dim", "256", "--kl-warmup", "10",
        "--input-dropout", "0.25",
    ],
    "seqvae+warmup20+dropout0.5": [
        "seqvae", "--latent-dim", "16", "--hidden-dim", "256", "--kl-warmup", "20",
        "--input-dropout", "0.5",
    ],
    "dmm": ["dmm", *PYRO_SIZES, "--lr", "3e-4"],
}  # fmt: skip


def floor(data) -> dict:
    """Independent Bernoulli keys: p_k = (on_k + 1) / (steps + 2) over the training steps."""
    steps = torch.arange(data.train_x.shape[1]) < data.train_lengths.unsqueeze(-1)
    on = data.train_x[steps].sum(0)
    p = (on + 1) / (int(steps.sum()) + 2)
    real = torch.arange(data.test_x.shape[1]) < data.test_lengths.unsqueeze(-1)
    x = data.test_x[real]
    log_p = (x * p.log() + (1 - x) * (1 - p).log()).sum()
    return {"test_log_likelihood_per_step": float(log_p) / int(real.sum()), "seconds": 0.0}


def ours(name: str, args: list[str], root: Path, data_dir: str, epochs: int, k: int) -> dict:
    out = root / name
    start = time.perf_counter()
    code = main(
        [
            "train", *args, "--dataset", "chorales", "--data-dir", data_dir, "--epochs",
            str(epochs), "--batch-size", "20", "--out", str(out), "--quiet",
        ]
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{name}: pyrovae train failed ({code})")
    if main(["evaluate", str(out), "--num-samples", str(k), "--quiet"]) != 0:
        raise SystemExit(f"{name}: pyrovae evaluate failed")
    report = json.loads((out / "eval.json").read_text())
    history = json.loads((out / "metrics.json").read_text())["history"]
    return {
        "test_log_likelihood_per_step": report["per_step"]["test_log_likelihood"],
        "stderr_per_step": report["per_step"]["test_log_likelihood_stderr"],
        "test_elbo_per_step": report["per_step"]["test_elbo"],
        "test_kl_per_sequence": report["test_kl"],
        "seconds": seconds,
        "seconds_per_epoch": [r["seconds"] for r in history],
    }


STUB = {
    "torchvision/__init__.py": "from . import datasets, transforms  # noqa: F401\n",
    "torchvision/datasets.py": "class MNIST:\n    mirrors: list = []\n",
    "torchvision/transforms.py": "",
}


#: Runs of Pyro's example before the benchmark gives up (a failed run is reported).
PYRO_ATTEMPTS = 3


def pyro_example(example: Path, python: str, data, root: Path, epochs: int) -> dict:
    """Pyro's examples/dmm.py, unchanged, on these piano rolls (see the module docstring)."""
    home = root / "pyro-home"
    (home / ".data").mkdir(parents=True, exist_ok=True)
    rolls = {}
    for split in ("train", "valid", "test"):
        x, lengths = getattr(data, f"{split}_x"), getattr(data, f"{split}_lengths")
        rolls[split] = {
            "sequence_lengths": lengths.clone(),
            "sequences": [x[i, : int(t)].clone() for i, t in enumerate(lengths)],
        }
    with open(home / ".data" / "jsb_chorales.pkl", "wb") as f:
        pickle.dump(rolls, f, pickle.HIGHEST_PROTOCOL)
    stub = root / "stub"
    for name, text in STUB.items():
        (stub / name).parent.mkdir(parents=True, exist_ok=True)
        (stub / name).write_text(text)
    env = {**os.environ, "CI": "1", "HOME": str(home), "PYTHONPATH": str(stub)}
    log = root / "pyro-dmm.log"
    failed = []  # the example seeds nothing: a fresh initialisation can diverge (NaN)
    for _ in range(PYRO_ATTEMPTS):
        start = time.perf_counter()
        done = subprocess.run(
            [python, str(example), "-n", str(epochs), "-l", str(log)], env=env, cwd=root
        )
        seconds = time.perf_counter() - start
        if done.returncode == 0:
            break
        failed.append(round(seconds, 1))
        print(f"Pyro's example failed (exit {done.returncode}) after {seconds:.0f} s; again")
    else:
        raise SystemExit(f"Pyro's example failed {PYRO_ATTEMPTS} times: {failed} s")
    text = log.read_text()
    tests = re.findall(r"\[val/test epoch (\d+)\]\s+(\S+)\s+(\S+)", text)
    if not tests:
        raise SystemExit(f"Pyro's example reported no test number in {epochs} epochs (> 50)")
    epoch, _, test_nll = tests[-1]
    return {
        "test_elbo_per_step": -float(test_nll),
        "evaluated_epoch": int(epoch) + 1,
        "seconds": seconds,
        "failed_attempts_seconds": failed,
    }


def cells(r: dict) -> list[str]:
    """A result's cells of the Markdown table (blank where the model has no such number)."""
    ll = r.get("test_log_likelihood_per_step")
    ll_cell = "" if ll is None else f"{ll:.3f}"
    if "stderr_per_step" in r:
        ll_cell += f" ± {r['stderr_per_step']:.3f}"
    elbo = r.get("test_elbo_per_step")
    kl = r.get("test_kl_per_sequence")
    return [
        ll_cell,
        "" if elbo is None else f"{elbo:.3f}",
        "" if kl is None else f"{kl:.2f}",
        f"{r['seconds'] / 60:.1f} min",
    ]


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="where chorales.npz is (or goes)")
    parser.add_argument("--epochs", type=int, default=51)
    parser.add_argument(
        "--models",
        default="floor,seqvae,seqvae+warmup+dropout,seqvae+warmup20+dropout0.5,dmm,pyro-dmm",
    )
    parser.add_argument("--num-samples", type=int, default=100, help="IS draws in evaluate")
    parser.add_argument("--pyro-example", type=Path, help="a copy of Pyro's examples/dmm.py")
    parser.add_argument("--pyro-python", default=sys.executable)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = load_chorales(args.data_dir)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.models.split(","):
            if name == "floor":
                result = floor(data)
            elif name == "pyro-dmm":
                if args.pyro_example is None:
                    print("pyro-dmm: skipped (no --pyro-example)")
                    continue
                result = pyro_example(
                    args.pyro_example.resolve(), args.pyro_python, data, root, args.epochs
                )
            else:
                result = ours(name, OURS[name], root, args.data_dir, args.epochs, args.num_samples)
            results[name] = result
            print(name, json.dumps(result), flush=True)
    print(f"\n| model ({args.epochs} epochs) | test log p(x) per step | test ELBO per step | "
          "KL per sequence | wall |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(cells(r)) + " |")
    if args.json:
        args.json.write_text(json.dumps({"epochs": args.epochs, "results": results}, indent=1))


if __name__ == "__main__":
    main_benchmark()
