"""A recipe's test inputs: the arguments its programs take after the data plate's rows.

Most families take one tensor x (N, D); the sequence models take (x, lengths), x (N, T, D)
and lengths (N,); a factory whose data have further arguments (x, *args), each (N, ...).
:data:`Inputs` is either form, and these helpers treat both alike, so that the orchestration
never assumes flat rows.
"""

from __future__ import annotations

import torch

#: One tensor x, or a tuple of tensors whose first dimension is the examples.
Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def as_args(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    """The inputs as the programs' positional arguments."""
    return inputs if isinstance(inputs, tuple) else (inputs,)


def num_examples(inputs: Inputs) -> int:
    """N, the examples (rows or sequences) of the inputs."""
    return int(as_args(inputs)[0].shape[0])


def head(inputs: Inputs, n: int) -> Inputs:
    """The first ``n`` examples of the inputs, in the same form."""
    if isinstance(inputs, tuple):
        return tuple(a[:n] for a in inputs)
    return inputs[:n]


def to_device(inputs: Inputs, device: torch.device | str) -> Inputs:
    """The inputs on ``device``, in the same form."""
    if isinstance(inputs, tuple):
        return tuple(a.to(device) for a in inputs)
    return inputs.to(device)


__all__ = ["Inputs", "as_args", "head", "num_examples", "to_device"]
