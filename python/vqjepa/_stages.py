"""The stage-level wrappers (include/vqjepa.h's stage calls): encoder, codebook,
predictor, loss, optimizer, trainer, checkpoints of parts and the metrics."""

import ctypes
import os
import types


from . import _lib
from ._errors import InvalidArgumentError
from ._lib import fn
from ._core import (_child, _Core, _create, _floats_in, _floats_out, _Handle, _ints_out, _Locked,
                    _make_params, _shaped, np)
from ._grid import _GridBatch
from ._data import Tensor, Weights
from ._model import Model


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
