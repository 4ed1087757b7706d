"""Each model name finds its family's hooks, and the hooks say what differs."""

from __future__ import annotations

import pytest

from pyrovae.config import TrainConfig
from pyrovae.families import (
    AutoencoderFamily,
    FactoryFamily,
    Family,
    MixtureFamily,
    SemiSupervisedFamily,
    family,
)
from pyrovae.run import _metrics


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("vae", Family),
        ("ae", AutoencoderFamily),
        ("gmm", MixtureFamily),
        ("ssvae", SemiSupervisedFamily),
        ("my_models:make", FactoryFamily),
    ],
)
def test_each_model_name_finds_its_family(model, kind):
    assert type(family(model)) is kind


def test_metrics_notes_name_what_the_numbers_mean():
    assert "point-mass guide" in _metrics(TrainConfig(model="ae"), [])["units"]
    assert "point-mass" not in _metrics(TrainConfig(model="vae"), [])["units"]
    ssvae = _metrics(TrainConfig(model="ssvae", alpha=7.0), [])["units"]
    assert "alpha = 7.0" in ssvae and "valid_accuracy" in ssvae


def test_only_an_em_mixture_refuses_to_resume():
    assert "does not resume" in family("gmm").refuse_resume(TrainConfig(model="gmm"))
    assert family("gmm").refuse_resume(TrainConfig(model="gmm", inference="svi")) is None
    assert family("vae").refuse_resume(TrainConfig(model="vae")) is None
