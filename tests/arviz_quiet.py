"""ArviZ imported without its FutureWarning about the 1.0 refactor (ArviZ 0.x announces it on
import; nothing a test can act on). Shared by the diagnostics tests."""

from __future__ import annotations

import warnings


def az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ 0.x announces its 1.0 refactor
        import arviz

    return arviz
