"""The Trainer's step decay of the learning rate equals torch's StepLR, and is stateless."""

import pytest
import torch

from pyrovae.infer.schedule import StepDecay


def _optimizer(*lrs: float) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.Adam(groups)


def test_step_decay_gives_the_rates_of_torchs_step_lr_epoch_by_epoch():
    ours, theirs = _optimizer(1e-2, 3e-3), _optimizer(1e-2, 3e-3)
    schedule = StepDecay(ours, decay=0.9, every=3)
    reference = torch.optim.lr_scheduler.StepLR(theirs, step_size=3, gamma=0.9)
    for epoch in range(12):
        schedule.set_epoch(epoch)
        assert [g["lr"] for g in ours.param_groups] == pytest.approx(
            [g["lr"] for g in theirs.param_groups], rel=1e-12
        ), epoch
        theirs.step()
        reference.step()


def test_a_schedule_rebuilt_on_a_resumed_optimizer_starts_from_its_original_rates():
    optimizer = _optimizer(1e-2)
    StepDecay(optimizer, decay=0.5, every=1).set_epoch(2)  # 2.5e-3 after two steps
    state = optimizer.state_dict()
    resumed = _optimizer(1e-2)  # made as the run made it, then its state loaded
    schedule = StepDecay(resumed, decay=0.5, every=1)
    resumed.load_state_dict(state)
    schedule.set_epoch(3)
    assert resumed.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**3)


def test_a_tensor_rate_is_changed_in_place():
    optimizer = _optimizer(1e-2)
    rate = torch.tensor(1e-2)
    optimizer.param_groups[0]["lr"] = rate
    StepDecay(optimizer, decay=0.5, every=2).set_epoch(5)
    assert optimizer.param_groups[0]["lr"] is rate
    assert float(rate) == pytest.approx(1e-2 * 0.25)


@pytest.mark.parametrize(
    "decay, every, message",
    [(0.0, 1, "lr_decay must be in"), (1.5, 1, "lr_decay must be in"), (0.9, 0, "at least 1")],
)
def test_a_decay_outside_its_range_is_refused(decay, every, message):
    with pytest.raises(ValueError, match=message):
        StepDecay(_optimizer(1e-2), decay, every)


def test_the_defaults_keep_the_rate_constant():
    optimizer = _optimizer(1e-2)
    schedule = StepDecay(optimizer)
    assert schedule.constant
    schedule.set_epoch(7)
    assert optimizer.param_groups[0]["lr"] == 1e-2
