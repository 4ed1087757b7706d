"""Network blocks shared by models and guides: MLPs and small convolutional nets.

Shapes: ``B`` is any batch shape, ``D = C * H * W`` a flattened image. Every block
maps flattened vectors to flattened vectors, so models and guides see data as
``(N, D)`` rows whatever the network inside.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "elu": nn.ELU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Fully connected net ``in_dim -> hidden_dims... -> out_dim``; (B, in_dim) -> (B, out_dim).

    The last layer is linear (no activation), so it can produce logits, locations or
    unconstrained scales.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: str = "relu",
    ) -> None:
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden_dims]
        for a, b in zip(dims[:-1], dims[1:], strict=False):
            layers += [nn.Linear(a, b), _activation(activation)]
        layers.append(nn.Linear(dims[-1], out_dim))
        super().__init__(*layers)


def gaussian_head(
    output: torch.Tensor, dim: int, min_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and standard deviation a network's output (..., 2 dim) holds: its first
    ``dim`` values are the mean, its last ``dim`` give softplus(raw) + ``min_scale``."""
    loc, raw_scale = output.split(dim, dim=-1)
    return loc, nn.functional.softplus(raw_scale) + min_scale


def mlp_with_class(mlp: nn.Sequential, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mlp([features, one_hot(y)])`` without building the one-hot input.

    The first layer's weight splits as W = [W_f, W_c] (W_c: one column per class), so
    W [f; e_y] + b = W_f f + b + W_c[:, y]: the features pass through W_f once, however many
    classes they are paired with, and the class adds a column of W_c. Under enumeration of
    C classes, y (C, 1) against features (N, F) gives (C, N, out) as the concatenation
    would, at the first layer's cost for N rows instead of C N. The same function of the
    same parameters (a state dict of the concatenating form loads unchanged).

    Shapes: features (..., F), y (...,) int64 class indices (broadcast against each other);
    the first module of ``mlp`` is an ``nn.Linear`` with F + C inputs.
    """
    return mlp_on_parts(mlp, (features,), y)


def mlp_on_parts(
    mlp: nn.Sequential, parts: Sequence[torch.Tensor], y: torch.Tensor | None = None
) -> torch.Tensor:
    """``mlp([part_1, ..., part_k, one_hot(y)])`` with each part through the first layer at
    its own shape.

    The first layer's weight splits by columns as W = [W_1, ..., W_k, W_c], so
    W [p_1; ...; p_k; e_y] + b = sum_i W_i p_i + b + W_c[:, y]: a part that does not vary
    with an enumerated class, e.g. x (N, D) beside z (C, N, L), passes through its block
    once and broadcasts. Without y the first layer has no class columns.

    Shapes: parts (..., F_i) broadcastable against each other (and y (...,)); the first
    module of ``mlp`` is an ``nn.Linear`` with sum_i F_i (+ C) inputs. Returns (..., out).

    Example:
        >>> import torch
        >>> from pyrovae.nn import MLP, mlp_on_parts
        >>> mlp = MLP(5 + 2 + 3, (16,), 4)  # inputs [x, z, one_hot(y)], 3 classes
        >>> x, z = torch.randn(7, 5), torch.randn(3, 7, 2)  # z: one per class, (C, N, L)
        >>> y = torch.arange(3).view(3, 1)  # the classes, as enumeration gives them
        >>> mlp_on_parts(mlp, (x, z), y).shape
        torch.Size([3, 7, 4])
    """
    first = mlp[0]
    if not isinstance(first, nn.Linear):
        raise TypeError(f"the MLP's first module must be nn.Linear, got {type(first).__name__}")
    if not parts:
        raise ValueError("give at least one part to pass through the first layer")
    start = parts[0].shape[-1]
    hidden = nn.functional.linear(parts[0], first.weight[:, :start], first.bias)
    for part in parts[1:]:
        width = part.shape[-1]
        hidden = hidden + nn.functional.linear(part, first.weight[:, start : start + width])
        start += width
    if y is not None:
        hidden = hidden + first.weight[:, start:].T[y]
    elif start != first.in_features:
        raise ValueError(
            f"the parts have {start} features; the first layer takes {first.in_features}"
        )
    for layer in list(mlp)[1:]:
        hidden = layer(hidden)
    return hidden


def _reduced_size(size: int) -> int:
    """Spatial size after two stride-2 convolutions with kernel 4, padding 1 (ceil(size / 4))."""
    return -(-size // 4)


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions and an MLP head: (B, C*H*W) -> (B, out_dim).

    For 28x28 MNIST: 1x28x28 -> 32x14x14 -> 64x7x7 -> hidden -> out_dim.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        out_dim: int,
        hidden_dims: Sequence[int] = (256,),
        channels: tuple[int, int] = (32, 64),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = self.image_shape
        c1, c2 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1),
            _activation(activation),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            _activation(activation),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, c, h, w)).numel()
        self.head = MLP(flat, hidden_dims, out_dim, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_shape = x.shape[:-1]
        images = x.reshape(-1, *self.image_shape)  # (B', C, H, W)
        features = self.conv(images).flatten(1)
        return self.head(features).reshape(*batch_shape, -1)


class ConvDecoder(nn.Module):
    """MLP then two stride-2 transposed convolutions: (B, in_dim) -> (B, C*H*W).

    The output is cropped to (H, W), so any image size works (8x8 digits, 28x28 MNIST).
    """

    def __init__(
        self,
        in_dim: int,
        image_shape: tuple[int, int, int],
        hidden_dims: Sequence[int] = (256,),
        channels: tuple[int, int] = (64, 32),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = self.image_shape
        c1, c2 = channels
        self.grid = (c1, _reduced_size(h), _reduced_size(w))
        self.head = nn.Sequential(
            MLP(in_dim, hidden_dims, c1 * self.grid[1] * self.grid[2], activation),
            _activation(activation),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1),
            _activation(activation),
            nn.ConvTranspose2d(c2, c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch_shape = z.shape[:-1]
        grid = self.head(z.reshape(-1, z.shape[-1])).reshape(-1, *self.grid)
        c, h, w = self.image_shape
        images = self.deconv(grid)[:, :, :h, :w]  # (B', C, H, W)
        return images.reshape(*batch_shape, c * h * w)


def _image_shape_for_conv(
    image_shape: tuple[int, int, int] | None, role: str
) -> tuple[int, int, int]:
    if image_shape is None:
        raise ValueError(f"a convolutional {role} needs image data (image_shape=(C, H, W))")
    return image_shape


def _unknown_architecture(architecture: str) -> ValueError:
    return ValueError(f"unknown architecture {architecture!r}; choose 'mlp' or 'conv'")


def make_encoder(
    input_dim: int,
    out_dim: int,
    hidden_dims: Sequence[int],
    architecture: str = "mlp",
    image_shape: tuple[int, int, int] | None = None,
) -> nn.Module:
    """A network (B, input_dim) -> (B, out_dim): an :class:`MLP` or a :class:`ConvEncoder`."""
    if architecture == "mlp":
        return MLP(input_dim, hidden_dims, out_dim)
    if architecture == "conv":
        return ConvEncoder(_image_shape_for_conv(image_shape, "encoder"), out_dim, hidden_dims)
    raise _unknown_architecture(architecture)


def make_decoder(
    latent_dim: int,
    input_dim: int,
    hidden_dims: Sequence[int],
    architecture: str = "mlp",
    image_shape: tuple[int, int, int] | None = None,
) -> nn.Module:
    """A network (B, latent_dim) -> (B, input_dim): an :class:`MLP` or a :class:`ConvDecoder`."""
    if architecture == "mlp":
        return MLP(latent_dim, hidden_dims, input_dim)
    if architecture == "conv":
        return ConvDecoder(latent_dim, _image_shape_for_conv(image_shape, "decoder"), hidden_dims)
    raise _unknown_architecture(architecture)
