"""Bad calls raise, never crash (docs/failures.md): wrong types, dtypes and
shapes, None, objects used after close() and closed twice. Each call below
must raise an exception (TypeError, ValueError or vqjepa.Error); a crash of
the interpreter fails the whole suite."""
import os
import tempfile
import unittest

import vqjepa
from test_vqjepa import small_trainer, some_grids

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

BAD = (TypeError, ValueError, vqjepa.Error)


class TestBadCallsRaise(unittest.TestCase):
    def setUp(self):
        self.ctx = vqjepa.Context(num_threads=1)
        self.tr = small_trainer(self.ctx)

    def tearDown(self):
        self.tr.close()
        self.ctx.close()

    def raises(self, fn, *args, **kw):
        with self.assertRaises(BAD, msg="%s%r" % (getattr(fn, "__name__", fn), args)):
            fn(*args, **kw)

    def test_grids(self):
        for bad in (None, 3, "abc", [None], [[1, 2], [3]], [[[1, 2], [3]]], [[[10]]],
                    [[[-1]]], [[[1.5]]], [[]], [[[]]], [[[0] * 300]], [object()]):
            self.raises(self.ctx.tokenize, bad)
        if np is not None:
            for bad in (np.zeros((2, 3), dtype=np.float32) + 0.5, np.full((1, 2, 2), 12, np.uint8),
                        np.zeros((1, 0, 3), np.uint8),
                        np.array(["a"])):
                self.raises(self.ctx.tokenize, bad)

    def test_trainer_step(self):
        good_c, good_t = some_grids(6, 1), some_grids(2, 2)
        for c, t in ((None, good_t), (good_c, None), (good_c[:5], good_t), ([], []),
                     (good_c, good_t[:1]), ("x", "y"), (good_c, [[[11]]] * 2)):
            self.raises(self.tr.step, c, t)
        self.tr.step(good_c, good_t)  # still usable after every refusal

    def test_weights(self):
        w = self.tr.encoder.weights
        name = w.names()[0]
        for args in ((None, [0.0]), ("no.such.tensor", [0.0]), (name, None), (name, [0.0]),
                     (name, "abc"), (name, [float("nan")] * w.shape(name)[0])):
            self.raises(w.write, *args)
        self.raises(w.read, None)
        self.raises(w.read, "no.such.tensor")
        if np is not None:
            n = 1
            for d in w.shape(name):
                n *= d
            self.raises(w.write, name, np.zeros(n + 1, np.float32))
            self.raises(w.write, name, np.full(n, np.inf, np.float32))

    def test_checkpoints(self):
        with tempfile.TemporaryDirectory() as d:
            for bad in (None, 3, os.path.join(d, "missing.safetensors"), d):
                self.raises(self.tr.load, bad)
                self.raises(vqjepa.verify_checkpoint, self.ctx, bad)
            junk = os.path.join(d, "junk.safetensors")
            with open(junk, "wb") as f:
                f.write(b"\xff" * 64)
            self.raises(self.tr.load, junk)
            self.raises(self.tr.save, None)
            self.raises(self.tr.save, os.path.join(d, "no", "such", "dir", "x.safetensors"))
            self.raises(self.tr.save, os.path.join(d, "m.safetensors"), metadata={"format": "x"})
        self.tr.step(some_grids(6, 3), some_grids(2, 4))

    def test_model(self):
        m = self.tr.model()
        for bad in (None, [[]], [[[10]]], "x"):
            self.raises(m.encode, bad)
        for bad in (None, [], some_grids(2, 1), [[[10]]] * 3):
            self.raises(m.predict, bad)
        m.close()
        m.close()  # a second close does nothing
        self.raises(m.encode, some_grids(1, 1)[0])

    def test_config(self):
        for text in ("training: {epochs: 0}", "a: [1, 2", "- 1\n- 2\n", "seed: 1\nseed: 2\n", 3,
                     b"a: \xff\n"):
            self.raises(vqjepa.Config, self.ctx, text=text)
        for path in ("/nonexistent.yaml", 3):
            self.raises(vqjepa.Config, self.ctx, path=path)
        # A None context: an exception from the attribute lookup, not a crash.
        with self.assertRaises((TypeError, AttributeError)):
            vqjepa.Config(None)

    def test_use_after_close_and_double_close(self):
        ctx = vqjepa.Context(num_threads=1)
        tr = small_trainer(ctx)
        w = tr.encoder.weights
        tr.close()
        tr.close()
        for fn, args in ((tr.step, (some_grids(6, 1), some_grids(2, 2))), (tr.save, ("x",)),
                         (tr.load, ("x",)), (tr.model, ())):
            with self.assertRaises(vqjepa.StateError):
                fn(*args)
        self.assertGreater(len(w.names()), 0)  # a view keeps what it needs alive
        ctx.close()
        ctx.close()
        with self.assertRaises(vqjepa.StateError):
            ctx.tokenize(some_grids(1, 1))


if __name__ == "__main__":
    unittest.main()
