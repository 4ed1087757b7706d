"""Network blocks: the class-conditioned MLP against the concatenated one-hot input."""

import pytest
import torch
from torch.nn.functional import one_hot

from pyrovae.nn import MLP, mlp_on_parts, mlp_with_class


@pytest.mark.parametrize(
    "features_shape, y_shape", [((7, 5), (7,)), ((7, 5), (3, 1)), ((3, 7, 5), (3, 1))]
)
def test_mlp_with_class_is_the_mlp_on_features_and_a_one_hot_class(features_shape, y_shape):
    torch.manual_seed(0)
    mlp = MLP(5 + 3, (16,), 4)
    features = torch.randn(features_shape, requires_grad=True)
    y = torch.randint(3, y_shape)
    got = mlp_with_class(mlp, features, y)
    code = one_hot(y, 3).float()
    shape = torch.broadcast_shapes(features.shape[:-1], code.shape[:-1])
    joined = torch.cat([features.expand(*shape, 5), code.expand(*shape, 3)], -1)
    want = mlp(joined)
    assert got.shape == want.shape == (*shape, 4)
    torch.testing.assert_close(got, want)
    params = [features, *mlp.parameters()]
    got_grads = torch.autograd.grad(got.square().sum(), params)
    want_grads = torch.autograd.grad(want.square().sum(), params)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w)


def test_mlp_with_class_needs_a_linear_first_layer():
    with pytest.raises(TypeError, match="first module must be nn.Linear"):
        mlp_with_class(
            torch.nn.Sequential(torch.nn.ReLU()), torch.zeros(2, 3), torch.zeros(2).long()
        )


@pytest.mark.parametrize("with_class", [True, False])
def test_mlp_on_parts_is_the_mlp_on_the_concatenated_parts(with_class):
    """x (N, D) beside z (C, N, L) and y (C, 1): the first layer sees x once, the output
    and every gradient are those of the MLP on [x, z, one_hot(y)] broadcast to (C, N)."""
    torch.manual_seed(0)
    classes = 3 if with_class else 0
    mlp = MLP(5 + 2 + classes, (16, 8), 4)
    x = torch.randn(7, 5, requires_grad=True)
    z = torch.randn(3, 7, 2, requires_grad=True)
    y = torch.arange(3).view(3, 1) if with_class else None
    got = mlp_on_parts(mlp, (x, z), y)
    pieces = [x.expand(3, 7, 5), z]
    if with_class:
        pieces.append(one_hot(y, 3).float().expand(3, 7, 3))
    want = mlp(torch.cat(pieces, -1))
    assert got.shape == want.shape == (3, 7, 4)
    torch.testing.assert_close(got, want)
    params = [x, z, *mlp.parameters()]
    got_grads = torch.autograd.grad(got.square().sum(), params)
    want_grads = torch.autograd.grad(want.square().sum(), params)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w)


def test_mlp_on_parts_names_a_width_that_does_not_match_the_first_layer():
    with pytest.raises(ValueError, match="the parts have 6 features; the first layer takes 7"):
        mlp_on_parts(MLP(7, (4,), 2), (torch.zeros(2, 3), torch.zeros(2, 3)))


def test_mlp_on_parts_needs_a_part():
    with pytest.raises(ValueError, match="at least one part"):
        mlp_on_parts(MLP(3, (4,), 2), (), torch.zeros(2).long())
