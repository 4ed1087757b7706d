"""``pyrovae compare RUN RUN ...``: runs ranked by held-out elpd, as ``az.compare`` ranks them.

``pyrovae evaluate`` records in ``eval.json`` what a comparison needs: ``per_example``, each
test example's log p(x) (its standard error and k-hat beside it), and ``test_rows``, the
number of test examples and a SHA-256 digest of their values (:func:`rows_digest`). Runs are
compared only on the same rows: the digests must agree, else the comparison is refused (two
runs trained with different ``--seed``, ``--test-fraction`` or datasets hold different test
rows, and their elpds are not comparable). Each run's per-example values become an
``ELPDData`` (:func:`pyrovae.diagnostics.elpd`) and ``az.compare`` ranks them; the printed table
is its table: elpd = sum_n log p(x_n) with its se, the difference from the best run and the
paired standard error of that difference (``dse``), in nats, and the same per example.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import torch

from .inputs import Inputs, as_args
from .record import EVAL, RunError, read_json

#: The eval.json keys a comparison reads.
PER_EXAMPLE, TEST_ROWS = "per_example", "test_rows"


def rows_digest(inputs: Inputs) -> dict:
    """``{"num_examples": N, "sha256": ...}`` of the test inputs: a digest of every input
    tensor's dtype, shape and values (on the CPU, in row order)."""
    digest = hashlib.sha256()
    for tensor in as_args(inputs):
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{values.dtype}{tuple(values.shape)}".encode())
        digest.update(values.numpy().tobytes())
    return {"num_examples": int(as_args(inputs)[0].shape[0]), "sha256": digest.hexdigest()}


def per_example(
    log_likelihood: torch.Tensor, stderr: torch.Tensor, khat: torch.Tensor | None = None
) -> dict:
    """eval.json's ``per_example``: each test example's log p(x), standard error and k-hat
    (lists of N; NaN or infinite values are written as null)."""
    out = {"log_likelihood": _listed(log_likelihood), "stderr": _listed(stderr)}
    if khat is not None:
        out["khat"] = _listed(khat)
    return out


def _listed(values: torch.Tensor) -> list[float | None]:
    values = values.double().cpu()
    return [float(v) if math.isfinite(v) else None for v in values.tolist()]


def _read(path: Path) -> dict:
    target = path / EVAL
    if not target.is_file():
        raise RunError(
            f"{path} has no {EVAL}: evaluate it first (pyrovae evaluate {path}), then compare"
        )
    report = read_json(target)
    if report.get(PER_EXAMPLE) is None or report.get(TEST_ROWS) is None:
        if report.get("test_log_likelihood") is None:
            raise RunError(
                f"{target} has no log p(x) to compare (this model's evaluation reports "
                f"{report.get('estimand', 'another quantity')}); compare runs whose evaluation "
                "estimates log p(x)"
            )
        raise RunError(
            f"{target} has no per-example log p(x) or test-row digest (it was written before "
            f"pyrovae recorded them); evaluate it again (pyrovae evaluate {path}) and compare"
        )
    values = report[PER_EXAMPLE]["log_likelihood"]
    if any(v is None for v in values):
        raise RunError(
            f"{target} has test examples without a finite log p(x): a comparison needs every "
            "example; fix the model's non-finite weights and evaluate again"
        )
    return report


def compare_runs(paths: list[str | Path]) -> tuple[object, int]:
    """``az.compare``'s table (a pandas DataFrame, best run first, indexed by run directory)
    for the runs' held-out elpd, refusing runs evaluated on different test rows, and N, the
    test examples compared.

    Raises:
        RunError: fewer than two runs, a run not evaluated or evaluated before the
            per-example values were recorded, runs on different test rows.
    """
    from ..diagnostics.elpd import _arviz, elpd

    names = [str(p) for p in paths]
    if len(set(names)) < 2:
        raise RunError("compare needs at least two different run directories: compare RUN RUN")
    reports = {name: _read(Path(name)) for name in names}
    first, *others = names
    for name in others:
        if reports[name][TEST_ROWS] != reports[first][TEST_ROWS]:
            a, b = reports[first][TEST_ROWS], reports[name][TEST_ROWS]
            raise RunError(
                f"{first} and {name} were evaluated on different test rows ({a['num_examples']} "
                f"examples, sha256 {a['sha256'][:12]}... against {b['num_examples']}, "
                f"{b['sha256'][:12]}...): compare runs trained on the same dataset with the same "
                "--seed and --test-fraction"
            )
    data = {
        name: elpd(
            report[PER_EXAMPLE]["log_likelihood"],
            khat=report[PER_EXAMPLE].get("khat"),
            num_samples=report.get("num_samples"),
        )
        for name, report in reports.items()
    }
    with warnings.catch_warnings():
        # ArviZ 0.x's own pandas calls (sort_values(inplace=True)) warn of pandas' next major.
        warnings.simplefilter("ignore", DeprecationWarning)
        table = _arviz().compare(data)
    return table, int(reports[first][TEST_ROWS]["num_examples"])


def comparison_text(table, num_examples: int) -> str:
    """``az.compare``'s table as text: per run the elpd and its se, the difference from the
    best run and its paired se (``dse``), in nats summed over the N = ``num_examples`` test
    examples, the same difference per example, the stacking weight and ArviZ's warning (a
    k-hat above 0.7); then a line saying what the numbers are."""
    header = (
        "run",
        "elpd",
        "se",
        "elpd_diff",
        "dse",
        "diff/example",
        "dse/example",
        "weight",
        "k-hat>0.7",
    )
    lines = []
    for name, row in table.iterrows():
        lines.append(
            (
                str(name),
                f"{row['elpd_loo']:.2f}",
                f"{row['se']:.2f}",
                f"{row['elpd_diff']:.2f}",
                f"{row['dse']:.2f}",
                f"{row['elpd_diff'] / num_examples:.4f}",
                f"{row['dse'] / num_examples:.4f}",
                f"{row['weight']:.3f}",
                "some" if row["warning"] else "none",
            )
        )
    note = (
        f"elpd: the sum of log p(x) over the same {num_examples} test examples (nats, higher is "
        "better);\nelpd_diff, dse: the difference from the best run and its paired standard "
        "error (az.compare)"
    )
    return _columns(header, lines) + "\n" + note


def _columns(header: tuple[str, ...], lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    text = []
    for cells in [header, *lines]:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        text.append("  ".join(padded))
    return "\n".join(line.rstrip() for line in text)


__all__ = ["compare_runs", "comparison_text", "per_example", "rows_digest"]
