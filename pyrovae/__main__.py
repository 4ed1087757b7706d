"""``python -m pyrovae``: the command line (:mod:`pyrovae.cli`)."""

import sys

from .cli import main

sys.exit(main())
