"""Inference: the model object, evaluation sets and latent distances."""

import ctypes
import os


from . import _lib
from ._errors import InvalidArgumentError
from ._lib import fn
from ._core import (_child, _create, _floats_in, _floats_out, _Handle, _ints32_out, _ints_out,
                    _make_params, _shaped)
from ._grid import _GridBatch


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
