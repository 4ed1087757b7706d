"""What each VAE figure says: the traversal figure names the latents it picks (the most active,
by Var_x E_q[z_d | x], in that order), the interpolation's columns are round values of t, the
latent map's legend has a title, and the samples' title says what is drawn and how."""

from __future__ import annotations

import pytest
import torch

from pyrovae.diagnostics import figures, write_figures
from pyrovae.diagnostics.views import active_dims, encode
from pyrovae.guides import GaussianEncoder
from pyrovae.models import VAE


@pytest.fixture
def drawn(monkeypatch):
    """Every figure write_figures makes, as (file name, matplotlib Figure)."""
    made = []

    def keep(fig, path):
        made.append((path.name, fig))
        return path

    monkeypatch.setattr(figures, "_save", keep)
    return made


def test_every_figure_says_what_it_draws_and_how_it_was_chosen(drawn, tmp_path):
    torch.manual_seed(0)
    model, guide = VAE(16, 5, (8,), "gaussian"), GaussianEncoder(16, 5, (8,))
    x, labels = torch.randn(30, 16), torch.arange(30) % 3
    write_figures(model, guide, x, tmp_path, labels=labels, image_shape=(1, 4, 4))
    by_name = {name: fig for name, fig in drawn}

    traversal = by_name["traversals.png"].axes[0]
    title = traversal.get_title().replace("\n", " ")
    assert "most active of 5 latents" in title and "Var_x E_q[z_d | x]" in title
    codes = encode(guide, (x,), "z")
    ranked = active_dims(codes, 5)
    rows = [t.get_text() for t in traversal.get_yticklabels()]
    assert [r.split(" ")[0] for r in rows] == [f"z{d + 1}" for d in ranked]
    variances = [float(r.split("(")[1].rstrip(")")) for r in rows]
    assert variances == sorted(variances, reverse=True)  # most active first, as labelled

    interpolation = by_name["interpolation.png"].axes[0]
    ticks = [t.get_text() for t in interpolation.get_xticklabels()]
    assert ticks == [f"{t / 10:.1f}" for t in range(11)]  # 0.0, 0.1, ..., 1.0
    assert "posterior means of two test images" in interpolation.get_title().replace("\n", " ")

    legend = by_name["latent_space.png"].axes[0].get_legend()
    assert legend.get_title().get_text() == "test label"

    samples = by_name["samples.png"].axes[0].get_title().replace("\n", " ")
    assert samples.startswith("64 random draws z ~ p(z) from the prior")
    assert "E[x | z]" in samples
