"""Tests of the vqjepa Python package (plain unittest; no pytest needed).

Run from the repository root after `make`:

    VQJEPA_LIBRARY=lib/libvqjepa.so PYTHONPATH=python python3 -m unittest discover -s python/tests

tests/python_test.sh (run by `make check`) does so with and without numpy.
VQJEPA_INCLUDE (default: include/ next to python/) points at vqjepa.h for
the tests that read it; CC compiles the struct layout check.
"""

import array
import ctypes
import gc
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

import vqjepa
from vqjepa import _lib

from vqjepa._core import np  # noqa: E402  (numpy as the package uses it, or None)
HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.environ.get("VQJEPA_INCLUDE", os.path.join(HERE, "..", "..", "include"))
HEADER = os.path.join(INCLUDE, "vqjepa.h")
# The experimental tier (it includes vqjepa.h): the bindings wrap both.
STAGES_HEADER = os.path.join(INCLUDE, "vqjepa_stages.h")


def header_text():
    """The declarations of both headers, stable first."""
    text = ""
    for path in (HEADER, STAGES_HEADER):
        with open(path) as f:
            text += f.read()
    return text

try:
    import safetensors
except ImportError:  # optional: the cross-check against PyPI's reader is skipped
    safetensors = None

README_GRID = [[2, 2, 0, 0],
               [2, 2, 0, 1],
               [0, 0, 0, 0]]

SMALL = dict(encoder={"hidden_dim": 32, "relational_layers": 1, "relational_heads": 4},
             codebook={"num_embeddings": 16, "refresh_interval": 3},
             predictor={"projection_dim": 16},
             loss={"queue_size": 32, "sigreg_num_slices": 16},
             optimizer={"lr": 1e-3, "warmup_steps": 1, "total_steps": 20})


def tolist(x):
    return x.tolist() if np is not None and hasattr(x, "tolist") else x


def some_grids(n, seed, side=6):
    grids = []
    for i in range(n):
        h = side + (i + seed) % 3
        g = [[(1 + (r + c + i) % 4) if (r * 3 + c * 5 + i + seed) % 7 < 2 else 0
              for c in range(7)] for r in range(h)]
        grids.append(g)
    return grids


def small_trainer(ctx, **kw):
    args = {k: dict(v) for k, v in SMALL.items()}
    args.update(kw)
    return vqjepa.Trainer(ctx, **args)


def train_steps(tr, steps, batch=4, seed=0):
    out = []
    for s in range(steps):
        out.append(tr.step(some_grids(batch * 3, seed + s), some_grids(batch, seed + s + 100)))
    return out


class TestBasics(unittest.TestCase):
    def test_versions(self):
        self.assertRegex(vqjepa.library_version(), r"^\d+\.\d+\.\d+$")
        if os.path.exists(HEADER):
            with open(HEADER) as f:
                text = f.read()
            parts = [text.split("#define VQJ_VERSION_%s " % k)[1].split()[0]
                     for k in ("MAJOR", "MINOR", "PATCH")]
            self.assertEqual(vqjepa.library_version(), ".".join(parts))
        self.assertTrue(os.path.exists(vqjepa.library_path()))

    def test_main_version(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        out = subprocess.run([sys.executable, "-m", "vqjepa", "--version"], capture_output=True,
                             text=True, env=env, check=True).stdout
        self.assertIn("vqjepa %s" % vqjepa.__version__, out)
        self.assertIn("libvqjepa %s" % vqjepa.library_version(), out)

    def test_params_struct_sizes(self):
        # The C default functions write sizeof() of the library's structs:
        # this binding's must be the same (or a prefix, for a newer library).
        for struct_type in _lib.PARAMS_DEFAULTS:
            params, c_size = _lib.defaults(struct_type)
            self.assertGreaterEqual(c_size, ctypes.sizeof(struct_type), struct_type.__name__)
            if c_size != ctypes.sizeof(struct_type):
                print("note: %s: the library's struct has %d bytes, this binding's %d"
                      % (struct_type.__name__, c_size, ctypes.sizeof(struct_type)), file=sys.stderr)
        d = vqjepa.defaults("encoder")
        self.assertEqual((d["feature_dim"], d["hidden_dim"], d["relational_layers"],
                          d["relational_heads"]), (23, 384, 3, 8))
        self.assertAlmostEqual(d["relational_dropout"], 0.1, places=6)
        d = vqjepa.defaults("optimizer")
        self.assertEqual((d["warmup_steps"], d["total_steps"]), (1000, 1500))
        self.assertAlmostEqual(d["min_lr_scale"], 0.1, places=6)
        d = vqjepa.defaults("loss")
        self.assertEqual((d["queue_size"], d["sigreg_num_slices"], d["sigreg_num_points"]),
                         (8192, 1024, 17))
        self.assertAlmostEqual(d["infonce_weight"], 1.0)
        d = vqjepa.defaults("trainer")
        self.assertEqual(d["background"], 1)

    @unittest.skipUnless(os.path.exists(HEADER) and shutil.which(os.environ.get("CC", "cc")),
                         "needs include/vqjepa.h and a C compiler")
    def test_struct_layouts_match_the_header(self):
        # offsetof() of every field, by the C compiler, against ctypes.
        structs = [s for s in vars(_lib).values()
                   if isinstance(s, type) and issubclass(s, ctypes.Structure)
                   and s.__name__.startswith("vqj_")]
        lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "vqjepa_stages.h"',
                 "int main(void) {"]
        expect = []
        for s in structs:
            lines.append('printf("%%zu\\n", sizeof(%s));' % s.__name__)
            expect.append(("sizeof", s.__name__, ctypes.sizeof(s)))
            for name, _ in s._fields_:
                lines.append('printf("%%zu\\n", offsetof(%s, %s));' % (s.__name__, name))
                expect.append((s.__name__, name, getattr(s, name).offset))
        lines.append("return 0; }")
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "layout.c")
            with open(src, "w") as f:
                f.write("\n".join(lines))
            exe = os.path.join(tmp, "layout")
            subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-I", INCLUDE, "-o", exe, src],
                           check=True)
            got = [int(x) for x in subprocess.run([exe], capture_output=True, text=True,
                                                  check=True).stdout.split()]
        for (a, b, want), have in zip(expect, got):
            self.assertEqual(want, have, "%s %s: ctypes says %d, C says %d" % (a, b, want, have))

    def test_every_header_function_is_declared(self):
        if not os.path.exists(HEADER):
            self.skipTest("no header")
        import re
        names = set(re.findall(r"^VQJ_API[^;]*?\b(vqj_\w+)\s*\(", header_text(), re.M | re.S))
        wrapped = set(_lib._PROTOTYPES)
        # The health/early-stopping helpers and the augmentations are for C
        # programs and the CLI; the rest must be callable.
        skip = re.compile(r"^vqj_(health_|early_stopping_|augment_|view_)")
        missing = sorted(n for n in names - wrapped if not skip.match(n))
        self.assertEqual(missing, [], "functions of the headers without a ctypes prototype")
        # and every prototype has the header's number of parameters
        text = header_text()
        wrong = []
        for m in re.finditer(r"^VQJ_API[^;]*?\b(vqj_\w+)\s*\(([^;]*)\)\s*;", text, re.M | re.S):
            name, params = m.group(1), m.group(2).strip()
            if name not in _lib._PROTOTYPES:
                continue
            count = 0 if params == "void" else params.count(",") + 1
            if name in _lib.PARAMS_DEFAULTS.values():
                continue  # declared as taking one pointer
            if len(_lib._PROTOTYPES[name][1]) != count:
                wrong.append("%s: header %d, ctypes %d" % (name, count, len(_lib._PROTOTYPES[name][1])))
        self.assertEqual(wrong, [], "ctypes prototypes whose parameter count differs from the header")


class TestContextAndErrors(unittest.TestCase):
    def test_context(self):
        with vqjepa.Context(seed=42, num_threads=1) as ctx:
            self.assertEqual(ctx.seed, 42)
            self.assertEqual(ctx.num_threads, 1)
            self.assertEqual(ctx.device, "cpu")
            self.assertIn("seed=42", repr(ctx))
        self.assertTrue(ctx.closed)
        with self.assertRaises(vqjepa.StateError):
            ctx.seed

    def test_library_error_carries_the_message(self):
        with self.assertRaises(vqjepa.InvalidArgumentError) as cm:
            vqjepa.Context(num_threads=-1)
        e = cm.exception
        self.assertIsInstance(e, vqjepa.Error)
        self.assertIsInstance(e, ValueError)
        self.assertEqual(e.status, 1)
        self.assertEqual(e.status_name, "invalid argument")
        self.assertIn("num_threads", str(e))
        self.assertEqual(e.message, _lib.last_error())

    def test_cuda_in_a_cpu_build(self):
        if _lib.fn.vqj_device_compiled(1):
            self.skipTest("CUDA build")
        with self.assertRaises(vqjepa.UnsupportedError) as cm:
            vqjepa.Context(device="cuda")
        self.assertIn("CUDA", str(cm.exception))

    def test_bad_params(self):
        with vqjepa.Context() as ctx:
            with self.assertRaises(vqjepa.InvalidArgumentError) as cm:
                vqjepa.Encoder(ctx, hidden_dim=30, relational_heads=8)
            self.assertIn("relational_heads", str(cm.exception))
            with self.assertRaises(vqjepa.InvalidArgumentError) as cm:
                vqjepa.Encoder(ctx, hidden_dims=30)
            self.assertIn("hidden_dims", str(cm.exception))
            with self.assertRaises(vqjepa.InvalidArgumentError):
                vqjepa.Predictor(ctx, aggregator="median")

    def test_log_callback(self):
        seen = []
        with vqjepa.Context(log=lambda level, msg: seen.append((level, msg)), log_level="debug") as ctx:
            path = os.path.join(tempfile.mkdtemp(), "io.jsonl")
            with open(path, "w") as f:
                f.write(json.dumps({"input": [[1]], "output": [[2]]}) + "\n")
            vqjepa.Dataset.from_jsonl(ctx, path)  # an input/output record logs a warning
            shutil.rmtree(os.path.dirname(path))
        self.assertTrue(any(level == "warning" for level, _ in seen), seen)


class TestTokens(unittest.TestCase):
    def setUp(self):
        self.ctx = vqjepa.Context(num_threads=1)

    def tearDown(self):
        self.ctx.close()

    def check_readme(self, tokens):
        self.assertEqual(tokens.num_grids, 1)
        self.assertEqual(tokens.num_objects, 2)
        self.assertEqual(tokens.feature_dim, 23)
        f = tolist(tokens.features)
        self.assertAlmostEqual(f[0][0], 4 / 12, places=6)
        self.assertEqual(f[0][6], 2.0)
        self.assertAlmostEqual(f[1][0], 1 / 12, places=6)
        self.assertEqual(tolist(tokens.offsets), [0, 2])
        self.assertEqual(tolist(tokens.adjacency(0)), [[0, 0], [0, 0]])

    def test_tokenize_lists(self):
        self.check_readme(self.ctx.tokenize([README_GRID]))
        self.check_readme(self.ctx.tokenize(README_GRID))  # one grid alone

    @unittest.skipIf(np is None, "numpy not used")
    def test_tokenize_numpy_zero_copy(self):
        arr = np.array(README_GRID, dtype=np.uint8)
        batch = vqjepa._GridBatch([arr])
        self.assertIs(batch.keep[0], arr)  # passed without a copy
        self.assertEqual(ctypes.addressof(batch.array[0].cells.contents), arr.ctypes.data)
        self.check_readme(self.ctx.tokenize(arr))
        self.check_readme(self.ctx.tokenize(np.array([README_GRID], dtype=np.int64)))
        self.assertIsInstance(self.ctx.tokenize(arr).features, np.ndarray)

    def test_bad_grids(self):
        tokens = self.ctx.tokenize([[[1]]])
        with self.assertRaises(vqjepa.InvalidArgumentError) as cm:
            tokens.tokenize([[[1, 2], [3, 11]]])
        self.assertIn("11", str(cm.exception))  # the library's message names the cell
        self.assertEqual(tokens.num_objects, 1)  # unchanged
        with self.assertRaises(vqjepa.InvalidArgumentError) as cm:
            tokens.tokenize([[[1, 2], [3]]])
        self.assertIn("row 1", str(cm.exception))
        with self.assertRaises(vqjepa.InvalidArgumentError):
            tokens.tokenize([[[1, -2]]])
        with self.assertRaises(vqjepa.InvalidArgumentError):
            tokens.tokenize([[["a"]]])
        with self.assertRaises(vqjepa.InvalidArgumentError):
            tokens.tokenize([[[1] * 300]])  # wider than VQJ_MAX_GRID_SIDE

    def test_padded_and_params(self):
        tokens = self.ctx.tokenize([README_GRID], max_objects=4, connectivity=8)
        feats, mask, adj = tokens.padded(0)
        self.assertEqual(tolist(mask), [1.0, 1.0, 0.0, 0.0])
        self.assertEqual(len(tolist(feats)), 4)
        self.assertEqual(len(tolist(adj)), 4)

    def test_tensor(self):
        t = vqjepa.Tensor(self.ctx, 2, 3)
        self.assertEqual(t.shape, (2, 3))
        t.write([[1, 2, 3], [4, 5, 6]])
        self.assertEqual(tolist(t.read()), [[1, 2, 3], [4, 5, 6]])
        t.write(array.array("f", [0, 0, 0, 0, 0, 7]))
        self.assertEqual(tolist(t.read())[1][2], 7)
        with self.assertRaises(vqjepa.InvalidArgumentError):
            t.write([1, 2])


class TestTraining(unittest.TestCase):
    def setUp(self):
        self.ctx = vqjepa.Context(seed=7, num_threads=1)

    def tearDown(self):
        self.ctx.close()

    def test_steps_from_lists(self):
        tr = small_trainer(self.ctx)
        before = tolist(tr.encoder.weights["feature_mlp.fc1.weight"])
        ms = train_steps(tr, 4)
        for i, m in enumerate(ms):
            self.assertFalse(m.skipped)
            self.assertEqual(m.batch, 4)
            self.assertEqual(bool(m.optimizer_step), i % 2 == 1)
            self.assertTrue(m.loss == m.loss and abs(m.loss) < 1e6)
        self.assertEqual(tr.optimizer.steps, 2)
        self.assertEqual(tr.counters[0], 4)
        self.assertNotEqual(before, tolist(tr.encoder.weights["feature_mlp.fc1.weight"]))
        self.assertEqual(len(tolist(tr.context_projections())), 4)
        codes = tolist(tr.codes())
        self.assertEqual(len(codes), m.context_tokens)
        self.assertTrue(all(0 <= c < 16 for c in codes))
        self.assertEqual(tr.loss.queue_fill, 16)  # 2 optimizer steps x 2 micro-batches x 4
        self.assertGreater(tr.loss.temperature, 0)
        ev = tr.evaluate(some_grids(12, 50), some_grids(4, 51))
        self.assertEqual(ev.invariance_color, 0)
        self.assertIn("loss", ev.as_dict())

    def test_nested_context_and_error(self):
        tr = small_trainer(self.ctx)
        ctxg = some_grids(12, 1)
        nested = [ctxg[i * 3:(i + 1) * 3] for i in range(4)]
        m = tr.step(nested, some_grids(4, 2))
        self.assertEqual(m.batch, 4)
        with self.assertRaises(vqjepa.InvalidArgumentError) as cm:
            tr.step(some_grids(5, 0), some_grids(4, 0))  # not batch * T grids
        self.assertTrue(str(cm.exception))

    @unittest.skipIf(np is None, "numpy not used")
    def test_steps_from_numpy_match_lists(self):
        a = small_trainer(self.ctx)
        ctx2 = vqjepa.Context(seed=7, num_threads=1)
        b = small_trainer(ctx2)
        for s in range(2):
            cg, tg = some_grids(12, s, side=6), some_grids(4, s + 9, side=6)
            # equal sizes, so they stack: (B, T, H, W) and (B, H, W)
            cg = [[row[:] for row in g[:6]] for g in cg]
            tg = [[row[:] for row in g[:6]] for g in tg]
            ma = a.step(cg, tg)
            mb = b.step(np.array(cg, dtype=np.uint8).reshape(4, 3, 6, 7), np.array(tg, dtype=np.uint8))
            self.assertEqual(ma.loss, mb.loss)
        np.testing.assert_array_equal(a.encoder.weights["feature_mlp.fc1.weight"],
                                      b.encoder.weights["feature_mlp.fc1.weight"])
        ctx2.close()

    def test_weights_roundtrip(self):
        enc = vqjepa.Encoder(self.ctx, hidden_dim=16, relational_layers=1, relational_heads=2)
        w = enc.weights
        names = w.names()
        self.assertEqual(names[0], "feature_mlp.fc1.weight")
        self.assertIn("feature_mlp.fc1.weight", w)
        self.assertEqual(w.shape(names[0]), (16, 23))
        v = tolist(w[names[0]])
        v[0][0] = 0.5
        w[names[0]] = v
        self.assertEqual(tolist(w[names[0]])[0][0], 0.5)
        with self.assertRaises(vqjepa.NumericError) as cm:
            v[0][1] = float("nan")
            w.write(names[0], v)
        self.assertIn("weight", str(cm.exception))
        with self.assertRaises(vqjepa.InvalidArgumentError):
            w.read("no.such.tensor")
        self.assertGreater(w.num_params, 0)

    def test_dataset_batches(self):
        ds = vqjepa.Dataset.synthetic(self.ctx, num_examples=16, seed=3)
        self.assertEqual(len(ds), 16)
        context, target = ds[0]
        self.assertEqual(len(context), 3)
        self.assertGreaterEqual(target.height, 1)
        self.assertEqual(context[0], ds[0][0][0])
        train, val = ds.split(0.25, 1)
        self.assertEqual(len(train) + len(val), 16)
        self.assertEqual(sorted(tolist(ds.shuffle(1, 0))), list(range(16)))
        tr = small_trainer(self.ctx)
        for cg, tg in ds.batches(4):
            m = tr.step(cg, tg)
            self.assertFalse(m.skipped)
        with self.assertRaises(IndexError):
            ds[16]

    def test_dataset_batches_augmented(self):
        ds = vqjepa.Dataset.synthetic(self.ctx, num_examples=16, seed=3)
        order = tolist(ds.shuffle(5, 2))
        plain = list(ds.batches(8, epoch=2, seed=5))
        self.assertEqual(plain[0][1][0], ds[order[0]][1])  # unaugmented: the dataset's grids
        aug = {"mask_ratio": 0.3}
        big = list(ds.batches(8, epoch=2, seed=5, augment=aug))
        small = list(ds.batches(4, epoch=2, seed=5, augment=aug))
        # Each example's augmentation depends on (seed, epoch, index) only,
        # not on the batch it lands in.
        self.assertEqual([g.cells for g in big[0][1]],
                         [g.cells for g in small[0][1] + small[1][1]])
        self.assertEqual([g.cells for g in big[0][0]],
                         [g.cells for g in small[0][0] + small[1][0]])
        self.assertEqual([g.shape for g in big[0][1]], [g.shape for g in plain[0][1]])
        self.assertNotEqual([g.cells for g in big[0][0]], [g.cells for g in plain[0][0]])
        other = list(ds.batches(8, epoch=3, seed=5, augment=aug))
        self.assertNotEqual([g.cells for g in other[0][0]], [g.cells for g in big[0][0]])
        # The grids of an earlier batch stay valid after later ones are made.
        first = big[0][1][0].cells
        list(ds.batches(8, epoch=2, seed=5, augment=aug))
        self.assertEqual(big[0][1][0].cells, first)
        self.assertEqual(vqjepa.augment_seed(123, 0, 0), 8518901915975844544)  # as in C
        with self.assertRaises(vqjepa.InvalidArgumentError):
            list(ds.batches(4, augment={"mask_ratio": 2.0}))
        with self.assertRaises(vqjepa.InvalidArgumentError):
            list(ds.batches(4, augment={"no_such_field": 1}))

    def test_arc_task(self):
        task = vqjepa.ArcTask(self.ctx, json_text='{"train":[{"input":[[1,2]],"output":[[3]]}],'
                                                  '"test":[{"input":[[4]]}]}', name="t")
        self.assertEqual(task.name, "t")
        (i, o), = task.train
        self.assertEqual(i.to_list(), [[1, 2]])
        self.assertEqual(task.test[0][1], None)
        with self.assertRaises(vqjepa.ParseError) as cm:
            vqjepa.ArcTask(self.ctx, json_text='{"train": [', name="broken")
        self.assertIn("broken", str(cm.exception))
        with self.assertRaises(vqjepa.FileError) as cm:
            vqjepa.ArcTask(self.ctx, path="/no/such/task.json")
        self.assertIn("/no/such/task.json", str(cm.exception))
        self.assertIsInstance(cm.exception, OSError)

    def test_embedding_metrics(self):
        rows = [[float((i * 7 + j * 3) % 5) for j in range(4)] for i in range(20)]
        m = vqjepa.embedding_metrics(self.ctx, rows)
        self.assertEqual(m["samples"], 20)
        self.assertGreaterEqual(m["effective_rank"], 1.0)


class TestDiagnosticsAndConfig(unittest.TestCase):
    def setUp(self):
        self.ctx = vqjepa.Context(seed=7, num_threads=1)

    def tearDown(self):
        self.ctx.close()

    def test_metrics_window(self):
        tr = small_trainer(self.ctx)
        w = vqjepa.MetricsWindow(self.ctx, dim=16, max_samples=32, num_codes=16)
        for m in train_steps(tr, 4):
            w.add_projections(tr.context_projections(), tr.target_projections())
            w.add_codes(tr.codes())
        self.assertEqual(len(w), 16)
        r = w.compute()
        self.assertEqual(r["context"]["samples"], 16)
        self.assertEqual(r["num_codes"], 16)
        self.assertGreater(r["active_codes"], 0)
        self.assertAlmostEqual(r["usage_ratio"], r["active_codes"] / 16, places=6)
        w.reset()
        self.assertEqual(len(w), 0)
        with self.assertRaises(vqjepa.InvalidArgumentError):
            w.add_codes([99])  # >= K

    def test_config(self):
        cfg = vqjepa.Config(self.ctx, text="object_encoder:\n  hidden_dim: 32\n"
                                            "  relational_heads: 4\n", name="t.yaml")
        self.assertEqual(cfg.params("encoder")["hidden_dim"], 32)
        self.assertEqual(cfg.params("codebook")["dim"], 32)
        self.assertIn("hidden_dim: 32", cfg.to_yaml())
        self.assertIsInstance(cfg.run()["run_name"], str)
        tr = cfg.trainer()
        self.assertEqual(tr.encoder.params.hidden_dim, 32)
        with self.assertRaises(vqjepa.InvalidArgumentError) as cm:
            vqjepa.Config(self.ctx, text="training:\n  epochs: 0\n", name="bad.yaml")
        self.assertIn("bad.yaml", str(cm.exception))


class TestLifetimes(unittest.TestCase):
    def test_close_in_any_order(self):
        ctx = vqjepa.Context(num_threads=1)
        tr = small_trainer(ctx)
        enc = tr.encoder
        ctx.close()   # the trainer keeps the context alive
        enc.close()   # ... and the encoder it borrows
        m = tr.step(some_grids(6, 1), some_grids(2, 2))
        self.assertFalse(m.skipped)
        with self.assertRaises(vqjepa.StateError):
            enc.weights
        w = tr.predictor.weights
        del tr
        gc.collect()
        self.assertGreater(len(w), 0)  # the view keeps its predictor alive
        del w
        gc.collect()

    def test_threads_share_a_trainer(self):
        ctx = vqjepa.Context(num_threads=1)
        tr = small_trainer(ctx)
        errors = []

        def work(seed):
            try:
                for s in range(2):
                    tr.step(some_grids(6, seed + s), some_grids(2, seed + s + 1))
                    tr.encoder.weights["feature_mlp.fc1.weight"]
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(k * 10,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(tr.counters[0], 6)
        ctx.close()


class TestCheckpoints(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.ctx = vqjepa.Context(seed=7, num_threads=1)

    def tearDown(self):
        self.ctx.close()
        shutil.rmtree(self.tmp)

    def test_trainer_save_and_load(self):
        a = small_trainer(self.ctx)
        train_steps(a, 2)
        path = os.path.join(self.tmp, "a.safetensors")
        a.save(path, config="seed: 7\n", metadata={"epoch": 3})
        self.assertEqual(vqjepa.checkpoint_metadata(self.ctx, path, "epoch"), "3")
        self.assertEqual(vqjepa.checkpoint_metadata(self.ctx, path, "config"), "seed: 7\n")
        vqjepa.verify_checkpoint(self.ctx, path)

        other = vqjepa.Context(seed=7, num_threads=1)
        b = small_trainer(other)
        b.load(path)
        for part in ("encoder", "codebook", "predictor", "loss"):
            wa, wb = getattr(a, part).weights, getattr(b, part).weights
            for name in wa.names():
                self.assertEqual(tolist(wa[name]), tolist(wb[name]), name)
        self.assertEqual(b.optimizer.steps, a.optimizer.steps)
        self.assertEqual(b.counters, a.counters)
        # both continue identically
        ma, mb = train_steps(a, 2, seed=5), train_steps(b, 2, seed=5)
        self.assertEqual([m.loss for m in ma], [m.loss for m in mb])
        other.close()

    def test_save_pending_gradient_is_a_state_error(self):
        a = small_trainer(self.ctx)
        train_steps(a, 1)  # half an accumulation cycle
        with self.assertRaises(vqjepa.StateError) as cm:
            a.save(os.path.join(self.tmp, "p.safetensors"))
        self.assertTrue(str(cm.exception))

    def test_generic_checkpoint_and_errors(self):
        enc = vqjepa.Encoder(self.ctx, hidden_dim=16, relational_layers=1, relational_heads=2)
        cb = vqjepa.Codebook(self.ctx, num_embeddings=8, dim=16)
        path = os.path.join(self.tmp, "g.safetensors")
        vqjepa.save_checkpoint(self.ctx, path, {"encoder.": enc, "": cb.weights},
                               metadata={"note": "x"})
        enc2 = vqjepa.Encoder(vqjepa.Context(seed=99), hidden_dim=16, relational_layers=1,
                              relational_heads=2)
        # another context: make one from ours instead
        enc2 = vqjepa.Encoder(self.ctx, hidden_dim=16, relational_layers=1, relational_heads=2)
        enc2.weights["feature_mlp.fc1.bias"] = [1.0] * 16
        with self.assertRaises(vqjepa.InvalidArgumentError):
            vqjepa.load_checkpoint(self.ctx, path, {"encoder.": enc2})  # extra codebook tensors
        vqjepa.load_checkpoint(self.ctx, path, {"encoder.": enc2}, allow_extra=True)
        self.assertEqual(tolist(enc2.weights["feature_mlp.fc1.bias"]),
                         tolist(enc.weights["feature_mlp.fc1.bias"]))
        with open(path, "r+b") as f:  # flip a byte of the data
            f.seek(-3, os.SEEK_END)
            b = f.read(1)
            f.seek(-3, os.SEEK_END)
            f.write(bytes([b[0] ^ 0x40]))
        with self.assertRaises(vqjepa.ParseError) as cm:
            vqjepa.verify_checkpoint(self.ctx, path)
        self.assertIn(path, str(cm.exception))
        with self.assertRaises(vqjepa.FileError):
            vqjepa.verify_checkpoint(self.ctx, os.path.join(self.tmp, "missing.safetensors"))

    def _read_with_pypi_safetensors(self, path):
        """{name: (shape, flat floats)} by PyPI's safetensors package."""
        if np is not None:
            out = {}
            with safetensors.safe_open(path, framework="numpy") as f:
                for k in f.keys():
                    t = f.get_tensor(k)
                    self.assertEqual(t.dtype, np.float32)
                    out[k] = (tuple(t.shape), t.reshape(-1).tolist())
            return out
        out = {}
        with open(path, "rb") as f:
            data = f.read()
        for name, t in safetensors.deserialize(data):
            self.assertIn(t["dtype"], ("F32", "float32"))
            raw = bytes(t["data"])
            out[name] = (tuple(t["shape"]), list(struct.unpack("<%df" % (len(raw) // 4), raw)))
        return out

    @unittest.skipIf(safetensors is None, "the safetensors package (PyPI) is not installed")
    def test_pypi_safetensors_reads_the_same_arrays(self):
        tr = small_trainer(self.ctx)
        train_steps(tr, 2)
        path = os.path.join(self.tmp, "t.safetensors")
        tr.save(path)
        tensors = self._read_with_pypi_safetensors(path)
        expected = {}
        for prefix, w in (("encoder.", tr.encoder.weights), ("", tr.codebook.weights),
                          ("predictor.", tr.predictor.weights), ("", tr.loss.weights),
                          ("optimizer.", tr.optimizer.state),
                          ("target_encoder.", tr.target_encoder_weights),
                          ("target_predictor.", tr.target_predictor_weights)):
            for name, shape, _ in w.info():
                v = w[name]
                flat = v.reshape(-1).tolist() if np is not None else \
                    (v if len(shape) <= 1 else [x for row in v for x in row])
                expected[prefix + name] = (shape, flat)
        self.assertEqual(sorted(tensors), sorted(expected))
        for name, (shape, flat) in expected.items():
            got_shape, got = tensors[name]
            self.assertEqual(got_shape, shape, name)
            self.assertEqual(got, flat, name)  # bit for bit (float32 both ways)
        if hasattr(safetensors, "safe_open") and np is not None:
            with safetensors.safe_open(path, framework="numpy") as f:
                meta = f.metadata()
            self.assertEqual(meta["format"], "vqjepa-checkpoint-1")
            self.assertEqual(meta["optimizer.steps"], "1")


SMALL_YAML = ("seed: 9\ntokenizer:\n  max_objects: 16\nobject_encoder:\n  hidden_dim: 32\n"
              "  num_embeddings: 16\n  relational_layers: 1\n  relational_heads: 4\n"
              "model:\n  projection_dim: 16\ntraining:\n  grad_accum_steps: 1\n"
              "loss:\n  queue_size: 32\nsigreg:\n  num_slices: 16\n")


class TestOneCall(unittest.TestCase):
    """Trainer.from_config, Trainer.model (as in C) and Model.load."""

    def test_from_config_seed_and_load(self):
        ctx = vqjepa.Context(seed=1, num_threads=1)
        other = vqjepa.Context(seed=2, num_threads=1)
        cfg = vqjepa.Config(ctx, text=SMALL_YAML)
        a = vqjepa.Trainer.from_config(ctx, cfg)
        b = cfg.trainer(other)
        # the configuration's seed, not the context's
        name = "feature_mlp.fc1.weight"
        self.assertEqual(tolist(a.encoder.weights[name]), tolist(b.encoder.weights[name]))
        self.assertEqual(a.codebook.params.num_embeddings, 16)
        train_steps(a, 2)
        live = a.model()
        codes0, emb0 = live.encode(README_GRID)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.safetensors")
            a.save(path)  # the configuration goes with it
            loaded = vqjepa.Model.load(ctx, path)
            codes1, emb1 = loaded.encode(README_GRID)
            self.assertEqual(tolist(codes0), tolist(codes1))
            self.assertEqual(tolist(emb0), tolist(emb1))
            few = loaded.with_tokenizer(max_objects=1)
            self.assertEqual(few.max_objects, 1)
            self.assertEqual(len(tolist(few.encode(README_GRID)[0])), 1)
            few.close()
            loaded.close()
        # Trainer.model() borrows the trainer's parts, as vqj_model_from_trainer:
        # later steps change what it computes.
        train_steps(a, 3, seed=5)
        self.assertNotEqual(tolist(live.encode(README_GRID)[1]), tolist(emb0))
        with self.assertRaises(vqjepa.FileError):
            vqjepa.Model.load(ctx, "/nonexistent/x.safetensors")
        cfg.set("seed", 3)
        cfg.set("training.device", "cpu")
        self.assertEqual(cfg.run()["seed"], 3)
        with self.assertRaises(vqjepa.InvalidArgumentError):
            cfg.set("training.epochs", 0)
        live.close()
        for h in (a, b, cfg, ctx, other):
            h.close()


class TestModel(unittest.TestCase):
    def setUp(self):
        self.ctx = vqjepa.Context(seed=7, num_threads=1)
        self.tr = small_trainer(self.ctx)
        train_steps(self.tr, 2)
        self.model = self.tr.model()

    def tearDown(self):
        self.model.close()
        self.ctx.close()

    def test_encode(self):
        m = self.model
        self.assertEqual((m.embedding_dim, m.context_window, m.num_codes, m.max_objects),
                         (16, 3, 16, 16))
        codes, emb = m.encode(README_GRID)
        codes = tolist(codes)
        self.assertEqual(len(codes), 2)
        self.assertTrue(all(0 <= c < 16 for c in codes))
        emb = tolist(emb)
        self.assertEqual(len(emb), 16)
        self.assertAlmostEqual(sum(x * x for x in emb), 1.0, places=5)
        # the same as the stage calls with training = 0
        tokens = self.ctx.tokenize([README_GRID])
        z = self.tr.encoder.forward(tokens)
        _, stage_codes, _ = self.tr.codebook.forward(z)
        self.assertEqual(tolist(stage_codes), codes)
        # one level: the index and the tuple are the codes
        self.assertEqual(m.num_quantizers, 1)
        self.assertEqual(m.encode_levels(README_GRID), (codes, [[c] for c in codes]))
        self.assertEqual(m.encode([[0, 0], [0, 0]])[0] if np is None else
                         tolist(m.encode([[0, 0], [0, 0]])[0]), [])
        with self.assertRaises(vqjepa.InvalidArgumentError) as cm:
            m.encode([[1, 12]])
        self.assertIn("12", str(cm.exception))

    def test_evaluate(self):
        task = vqjepa.ArcTask(self.ctx, json_text=json.dumps(
            {"train": [{"input": [[1, 0], [0, 0]], "output": [[1, 1], [0, 0]]},
                       {"input": [[0, 2], [0, 0]], "output": [[0, 2], [0, 2]]}],
             "test": [{"input": [[3, 0, 0]], "output": [[3, 3, 3]]}]}))
        s = vqjepa.EvalSet(self.ctx, tasks=[task], context_window=3)
        self.assertEqual((len(s), s.num_candidates, s.context_window), (3, 3, 3))
        r = s.evaluate(self.model)
        self.assertEqual((r["queries"], r["candidates"], r["num_codes"]), (3, 3, 16))
        self.assertAlmostEqual(r["chance"], 1 / 3)
        self.assertTrue(0 <= r["top1"] <= r["top5"] <= 1)
        self.assertGreater(r["objects"], 0)
        a = s.baseline("analogy")
        self.assertEqual(a["objects"], 0)
        self.assertTrue(0 <= a["hard_top1"] <= 1)
        with self.assertRaises(vqjepa.InvalidArgumentError):
            s.baseline("model")
        s.close()

    def test_batch_predict_and_distance(self):
        m = self.model
        grids = some_grids(5, 3)
        per_grid, embs = m.encode_batch(grids)
        self.assertEqual(len(per_grid), 5)
        self.assertEqual(len(tolist(embs)), 5)
        ctx_grids = some_grids(3, 4)
        p = m.predict(ctx_grids)
        pb = m.predict_batch(ctx_grids + some_grids(3, 5))
        self.assertEqual(len(tolist(pb)), 2)
        self.assertEqual(vqjepa.latent_distance(p, p), 0.0)
        d = vqjepa.latent_distance(p, tolist(embs)[0])
        self.assertTrue(0.0 <= d <= 4.0)
        self.assertAlmostEqual(vqjepa.latent_distance([1, 0], [0, 1]), 2.0, places=6)
        self.assertAlmostEqual(vqjepa.latent_distance([1, 0], [-3, 0]), 4.0, places=6)
        with self.assertRaises(vqjepa.NumericError):
            vqjepa.latent_distance([1, float("inf")], [1, 0])
        with self.assertRaises(vqjepa.InvalidArgumentError):
            m.predict(some_grids(2, 0))  # T is 3

    def test_threads(self):
        m = self.model
        grids = some_grids(8, 6)
        want = [tolist(m.encode(g)[1]) for g in grids]
        results, errors = {}, []

        def work(k):
            try:
                for i, g in enumerate(grids):
                    results[(k, i)] = tolist(m.encode(g)[1])
            except Exception as e:  # pragma: no cover
                errors.append(e)
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for (k, i), emb in results.items():
            self.assertEqual(emb, want[i])  # bit-identical whatever the thread


if __name__ == "__main__":
    unittest.main()
