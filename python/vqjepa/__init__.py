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

import ctypes
import itertools
import os
import threading
import types

from . import _lib
from ._errors import (DeviceError, Error, FileError, InternalError, InvalidArgumentError,
                      NumericError, OutOfMemoryError, ParseError, StateError, UnsupportedError)
from ._lib import fn

__version__ = "0.1.0"

__all__ = [
    "Error", "InvalidArgumentError", "OutOfMemoryError", "UnsupportedError", "FileError",
    "ParseError", "NumericError", "DeviceError", "StateError", "InternalError",
    "Context", "Tokens", "Tensor", "Weights", "Grid", "ArcTask", "Encoder", "Codebook",
    "Predictor", "Loss", "Optimizer", "Trainer", "Metrics", "Dataset",
    "save_checkpoint", "load_checkpoint", "verify_checkpoint", "checkpoint_metadata",
    "embedding_metrics", "library_version", "library_path", "HAVE_NUMPY", "Model",
    "latent_distance", "defaults", "Config", "MetricsWindow", "EvalSet",
]

if os.environ.get("VQJEPA_NUMPY", "1") not in ("0", "no", "false", ""):
    try:
        import numpy as np
    except ImportError:  # numpy is optional
        np = None
else:
    np = None

#: Whether numpy is used for inputs and outputs.
HAVE_NUMPY = np is not None

NUM_COLORS = 10
MAX_GRID_SIDE = 256
BASE_FEATURES = 13


def library_version():
    """The version of the loaded libvqjepa, "MAJOR.MINOR.PATCH"."""
    return _lib.version()


def library_path():
    """The path libvqjepa was loaded from."""
    return _lib.path


def status_string(status):
    """The library's name of a status code."""
    return fn.vqj_status_string(int(status)).decode()


# ---------------------------------------------------------------------------
# Handles and lifetimes

_refs_lock = threading.RLock()
_serial = itertools.count()


class _Core:
    """One library handle: freed when it is closed and nothing made from it
    is still open. Cores point only at what they depend on, so there are no
    cycles and the order in which Python collects wrappers does not matter.
    """

    __slots__ = ("ptr", "destroy", "deps", "users", "closed", "lock", "serial", "lock_cores",
                 "keep", "kind")

    def __init__(self, ptr, destroy, deps=(), lock_with=(), keep=None, kind="object"):
        self.ptr = ptr
        self.destroy = destroy
        self.deps = [d for d in deps if d is not None]
        self.users = 0
        self.closed = False
        self.lock = threading.RLock()
        self.serial = next(_serial)
        self.keep = keep
        self.kind = kind
        with _refs_lock:
            for d in self.deps:
                d.users += 1
        cores = {self.serial: self}
        for other in lock_with:
            for c in other.lock_cores:
                cores[c.serial] = c
        # a fixed global order, so that locking several never deadlocks
        self.lock_cores = [cores[k] for k in sorted(cores)]

    def close(self):
        with _refs_lock:
            self.closed = True
            self._maybe_free()

    def _maybe_free(self):
        if self.closed and self.users == 0 and self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            if self.destroy is not None:
                self.destroy(ptr)
            self.keep = None
            for d in self.deps:
                d.users -= 1
                d._maybe_free()


class _Locked:
    """Hold the locks of several cores (in their global order)."""

    __slots__ = ("cores",)

    def __init__(self, cores):
        self.cores = cores

    def __enter__(self):
        for c in self.cores:
            c.lock.acquire()

    def __exit__(self, *exc):
        for c in reversed(self.cores):
            c.lock.release()


class _Handle:
    """Base of every wrapper: close(), context manager, closed check."""

    _core = None

    def _ptr(self):
        core = self._core
        if core is None or core.closed or core.ptr is None:
            raise StateError(8, "vqjepa: this %s is closed" % type(self).__name__)
        return core.ptr

    def _locked(self):
        return _Locked(self._core.lock_cores)

    @property
    def closed(self):
        """Whether close() was called (or creation failed)."""
        return self._core is None or self._core.closed

    def close(self):
        """Release the handle. Objects made from this one keep it alive
        until they are closed too. Closing twice is harmless."""
        if self._core is not None:
            self._core.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def _create(create_fn, *args):
    out = ctypes.c_void_p()
    create_fn(*args, ctypes.byref(out))
    return out.value


def _make_params(struct_type, overrides, aliases=None, what="params"):
    params, _ = _lib.defaults(struct_type)
    fields = {name for name, _ in struct_type._fields_ if name != "size"}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise InvalidArgumentError(
                1, "%s: unknown parameter '%s' (known: %s)" % (what, key, ", ".join(sorted(fields))))
        if aliases and key in aliases and isinstance(value, str):
            table = aliases[key]
            if value.lower() not in table:
                raise InvalidArgumentError(1, "%s: %s must be one of %s, not '%s'"
                                           % (what, key, ", ".join(table), value))
            value = table[value.lower()]
        if isinstance(value, bool):
            value = int(value)
        field = getattr(params, key)
        if isinstance(field, ctypes.Array) and isinstance(value, (list, tuple)):
            if len(value) > len(field):  # e.g. fsq_levels: the rest stays 0
                raise InvalidArgumentError(1, "%s: %s holds at most %d values, not %d"
                                           % (what, key, len(field), len(value)))
            value = type(field)(*value)
        try:
            setattr(params, key, value)
        except TypeError as e:
            raise InvalidArgumentError(1, "%s: %s: %s" % (what, key, e)) from None
    return params


def defaults(kind):
    """The library's defaults of a params struct as a dict: kind is one of
    "context", "tokenizer", "encoder", "codebook", "predictor", "loss",
    "optimizer", "trainer", "dataset", "synthetic", "augment"."""
    struct_type = getattr(_lib, "vqj_%s_params" % kind, None)
    if struct_type not in _lib.PARAMS_DEFAULTS:
        raise InvalidArgumentError(1, "defaults: unknown params kind '%s'" % kind)
    params, _ = _lib.defaults(struct_type)
    return params.as_dict()


# ---------------------------------------------------------------------------
# Arrays in and out

def _check_shape_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(1, "%s must be an int" % what)
    return value


def _floats_out(count):
    """A writable float32 buffer of count values and its pointer."""
    if np is not None:
        arr = np.empty(count, dtype=np.float32)
        return arr, arr.ctypes.data_as(ctypes.c_void_p)
    arr = (ctypes.c_float * max(count, 1))()
    return arr, ctypes.cast(arr, ctypes.c_void_p)


def _shaped(buf, shape):
    """numpy array of `shape`, or (nested) lists."""
    count = 1
    for s in shape:
        count *= s
    if np is not None:
        return buf[:count].reshape(shape)
    flat = list(buf[:count])
    if len(shape) <= 1:
        return flat
    cols = shape[-1]
    rows = [flat[i * cols:(i + 1) * cols] for i in range(count // cols if cols else shape[0])]
    if len(shape) == 2:
        return rows
    raise AssertionError("shapes above 2-D are not used")


def _matrix_from_ptr(ptr, rows, cols):
    """A copy of rows x cols floats at a library pointer."""
    n = rows * cols
    if np is not None:
        if n == 0:
            return np.zeros((rows, cols), dtype=np.float32)
        return np.ctypeslib.as_array(ptr, shape=(n,)).reshape(rows, cols).copy()
    if n == 0:
        return [[] for _ in range(rows)]
    flat = ptr[:n]
    return [flat[i * cols:(i + 1) * cols] for i in range(rows)]


def _floats_in(values, what="values"):
    """(keepalive, pointer, count) for float32 input, without a copy when
    values is a C-contiguous float32 numpy array."""
    if np is not None and isinstance(values, np.ndarray):
        arr = values if values.dtype == np.float32 and values.flags.c_contiguous \
            else np.ascontiguousarray(values, dtype=np.float32)
        return arr, arr.ctypes.data_as(ctypes.c_void_p), arr.size
    if isinstance(values, memoryview) or type(values).__name__ == "array":
        mv = memoryview(values)
        if mv.format == "f" and mv.contiguous:
            buf = (ctypes.c_float * max(mv.nbytes // 4, 1)).from_buffer_copy(mv.tobytes() or b"\0" * 4)
            return buf, ctypes.cast(buf, ctypes.c_void_p), mv.nbytes // 4
    if np is not None and hasattr(values, "__array__"):
        arr = np.ascontiguousarray(values, dtype=np.float32)
        return arr, arr.ctypes.data_as(ctypes.c_void_p), arr.size
    flat = []
    try:
        for v in values:
            if isinstance(v, (list, tuple)):
                flat.extend(float(x) for x in v)
            else:
                flat.append(float(v))
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(1, "%s: expected numbers or rows of numbers (%s)" % (what, e)) from None
    buf = (ctypes.c_float * max(len(flat), 1))(*flat)
    return buf, ctypes.cast(buf, ctypes.c_void_p), len(flat)


def _ints_out(values):
    if np is not None:
        return np.asarray(values)
    return list(values)


# ---------------------------------------------------------------------------
# Grids

class Grid:
    """A grid owned by the library (an example of a Dataset, a pair of an
    ArcTask). It keeps its owner alive. ``cells`` is a bytes copy;
    ``to_list()`` gives rows of ints, ``to_numpy()`` a (H, W) uint8 array.
    Anywhere a grid is expected, a Grid, a list of rows of ints or a 2-D
    numpy array may be passed."""

    __slots__ = ("_grid", "_owner")

    def __init__(self, c_grid, owner):
        self._grid = c_grid
        self._owner = owner

    @property
    def height(self):
        return self._grid.height

    @property
    def width(self):
        return self._grid.width

    @property
    def shape(self):
        return (self._grid.height, self._grid.width)

    @property
    def cells(self):
        n = self._grid.height * self._grid.width
        return ctypes.string_at(self._grid.cells, n) if n else b""

    def to_list(self):
        c, w = self.cells, self._grid.width
        return [list(c[r * w:(r + 1) * w]) for r in range(self._grid.height)]

    def to_numpy(self):
        if np is None:
            raise UnsupportedError(3, "Grid.to_numpy: numpy is not available")
        return np.frombuffer(self.cells, dtype=np.uint8).reshape(self.shape).copy()

    def __array__(self, dtype=None, copy=None):
        arr = np.frombuffer(self.cells, dtype=np.uint8).reshape(self.shape)
        return arr.astype(dtype) if dtype is not None else arr.copy()

    def __eq__(self, other):
        if isinstance(other, Grid):
            return self.shape == other.shape and self.cells == other.cells
        return NotImplemented

    def __hash__(self):
        return hash((self.shape, self.cells))

    def __repr__(self):
        return "Grid(%r)" % (self.to_list(),)


def _is_grid(x):
    if isinstance(x, Grid):
        return True
    if np is not None and isinstance(x, np.ndarray):
        return x.ndim == 2
    if isinstance(x, (list, tuple)):
        return len(x) == 0 or (isinstance(x[0], (list, tuple, bytes, bytearray))
                               and (len(x[0]) == 0 or not isinstance(x[0][0], (list, tuple))))
    return False


class _GridBatch:
    """A vqj_grid array built from Python grids; keeps their cells alive."""

    __slots__ = ("array", "keep", "count")

    def __init__(self, grids, what="grids"):
        items = self._flatten(grids, what)
        self.count = len(items)
        self.array = (_lib.vqj_grid * max(self.count, 1))()
        self.keep = []
        for i, g in enumerate(items):
            self._convert(i, g, what)

    @staticmethod
    def _flatten(grids, what):
        if np is not None and isinstance(grids, np.ndarray):
            if grids.ndim == 2:
                return [grids]
            if grids.ndim < 2:
                raise InvalidArgumentError(1, "%s: expected arrays of 2 or more dimensions" % what)
            return list(grids.reshape((-1,) + grids.shape[-2:]))
        if _is_grid(grids) and not isinstance(grids, Grid) and len(grids) and \
                not isinstance(grids[0], Grid) and not _is_grid(grids[0]):
            return [grids]
        out = []
        for g in grids:
            if _is_grid(g):
                out.append(g)
            elif (np is not None and isinstance(g, np.ndarray)) or isinstance(g, (list, tuple)):
                out.extend(_GridBatch._flatten(g, what))  # an example: a list of grids
            else:
                raise InvalidArgumentError(
                    1, "%s: expected grids (lists of rows of ints, 2-D arrays or Grid), got %s"
                    % (what, type(g).__name__))
        return out

    def _convert(self, i, g, what):
        slot = self.array[i]
        if isinstance(g, Grid):
            slot.height, slot.width, slot.cells = g._grid.height, g._grid.width, g._grid.cells
            self.keep.append(g)
            return
        if np is not None and isinstance(g, np.ndarray):
            if g.dtype != np.uint8:
                if g.dtype.kind not in "iub":
                    raise InvalidArgumentError(1, "%s: grid %d: cells must be integers, not %s"
                                               % (what, i, g.dtype))
                if g.size and (g.min() < 0 or g.max() > 255):
                    raise InvalidArgumentError(1, "%s: grid %d: a cell holds %d; colors are 0..9"
                                               % (what, i, g.min() if g.min() < 0 else g.max()))
            arr = g if g.dtype == np.uint8 and g.flags.c_contiguous \
                else np.ascontiguousarray(g, dtype=np.uint8)
            slot.height, slot.width = arr.shape
            slot.cells = arr.ctypes.data_as(_lib.c_uint8_p) if arr.size else None
            self.keep.append(arr)
            return
        rows = list(g)
        h = len(rows)
        w = len(rows[0]) if h else 0
        for r, row in enumerate(rows):
            if len(row) != w:
                raise InvalidArgumentError(1, "%s: grid %d: row %d has %d cells, expected %d"
                                           % (what, i, r, len(row), w))
        try:
            data = bytes(itertools.chain.from_iterable(rows))
        except (TypeError, ValueError):
            for r, row in enumerate(rows):
                for c, v in enumerate(row):
                    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
                        raise InvalidArgumentError(
                            1, "%s: grid %d: cell (%d, %d) is %r; colors are ints 0..9"
                            % (what, i, r, c, v)) from None
            raise
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        slot.height, slot.width = h, w
        slot.cells = ctypes.cast(buf, _lib.c_uint8_p)
        self.keep.append(buf)

    def ptr(self):
        return self.array


# ---------------------------------------------------------------------------
# Context

_DEVICES = {"cpu": 0, "cuda": 1}
_LOG_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}
_LOG_NAMES = {v: k for k, v in _LOG_LEVELS.items()}


class Context(_Handle):
    """The device, the thread count, the seed; every other object is made
    from a context.

    ``log`` is an optional callable ``log(level, message)`` (level "debug",
    "info", "warning" or "error") receiving the library's messages at or
    above ``log_level``; it may be called from any thread that calls the
    library."""

    def __init__(self, seed=123, num_threads=0, device="cpu", device_index=0, log=None,
                 log_level="info"):
        params, _ = _lib.defaults(_lib.vqj_context_params)
        params.seed = seed
        params.num_threads = num_threads
        if isinstance(device, str):
            if device.lower() not in _DEVICES:
                raise InvalidArgumentError(1, "Context: device must be 'cpu' or 'cuda', not '%s'" % device)
            device = _DEVICES[device.lower()]
        params.device = device
        params.device_index = device_index
        if isinstance(log_level, str):
            params.log_level = _LOG_LEVELS[log_level.lower()]
        else:
            params.log_level = int(log_level)
        callback = None
        if log is not None:
            def trampoline(user_data, level, message, _log=log):
                try:
                    _log(_LOG_NAMES.get(level, str(level)), message.decode("utf-8", "replace"))
                except Exception:  # never raise into C
                    pass
            callback = _lib.LOG_FN(trampoline)
            params.log_fn = callback
        ptr = _create(fn.vqj_context_create, ctypes.byref(params))
        self._core = _Core(ptr, fn.vqj_context_destroy, keep=callback, kind="context")

    @property
    def seed(self):
        return fn.vqj_context_seed(self._ptr())

    @property
    def num_threads(self):
        return fn.vqj_context_num_threads(self._ptr())

    @property
    def device(self):
        return {0: "cpu", 1: "cuda"}.get(fn.vqj_context_device(self._ptr()), "unknown")

    def tokenize(self, grids, **tokenizer):
        """Tokenize grids into a new Tokens (tokenizer params as keywords:
        max_objects, max_color_features, background, connectivity, ...)."""
        tokens = Tokens(self, **tokenizer)
        tokens.tokenize(grids)
        return tokens

    def __repr__(self):
        if self.closed:
            return "<vqjepa.Context closed>"
        return "<vqjepa.Context seed=%d threads=%d device=%s>" % (self.seed, self.num_threads, self.device)


def _child(obj, ctx, ptr, destroy, deps=(), lock_with=(), keep=None):
    obj._ctx = ctx
    obj._core = _Core(ptr, destroy, deps=[ctx._core] + list(deps), lock_with=lock_with, keep=keep,
                      kind=type(obj).__name__)


# ---------------------------------------------------------------------------
# Weights, tensors, tokens

def _name(name):
    """A tensor name as bytes for the library; TypeError for anything but str."""
    if not isinstance(name, str):
        raise TypeError("a tensor name must be str, not %s" % type(name).__name__)
    return name.encode()


class Weights(_Handle):
    """A borrowed view of a handle's named tensors (weights and state such
    as the codebook's EMA statistics). Works like a mapping from names to
    arrays: ``w["feature_mlp.fc1.weight"]``, ``w[name] = values``,
    ``list(w)``, ``w.to_dict()``. Keeps its owner alive."""

    def __init__(self, ptr, owner):
        if not ptr:
            raise StateError(8, "vqjepa: no weights view (%s has none)" % type(owner).__name__)
        self._owner = owner
        self._core = _Core(ptr, None, deps=[owner._core], lock_with=[owner._core], kind="Weights")

    def __len__(self):
        return fn.vqj_weights_num_tensors(self._ptr())

    @property
    def num_params(self):
        """Trainable floats."""
        return fn.vqj_weights_num_params(self._ptr())

    def info(self):
        """[(name, shape, trainable)] of every tensor, in order."""
        out = []
        with self._locked():
            p = self._ptr()
            for i in range(fn.vqj_weights_num_tensors(p)):
                wi = _lib.vqj_weight_info()
                fn.vqj_weights_info(p, i, ctypes.byref(wi))
                shape = tuple(wi.shape[k] for k in range(wi.ndim))
                out.append((wi.name.decode(), shape, bool(wi.trainable)))
        return out

    def names(self):
        return [n for n, _, _ in self.info()]

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name):
        return name in self.names()

    def shape(self, name):
        for n, shape, _ in self.info():
            if n == name:
                return shape
        raise InvalidArgumentError(1, "Weights: no tensor named '%s'" % name)

    def _read(self, c_fn, name):
        shape = self.shape(name)
        count = 1
        for s in shape:
            count *= s
        buf, ptr = _floats_out(count)
        with self._locked():
            c_fn(self._ptr(), _name(name), ptr, count)
        return _shaped(buf, shape)

    def read(self, name):
        """A copy of tensor `name` (numpy array of its shape, or lists)."""
        return self._read(fn.vqj_weights_read, name)

    def read_grad(self, name):
        """The gradient accumulated for trainable tensor `name`."""
        return self._read(fn.vqj_weights_read_grad, name)

    def write(self, name, values):
        """Overwrite tensor `name` from a numpy array (no copy when float32
        and C-contiguous), nested lists or an array('f')."""
        keep, ptr, count = _floats_in(values, "Weights.write(%s)" % name)
        with self._locked():
            fn.vqj_weights_write(self._ptr(), _name(name), ptr, count)
        del keep

    __getitem__ = read
    __setitem__ = write

    def zero_grad(self):
        with self._locked():
            fn.vqj_weights_zero_grad(self._ptr())

    def to_dict(self):
        return {n: self.read(n) for n in self.names()}

    def ema_from(self, online, decay):
        """self = decay * self + (1 - decay) * online (trainable tensors)."""
        with _Locked(sorted(set(self._core.lock_cores) | set(online._core.lock_cores),
                            key=lambda c: c.serial)):
            fn.vqj_weights_ema(self._ptr(), online._ptr(), float(decay))


class Tensor(_Handle):
    """A rows x cols float32 matrix in the context's device memory."""

    def __init__(self, ctx, rows=0, cols=1, values=None):
        ptr = _create(fn.vqj_tensor_create, ctx._ptr(), rows, cols)
        _child(self, ctx, ptr, fn.vqj_tensor_destroy)
        if values is not None:
            self.write(values)

    @classmethod
    def _view(cls, ptr, owner):
        t = cls.__new__(cls)
        t._ctx = owner._ctx
        t._core = _Core(ptr, None, deps=[owner._core], lock_with=[owner._core], kind="Tensor")
        return t

    @property
    def shape(self):
        p = self._ptr()
        return (fn.vqj_tensor_rows(p), fn.vqj_tensor_cols(p))

    @property
    def rows(self):
        return self.shape[0]

    @property
    def cols(self):
        return self.shape[1]

    def reshape(self, rows, cols):
        with self._locked():
            fn.vqj_tensor_reshape(self._ptr(), rows, cols)

    def read(self):
        """A host copy, rows x cols."""
        with self._locked():
            rows, cols = self.shape
            buf, ptr = _floats_out(rows * cols)
            fn.vqj_tensor_read(self._ptr(), ptr, rows * cols)
        return _shaped(buf, (rows, cols))

    def write(self, values):
        """Overwrite every value (rows*cols of them)."""
        keep, ptr, count = _floats_in(values, "Tensor.write")
        with self._locked():
            fn.vqj_tensor_write(self._ptr(), ptr, count)
        del keep


class Tokens(_Handle):
    """A batch of tokenized grids: the objects of grid g are rows
    ``offsets[g] .. offsets[g+1]-1`` of ``features`` (packed, no padding)."""

    def __init__(self, ctx, **tokenizer):
        params = _make_params(_lib.vqj_tokenizer_params, tokenizer, what="tokenizer")
        ptr = _create(fn.vqj_tokens_create, ctx._ptr(), ctypes.byref(params))
        _child(self, ctx, ptr, fn.vqj_tokens_destroy)
        self._params = params

    def tokenize(self, grids):
        """Replace the contents with the tokens of `grids` (unchanged when
        the library refuses a grid)."""
        batch = _GridBatch(grids)
        with self._locked():
            fn.vqj_tokenize(self._ctx._ptr(), self._ptr(), batch.ptr(), batch.count)
        return self

    def __len__(self):
        return self.num_grids

    @property
    def num_grids(self):
        return fn.vqj_tokens_num_grids(self._ptr())

    @property
    def num_objects(self):
        return fn.vqj_tokens_num_objects(self._ptr())

    @property
    def feature_dim(self):
        return fn.vqj_tokens_feature_dim(self._ptr())

    @property
    def offsets(self):
        with self._locked():
            p = self._ptr()
            n = fn.vqj_tokens_num_grids(p) + 1
            return _ints_out(fn.vqj_tokens_offsets(p)[:n])

    @property
    def features(self):
        """num_objects x feature_dim features (a copy)."""
        with self._locked():
            p = self._ptr()
            return _matrix_from_ptr(fn.vqj_tokens_features(p), fn.vqj_tokens_num_objects(p),
                                    fn.vqj_tokens_feature_dim(p))

    def grid_features(self, g):
        """The features of grid g's objects."""
        off = list(self.offsets)
        if not 0 <= g < len(off) - 1:
            raise InvalidArgumentError(1, "Tokens: grid %d out of range 0..%d" % (g, len(off) - 2))
        return self.features[off[g]:off[g + 1]]

    def adjacency(self, g):
        """Grid g's n x n adjacency (1: adjacent objects)."""
        with self._locked():
            p = self._ptr()
            off = fn.vqj_tokens_offsets(p)
            if not 0 <= g < fn.vqj_tokens_num_grids(p):
                raise InvalidArgumentError(1, "Tokens: grid %d out of range" % g)
            n = off[g + 1] - off[g]
            a = fn.vqj_tokens_adjacency(p, g)
            flat = a[:n * n] if n else []
        if np is not None:
            return np.array(flat, dtype=np.uint8).reshape(n, n)
        return [flat[i * n:(i + 1) * n] for i in range(n)]

    def padded(self, g):
        """Grid g in the reference system's padded layout: (features
        [max_objects x F], mask [max_objects], adjacency [max_objects x max_objects])."""
        m, f = self._params.max_objects, self.feature_dim
        fb, fp = _floats_out(m * f)
        mb, mp = _floats_out(m)
        ab, ap = _floats_out(m * m)
        with self._locked():
            fn.vqj_tokens_padded(self._ctx._ptr(), self._ptr(), g, fp, mp, ap)
        return _shaped(fb, (m, f)), _shaped(mb, (m,)), _shaped(ab, (m, m))


# ---------------------------------------------------------------------------
# ARC tasks and datasets

class ArcTask(_Handle):
    """An ARC-AGI task file: ``train`` and ``test`` lists of (input, output)
    Grid pairs (output None for a test pair without one)."""

    def __init__(self, ctx, path=None, json_text=None, name=None):
        if (path is None) == (json_text is None):
            raise InvalidArgumentError(1, "ArcTask: give a path or json_text")
        if path is not None:
            ptr = _create(fn.vqj_arc_task_load, ctx._ptr(), os.fsencode(path))
        else:
            data = json_text.encode() if isinstance(json_text, str) else bytes(json_text)
            ptr = _create(fn.vqj_arc_task_parse, ctx._ptr(), data, len(data),
                          None if name is None else name.encode())
        _child(self, ctx, ptr, fn.vqj_arc_task_destroy)

    @property
    def name(self):
        return fn.vqj_arc_task_name(self._ptr()).decode()

    def _pairs(self, split):
        p = self._ptr()
        out = []
        for i in range(fn.vqj_arc_task_num_pairs(p, split)):
            gi = fn.vqj_arc_task_input(p, split, i)
            go = fn.vqj_arc_task_output(p, split, i)
            out.append((Grid(gi.contents, self), Grid(go.contents, self) if go else None))
        return out

    @property
    def train(self):
        return self._pairs(0)

    @property
    def test(self):
        return self._pairs(1)


class Dataset(_Handle):
    """Examples of T context grids and a target grid, read-only once built
    (any number of threads may read it). ``ds[i]`` is (context, target) as
    Grid objects; ``ds.batches(n)`` yields (context grids, targets) ready for
    Trainer.step()."""

    def __init__(self, *args, **kwargs):
        raise TypeError("use Dataset.synthetic(), Dataset.from_arc() or Dataset.from_jsonl()")

    @classmethod
    def _wrap(cls, ctx, ptr):
        ds = cls.__new__(cls)
        _child(ds, ctx, ptr, fn.vqj_dataset_destroy)
        return ds

    @classmethod
    def synthetic(cls, ctx, num_examples=20000, seed=0, context_window=3, **synthetic):
        """The built-in seeded generator (min_side, max_side, min_colors,
        max_colors, max_primitives as keywords)."""
        sp = _make_params(_lib.vqj_synthetic_params,
                          dict(synthetic, num_examples=num_examples, seed=seed), what="synthetic")
        dp = _make_params(_lib.vqj_dataset_params, {"context_window": context_window}, what="dataset")
        return cls._wrap(ctx, _create(fn.vqj_dataset_synthetic, ctx._ptr(), ctypes.byref(dp),
                                      ctypes.byref(sp)))

    @classmethod
    def from_arc(cls, ctx, path, **params):
        """ARC task files: one file or a folder of *.json."""
        dp = _make_params(_lib.vqj_dataset_params, params, what="dataset")
        return cls._wrap(ctx, _create(fn.vqj_dataset_from_arc, ctx._ptr(), ctypes.byref(dp),
                                      os.fsencode(path)))

    @classmethod
    def from_jsonl(cls, ctx, path, **params):
        """A JSONL manifest (context/target, input/output or frames records)."""
        dp = _make_params(_lib.vqj_dataset_params, params, what="dataset")
        return cls._wrap(ctx, _create(fn.vqj_dataset_from_jsonl, ctx._ptr(), ctypes.byref(dp),
                                      os.fsencode(path)))

    def __len__(self):
        return fn.vqj_dataset_num_examples(self._ptr())

    @property
    def context_window(self):
        return fn.vqj_dataset_context_window(self._ptr())

    @property
    def num_skipped(self):
        return fn.vqj_dataset_num_skipped(self._ptr())

    def __getitem__(self, i):
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("Dataset index %d out of range (%d examples)" % (i, n))
        c = ctypes.POINTER(_lib.vqj_grid)()
        t = ctypes.POINTER(_lib.vqj_grid)()
        fn.vqj_dataset_example(self._ptr(), i, ctypes.byref(c), ctypes.byref(t))
        return [Grid(c[k], self) for k in range(self.context_window)], Grid(t.contents, self)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def split(self, validation_split=0.02, seed=13):
        """(train, validation) datasets, whole groups to validation."""
        tr, va = ctypes.c_void_p(), ctypes.c_void_p()
        fn.vqj_dataset_split(self._ptr(), float(validation_split), seed, ctypes.byref(tr),
                             ctypes.byref(va))
        return Dataset._wrap(self._ctx, tr.value), Dataset._wrap(self._ctx, va.value)

    def shuffle(self, seed, epoch):
        """The visiting order of an epoch: a permutation of 0..len-1."""
        n = len(self)
        order = (ctypes.c_size_t * max(n, 1))()
        fn.vqj_dataset_shuffle(self._ptr(), seed, epoch, order)
        return _ints_out(order[:n])

    def batches(self, batch_size, epoch=0, seed=0, drop_last=True):
        """Yield (context grids [batch*T], targets [batch]) in the order of
        shuffle(seed, epoch)."""
        order = list(self.shuffle(seed, epoch))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            context, targets = [], []
            for i in idx:
                c, t = self[int(i)]
                context.extend(c)
                targets.append(t)
            yield context, targets


# ---------------------------------------------------------------------------
# Model parts

_ACTIVATIONS = {"none": 0, "relu": 1, "gelu": 2, "tanh": 3}
_AGGREGATORS = {"mean": 0, "last": 1, "attention": 2, "gru": 3}
_VQ_PATHS = {"straight_through": 0, "beside": 1}
_OPT_KINDS = {"adam": 0, "adamw": 1}
_SCHEDULES = {"constant": 0, "cosine": 1, "linear": 2}
_QUANTIZERS = {"euclidean": 0, "cosine": 1, "fsq": 2, "simvq": 3, "residual": 4}
_GRADIENT_ESTIMATORS = {"straight_through": 0, "rotation": 1}


class _Model(_Handle):
    _weights_fn = None

    @property
    def weights(self):
        """The named tensors (a borrowed view)."""
        return Weights(type(self)._weights_fn(self._ptr()), self)

    def _tensor(self, out):
        return out if out is not None else Tensor(self._ctx)


class Encoder(_Model):
    """Feature MLP + relational layers (params as keywords: feature_dim,
    hidden_dim, relational_layers, relational_heads, relational_dropout)."""

    _weights_fn = staticmethod(lambda p: fn.vqj_encoder_weights(p))

    def __init__(self, ctx, **params):
        self.params = _make_params(_lib.vqj_encoder_params, params, what="encoder")
        ptr = _create(fn.vqj_encoder_create, ctx._ptr(), ctypes.byref(self.params))
        _child(self, ctx, ptr, fn.vqj_encoder_destroy)

    def forward(self, tokens, training=False, out=None):
        """z [N x D] for every token (a Tensor)."""
        out = self._tensor(out)
        with self._locked():
            fn.vqj_encoder_forward(self._ptr(), tokens._ptr(), int(bool(training)), out._ptr())
        return out

    def backward(self, dout, dfeatures=None):
        with self._locked():
            fn.vqj_encoder_backward(self._ptr(), dout._ptr(),
                                    dfeatures._ptr() if dfeatures is not None else None)


class Codebook(_Model):
    """The VQ codebook (num_embeddings, dim, commitment_cost, ema_decay,
    dead_code_threshold, quantizer "euclidean"|"cosine"|"fsq"|"simvq"|"residual", code_dim,
    fsq_levels, gradient_estimator "straight_through"|"rotation", ...)."""

    _weights_fn = staticmethod(lambda p: fn.vqj_codebook_weights(p))

    def __init__(self, ctx, **params):
        self.params = _make_params(_lib.vqj_codebook_params, params,
                                   {"quantizer": _QUANTIZERS,
                                    "gradient_estimator": _GRADIENT_ESTIMATORS},
                                   what="codebook")
        ptr = _create(fn.vqj_codebook_create, ctx._ptr(), ctypes.byref(self.params))
        _child(self, ctx, ptr, fn.vqj_codebook_destroy)

    def forward(self, z, training=False, q=None):
        """Quantize z: returns (q Tensor, codes, stats dict)."""
        q = self._tensor(q)
        n = z.rows
        codes = (ctypes.c_int32 * max(n, 1))()
        stats = _lib.vqj_codebook_stats()
        stats.size = ctypes.sizeof(stats)
        with self._locked():
            fn.vqj_codebook_forward(self._ptr(), z._ptr(), int(bool(training)), q._ptr(), codes,
                                    ctypes.byref(stats))
        return q, _ints_out(codes[:n]), stats.as_dict()

    def backward(self, dq, dz):
        with self._locked():
            fn.vqj_codebook_backward(self._ptr(), dq._ptr(), dz._ptr())

    def ema_usage(self):
        k = self.params.num_embeddings
        buf, ptr = _floats_out(k)
        with self._locked():
            fn.vqj_codebook_ema_usage(self._ptr(), ptr, k)
        return _shaped(buf, (k,))

    @property
    def progress(self):
        """(EMA updates, k-means initialized)."""
        u, i = ctypes.c_int64(), ctypes.c_int()
        fn.vqj_codebook_get_progress(self._ptr(), ctypes.byref(u), ctypes.byref(i))
        return u.value, bool(i.value)


class Predictor(_Model):
    """Grid pooling, context aggregation, projection head (hidden_dim,
    projection_dim, projection_layers, projection_activation "relu"|...,
    aggregator "mean"|"last"|"attention"|"gru", context_window, final_activation,
    slot_embedding, grid_features, vq_path "straight_through"|"beside")."""

    _weights_fn = staticmethod(lambda p: fn.vqj_predictor_weights(p))

    def __init__(self, ctx, **params):
        self.params = _make_params(_lib.vqj_predictor_params, params,
                                   {"projection_activation": _ACTIVATIONS, "aggregator": _AGGREGATORS,
                                    "vq_path": _VQ_PATHS},
                                   what="predictor")
        ptr = _create(fn.vqj_predictor_create, ctx._ptr(), ctypes.byref(self.params))
        _child(self, ctx, ptr, fn.vqj_predictor_destroy)

    def forward_context(self, tokens, token_vectors, out=None):
        out = self._tensor(out)
        with self._locked():
            fn.vqj_predictor_forward_context(self._ptr(), tokens._ptr(), token_vectors._ptr(), out._ptr())
        return out

    def forward_grids(self, tokens, token_vectors, out=None):
        out = self._tensor(out)
        with self._locked():
            fn.vqj_predictor_forward_grids(self._ptr(), tokens._ptr(), token_vectors._ptr(), out._ptr())
        return out


class Loss(_Model):
    """Every loss term but the commitment (projection_dim, queue_size,
    temperature, sigreg_num_slices, color_weight, ..., mask_duplicate_negatives,
    objective "infonce"|"sigreg" as keywords)."""

    _weights_fn = staticmethod(lambda p: fn.vqj_loss_weights(p))

    def __init__(self, ctx, **params):
        self.params = _make_params(_lib.vqj_loss_params, params,
                                   {"objective": {"infonce": 0, "sigreg": 1}}, what="loss")
        ptr = _create(fn.vqj_loss_create, ctx._ptr(), ctypes.byref(self.params))
        _child(self, ctx, ptr, fn.vqj_loss_destroy)

    @property
    def temperature(self):
        tau = ctypes.c_float()
        with self._locked():
            fn.vqj_loss_temperature(self._ptr(), ctypes.byref(tau))
        return tau.value

    @property
    def queue_fill(self):
        fill = ctypes.c_int()
        with self._locked():
            fn.vqj_loss_queue_fill(self._ptr(), ctypes.byref(fill))
        return fill.value

    def values(self):
        v = _lib.vqj_loss_values()
        v.size = ctypes.sizeof(v)
        with self._locked():
            fn.vqj_loss_get_values(self._ptr(), ctypes.byref(v))
        return v.as_dict()

    def reset(self):
        with self._locked():
            fn.vqj_loss_reset(self._ptr())


def _weights_of(g):
    if isinstance(g, Weights):
        return g
    if isinstance(g, _Model):
        return g.weights
    raise InvalidArgumentError(1, "Optimizer: groups must be Weights or model parts, not %s"
                               % type(g).__name__)


class Optimizer(_Handle):
    """Adam/AdamW over the trainable tensors of several groups (Weights or
    model parts); params as keywords (kind "adam"|"adamw", lr, weight_decay,
    max_grad_norm, schedule "constant"|"cosine"|"linear", warmup_steps,
    total_steps, min_lr_scale, ...)."""

    def __init__(self, ctx, groups, **params):
        views = [_weights_of(g) for g in groups]
        self.params = _make_params(_lib.vqj_optimizer_params, params,
                                   {"kind": _OPT_KINDS, "schedule": _SCHEDULES}, what="optimizer")
        arr = (ctypes.c_void_p * max(len(views), 1))(*[v._ptr() for v in views])
        ptr = _create(fn.vqj_optimizer_create, ctx._ptr(), ctypes.byref(self.params), arr, len(views))
        _child(self, ctx, ptr, fn.vqj_optimizer_destroy, deps=[v._core for v in views],
               lock_with=[v._core for v in views])
        self._views = views

    def step(self, grad_scale=1.0):
        info = _lib.vqj_step_info()
        info.size = ctypes.sizeof(info)
        with self._locked():
            fn.vqj_optimizer_step(self._ptr(), float(grad_scale), ctypes.byref(info))
        return info.as_dict()

    def zero_grad(self):
        with self._locked():
            fn.vqj_optimizer_zero_grad(self._ptr())

    @property
    def lr(self):
        return fn.vqj_optimizer_lr(self._ptr())

    @property
    def steps(self):
        return fn.vqj_optimizer_steps(self._ptr())

    @steps.setter
    def steps(self, value):
        with self._locked():
            fn.vqj_optimizer_set_steps(self._ptr(), value)

    @property
    def state(self):
        """The Adam moments as a Weights view ("adam.m.<g>", "adam.v.<g>")."""
        return Weights(fn.vqj_optimizer_state(self._ptr()), self)


class Metrics(types.SimpleNamespace):
    """What one trainer call did: loss and its terms, temperature,
    grad_norm, lr, perplexity, active_codes, usage_ratio, skipped,
    optimizer_step, applied, step, micro_step, ... (vqj_train_metrics)."""

    def as_dict(self):
        return dict(self.__dict__)


def _part(cls, ctx, given, defaults_):
    if given is None or isinstance(given, dict):
        return cls(ctx, **dict(defaults_, **(given or {}))), True
    if not isinstance(given, cls):
        raise InvalidArgumentError(1, "Trainer: expected a %s or a dict of its params, not %s"
                                   % (cls.__name__, type(given).__name__))
    return given, False


class Trainer(_Handle):
    """One call runs a whole training step (vqj_trainer_step).

    Each part may be given as an object, as a dict of its params, or left
    out (the library's defaults); parts built here get sizes that fit
    together: the codebook's dim and the predictor's hidden_dim follow the
    encoder, the loss's projection_dim the predictor, the encoder's
    feature_dim the tokenizer. Trainer params (grad_accum_steps,
    target_ema_decay, use_target_encoder, ...) are keywords.

        tr = vqjepa.Trainer(ctx, encoder={"hidden_dim": 32, "relational_heads": 4},
                            codebook={"num_embeddings": 16}, predictor={"projection_dim": 16},
                            loss={"queue_size": 64}, optimizer={"lr": 1e-3})
        m = tr.step(context_grids, target_grids)   # batch*T and batch grids
    """

    def __init__(self, ctx, encoder=None, codebook=None, predictor=None, loss=None, optimizer=None,
                 tokenizer=None, **params):
        tok = _make_params(_lib.vqj_tokenizer_params, tokenizer or {}, what="tokenizer")
        feature_dim = fn.vqj_tokenizer_feature_dim(ctypes.byref(tok))
        self.encoder, _ = _part(Encoder, ctx, encoder, {"feature_dim": feature_dim})
        hidden = self.encoder.params.hidden_dim
        self.codebook, _ = _part(Codebook, ctx, codebook, {"dim": hidden})
        self.predictor, _ = _part(Predictor, ctx, predictor, {"hidden_dim": hidden})
        proj = self.predictor.params.projection_dim
        self.loss, _ = _part(Loss, ctx, loss, {"projection_dim": proj,
                                                "max_objects": tok.max_objects})
        parts = [self.encoder, self.codebook, self.predictor, self.loss]
        if optimizer is None or isinstance(optimizer, dict):
            self.optimizer = Optimizer(ctx, parts, **(optimizer or {}))
        elif isinstance(optimizer, Optimizer):
            self.optimizer = optimizer
        else:
            raise InvalidArgumentError(1, "Trainer: optimizer must be an Optimizer or a dict")
        self.params = _make_params(_lib.vqj_trainer_params, params, what="trainer")
        self.tokenizer = tok
        self.context_window = self.predictor.params.context_window
        ptr = _create(fn.vqj_trainer_create, ctx._ptr(), ctypes.byref(self.params), ctypes.byref(tok),
                      self.encoder._ptr(), self.codebook._ptr(), self.predictor._ptr(),
                      self.loss._ptr(), self.optimizer._ptr())
        borrowed = [p._core for p in parts + [self.optimizer]]
        _child(self, ctx, ptr, fn.vqj_trainer_destroy, deps=borrowed, lock_with=borrowed)

    @staticmethod
    def _metrics(m):
        return Metrics(**m.as_dict())

    def _grids(self, context, targets):
        c = _GridBatch(context, "context")
        t = _GridBatch(targets, "targets")
        # The library reads batch * T context grids: a shorter list would
        # be read past its end.
        if t.count < 1 or c.count != t.count * self.context_window:
            raise InvalidArgumentError(
                1, "Trainer: %d context grids for %d targets; expected %d (context_window %d "
                "per target)" % (c.count, t.count, t.count * self.context_window,
                                 self.context_window))
        return c, t

    def step(self, context, targets):
        """One micro-batch: `context` holds batch*T grids (flat, or batch
        lists of T, or a (B, T, H, W) array), `targets` batch grids. Returns
        Metrics; a non-finite step is not an error (metrics.skipped)."""
        c, t = self._grids(context, targets)
        m = _lib.vqj_train_metrics()
        m.size = ctypes.sizeof(m)
        with self._locked():
            fn.vqj_trainer_step(self._ptr(), c.ptr(), t.ptr(), t.count, ctypes.byref(m))
        return self._metrics(m)

    def step_tokens(self, context, targets):
        """One micro-batch from ready Tokens (only the translation view runs)."""
        m = _lib.vqj_train_metrics()
        m.size = ctypes.sizeof(m)
        with self._locked():
            fn.vqj_trainer_step_tokens(self._ptr(), context._ptr(), targets._ptr(), ctypes.byref(m))
        return self._metrics(m)

    def evaluate(self, context, targets):
        """The losses of a batch without training."""
        c, t = self._grids(context, targets)
        m = _lib.vqj_train_metrics()
        m.size = ctypes.sizeof(m)
        with self._locked():
            fn.vqj_trainer_evaluate(self._ptr(), c.ptr(), t.ptr(), t.count, ctypes.byref(m))
        return self._metrics(m)

    def _projections(self, c_fn):
        with self._locked():
            view = Tensor._view(c_fn(self._ptr()), self)
            try:
                return view.read()
            finally:
                view.close()

    def context_projections(self):
        """c [B x P] of the last step or evaluation (a copy)."""
        return self._projections(fn.vqj_trainer_context_projections)

    def target_projections(self):
        """t [B x P] of the last step or evaluation (a copy)."""
        return self._projections(fn.vqj_trainer_target_projections)

    def codes(self, target=False):
        """The code of every context token (target=True: target token) of the
        last training step or evaluation (empty before the first step, after a
        skipped one and after the k-means++ seeding step)."""
        n = ctypes.c_size_t()
        get = fn.vqj_trainer_target_codes if target else fn.vqj_trainer_codes
        with self._locked():
            ptr = get(self._ptr(), ctypes.byref(n))
            return _ints_out(ptr[:n.value] if ptr and n.value else [])

    @property
    def target_encoder_weights(self):
        return Weights(fn.vqj_trainer_target_encoder_weights(self._ptr()), self)

    @property
    def target_predictor_weights(self):
        return Weights(fn.vqj_trainer_target_predictor_weights(self._ptr()), self)

    @property
    def counters(self):
        """(micro_step, dropout_step)."""
        a, b = ctypes.c_int64(), ctypes.c_uint64()
        fn.vqj_trainer_get_counters(self._ptr(), ctypes.byref(a), ctypes.byref(b))
        return a.value, b.value

    def save(self, path, config=None, metadata=None):
        """Save everything a resumed run needs (vqj_trainer_save); `config`
        (YAML text) and `metadata` (a dict of str) go to "__metadata__".
        Save right after an optimizer step (else StateError)."""
        meta = _metadata_array(metadata)
        with self._locked():
            if meta is None:
                fn.vqj_trainer_save(self._ptr(), os.fsencode(path),
                                    None if config is None else config.encode())
            else:
                fn.vqj_trainer_save_with_metadata(self._ptr(), os.fsencode(path),
                                                  None if config is None else config.encode(), meta)

    def load(self, path):
        """Restore this trainer and its parts from a save() file."""
        with self._locked():
            fn.vqj_trainer_load(self._ptr(), os.fsencode(path))

    @classmethod
    def from_config(cls, ctx, config):
        """A Trainer with every part made from a Config in one call
        (vqj_trainer_create_from_config): the sizes come from the
        configuration, the initial weights, dropout masks and views from its
        seed. The trainer owns its parts; .encoder, .codebook, .predictor,
        .loss and .optimizer lend them for stage calls."""
        self = cls.__new__(cls)
        ptr = _create(fn.vqj_trainer_create_from_config, ctx._ptr(), config._ptr())
        _child(self, ctx, ptr, fn.vqj_trainer_destroy)
        self.params = config._struct("trainer")
        self.tokenizer = config._struct("tokenizer")
        self.encoder = _borrowed(Encoder, fn.vqj_trainer_encoder(ptr), self,
                                 config._struct("encoder"))
        self.codebook = _borrowed(Codebook, fn.vqj_trainer_codebook(ptr), self,
                                  config._struct("codebook"))
        self.predictor = _borrowed(Predictor, fn.vqj_trainer_predictor(ptr), self,
                                   config._struct("predictor"))
        self.loss = _borrowed(Loss, fn.vqj_trainer_loss(ptr), self, config._struct("loss"))
        self.optimizer = _borrowed(Optimizer, fn.vqj_trainer_optimizer(ptr), self,
                                   config._struct("optimizer"))
        self.context_window = self.predictor.params.context_window
        return self

    def model(self):
        """A Model over this trainer's parts (vqj_model_from_trainer), as in
        C: its tokenizer, online encoder, codebook and predictor, and its
        target network for grid embeddings. The parts are borrowed and read
        at every call: do not train while the model runs a call, and the
        model sees the weights of later training steps."""
        with self._locked():
            ptr = _create(fn.vqj_model_from_trainer, self._ptr())
        return Model._wrap(self._ctx, ptr, deps=[self._core])


def _borrowed(cls, ptr, owner, params):
    """A wrapper of a part `owner` lends (not destroyed with the wrapper;
    keeps the owner alive and shares its lock)."""
    obj = cls.__new__(cls)
    obj._ctx = owner._ctx
    obj._core = _Core(ptr, None, deps=[owner._core], lock_with=[owner._core], kind=cls.__name__)
    obj.params = params
    return obj


# ---------------------------------------------------------------------------
# Checkpoints

def _metadata_array(metadata):
    if not metadata:
        return None
    items = []
    for k, v in metadata.items():
        items += [str(k).encode(), str(v).encode()]
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


def _entries(views):
    if isinstance(views, dict):
        pairs = list(views.items())
    else:
        pairs = [("", v) for v in views]
    arr = (_lib.vqj_checkpoint_entry * max(len(pairs), 1))()
    keep = []
    for i, (prefix, v) in enumerate(pairs):
        w = _weights_of(v)
        keep.append(w)
        arr[i].prefix = prefix.encode() if prefix else None
        arr[i].weights = w._ptr()
    return arr, len(pairs), keep


def _lock_all(views):
    cores = {}
    for w in views:
        for c in w._core.lock_cores:
            cores[c.serial] = c
    return _Locked([cores[k] for k in sorted(cores)])


def save_checkpoint(ctx, path, views, metadata=None):
    """Write the tensors of weights views to a safetensors file (atomically).
    `views` is a dict {prefix: Weights or model part} (tensors stored as
    prefix + name) or a list of them (no prefix); `metadata` a dict of
    strings stored in "__metadata__"."""
    arr, n, keep = _entries(views)
    with _lock_all(keep):
        fn.vqj_checkpoint_save(ctx._ptr(), os.fsencode(path), arr, n, _metadata_array(metadata))


def load_checkpoint(ctx, path, views, allow_extra=False):
    """Read a safetensors file into weights views (same forms as
    save_checkpoint). Everything is checked before anything is written."""
    arr, n, keep = _entries(views)
    with _lock_all(keep):
        fn.vqj_checkpoint_load(ctx._ptr(), os.fsencode(path), arr, n, 1 if allow_extra else 0)


def verify_checkpoint(ctx, path):
    """Check a checkpoint (header, layout, checksum, finite values); raises
    on a bad file."""
    fn.vqj_checkpoint_verify(ctx._ptr(), os.fsencode(path))


def checkpoint_metadata(ctx, path, key):
    """The "__metadata__" value of `key` in a checkpoint."""
    length = ctypes.c_size_t()
    fn.vqj_checkpoint_read_metadata(ctx._ptr(), os.fsencode(path), key.encode(), None, 0,
                                    ctypes.byref(length))
    buf = ctypes.create_string_buffer(length.value + 1)
    fn.vqj_checkpoint_read_metadata(ctx._ptr(), os.fsencode(path), key.encode(), buf,
                                    length.value + 1, ctypes.byref(length))
    return buf.value.decode("utf-8")


# ---------------------------------------------------------------------------
# Diagnostics

def embedding_metrics(ctx, x):
    """Variance, isotropy, effective rank and Gaussian score of the rows of
    x (n x d: a numpy array or rows of numbers), as a dict."""
    if np is not None and not isinstance(x, np.ndarray):
        x = np.asarray(x, dtype=np.float32)
    if np is not None:
        if x.ndim != 2:
            raise InvalidArgumentError(1, "embedding_metrics: x must be n x d")
        n, d = x.shape
    else:
        n, d = len(x), (len(x[0]) if len(x) else 0)
    keep, ptr, _ = _floats_in(x, "embedding_metrics")
    out = _lib.vqj_embedding_metrics()
    out.size = ctypes.sizeof(out)
    fn.vqj_embedding_metrics_compute(ctx._ptr(), ptr, n, d, ctypes.byref(out))
    return out.as_dict()


# ---------------------------------------------------------------------------
# Inference for agents (thread-safe)

def _ints32_out(count):
    if np is not None:
        arr = np.empty(count, dtype=np.int32)
        return arr, arr.ctypes.data_as(ctypes.c_void_p)
    arr = (ctypes.c_int32 * max(count, 1))()
    return arr, ctypes.cast(arr, ctypes.c_void_p)


class Model(_Handle):
    """Inference over trained parts (vqj_model): a grid becomes one code per
    object and an embedding, T context grids a predicted target embedding;
    latent_distance() compares embeddings (a prediction with the embedding
    of a candidate output grid scores the candidate).

    Thread-safe: encode/predict calls on one Model may run from any number
    of Python threads at once (no lock is taken; ctypes releases the GIL).
    While such a call runs, the parts it borrows must not change: do not
    train, step, write weights or load checkpoints into them at the same
    time. Give the context num_threads=1 when many threads call at once.

    `target_encoder` / `target_predictor` (default: the online ones) compute
    grid embeddings; Trainer.model() passes copies of its target network."""

    def __init__(self, ctx, encoder, codebook, predictor, target_encoder=None,
                 target_predictor=None, tokenizer=None):
        tok = _make_params(_lib.vqj_tokenizer_params, tokenizer or {}, what="tokenizer")
        parts = [encoder, codebook, predictor, target_encoder, target_predictor]
        ptr = _create(fn.vqj_model_create, ctx._ptr(), ctypes.byref(tok), encoder._ptr(),
                      codebook._ptr(), predictor._ptr(),
                      target_encoder._ptr() if target_encoder is not None else None,
                      target_predictor._ptr() if target_predictor is not None else None)
        self._setup(ctx, ptr, [p._core for p in parts if p is not None])

    @classmethod
    def load(cls, ctx, path):
        """A Model read whole from a trainer checkpoint (vqj_model_load): the
        configuration stored in the file gives the sizes, the file the
        weights. The model owns its parts."""
        return cls._wrap(ctx, _create(fn.vqj_model_load, ctx._ptr(), os.fsencode(path)))

    def with_tokenizer(self, **tokenizer):
        """A Model over the same parts tokenizing with other params (the
        others keep this model's), e.g. with_tokenizer(max_objects=4)."""
        tok, _ = _lib.defaults(_lib.vqj_tokenizer_params)
        fn.vqj_model_tokenizer_params(self._ptr(), ctypes.byref(tok))
        fields = {name for name, _ in tok._fields_ if name != "size"}
        for key, value in tokenizer.items():
            if key not in fields:
                raise InvalidArgumentError(1, "Model.with_tokenizer: unknown parameter '%s'" % key)
            setattr(tok, key, value)
        ptr = _create(fn.vqj_model_with_tokenizer, self._ptr(), ctypes.byref(tok))
        return Model._wrap(self._ctx, ptr, deps=[self._core])

    @classmethod
    def _wrap(cls, ctx, ptr, deps=()):
        self = cls.__new__(cls)
        self._setup(ctx, ptr, list(deps))
        return self

    def _setup(self, ctx, ptr, deps):
        _child(self, ctx, ptr, fn.vqj_model_destroy, deps=deps)
        p = self._ptr()
        self.embedding_dim = fn.vqj_model_embedding_dim(p)
        self.max_objects = fn.vqj_model_max_objects(p)
        self.context_window = fn.vqj_model_context_window(p)
        self.num_codes = fn.vqj_model_num_codes(p)
        self.num_quantizers = fn.vqj_model_num_quantizers(p)

    def encode(self, grid):
        """(codes, embedding) of one grid: one code per object (largest
        first), and its P-float unit embedding."""
        batch = _GridBatch([grid], "grid")
        if batch.count != 1:
            raise InvalidArgumentError(1, "Model.encode: expected one grid")
        codes, cptr = _ints32_out(self.max_objects)
        emb, eptr = _floats_out(self.embedding_dim)
        n = ctypes.c_size_t()
        fn.vqj_model_encode_grid(self._ptr(), batch.ptr(), cptr, ctypes.byref(n), eptr)
        return _ints_out(codes[:n.value]), _shaped(emb, (self.embedding_dim,))

    def encode_levels(self, grid):
        """(codes, level_codes) of one grid with every level of residual codes:
        each object's mixed-radix index (first level most significant; -1
        where K^L does not fit in 63 bits) and its num_quantizers codes, one
        list per object."""
        batch = _GridBatch([grid], "grid")
        if batch.count != 1:
            raise InvalidArgumentError(1, "Model.encode_levels: expected one grid")
        m, lv = self.max_objects, self.num_quantizers
        index = (ctypes.c_int64 * max(m, 1))()
        levels, lptr = _ints32_out(m * lv)
        n = ctypes.c_size_t()
        fn.vqj_model_encode_grid_levels(self._ptr(), batch.ptr(), ctypes.cast(index, ctypes.c_void_p),
                                        lptr, ctypes.byref(n))
        k = n.value
        return list(index[:k]), [list(int(c) for c in levels[i * lv:(i + 1) * lv]) for i in range(k)]

    def encode_batch(self, grids):
        """(codes per grid, embeddings [N x P]) of several grids in one pass."""
        batch = _GridBatch(grids, "grids")
        m, d = self.max_objects, self.embedding_dim
        codes, cptr = _ints32_out(batch.count * m)
        counts = (ctypes.c_size_t * max(batch.count, 1))()
        emb, eptr = _floats_out(batch.count * d)
        fn.vqj_model_encode_grids(self._ptr(), batch.ptr(), batch.count, cptr, counts, eptr)
        per_grid = [_ints_out(codes[g * m:g * m + counts[g]]) for g in range(batch.count)]
        return per_grid, _shaped(emb, (batch.count, d))

    def predict(self, context):
        """The predicted target embedding of T context grids (oldest first)."""
        batch = _GridBatch(context, "context")
        emb, eptr = _floats_out(self.embedding_dim)
        fn.vqj_model_predict(self._ptr(), batch.ptr(), batch.count, eptr)
        return _shaped(emb, (self.embedding_dim,))

    def predict_batch(self, context):
        """Predictions [B x P] for B examples: batch*T grids (flat, B lists
        of T, or a (B, T, H, W) array)."""
        batch = _GridBatch(context, "context")
        t = self.context_window
        if t <= 0 or batch.count % t:
            raise InvalidArgumentError(1, "Model.predict_batch: %d grids is not a multiple of T = %d"
                                       % (batch.count, t))
        b = batch.count // t
        emb, eptr = _floats_out(b * self.embedding_dim)
        fn.vqj_model_predict_batch(self._ptr(), batch.ptr(), b, eptr)
        return _shaped(emb, (b, self.embedding_dim))

    def distance(self, a, b):
        """latent_distance(a, b)."""
        return latent_distance(a, b)


class EvalSet(_Handle):
    """Queries for evaluation (vqj_eval_set; docs/evaluation.md): every
    pair with an output of ARC tasks (`tasks`: ArcTask objects, or `path`:
    a task file or folder) with the next pair of its task as demonstration,
    or every example of a Dataset (`dataset`). `context_window` is the
    model's T (tasks and path only)."""

    def __init__(self, ctx, tasks=None, path=None, dataset=None, context_window=3):
        if sum(x is not None for x in (tasks, path, dataset)) != 1:
            raise InvalidArgumentError(1, "EvalSet: give one of tasks, path or dataset")
        if dataset is not None:
            ptr = _create(fn.vqj_eval_set_from_dataset, ctx._ptr(), dataset._ptr())
        elif path is not None:
            ptr = _create(fn.vqj_eval_set_load, ctx._ptr(), os.fsencode(path), context_window)
        else:
            tasks = list(tasks)
            arr = (ctypes.c_void_p * max(len(tasks), 1))(*[t._ptr() for t in tasks])
            ptr = _create(fn.vqj_eval_set_from_tasks, ctx._ptr(), arr, len(tasks),
                          context_window)
        _child(self, ctx, ptr, fn.vqj_eval_set_destroy)

    def __len__(self):
        return fn.vqj_eval_set_num_queries(self._ptr())

    @property
    def num_candidates(self):
        return fn.vqj_eval_set_num_candidates(self._ptr())

    @property
    def context_window(self):
        return fn.vqj_eval_set_context_window(self._ptr())

    def evaluate(self, model):
        """A dict of the model's retrieval and code measures (the fields of
        vqj_eval_result: top1, top5, hard_top1, chance, code_usage, ...)."""
        r = _lib.vqj_eval_result(size=ctypes.sizeof(_lib.vqj_eval_result))
        fn.vqj_eval_model(model._ptr(), self._ptr(), ctypes.byref(r))
        return r.as_dict()

    def baseline(self, method="features"):
        """The same retrieval by a baseline without network: "features" or
        "analogy"."""
        methods = {"features": 1, "analogy": 2}
        if method not in methods:
            raise InvalidArgumentError(1, "EvalSet.baseline: method is %r; it must be features "
                                       "or analogy" % (method,))
        r = _lib.vqj_eval_result(size=ctypes.sizeof(_lib.vqj_eval_result))
        fn.vqj_eval_baseline(self._ctx._ptr(), self._ptr(), methods[method], ctypes.byref(r))
        return r.as_dict()


def latent_distance(a, b):
    """|| a/|a| - b/|b| ||^2 = 2 - 2 cos(a, b), in [0, 4]."""
    ka, pa, na = _floats_in(a, "latent_distance")
    kb, pb, nb = _floats_in(b, "latent_distance")
    if na != nb:
        raise InvalidArgumentError(1, "latent_distance: the vectors have %d and %d floats" % (na, nb))
    out = ctypes.c_float()
    fn.vqj_latent_distance(pa, pb, na, ctypes.byref(out))
    del ka, kb
    return out.value


# ---------------------------------------------------------------------------
# Diagnostics window and configuration files

class MetricsWindow(_Handle):
    """The sample window of one diagnostics interval: the last max_samples
    context and target projections and the codes used since the last
    reset(). compute() gives the embedding metrics of both and the VQ usage."""

    def __init__(self, ctx, dim, max_samples=4096, num_codes=0):
        ptr = _create(fn.vqj_metrics_window_create, ctx._ptr(), dim, max_samples, num_codes)
        _child(self, ctx, ptr, fn.vqj_metrics_window_destroy)
        self.dim = dim

    def add_projections(self, context, target):
        """Append rows of context and target projections (n x dim each)."""
        kc, pc, nc = _floats_in(context, "MetricsWindow.add_projections")
        kt, pt, nt = _floats_in(target, "MetricsWindow.add_projections")
        if nc != nt or nc % self.dim:
            raise InvalidArgumentError(1, "MetricsWindow.add_projections: context and target "
                                          "must both be n x %d" % self.dim)
        with self._locked():
            fn.vqj_metrics_window_add_projections(self._ptr(), pc, pt, nc // self.dim)
        del kc, kt

    def add_codes(self, codes, target=False):
        """Count codes of context tokens (target=True: of target tokens)."""
        codes = [int(c) for c in codes]
        arr = (ctypes.c_int32 * max(len(codes), 1))(*codes)
        add = fn.vqj_metrics_window_add_target_codes if target else fn.vqj_metrics_window_add_codes
        with self._locked():
            add(self._ptr(), arr, len(codes))

    def compute(self):
        """{"context": {...}, "target": {...}, "active_codes", "num_codes", "usage_ratio",
        "usage_context", "usage_target", "perplexity", "dead_codes", ...}."""
        out = _lib.vqj_window_metrics()
        out.size = ctypes.sizeof(out)
        with self._locked():
            fn.vqj_metrics_window_compute(self._ptr(), ctypes.byref(out))
        d = out.as_dict()
        d["context"] = out.context.as_dict()
        d["target"] = out.target.as_dict()
        return d

    def __len__(self):
        return fn.vqj_metrics_window_rows(self._ptr())

    def reset(self):
        with self._locked():
            fn.vqj_metrics_window_reset(self._ptr())


_CONFIG_KINDS = ("tokenizer", "encoder", "codebook", "predictor", "loss", "optimizer", "trainer",
                 "dataset", "augment", "synthetic")

_libc_free = None


def _free(ptr):
    global _libc_free
    if _libc_free is None:
        _libc_free = ctypes.CDLL(None).free
        _libc_free.argtypes = [ctypes.c_void_p]
        _libc_free.restype = None
    _libc_free(ptr)


class Config(_Handle):
    """A run configuration: the built-in defaults, a YAML file (path) or YAML
    text (text) over them. Read-only once made (any thread may read it).
    params(kind) gives a module's params as a dict, run() the run-level
    settings, to_yaml() the resolved configuration, trainer(ctx) a Trainer
    built from it."""

    def __init__(self, ctx, path=None, text=None, name=None):
        if path is not None and text is not None:
            raise InvalidArgumentError(1, "Config: give a path or text, not both")
        if path is not None:
            ptr = _create(fn.vqj_config_load, ctx._ptr(), os.fsencode(path))
        elif text is not None:
            if not isinstance(text, (str, bytes)):
                raise TypeError("Config: text must be str or bytes, not %s" % type(text).__name__)
            data = text.encode() if isinstance(text, str) else text
            ptr = _create(fn.vqj_config_parse, ctx._ptr(), data, len(data),
                          None if name is None else name.encode())
        else:
            ptr = _create(fn.vqj_config_default, ctx._ptr())
        _child(self, ctx, ptr, fn.vqj_config_destroy)

    def params(self, kind):
        if kind not in _CONFIG_KINDS:
            raise InvalidArgumentError(1, "Config.params: kind must be one of %s" % ", ".join(_CONFIG_KINDS))
        struct_type = getattr(_lib, "vqj_%s_params" % kind)
        p, _ = _lib.defaults(struct_type)
        getattr(fn, "vqj_config_%s_params" % kind)(self._ptr(), ctypes.byref(p))
        return p.as_dict()

    def run(self):
        r = _lib.vqj_run_params()
        r.size = ctypes.sizeof(r)
        fn.vqj_config_run(self._ptr(), ctypes.byref(r))
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in r.as_dict().items()}

    def to_yaml(self):
        text = ctypes.c_void_p()
        fn.vqj_config_write_yaml(self._ptr(), ctypes.byref(text))
        try:
            return ctypes.string_at(text.value).decode("utf-8")
        finally:
            _free(text.value)

    def _struct(self, kind):
        struct_type = getattr(_lib, "vqj_%s_params" % kind)
        p, _ = _lib.defaults(struct_type)
        getattr(fn, "vqj_config_%s_params" % kind)(self._ptr(), ctypes.byref(p))
        return p

    def set(self, key, value):
        """Set one key as a file would (vqj_config_set): set("seed", 7),
        set("training.device", "cpu"); booleans become true/false."""
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif value is None:
            value = "null"
        fn.vqj_config_set(self._ptr(), key.encode(), str(value).encode())

    def trainer(self, ctx=None):
        """Trainer.from_config(ctx, self): every part from this
        configuration, seeded by its seed."""
        return Trainer.from_config(ctx or self._ctx, self)
