"""Benchmark: semi-supervised MNIST test error of M2 (``--model ssvae``), the ADGM
(``--model adgm``) or the SDGM (``--model sdgm``) against the published numbers.

For each number of labels and each label draw (``--seeds``: the class-balanced subset is
drawn with that seed) the script trains ``pyrovae train MODEL`` on MNIST (dynamically
binarized, 50,000 training / 10,000 validation images, the epoch with the best validation
accuracy kept) and prints a Markdown table of the test error of the guide's classifier,
mean and spread over the draws, with the epochs and wall time, beside Kingma et al. 2014
(Table 1: M2 and M1+M2), Maaløe et al. 2016 (the SDGM's number for ``--model sdgm``, the
ADGM's otherwise) and Pyro's SS-VAE tutorial. Each run is then evaluated as ``pyrovae
evaluate RUN --num-samples K`` (``--eval-samples``, default 20) for its test ELBO and
importance-sampled log p(x), y summed exactly. The networks are the papers': M2 a hidden
layer of 500 and z of 50; the ADGM and the SDGM two hidden layers of 500 in every network
and z, a of 100.

Runs that already exist in ``--runs`` are read, not retrained (``--summarize`` only reads);
a run with fewer epochs than ``--epochs`` is resumed from its checkpoint up to
``--epochs`` (unless ``--summarize``), so a long benchmark can be stopped, continued in
another session, or split across machines::

    python benchmarks/ssvae_mnist.py --labels 100 3000 --seeds 0 --epochs 80
    python benchmarks/ssvae_mnist.py --model adgm --labels 100 --seeds 0 1 --epochs 100
    python benchmarks/ssvae_mnist.py --model adgm --labels 100 3000 --summarize

The baselines are published numbers, not re-run here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from pyrovae.runs import config_for, evaluate, load_run, train
from pyrovae.runs.recipes.ssvae import SemiSupervisedOptions

#: Test error (%) by number of labels: Kingma et al. 2014 Table 1 (M2 and M1+M2), Maaløe et
#: al. 2016 Table 2 (ADGM and SDGM; at 100 labels only), Pyro's tutorial.
KINGMA_M2 = {100: 11.97, 600: 4.94, 1000: 3.60, 3000: 3.92}
KINGMA_M1_M2 = {100: 3.33, 600: 2.59, 1000: 2.40, 3000: 2.18}
MAALOE = {"ADGM": {100: 0.96}, "SDGM": {100: 1.32}}
PYRO_TUTORIAL = {100: 6.81, 600: 5.63, 1000: 5.13, 3000: 4.18}
#: The networks of each model's paper for MNIST (Maaløe et al.'s are the same for both).
AUXILIARY_NETWORKS = {"latent_dim": 100, "hidden_dims": [500, 500], "aux_dim": 100}
NETWORKS = {
    "ssvae": {"latent_dim": 50, "hidden_dims": [500]},
    "adgm": AUXILIARY_NETWORKS,
    "sdgm": AUXILIARY_NETWORKS,
}


def published(table: dict[int, float], labels: int) -> str:
    """A published error to two decimals, or nothing where that label count was not run."""
    return f"{table[labels]:.2f}" if labels in table else ""


def run_dir(runs: Path, model: str, labels: int, seed: int) -> Path:
    return runs / f"{model}-{labels}-seed{seed}"


def history(path: Path) -> list[dict]:
    """The run's per-epoch records from ``metrics.json`` (empty where it has none yet)."""
    metrics = path / "metrics.json"
    return json.loads(metrics.read_text())["history"] if metrics.exists() else []


def minutes_per_run(records: list[dict]) -> float:
    """The epochs times the median epoch's seconds, in minutes: the wall time of the run
    trained in one go at its median epoch's pace. Not the sum of the epochs' seconds: an
    epoch during which the process was stopped (SIGSTOP, a suspended machine) counts the
    pause in its seconds, and the first epoch after each start or resume the capture of the
    loss graphs; the median leaves both out."""
    return len(records) * statistics.median(r["seconds"] for r in records) / 60


def train_one(args: argparse.Namespace, labels: int, seed: int) -> None:
    """Train one run to ``args.epochs``: from the start, or resumed where it stopped."""
    path = run_dir(args.runs, args.model, labels, seed)
    config = config_for(
        args.model,
        out=str(path),
        dataset="mnist",
        data_dir=args.data_dir,
        num_labels=labels,
        alpha=args.alpha,
        epochs=args.epochs,
        batch_size=200,
        seed=seed,
        figures=False,
        **NETWORKS[args.model],
    )
    resume = (path / "checkpoint.pt").exists()
    train(config, resume=resume, progress=False, log=lambda line: print(line, file=sys.stderr))


def evaluation(path: Path, num_samples: int) -> dict:
    """``eval.json`` of the run's selected (best validation) epoch, written if missing or
    if it is of another epoch or K."""
    report_path = path / "eval.json"
    run = load_run(path)
    if report_path.exists():
        report = json.loads(report_path.read_text())
        same_epoch = report.get("selected_epoch") == run.notes.get("selected", {}).get("epoch")
        if same_epoch and report.get("num_samples") == num_samples:
            return report
    return evaluate(run, num_samples=num_samples, progress=False, log=lambda message: None)


def read(path: Path, records: list[dict], num_samples: int) -> dict:
    """One run's row: epochs trained and selected, minutes, and its test numbers."""
    report = evaluation(path, num_samples)
    return {
        "epochs": records[-1]["epoch"],
        "minutes": minutes_per_run(records),
        "selected": report["selected_epoch"],
        "test_error": 100 * (1 - report["test_accuracy"]),
        "test_elbo": report["test_elbo"],
        "log_likelihood": report["test_log_likelihood"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(NETWORKS), default="ssvae")
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 600, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument(
        "--eval-samples", type=int, default=20, help="K of the importance-sampled log p(x)"
    )
    parser.add_argument("--alpha", type=float, default=SemiSupervisedOptions().alpha)
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--runs", type=Path, default=Path("runs/ssvae-benchmark"))
    parser.add_argument("--summarize", action="store_true", help="only read existing runs")
    args = parser.parse_args()
    maaloe = "SDGM" if args.model == "sdgm" else "ADGM"
    header = [
        "labels",
        "test error (%)",
        "draws",
        "epochs (selected)",
        "minutes per run (epochs × median epoch)",
        "test ELBO",
        f"log p(x), IS K={args.eval_samples}",
        "Kingma M2",
        "Kingma M1+M2",
        f"Maaløe {maaloe}",
        "Pyro",
    ]
    print("| " + " | ".join(header) + " |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for labels in args.labels:
        rows = []
        for seed in args.seeds:
            path = run_dir(args.runs, args.model, labels, seed)
            records = history(path)
            if not args.summarize and (not records or records[-1]["epoch"] < args.epochs):
                train_one(args, labels, seed)
                records = history(path)
            if records:
                rows.append(read(path, records, args.eval_samples))
        if not rows:
            continue
        errors = [r["test_error"] for r in rows]
        spread = f" ± {statistics.stdev(errors):.2f}" if len(errors) > 1 else ""
        epochs = ", ".join(f"{r['epochs']} ({r['selected']})" for r in rows)
        minutes = statistics.mean(r["minutes"] for r in rows)
        elbo = statistics.mean(r["test_elbo"] for r in rows)
        log_likelihood = statistics.mean(r["log_likelihood"] for r in rows)
        print(
            f"| {labels} | {statistics.mean(errors):.2f}{spread} | {len(rows)} | {epochs} | "
            f"{minutes:.0f} | {elbo:.2f} | {log_likelihood:.2f} | "
            f"{published(KINGMA_M2, labels)} | {published(KINGMA_M1_M2, labels)} | "
            f"{published(MAALOE[maaloe], labels)} | {published(PYRO_TUTORIAL, labels)} |"
        )


if __name__ == "__main__":
    main()
