"""Configurations: load, parse, set and write them, and build trainers from them."""

import ctypes
import os


from . import _lib
from ._errors import InvalidArgumentError
from ._lib import fn
from ._core import _child, _create, _Handle
from ._stages import Trainer


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
