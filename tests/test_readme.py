"""The README's Python example and those of the concept pages (docs/concepts/) run as written,
and the README's quick start names real commands."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from images import assert_png

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONCEPTS = ROOT / "docs" / "concepts"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def run_blocks(blocks: list[str], source: Path) -> list[dict]:
    namespaces = []
    for block in blocks:
        namespaces.append({"__name__": "readme_example"})
        exec(compile(block, str(source), "exec"), namespaces[-1])  # noqa: S102 - our docs
    return namespaces


def test_the_readme_example_declares_fits_and_scores_a_pair(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 1, "the README has one Python example, its own pair"
    assert len(blocks[0].strip().splitlines()) <= 40
    monkeypatch.chdir(tmp_path)
    (example,) = run_blocks(blocks, README)
    history, result = example["history"], example["result"]
    assert len(history) == 20 and history[-1]["test_elbo"] > history[0]["test_elbo"]
    assert result.log_likelihood.shape == (360,)
    # The importance-sampled log p(x) is at least the ELBO, up to the ELBO's one-sample noise.
    assert result.mean() > history[-1]["test_elbo"] - 1.0


def test_the_concept_pages_examples_run(tmp_path, monkeypatch):
    """The Python examples of docs/concepts/, in the order of the concepts' toctree."""
    order = re.findall(
        r"^(\S+)$", (CONCEPTS / "index.md").read_text().split(":maxdepth: 1")[1], re.M
    )
    pages = [CONCEPTS / f"{name}.md" for name in order if name != "```"]
    blocks = [b for page in pages for b in python_blocks(page.read_text())]
    assert blocks, "the concept pages have no Python example"
    monkeypatch.chdir(tmp_path)
    namespaces = run_blocks(blocks, CONCEPTS)
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
    selection = next(ns for ns in namespaces if "selection" in ns)["selection"]
    assert selection.best_epoch in (1, 2) and 0 < selection.best_accuracy <= 1
    assert selection.metric(None)["valid_accuracy"] == selection.best_accuracy  # restored
    vade = next(ns for ns in namespaces if "vade" in ns)
    assert [r["kl_weight"] for r in vade["mixture_history"]] == [0.5, 1.0]
    assert vade["clusters"].shape == (360,) and vade["clusters"].max() < 10
    seq = next(ns for ns in namespaces if "seqvae" in ns)
    assert seq["per_sequence"].log_likelihood.shape == (64,)
    assert seq["continuations"].shape == (4, 16, 88)
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


def test_the_quick_start_run_writes_what_the_readme_says(tmp_path):
    """The first quick-start command as written (in a scratch directory): the files of the
    README's table, with the content it describes, and the test ELBO it quotes."""
    script = Path(sys.executable).with_name("pyrovae")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pyrovae.cli"]
    result = subprocess.run(
        [*command, "train", "vae", "--out", "runs/vae"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "runs" / "vae"
    text = README.read_text()
    table = text[text.index("| file | what it holds |") :].split("\n\n")[0]
    for name in re.findall(r"^\| `([^`]+)` \|", table, flags=re.M):
        assert (out / name.replace("/*.png", "")).exists(), name
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 100 and set(state) >= {"model", "guide", "optimizer", "rng"}
    config = json.loads((out / "config.json").read_text())
    assert config["likelihood"] == "continuous-bernoulli" and config["input_dim"] == 64
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history) == 100
    figures = re.search(r"`figures/\*\.png` \| (.*) \|", table).group(1)
    for name in re.findall(r"`(\w+)`", figures):
        assert_png(out / "figures" / f"{name}.png")
    quoted = float(re.search(r"100 epochs, test ELBO (\d+\.\d)", text).group(1))
    assert history[-1]["test_elbo"] == pytest.approx(quoted, abs=1.5)  # one-sample estimate
