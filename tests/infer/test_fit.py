import copy
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import pyrovae
from pyrovae.guides import GaussianEncoder
from pyrovae.infer import Trainer, TrainingDiverged, evaluate_elbo
from pyrovae.models import VAE


def digits() -> torch.Tensor:
    return torch.tensor(load_digits().data / 16, dtype=torch.float32)


def small_pair(beta=1.0):
    return VAE(64, 4, (64,), "continuous-bernoulli", beta=beta), GaussianEncoder(64, 4, (64,))


def test_fit_improves_the_test_elbo_and_records_history():
    x = digits()
    model, guide = small_pair()
    before = evaluate_elbo(model, guide, x[1500:])
    history = pyrovae.fit(
        model, guide, x[:1500], test_data=x[1500:], epochs=5, seed=0, progress=False
    )
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert set(history[0]) == {"epoch", "train_elbo", "test_elbo", "seconds"}
    assert history.column("test_elbo")[-1] > before + 10
    assert all(math.isfinite(v) for v in history.column("train_elbo"))


@pytest.mark.parametrize("form", ["tensor", "tuple", "dataset", "dataloader"])
def test_every_data_form_trains(form):
    x = digits()[:256]
    y = torch.zeros(256, dtype=torch.long)
    data = {
        "tensor": x,
        "tuple": (x, y),
        "dataset": TensorDataset(x, y),
        "dataloader": DataLoader(TensorDataset(x), batch_size=64),
    }[form]
    history = pyrovae.fit(*small_pair(), data, epochs=2, batch_size=64, seed=0, progress=False)
    assert len(history) == 2 and math.isfinite(history[-1]["train_elbo"])


def test_same_seed_same_numbers():
    x = digits()[:300]
    runs = []
    for _ in range(2):
        pyro.set_rng_seed(123)  # identical initial weights
        model, guide = small_pair()
        runs.append(pyrovae.fit(model, guide, x, epochs=2, batch_size=50, seed=7, progress=False))
    assert runs[0].column("train_elbo") == runs[1].column("train_elbo")


def test_meanfield_objective_and_particles_train():
    x = digits()[:256]
    for kwargs in ({"objective": "meanfield"}, {"num_particles": 4}):
        history = pyrovae.fit(*small_pair(), x, epochs=2, seed=0, progress=False, **kwargs)
        assert math.isfinite(history[-1]["train_elbo"])


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="unknown objective 'iwae2'"):
        pyrovae.fit(*small_pair(), digits()[:10], objective="iwae2", progress=False)


# A pair in Pyro's classic style: plain functions, parameters in Pyro's param store,
# sites named as in Pyro's VAE example ("latent", "obs").
decoder_net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Sigmoid())
encoder_net = torch.nn.Linear(64, 4)


def classic_model(x):
    pyro.module("decoder", decoder_net)
    noise = pyro.param("noise", torch.tensor(0.5), constraint=dist.constraints.positive)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
        pyro.sample("obs", dist.Normal(decoder_net(z), noise).to_event(1), obs=x)


def classic_guide(x):
    pyro.module("encoder", encoder_net)
    with pyro.plate("data", x.shape[0]):
        loc, raw = encoder_net(x).split(2, -1)
        pyro.sample(
            "latent", dist.Normal(loc, torch.nn.functional.softplus(raw) + 1e-3).to_event(1)
        )


def test_classic_style_program_trains_with_its_param_store_parameters():
    x = digits()[:512]
    trainer = Trainer(classic_model, classic_guide, x, seed=0, progress=False, lr=1e-2)
    assert trainer.store_names == sorted(
        ["decoder$$$0.bias", "decoder$$$0.weight", "encoder$$$bias", "encoder$$$weight", "noise"]
    )
    noise_before = pyro.param("noise").item()
    start = -Trace_ELBO(num_particles=20).loss(classic_model, classic_guide, x) / len(x)
    trainer.run(5)
    end = -Trace_ELBO(num_particles=20).loss(classic_model, classic_guide, x) / len(x)
    assert end > start + 5
    assert pyro.param("noise").item() != noise_before


def test_trainer_state_dict_round_trip_resumes_identically():
    x = digits()[:400]

    def trainer():
        pyro.set_rng_seed(5)
        return Trainer(*small_pair(), x, test_data=x[:100], batch_size=64, seed=11, progress=False)

    straight = trainer()
    straight.run(3)

    first = trainer()
    first.run(2)
    state = first.state_dict()
    resumed = trainer()
    resumed.load_state_dict(state)
    resumed.run(3)

    def numbers(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert numbers(resumed.history) == numbers(straight.history)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=False):
        assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro's own warning, before our error
def test_nan_stops_training_and_keeps_the_last_finite_parameters():
    x = digits()[:256]
    model, guide = small_pair()
    calls = {"n": 0}
    pyro.enable_validation(False)  # let a NaN factor through, as an overflow would

    def poisoned(*args):
        calls["n"] += 1
        if calls["n"] > 3:
            pyro.factor("nan", torch.tensor(float("nan")))
        return model(*args)

    trainer = Trainer(poisoned, guide, x, batch_size=32, seed=0, progress=False)
    # Collecting parameters ran the model once; the first steps are finite.
    with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
        trainer.run(1)
    assert all(torch.isfinite(p).all() for p in [*model.parameters(), *guide.parameters()])


def test_a_pair_without_parameters_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([x.shape[0], 64]).to_event(1), obs=x)

    def guide(x):
        pass

    with pytest.raises(ValueError, match="no trainable parameters"):
        pyrovae.fit(model, guide, digits()[:10], progress=False)


def test_beta_vae_trains_with_a_weighted_kl():
    x = digits()[:512]
    model, guide = small_pair(beta=4.0)
    history = pyrovae.fit(model, guide, x, test_data=x, epochs=3, seed=0, progress=False)
    # The training objective weights the KL by beta > 1, so it lies below the test ELBO.
    assert history[-1]["train_elbo"] < history[-1]["test_elbo"]


def test_a_classic_pairs_param_store_is_saved_and_restored_with_the_trainer():
    x = digits()[:128]
    trainer = Trainer(classic_model, classic_guide, x, seed=0, progress=False, lr=1e-2)
    trainer.run(1)
    state = copy.deepcopy(trainer.state_dict())  # like torch's, it shares storage
    assert set(state["params"]) >= {"noise"}
    saved = pyro.param("noise").item()
    trainer.run(2)
    assert pyro.param("noise").item() != saved
    trainer.load_state_dict(state)
    assert pyro.param("noise").item() == pytest.approx(saved, abs=1e-7)


def test_no_progress_means_no_output(capfd):
    x = torch.rand(64, 8)
    model, guide = VAE(8, 2, (8,), "continuous-bernoulli"), GaussianEncoder(8, 2, (8,))
    Trainer(model, guide, x, seed=0, progress=False).run(1)
    assert capfd.readouterr().err == ""
    Trainer(model, guide, x, seed=0, progress=True).run(1)
    assert "epoch 1/1" in capfd.readouterr().err
