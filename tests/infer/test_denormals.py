"""Denormal floats are flushed to zero while pyrovae trains, and the mode is restored."""

from __future__ import annotations

import pytest
import torch

from pyrovae.guides import GaussianEncoder
from pyrovae.infer import Trainer, log_marginal
from pyrovae.infer.denormals import denormals_flushed, flushed_denormals
from pyrovae.models import VAE

TINY = 1e-39  # a float32 denormal (below 2**-126)


def flushing_supported() -> bool:
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(False)
    return supported


pytestmark = pytest.mark.skipif(
    not flushing_supported(), reason="this CPU has no flush-to-zero mode (needs x86 with SSE3)"
)


@pytest.fixture(autouse=True)
def mode_off():
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def test_the_probe_reads_the_mode():
    assert not denormals_flushed()
    assert (torch.tensor([TINY]) * 2.0).item() > 0.0  # denormals computed
    torch.set_flush_denormal(True)
    assert denormals_flushed()
    assert (torch.tensor([TINY]) * 2.0).item() == 0.0


def test_the_block_flushes_and_restores_the_mode_it_found():
    with flushed_denormals() as on:
        assert on and denormals_flushed()
    assert not denormals_flushed()

    torch.set_flush_denormal(True)  # a user who turned it on keeps it on
    with flushed_denormals():
        assert denormals_flushed()
    assert denormals_flushed()


def test_the_block_can_leave_the_mode_alone():
    with flushed_denormals(enabled=False) as on:
        assert not on and not denormals_flushed()


def test_the_mode_is_restored_after_an_error():
    with pytest.raises(RuntimeError), flushed_denormals():
        raise RuntimeError("boom")
    assert not denormals_flushed()


def pair() -> tuple[VAE, GaussianEncoder]:
    return VAE(4, 2, (8,), likelihood="gaussian"), GaussianEncoder(4, 2, (8,))


def test_training_flushes_while_it_runs_and_restores_the_mode_after():
    seen = []
    model, guide = pair()
    trainer = Trainer(
        model,
        guide,
        torch.randn(32, 4),
        batch_size=16,
        progress=False,
        seed=0,
        callbacks=[lambda trainer: seen.append(denormals_flushed())],
    )
    trainer.run(2)
    assert seen == [True, True]
    assert not denormals_flushed()

    seen.clear()
    trainer.flush_denormals = False
    trainer.run(3)
    assert seen == [False]


def test_log_marginal_restores_the_mode():
    model, guide = pair()
    log_marginal(model, guide, torch.randn(8, 4), num_samples=4, progress=False)
    assert not denormals_flushed()
