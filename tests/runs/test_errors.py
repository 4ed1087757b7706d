"""The CLI shows an error a user can fix as one line, and keeps the traceback of the rest."""

from __future__ import annotations

import re
import textwrap

import pytest
import torch

from pyrovae.cli import main
from pyrovae.runs.errors import is_user_error
from pyrovae.runs.record import RunError
from pyrovae.runs.reopen import check_device, check_factory

BROKEN = """
import pyro
import pyro.distributions as dist
import torch


def make():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x):
        raise ValueError("a bug in the user's guide")

    return model, guide, torch.randn(40, 1)
"""


def raised(function):
    try:
        function()
    except Exception as e:  # noqa: BLE001 - the exception itself is what is tested
        return e
    raise AssertionError("nothing raised")


def test_a_value_error_pyrovae_raises_on_purpose_is_a_user_error():
    from pyrovae.runs import config_for

    error = raised(lambda: config_for("vae", beta=0.0).validate())
    assert isinstance(error, ValueError) and is_user_error(error)


def test_a_value_error_from_elsewhere_is_not(monkeypatch):
    assert not is_user_error(raised(lambda: int("x")))  # not pyrovae's own raise
    assert not is_user_error(raised(lambda: [].index(1)))
    assert not is_user_error(raised(lambda: {}["key"]))
    from pyrovae.runs import RunError, load_run

    error = raised(lambda: load_run("/no/such/run"))
    assert isinstance(error, RunError) and is_user_error(error)
    monkeypatch.setenv("PYROVAE_TRACEBACK", "1")
    assert not is_user_error(error)


def test_the_cli_prints_one_line_for_bad_settings(tmp_path, capsys):
    assert main(["train", "vae", "--out", str(tmp_path / "r"), "--beta", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "pyrovae: error: --beta must be positive, got 0.0\n"
    assert not (tmp_path / "r").exists()


def test_a_bug_in_a_users_program_keeps_its_traceback(tmp_path, monkeypatch):
    (tmp_path / "broken_pair.py").write_text(textwrap.dedent(BROKEN))
    monkeypatch.chdir(tmp_path)
    args = ["train", "broken_pair:make", "--out", str(tmp_path / "r"), "--epochs", "1", "--quiet"]
    with pytest.raises(ValueError, match="a bug in the user's guide"):
        main(args)


# ---- a run reopened on another machine (mutation survivors of runs/reopen.py) -------------


def test_a_device_this_machine_lacks_is_refused_as_unavailable_not_unknown():
    """--device mps or xpu where there is none: the refusal says the device is not available
    on this machine and to use cpu; calling it no device at all would refuse it on the
    machines that have one."""
    absent = [kind for kind in ("mps", "xpu") if not getattr(torch, kind).is_available()]
    if not absent:
        pytest.skip("this machine has both mps and xpu")
    for kind in absent:
        message = f"--device {kind}: {kind} is not available on this machine; use cpu"
        with pytest.raises(RunError, match=re.escape(message)):
            check_device(kind)


def test_a_factory_module_already_imported_from_elsewhere_is_refused(tmp_path):
    """A run whose factory is ``json:loads`` reopened with --factory-path DIR, DIR holding a
    json.py: Python would run the json already imported (the standard library's), not the
    code in DIR the user vouched for, so the run is refused, naming DIR and the fix."""
    (tmp_path / "json.py").write_text("def loads(**kwargs):\n    pass\n")
    message = (
        f"whose module json is not in --factory-path {tmp_path.resolve()}; pass the directory "
        "that holds it"
    )
    with pytest.raises(RunError, match=re.escape(message)):
        check_factory(tmp_path / "run", "json:loads", None, (str(tmp_path),))
