"""Each model name finds its recipe; the recipes' hooks say what differs, and none changes the
config it is given."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pyrovae.data import DataSplits
from pyrovae.runs import RECIPES, config_for, recipe_for, train
from pyrovae.runs.config import TrainConfig
from pyrovae.runs.recipes.adgm import AuxiliaryRecipe, SkipRecipe
from pyrovae.runs.recipes.ae import AutoencoderRecipe
from pyrovae.runs.recipes.factory import FactoryRecipe
from pyrovae.runs.recipes.mixture import MixtureRecipe
from pyrovae.runs.recipes.ssvae import SemiSupervisedRecipe
from pyrovae.runs.recipes.vae import VAERecipe
from pyrovae.runs.registry import FACTORY, read_config
from pyrovae.runs.training import _metrics


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("vae", VAERecipe),
        ("ae", AutoencoderRecipe),
        ("gmm", MixtureRecipe),
        ("ssvae", SemiSupervisedRecipe),
        ("adgm", AuxiliaryRecipe),
        ("sdgm", SkipRecipe),
        ("my_models:make", FactoryRecipe),
    ],
)
def test_each_model_name_finds_its_recipe(model, kind):
    assert type(recipe_for(model)) is kind
    assert model not in RECIPES or RECIPES[model].name == model


def test_the_registry_finds_every_family_of_the_recipe_modules():
    """No list to keep: the names discovered are the families the recipe modules define (the
    nine registered by hand before discovery among them), each under its own name."""
    assert {"vae", "ae", "gmm", "mixture-vae", "ssvae", "adgm", "sdgm", "seqvae", "dmm"} <= set(
        RECIPES
    )
    # Listed as before discovery (the default first), any later family after them by name.
    first = ["vae", "ae", "gmm", "mixture-vae", "ssvae", "adgm", "sdgm", "seqvae", "dmm"]
    assert list(RECIPES)[:9] == first and list(RECIPES)[9:] == sorted(list(RECIPES)[9:])
    assert "package.module:function" not in RECIPES  # the factory takes every other name
    assert set(FACTORY.known) == set(RECIPES)


def _recipe_module(tmp_path, name: str, models: tuple[str, ...]) -> None:
    classes = "".join(
        f"\n\nclass Recipe{i}(VAERecipe):\n    name = {model!r}\n    summary = 'a test family'\n"
        for i, model in enumerate(models)
    )
    body = (
        "from pyrovae.runs.recipes.observed import ObservedRecipe\n"
        "from pyrovae.runs.recipes.vae import VAERecipe\n\n\n"
        "class Shared(ObservedRecipe):\n    summary = 'a base with no name of its own'\n"
    )
    (tmp_path / f"{name}.py").write_text(body + classes)


def test_a_new_recipe_module_is_registered_without_editing_the_registry(tmp_path, monkeypatch):
    """A module dropped beside the recipes registers the recipes it defines with a name of
    their own (not the ones it imports, not a shared base); two of one name are refused."""
    import sys

    from pyrovae.runs import recipes, registry

    _recipe_module(tmp_path, "zz_family", ("zz-one", "zz-two"))
    monkeypatch.setattr(recipes, "__path__", [*recipes.__path__, str(tmp_path)])
    for module in ("zz_family", "zz_clash"):
        monkeypatch.delitem(sys.modules, f"pyrovae.runs.recipes.{module}", raising=False)
    found = registry.discover()
    assert set(found) == set(RECIPES) | {"zz-one", "zz-two"}
    assert type(found["zz-two"]).__name__ == "Recipe1" and type(found["vae"]) is VAERecipe

    _recipe_module(tmp_path, "zz_clash", ("vae",))
    with pytest.raises(RuntimeError, match=r"two recipes are named 'vae': .*rename one"):
        registry.discover()


def metrics_note(model: str, **options) -> str:
    config = config_for(model, **options)
    return _metrics(recipe_for(model), config, [])["units"]


def test_metrics_notes_name_what_the_numbers_mean():
    assert "point-mass guide" in metrics_note("ae")
    assert "point-mass" not in metrics_note("vae")
    assert "beta = 2.5" in metrics_note("vae", beta=2.5) and "beta" not in metrics_note("vae")
    ssvae = metrics_note("ssvae", alpha=7.0)
    assert "alpha = 7.0" in ssvae and "valid_accuracy" in ssvae


def test_only_an_em_mixture_refuses_to_resume():
    assert "does not resume" in recipe_for("gmm").refuse_resume(config_for("gmm"))
    assert recipe_for("gmm").refuse_resume(config_for("gmm", inference="svi")) is None
    assert recipe_for("vae").refuse_resume(config_for("vae")) is None


def test_options_belong_to_their_recipe():
    assert config_for("gmm", components=[2, 4]).components == (2, 4)
    assert config_for("vae", latent_dim=3).latent_dim == 3
    with pytest.raises(ValueError, match=r"unknown settings \['components'\] for model 'vae'"):
        config_for("vae", components=[2])
    with pytest.raises(AttributeError, match="has no setting 'components'"):
        config_for("vae").components  # noqa: B018
    # ssvae's networks read [x, one_hot(y)]: it has no --architecture to get wrong.
    assert "architecture" not in {f.name for f in dataclasses.fields(recipe_for("ssvae").options)}


def test_a_config_json_round_trips_and_old_ones_still_open():
    config = config_for("gmm", components=[3], out="runs/x").with_options(num_components=3)
    values = config.to_dict()
    assert values["components"] == [3] and values["num_components"] == 3
    assert read_config(values) == config
    old = {**config_for("vae").to_dict(), "components": [10], "alpha": 50.0}  # before recipes
    assert read_config(old) == config_for("vae")
    with pytest.raises(ValueError, match="unknown settings"):
        read_config({**values, "no_such_setting": 1})


def data(x: torch.Tensor, y: torch.Tensor | None = None) -> DataSplits:
    return DataSplits("toy", x, x[:4], y, None if y is None else y[:4], None)


@pytest.mark.parametrize(
    ("model", "x", "resolved"),
    [
        ("vae", torch.rand(20, 3), {"likelihood": "continuous-bernoulli", "binarize": "none"}),
        ("vae", torch.randn(20, 3), {"likelihood": "gaussian", "binarize": "none"}),
        ("ae", (torch.rand(20, 3) > 0.5).float(), {"likelihood": "bernoulli"}),
        ("ssvae", torch.rand(20, 3), {"num_classes": 2}),
        ("gmm", torch.randn(20, 3), {}),
    ],
)
def test_hooks_return_a_new_config_and_leave_the_given_one_alone(model, x, resolved):
    config = config_for(model)
    before = config.to_dict()
    y = torch.arange(20) % 2
    built = recipe_for(model).build(config, saved=data(x, y))
    assert config.to_dict() == before  # frozen, and nothing replaced behind the caller's back
    assert built.config.input_dim == 3
    for name, value in resolved.items():
        assert getattr(built.config, name) == value
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.config.epochs = 3


@pytest.mark.parametrize("model", [name for name, r in RECIPES.items() if r.objective])
def test_a_family_with_its_own_objective_decides_it_once_when_the_run_is_built(model):
    """The family's objective replaces "auto" in the built config (what config.json records),
    and any other objective is refused by name rather than trained over."""
    x, y = torch.rand(20, 3), torch.arange(20) % 2
    recipe = recipe_for(model)
    built = recipe.build(config_for(model), saved=data(x, y))
    assert config_for(model).objective == "auto" and built.config.objective == recipe.objective
    other = next(name for name in ("elbo", "iwae") if name != recipe.objective)
    with pytest.raises(ValueError, match=f"{model} trains with the objective '{recipe.objective}'"):
        recipe.build(config_for(model, objective=other), saved=data(x, y))


def test_a_family_without_one_keeps_the_objective_asked_for_until_the_trainer_resolves_it():
    x = torch.rand(20, 3)
    for objective in ("auto", "iwae", "meanfield"):
        built = recipe_for("vae").build(config_for("vae", objective=objective), saved=data(x, None))
        assert built.config.objective == objective


def test_every_recipe_option_has_a_help_and_a_validating_default():
    for recipe in (*RECIPES.values(), recipe_for("a:b")):
        options = recipe.options()
        options.validate()
        TrainConfig(options=options).validate()
        for f in dataclasses.fields(options):
            if f.metadata.get("option"):
                assert f.metadata["option"]["help"], f"{recipe.name}.{f.name} has no help"


class _SaysItsMetricsRecordTheTestELBO(VAERecipe):
    test_elbo_note = "test_elbo from a metric of the recipe"


def test_a_recipe_whose_metrics_do_not_record_the_test_elbo_it_promised_fails(
    tmp_path, monkeypatch
):
    """With a test_elbo_note the Trainer skips its own test ELBO; a recipe whose metrics then
    record none stops at the first epoch, naming itself, and leaves no run behind."""
    monkeypatch.setitem(RECIPES, "vae", _SaysItsMetricsRecordTheTestELBO())
    out = tmp_path / "run"
    config = config_for("vae", out=str(out), epochs=1, latent_dim=2, hidden_dims=[8])
    with pytest.raises(RuntimeError, match="the vae recipe says its metrics record test_elbo"):
        train(config, progress=False, log=lambda line: None)
    assert not out.exists()
