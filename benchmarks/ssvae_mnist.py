"""Benchmark: semi-supervised MNIST test error of the M2 model against the published numbers.

For each number of labels and each label draw (``--seeds``: the class-balanced subset is
drawn with that seed) the script trains ``pyrovae train ssvae`` on MNIST (dynamically
binarized, 50,000 training / 10,000 validation images, the epoch with the best validation
accuracy kept) and prints a Markdown table of the test error of argmax q(y | x), mean and
spread over the draws, with the epochs and wall time, beside Kingma et al. 2014 (Table 1,
M2) and Pyro's SS-VAE tutorial. Runs that already exist in ``--runs`` are read, not
retrained (``--summarize`` only reads), so a long benchmark can be resumed or split.

    python benchmarks/ssvae_mnist.py --labels 100 3000 --seeds 0 --epochs 80
    python benchmarks/ssvae_mnist.py --labels 100 3000 --summarize

The baselines are published numbers, not re-run here: M2's error in Kingma et al. 2014,
Table 1, and the test error Pyro's tutorial reports (examples/vae/ss_vae_M2.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from pyrovae.config import TrainConfig
from pyrovae.run import train

#: Test error (%) by number of labels: Kingma et al. 2014 Table 1 (M2), Pyro's tutorial.
KINGMA_M2 = {100: 11.97, 600: 4.94, 1000: 3.60, 3000: 3.92}
PYRO_TUTORIAL = {100: 6.81, 600: 5.63, 1000: 5.13, 3000: 4.18}


def run_dir(runs: Path, labels: int, seed: int) -> Path:
    return runs / f"ssvae-{labels}-seed{seed}"


def train_one(args: argparse.Namespace, labels: int, seed: int) -> None:
    config = TrainConfig(
        model="ssvae",
        out=str(run_dir(args.runs, labels, seed)),
        dataset="mnist",
        data_dir=args.data_dir,
        num_labels=labels,
        alpha=args.alpha,
        epochs=args.epochs,
        latent_dim=50,
        hidden_dims=[500],
        batch_size=200,
        seed=seed,
        figures=False,
    )
    train(config, progress=False)


def read(path: Path) -> dict | None:
    metrics = path / "metrics.json"
    if not metrics.exists():
        return None
    values = json.loads(metrics.read_text())
    history = values["history"]
    row = {
        "epochs": history[-1]["epoch"],
        "minutes": sum(r["seconds"] for r in history) / 60,
        "selected": values.get("selected", {}).get("epoch"),
        "test_error": None,
    }
    if "test_accuracy" in values:
        row["test_error"] = 100 * (1 - values["test_accuracy"])
    elif (path / "eval.json").exists():  # a run stopped early, then evaluated
        report = json.loads((path / "eval.json").read_text())
        row["test_error"] = 100 * (1 - report["test_accuracy"])
        row["selected"] = report.get("selected_epoch")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 600, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--alpha", type=float, default=TrainConfig.alpha)
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--runs", type=Path, default=Path("runs/ssvae-benchmark"))
    parser.add_argument("--summarize", action="store_true", help="only read existing runs")
    args = parser.parse_args()
    header = ["labels", "test error (%)", "draws", "epochs (selected)", "minutes per run"]
    print("| " + " | ".join([*header, "Kingma M2", "Pyro"]) + " |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for labels in args.labels:
        rows = []
        for seed in args.seeds:
            path = run_dir(args.runs, labels, seed)
            if not args.summarize and read(path) is None:
                train_one(args, labels, seed)
            row = read(path)
            if row is not None and row["test_error"] is not None:
                rows.append(row)
        if not rows:
            continue
        errors = [r["test_error"] for r in rows]
        spread = f" ± {statistics.stdev(errors):.2f}" if len(errors) > 1 else ""
        epochs = ", ".join(f"{r['epochs']} ({r['selected']})" for r in rows)
        minutes = statistics.mean(r["minutes"] for r in rows)
        print(
            f"| {labels} | {statistics.mean(errors):.2f}{spread} | {len(rows)} | {epochs} | "
            f"{minutes:.0f} | {KINGMA_M2.get(labels, '')} | {PYRO_TUTORIAL.get(labels, '')} |"
        )


if __name__ == "__main__":
    main()
