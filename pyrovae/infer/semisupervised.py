"""Semi-supervised learning: the M2 objective (its data, partly labelled, are
:mod:`pyrovae.data.semisupervised`'s).

Kingma et al. 2014, eq. (9): with labelled pairs (x, y) and unlabelled rows x,

    J_alpha = sum_labelled -L(x, y) + sum_unlabelled -U(x) + alpha sum_labelled -log q(y | x),

where L and U are the ELBOs of the labelled and the unlabelled case (the class summed
exactly by enumeration) and the last term trains the classifier q(y | x) on the labels
directly, which the ELBO alone does not (q(y | x) enters U only). Here alpha weighs each
labelled example's cross-entropy against its ELBO, both in nats.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from .loss_from_differentiable import LossFromDifferentiableLoss


class SemiSupervisedELBO(LossFromDifferentiableLoss, TraceEnum_ELBO):
    """-ELBO summed exactly over enumerated labels, plus ``alpha`` times the classification
    loss -log q(y | x) of every labelled example (Kingma et al. 2014, eq. (9)).

    The classification term is read from the guide itself: the guide runs with its label
    site conditioned on the observed labels (``poutine.condition``), and the log-density of
    that site is log q(y | x). So any guide whose label site is sampled when labels are
    missing works, and nothing but the objective knows about alpha.

    Args:
        alpha: weight of the cross-entropy per labelled example (0: the plain ELBO).
        label_site: the name of the class site in model and guide.
        max_plate_nesting: as :class:`~pyro.infer.TraceEnum_ELBO` (1: the data plate).
        kwargs: passed to :class:`~pyro.infer.TraceEnum_ELBO` (e.g. ``num_particles``).

    The programs are called as ``(x,)`` for unlabelled batches and ``(x, y)`` for labelled
    ones.
    """

    def __init__(
        self,
        alpha: float = 50.0,
        label_site: str = "y",
        max_plate_nesting: int = 1,
        **kwargs,
    ) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        super().__init__(max_plate_nesting=max_plate_nesting, **kwargs)
        self.alpha = float(alpha)
        self.label_site = label_site

    def evaluation_elbo(self) -> TraceEnum_ELBO:
        """The bound a test ELBO of this objective reports: the ELBO without the
        classification term (labels summed out), so that it compares across objectives."""
        return TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting)

    def classification_loss(
        self, guide: Callable, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """sum_n -log q(y_n | x_n), with q the guide's distribution at the label site."""
        conditioned = poutine.condition(guide, data={self.label_site: y})
        trace = poutine.trace(conditioned).get_trace(x)
        if self.label_site not in trace.nodes:
            raise ValueError(
                f"the guide has no site {self.label_site!r} when the labels are missing, so it "
                "gives no classifier q(y | x) to train; sample the label there when y is None"
            )
        site = trace.nodes[self.label_site]
        return -(site["fn"].log_prob(site["value"]) * site["scale"]).sum()

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args, **kwargs
    ) -> torch.Tensor:
        """Minus the ELBO of the batch (y summed out when unlabelled) plus ``alpha`` times
        the classification loss of its labelled rows; differentiable."""
        return self.objective(super().differentiable_loss, model, guide, *args, **kwargs)

    def objective(
        self,
        enum_loss: Callable[..., torch.Tensor],
        model: Callable,
        guide: Callable,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        """``enum_loss(model, guide, *args)`` (TraceEnum_ELBO's -ELBO, or an equal
        computation) plus ``alpha`` times the classification loss of a labelled batch."""
        with warnings.catch_warnings():
            # A labelled batch has nothing to enumerate; TraceEnum_ELBO would warn each step.
            warnings.filterwarnings("ignore", "TraceEnum_ELBO found no sample sites")
            loss = enum_loss(model, guide, *args, **kwargs)
        y = args[1] if len(args) > 1 else kwargs.get("y")
        if y is not None and self.alpha > 0:
            loss = loss + self.alpha * self.classification_loss(guide, args[0], y)
        return loss
