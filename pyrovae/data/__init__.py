"""Dataset loading: built-in image sets, the Bach chorales and users' own arrays; and the
containers of a model family's data that cut themselves into batches.

Every loader returns a :class:`DataSplits` whose ``*_x`` tensors are float32 and either
``(N, D)``, one flattened example per row, or, for sequence data, ``(N, T, D)``: N sequences
padded to T steps, with ``*_lengths`` (N,) int64 giving each one's real steps. Labels (when
there are any) are ``(N,)`` int64. Nothing is downloaded unless ``download=True`` is passed
for MNIST or Fashion-MNIST.

The modules, one job each: :mod:`~pyrovae.data.splits` (:class:`DataSplits`,
:class:`DataError`), :mod:`~pyrovae.data.datasets` (the named datasets and
:func:`load_dataset`), :mod:`~pyrovae.data.mnist` (the MNIST-family files),
:mod:`~pyrovae.data.files` (users' ``.npy``/``.npz``/``.csv`` files and their checks),
:mod:`~pyrovae.data.arrays` (users' arrays checked and split), :mod:`~pyrovae.data.binarization`,
:mod:`~pyrovae.data.sequences` (padding and the chorales). A family's data, which the generic
fitting code (:func:`pyrovae.fit`) takes through the :class:`~pyrovae.infer.BatchSource`
protocol without knowing the family: partly labelled rows
(:mod:`~pyrovae.data.semisupervised`: :class:`SemiSupervisedData`, :func:`split_labeled`)
and padded sequences batched by length (:mod:`~pyrovae.data.sequence_batches`:
:class:`SequenceData`).
"""

from .arrays import split_arrays, split_sequence_arrays
from .binarization import binarize, binarize_fixed
from .datasets import DATASETS, SEQUENCE_DATASETS, class_count, load_dataset
from .files import FILE_EXTENSIONS, check_array_file
from .mnist import IDX_FILES
from .semisupervised import SemiSupervisedData, split_labeled
from .sequence_batches import SequenceData
from .sequences import chorale_names, load_chorales, pad_sequences
from .splits import DataError, DataSplits

__all__ = [
    "DATASETS",
    "FILE_EXTENSIONS",
    "IDX_FILES",
    "SEQUENCE_DATASETS",
    "DataError",
    "DataSplits",
    "SemiSupervisedData",
    "SequenceData",
    "binarize",
    "binarize_fixed",
    "check_array_file",
    "chorale_names",
    "class_count",
    "load_chorales",
    "load_dataset",
    "pad_sequences",
    "split_arrays",
    "split_labeled",
    "split_sequence_arrays",
]
