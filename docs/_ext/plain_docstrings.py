"""A Sphinx extension: pyrovae's docstrings are math in plain text, read as such.

- A bar touching a symbol, as in ``|v|^2`` or ``q(z|x)``, is reStructuredText's
  substitution mark; outside literal blocks it is escaped, so it prints as a bar.
- Napoleon reads the first line of a property's docstring as ``type: description``; ours
  begin with prose such as ``Lower Cholesky factors: (K, D, D)``, so napoleon's reading of
  properties and attributes is turned off and the text is kept as written.
"""

from __future__ import annotations

import re

from sphinx.application import Sphinx
from sphinx.ext.napoleon.docstring import GoogleDocstring

#: A bar with a non-space on its right (a substitution's start) or left (its end).
BAR = re.compile(r"(?<!\\)\|(?=\S)|(?<=\S)(?<!\\)\|")


def escape_bars(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    if not name.startswith("pyrovae"):
        return
    literal_indent = None  # the indentation a literal block's lines exceed
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and line.strip() and indent <= literal_indent:
            literal_indent = None
        if literal_indent is None:  # escape outside ``inline literals`` only
            parts = line.split("``")
            parts[::2] = [BAR.sub(r"\\|", part) for part in parts[::2]]
            lines[i] = "``".join(parts)
        if line.rstrip().endswith("::"):
            literal_indent = indent


def _attribute_as_written(self: GoogleDocstring) -> list[str]:
    return self._consume_to_end()


def setup(app: Sphinx) -> dict:
    GoogleDocstring._parse_attribute_docstring = _attribute_as_written
    app.connect("autodoc-process-docstring", escape_bars, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
