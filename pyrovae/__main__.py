"""``python -m pyrovae``: the command line (:func:`pyrovae.cli.entry`)."""

from .cli import entry

entry()
