"""The library context: device, threads, seed and logging."""

import ctypes


from . import _lib
from ._errors import InvalidArgumentError
from ._lib import fn
from ._core import _Core, _create, _Handle
from ._data import Tokens


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
