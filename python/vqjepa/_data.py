"""Weights, tensors, tokens, ARC tasks and datasets."""

import ctypes
import os


from . import _lib
from ._errors import InvalidArgumentError, StateError
from ._lib import fn
from ._core import (_child, _Core, _create, _floats_in, _floats_out, _Handle, _ints_out, _Locked,
                    _make_params, _matrix_from_ptr, _name, _shaped, np)
from ._grid import _GridBatch, Grid


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

    def batches(self, batch_size, epoch=0, seed=0, drop_last=True, augment=None):
        """Yield (context grids [batch*T], targets [batch]) in the order of
        shuffle(seed, epoch), as `vqjepa train` builds them
        (vqj_batch_fill): with ``augment`` (True for the library's
        augmentation defaults, or a dict of vqj_augment_params fields) each
        example is augmented with the seed augment_seed(seed, epoch, index),
        so a run's batches are the CLI's for the same seed."""
        aug = None
        if augment is not None and augment is not False:
            aug = _make_params(_lib.vqj_augment_params, {} if augment is True else augment,
                               what="augment")
        order = self.shuffle(seed, epoch)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            batch = _Batch(self)
            indices = (ctypes.c_size_t * max(len(idx), 1))(*(int(i) for i in idx))
            fn.vqj_batch_fill(batch._ptr(), self._ptr(), ctypes.byref(aug) if aug else None,
                              seed, epoch, indices, len(idx))
            n, T = len(idx), fn.vqj_batch_context_window(batch._ptr())
            c, t = fn.vqj_batch_context(batch._ptr()), fn.vqj_batch_targets(batch._ptr())
            yield [Grid(c[k], batch) for k in range(n * T)], [Grid(t[e], batch) for e in range(n)]


# ---------------------------------------------------------------------------
# Model parts


def augment_seed(seed, epoch, index):
    """The seed Dataset.batches(augment=...) and `vqjepa train` give the
    augmentation of example ``index`` in ``epoch`` of a run seeded by
    ``seed`` (vqj_augment_seed)."""
    return fn.vqj_augment_seed(seed, epoch, index)


class _Batch(_Handle):
    """The cells of one augmented batch (vqj_batch), kept alive by its grids."""

    def __init__(self, dataset):
        _child(self, dataset._ctx, _create(fn.vqj_batch_create, dataset._ctx._ptr()),
               fn.vqj_batch_destroy, deps=[dataset._core])
