"""Module-local parameters for pyrovae's PyroModules.

Pyro's :class:`~pyro.nn.PyroModule` registers its parameters in the global param
store under ``"<module name>$$$<attribute>"``. Two root modules with the default
empty name and an attribute of the same name (say ``net``) then silently share one
tensor, even with different shapes. :class:`LocalPyroModule` runs construction and
every call under ``pyro.settings.context(module_local_params=True)``, so each
module owns its parameters, ``state_dict()`` is the whole of a fitted module, and
the setting is restored afterwards: a user's own Pyro code is not changed.

The module-local mode emits ``param`` effects whose values are the ``nn.Parameter``
objects themselves. Pyro's :class:`~pyro.infer.SVI` asks every traced parameter
for ``.unconstrained()``; each of our parameters answers with itself (it already
lives in unconstrained space), so the same modules also train under plain
``SVI.step``.
"""

from __future__ import annotations

import types
from typing import Any

import pyro
import torch
from pyro.nn import PyroModule


def _identity(self: torch.Tensor) -> torch.Tensor:
    return self


class LocalPyroModule(PyroModule):
    """A :class:`~pyro.nn.PyroModule` whose parameters never enter Pyro's global store."""

    def __init__(self, name: str = "") -> None:
        with pyro.settings.context(module_local_params=True):
            super().__init__(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for param in self.parameters():
            # A bound method, not a weakref: copy.deepcopy rebinds it to the copy.
            if "unconstrained" not in param.__dict__:
                param.unconstrained = types.MethodType(_identity, param)
        with pyro.settings.context(module_local_params=True):
            return super().__call__(*args, **kwargs)
