"""Shared fixtures: every test starts seeded, with an empty param store and validation on."""

from __future__ import annotations

from pathlib import Path

import pyro
import pytest
import torch

#: ../shared/data beside the repository: the original MNIST-family files.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    torch.set_default_dtype(torch.float32)
    yield
    pyro.clear_param_store()
    torch.set_default_dtype(torch.float32)  # before the next module's fixtures, too


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is absent (it holds the MNIST files)")
    return SHARED_DATA
