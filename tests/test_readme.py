"""The README's Python example runs as written, and its quick start names real commands."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    namespaces = []
    for block in blocks:
        namespaces.append({"__name__": "readme_example"})
        exec(compile(block, str(README), "exec"), namespaces[-1])  # noqa: S102 - our README
    vae = namespaces[0]
    mixture = next(ns for ns in namespaces if "em_history" in ns)
    ssvae = next(ns for ns in namespaces if "SSVAE" in ns)
    assert vae["images"].shape == (16, 8, 8)
    assert vae["history"][-1]["test_elbo"] > 0
    curve = mixture["em_history"].log_likelihood
    assert all(b >= a - 1e-9 for a, b in zip(curve, curve[1:], strict=False))
    assert mixture["r"].sum(-1).allclose(mixture["r"].new_ones(len(mixture["x"])))
    assert len(mixture["svi_history"]) == 3
    assert ssvae["labels"].shape == (360,)
    assert ssvae["images"].shape == (10, 64)
    assert "valid_accuracy" not in ssvae["history"][-1]  # fit alone measures no accuracy
    hmm = next(ns for ns in namespaces if "viterbi" in ns)
    assert hmm["exact"].stderr.abs().max() == 0  # every state summed: nothing sampled
    assert hmm["exact"].log_likelihood.mean() == pytest.approx(
        hmm["hmm_history"][-1]["train_elbo"],
        abs=0.5,  # the ELBO is log p(x) itself
    )
    assert set(hmm["viterbi"]) == {f"s_{t}" for t in range(12)}


def test_quick_start_is_two_commands_that_exist():
    text = README.read_text()
    assert "pip install -e . && pyrovae train vae --out runs/vae" in text
    assert 'pip install -e ".[test]" && pytest' in text
