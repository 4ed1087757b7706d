"""Semi-supervised learning with a few labels: the M2 model of Kingma et al. 2014.

The model and its guide:

    y ~ Categorical(1/C, ..., 1/C)          the class: observed when labelled
    z ~ N(0, I_L)                           the style, independent of the class
    x | y, z ~ Bernoulli(decoder([z, one_hot(y)]))
    q(y | x) = Categorical(classifier(x))   the classifier we are after
    q(z | x, y) = N(mu(x, y), diag sigma(x, y)^2)

A labelled batch contributes its ELBO with y observed plus alpha * (-log q(y | x)) (eq. 9);
an unlabelled batch its ELBO with y summed exactly over the C classes (the guide marks y
for parallel enumeration and Pyro's TraceEnum_ELBO does the sum). Both terms are one
Pyro objective, :class:`pyrovae.infer.SemiSupervisedELBO`, trained by ``pyrovae.fit``.
The epoch with the best accuracy on held-out labelled rows is kept. The script prints the
test accuracy of argmax q(y | x) beside that of the same classifier trained on the
labelled rows alone, and the test log-likelihood with y summed exactly; it writes
conditional generation, analogies, the accuracy curve and the confusion matrix.

    python examples/train_ssvae.py                      # digits, 100 labels, about a minute
    python examples/train_ssvae.py --num-labels 300 --out examples-out/ssvae300
    python examples/train_ssvae.py --dataset mnist --data-dir ../shared/data/mnist \\
        --num-labels 3000 --latent-dim 50 --hidden 500 --batch-size 200 --epochs 50
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

import pyrovae
from pyrovae.data import (
    SemiSupervisedData,
    binarize,
    binarize_fixed,
    load_dataset,
    split_labeled,
)
from pyrovae.diagnostics.ssvae_figures import write_ssvae_figures
from pyrovae.guides import SSVAEGuide
from pyrovae.infer import SemiSupervisedELBO, Trainer
from pyrovae.models import SSVAE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits", help="digits, mnist or fashion-mnist")
    p.add_argument("--data-dir", help="where the MNIST-family files are (never downloaded)")
    p.add_argument("--num-labels", type=int, default=100, help="labelled training examples")
    p.add_argument("--alpha", type=float, default=50.0, help="weight of -log q(y | x)")
    p.add_argument("--validation-size", type=int, default=300, help="held-out labelled rows")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[256])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-samples", type=int, default=200, help="K of the IS log-likelihood")
    p.add_argument("--out", type=Path, default=Path("examples-out/train_ssvae"))
    p.add_argument("--seed", type=int, default=0, help="weights, label draw, data order")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def accuracy(classifier: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((classifier(x).argmax(-1) == y).float().mean())


class KeepBest:
    """A callback: a copy of the classifier of the epoch with the best validation accuracy."""

    def __init__(self, classifier: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.classifier, self.x, self.y = classifier, x, y
        self.best, self.epoch, self.state = -1.0, 0, None

    def update(self, epoch: int) -> float:
        value = accuracy(self.classifier, self.x, self.y)
        if value > self.best:
            self.best, self.epoch = value, epoch
            self.state = copy.deepcopy(self.classifier.state_dict())
        return value

    def metric(self, trainer: Trainer) -> dict[str, float]:
        """For ``fit(metrics=...)``: the epoch's validation accuracy, into its record."""
        return {"valid_accuracy": self.update(trainer.epoch)}


def classifier_alone(
    args: argparse.Namespace, labeled: SemiSupervisedData, valid: tuple, steps: int
) -> torch.nn.Module:
    """The baseline: the guide's classifier network trained by cross-entropy on the labelled
    rows alone for ``steps`` steps, selected on the same validation rows."""
    torch.manual_seed(args.seed)
    d, c = labeled.labeled_x.shape[1], int(labeled.labeled_y.max()) + 1
    net = SSVAEGuide(d, c, args.latent_dim, args.hidden).classifier
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    keep = KeepBest(net, *valid)
    batches_per_epoch = -(-len(labeled.labeled_x) // args.batch_size)
    for epoch in range(-(-steps // batches_per_epoch)):
        for index in torch.randperm(len(labeled.labeled_x)).split(args.batch_size):
            x = binarize(labeled.labeled_x[index])
            loss = torch.nn.functional.cross_entropy(net(x), labeled.labeled_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        keep.update(epoch + 1)
    net.load_state_dict(keep.state)
    return net


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = load_dataset(args.dataset, args.data_dir)
    num_classes, d = int(data.num_classes), data.input_dim
    if data.train_y is None:
        raise SystemExit(f"{args.dataset} has no labels; the semi-supervised VAE needs some")
    # Grey levels as Bernoulli probabilities: training images resampled every epoch,
    # validation and test images binarized once.
    n_valid = args.validation_size
    valid = (binarize_fixed(data.train_x[:n_valid], seed=1), data.train_y[:n_valid])
    test_x, test_y = binarize_fixed(data.test_x, seed=0), data.test_y
    labeled = split_labeled(
        data.train_x[n_valid:], data.train_y[n_valid:], args.num_labels, args.seed
    )
    print(
        f"{len(labeled.labeled_x)} labelled and {len(labeled.unlabeled_x)} unlabelled training "
        f"rows, {n_valid} for validation, {len(test_x)} test rows"
    )

    model = SSVAE(d, num_classes, args.latent_dim, args.hidden, "bernoulli")
    guide = SSVAEGuide(d, num_classes, args.latent_dim, args.hidden)
    keep = KeepBest(guide.classifier, *valid)
    history = pyrovae.fit(
        model,
        guide,
        labeled,
        epochs=args.epochs,
        batch_size=args.batch_size,
        objective=SemiSupervisedELBO(alpha=args.alpha),
        transform=binarize,
        metrics=[keep.metric],
        seed=args.seed,
        progress=not args.quiet,
    )
    final_accuracy = accuracy(guide.classifier, test_x, test_y)
    guide.classifier.load_state_dict(keep.state)  # the selected epoch's classifier
    ours = accuracy(guide.classifier, test_x, test_y)
    # The baseline takes as many steps as the labelled batches the SSVAE saw.
    labelled_steps = args.epochs * -(-len(labeled.unlabeled_x) // args.batch_size)
    alone = accuracy(classifier_alone(args, labeled, valid, labelled_steps), test_x, test_y)

    figures = write_ssvae_figures(
        model,
        guide,
        test_x,
        test_y,
        args.out,
        image_shape=data.image_shape,
        history=list(history),
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    estimate = pyrovae.log_marginal(
        model, guide, test_x, num_samples=args.num_samples, progress=not args.quiet
    )
    print(f"figures: {', '.join(str(path) for path in figures)}")
    print(
        f"test accuracy of argmax q(y | x): {100 * ours:.2f}% (epoch {keep.epoch}, selected on "
        f"validation; last epoch {100 * final_accuracy:.2f}%); the classifier alone on the "
        f"{len(labeled.labeled_x)} labels: {100 * alone:.2f}%"
    )
    print(
        f"test log p(x), y summed exactly, IS with K = {args.num_samples}: "
        f"{estimate.mean():.2f} +- {estimate.mean_stderr():.2f} nats"
    )


if __name__ == "__main__":
    main()
