"""Progress bars that suit where they are written.

A terminal redraws one line in place. A log file or a CI log (the bar's stream is not a
terminal) keeps every redraw as a line of its own, so there a bar redraws at most every
:data:`NON_TERMINAL_INTERVAL` seconds; postfix changes (``set_postfix_str(..., refresh=False)``)
wait for the next redraw instead of forcing one. ``tqdm.auto``'s notebook bars need
ipywidgets, without which tqdm warns "IProgress not found" (with a local path) when imported
in a Jupyter kernel: the plain bar is used then.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from typing import Any

#: Seconds between redraws of a bar whose stream is not a terminal.
NON_TERMINAL_INTERVAL = 5.0


def bar_class() -> type:
    """``tqdm.auto``'s bar where ipywidgets is installed, else the plain ``tqdm.std`` bar."""
    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def progress_bar(*, file: Any = None, mininterval: float = 0.1, **kwargs: Any) -> Any:
    """A tqdm bar (keywords as tqdm's) that redraws at most every
    :data:`NON_TERMINAL_INTERVAL` seconds where ``file`` (default: standard error) is not a
    terminal; a notebook's widget bar is left as it is."""
    cls = bar_class()
    stream = file if file is not None else sys.stderr
    widget = any(c.__module__ == "tqdm.notebook" for c in cls.__mro__)
    if not widget and not _is_terminal(stream):
        mininterval = max(mininterval, NON_TERMINAL_INTERVAL)
    return cls(file=file, mininterval=mininterval, **kwargs)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def epoch_summary(record: dict[str, Any], epochs: int, shown: Sequence[str] = ()) -> str:
    """The progress bar's line: the epoch, the ELBOs, then each number of ``shown`` (the
    keys the metrics added to the record), whatever they measure."""
    text = f"epoch {record['epoch']}/{epochs} elbo {record['train_elbo']:.2f}"
    if "test_elbo" in record and math.isfinite(record["test_elbo"]):
        text += f" test {record['test_elbo']:.2f}"
    for key in shown:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text += f" {key} {value:.4g}"
    return text
