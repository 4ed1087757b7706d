"""Shared fixtures: every test starts seeded, with an empty param store and validation on;
``one_thread`` for tiny problems; ``variant`` and its parametrisation for the pair contract
(tests/contract.py)."""

from __future__ import annotations

from pathlib import Path

import pyro
import pytest
import torch
from threadpoolctl import threadpool_limits

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
def one_thread():
    """These problems are tiny (D = 8): waking a second thread costs more than the arithmetic.
    On a busy two-core machine SVI and EM ran 10x and scikit-learn's SVDs 100x slower with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is absent (it holds the MNIST files)")
    return SHARED_DATA


@pytest.fixture
def variant():
    """How a contract test (tests/contract.py) calls its pair: None for a pair called one way;
    a class listing ``variants`` gets one run per variant (:func:`pytest_generate_tests`)."""
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run of each contract test per entry of its class's ``variants``."""
    variants = getattr(metafunc.cls, "variants", ())
    if variants and "variant" in metafunc.fixturenames:
        metafunc.parametrize("variant", variants, ids=str)


@pytest.fixture
def interrupt_pretraining(monkeypatch):
    """``interrupt_pretraining(epoch)``: the mixture VAE's pretraining stops with a
    KeyboardInterrupt (as Ctrl-C stops it) at the first step after ``epoch`` pretraining
    epochs; ``monkeypatch.undo()`` lets it run again."""
    from pyrovae.infer import Trainer
    from pyrovae.procedures.mixture_vae import MeanCodeGuide

    real_step = Trainer.step

    def interrupt(epoch: int) -> None:
        def step(self, args):
            if isinstance(self.guide, MeanCodeGuide) and self.epoch == epoch:
                raise KeyboardInterrupt
            return real_step(self, args)

        monkeypatch.setattr(Trainer, "step", step)

    return interrupt
