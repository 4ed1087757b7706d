"""The errors a user can cause and fix, shown by the CLI as one line without a traceback."""

from .builders import ModelSpecError
from .checkpoint import CheckpointError
from .data import DataError
from .infer import TrainingDiverged
from .run import RunError

#: ValueError covers bad settings (e.g. --beta 0) and data outside a likelihood's support.
USER_ERRORS = (DataError, ModelSpecError, CheckpointError, RunError, TrainingDiverged, ValueError)
