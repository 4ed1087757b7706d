"""Network blocks: the class-conditioned MLP against the concatenated one-hot input."""

import pytest
import torch
from torch.nn.functional import one_hot

from pyrovae.nn import MLP, mlp_with_class


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
