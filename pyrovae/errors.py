"""Errors of the library that both layers raise and catch.

The library (:mod:`pyrovae.infer`, :mod:`pyrovae.models`) raises them; the application layer
catches them to report a fix to the user. This module imports nothing from pyrovae, so
anything may import it.
"""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; parameters are left at their last finite step.

    Raised by :class:`~pyrovae.infer.Trainer` (the SVI loss) and :func:`~pyrovae.infer.em`
    (the log-likelihood of an EM iteration).
    """


__all__ = ["TrainingDiverged"]
