"""``pyrovae train adgm | sdgm``: the auxiliary deep generative models (Maaløe et al. 2016).

The M2 recipe (:mod:`pyrovae.runs.recipes.ssvae`: the validation split, the class-balanced
labelled subset, :class:`~pyrovae.infer.SemiSupervisedELBO` with ``--alpha``, the epoch with
the best validation accuracy in ``best.pt``, the figures and ``evaluate``) with the pair
:class:`~pyrovae.models.ADGM` and :class:`~pyrovae.guides.ADGMGuide`: an auxiliary code
a ~ q(a | x) feeds the classifier q(y | a, x) and the encoder q(z | a, y, x), and the model
scores it under p(a | x, y, z). y is observed where labelled and summed out exactly
(enumerated) elsewhere. The classifier that is scored is q(y | a, x) at the mean of
q(a | x) (:meth:`~pyrovae.guides.ADGMGuide.predict`). The defaults are the paper's MNIST
networks: z and a of 100 dimensions, every network two hidden layers of 500.

``sdgm`` is the same with the skip variant :class:`~pyrovae.models.SDGM` (a ~ p(a | z, y),
x ~ p(x | a, z, y)) and the same guide.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...guides import ADGMGuide
from ...models import ADGM, SDGM
from ..config import TrainConfig, setting
from .observed import hidden_dims_setting, latent_dim_setting
from .ssvae import SemiSupervisedOptions, SemiSupervisedRecipe


@dataclass(frozen=True)
class AuxiliaryOptions(SemiSupervisedOptions):
    latent_dim: int = latent_dim_setting(100)
    hidden_dims: tuple[int, ...] = hidden_dims_setting(
        (500, 500),
        "hidden layer widths of every network (q(a | x), q(y | a, x), q(z | a, y, x), the "
        "decoder and the prior of a), comma-separated",
    )
    aux_dim: int = setting(100, "dimension of the auxiliary variable a")

    def validate(self) -> None:
        super().validate()
        if self.aux_dim < 1:
            raise ValueError(f"--aux-dim must be at least 1, got {self.aux_dim}")


class AuxiliaryRecipe(SemiSupervisedRecipe):
    """See the module docstring."""

    name = "adgm"
    summary = (
        "auxiliary deep generative model (Maaløe et al. 2016): M2 with an auxiliary a, "
        "q(a | x) q(y | a, x) q(z | a, y, x) and p(a | x, y, z); y observed for --num-labels "
        "examples, summed out for the rest"
    )
    options = AuxiliaryOptions
    #: The generative model of the pair (its guide is always ADGMGuide).
    model_class: type = ADGM
    classifier = "q(y | a, x) at the mean of q(a | x)"
    importance_method = (
        "y summed exactly over the classes, a and z importance-sampled from q(a | x) and "
        "q(z | a, y, x)"
    )

    def pair(self, config: TrainConfig) -> tuple[ADGM | SDGM, ADGMGuide]:
        """The model over ``num_classes`` classes and its guide, every network an MLP with
        the widths of ``hidden_dims``."""
        kwargs = dict(
            input_dim=config.input_dim,
            num_classes=config.num_classes,
            latent_dim=config.latent_dim,
            aux_dim=config.aux_dim,
            hidden_dims=tuple(config.hidden_dims),
        )
        image_shape = tuple(config.image_shape) if config.image_shape else None
        model = self.model_class(likelihood=config.likelihood, image_shape=image_shape, **kwargs)
        return model, ADGMGuide(**kwargs)


class SkipRecipe(AuxiliaryRecipe):
    """See the module docstring."""

    name = "sdgm"
    summary = (
        "skip deep generative model (Maaløe et al. 2016): the ADGM with a ~ p(a | z, y) and "
        "x ~ p(x | a, z, y); the same guide, labels and selection"
    )
    model_class = SDGM
