"""Handles, locks, params structs and array conversions shared by every wrapper."""

import ctypes
import itertools
import os
import threading


from . import _lib
from ._errors import InvalidArgumentError, StateError
from ._lib import fn


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


def _ints32_out(count):
    if np is not None:
        arr = np.empty(count, dtype=np.int32)
        return arr, arr.ctypes.data_as(ctypes.c_void_p)
    arr = (ctypes.c_int32 * max(count, 1))()
    return arr, ctypes.cast(arr, ctypes.c_void_p)
