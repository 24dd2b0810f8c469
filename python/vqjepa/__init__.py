"""Python bindings of libvqjepa, on ctypes alone.

An object-centric, vector-quantized JEPA for ARC grids: tokenize grids into
objects, train the model a step at a time, save and load checkpoints, and
read object codes and embeddings. numpy is used when it is installed (inputs
passed to the library without copies, outputs returned as arrays) and never
required (outputs are then lists). Set ``VQJEPA_NUMPY=0`` to ignore numpy.

    import vqjepa
    with vqjepa.Context(seed=7) as ctx:
        tokens = ctx.tokenize([[[2, 2, 0], [2, 2, 1]]])
        print(tokens.features)

Every object wraps a library handle and frees it when closed (``close()``,
a ``with`` block, or garbage collection). An object keeps alive what it was
made from, so objects may be closed in any order. A failed library call
raises a :class:`vqjepa.Error` subclass carrying the library's message.

Threads: the library allows one thread at a time per handle. Each object
here holds a lock around its calls (a trainer step also locks the handles it
borrows), so sharing objects between Python threads is safe; calls on
different objects run in parallel (ctypes releases the GIL).
"""

from ._errors import (DeviceError, Error, FileError, InternalError, InvalidArgumentError,
                      NumericError, OutOfMemoryError, ParseError, StateError, UnsupportedError)
from ._core import (BASE_FEATURES, HAVE_NUMPY, MAX_GRID_SIDE, NUM_COLORS, defaults,
                    library_path, library_version, status_string)
from ._grid import Grid, _GridBatch
from ._data import ArcTask, Dataset, Tensor, Tokens, Weights, augment_seed
from ._context import Context
from ._model import EvalSet, Model, latent_distance
from ._stages import (Codebook, Encoder, Loss, Metrics, MetricsWindow, Optimizer, Predictor,
                      Trainer, checkpoint_metadata, embedding_metrics, load_checkpoint,
                      save_checkpoint, verify_checkpoint)
from ._config import Config


__version__ = "0.2.0"

__all__ = [
    "Error", "InvalidArgumentError", "OutOfMemoryError", "UnsupportedError", "FileError",
    "ParseError", "NumericError", "DeviceError", "StateError", "InternalError",
    "Context", "Tokens", "Tensor", "Weights", "Grid", "ArcTask", "Encoder", "Codebook",
    "Predictor", "Loss", "Optimizer", "Trainer", "Metrics", "Dataset",
    "save_checkpoint", "load_checkpoint", "verify_checkpoint", "checkpoint_metadata",
    "embedding_metrics", "library_version", "library_path", "HAVE_NUMPY", "Model",
    "latent_distance", "defaults", "Config", "MetricsWindow", "EvalSet", "augment_seed",
]
