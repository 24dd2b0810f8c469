"""The `vqjepa bench` train_step measurement on the PyTorch reference.

Run:  /usr/bin/python3 tools/reference/bench_ref.py [--data DIR] [--batch B]
          [--steps N] [--warmup W] [--variant core|full] [--threads T] [--json]
          [--view-backward together|each] [--lib lib/libvqjepa.so] [--self-check]
          [--device cpu|cuda] [--compile]

Prints one line per run, as `vqjepa bench --only train_step --json` does,
with "impl":"pytorch":
  {"what":"train_step","impl":"pytorch","variant":"core","batch":256,
   "threads":2,"ms_per_step":x,"samples_per_s":y,"max_rss_mib":m}

What is timed is one training step of the reference configuration (DESIGN.md
section 6's "gentle" run: D 384, K 768, 3 relational layers x 8 heads, dropout
0.1, P 256 x 2 ReLU layers, queue 8192, InfoNCE with learnable temperature,
relational 0.025 / 0.01, commitment 0.15 with codebook EMA 0.95, SIGReg 0.1 x
1024 slices x 17 points, invariance 0.1 / 0.05 / 0.05, Adam 5e-5, clip 0.5,
target EMA 0.99), written the way the original system computes it: padded
tokens [G, M=16, F] with a mask and an adjacency matrix, batched attention
with the mask ((adj | eye) & key_real) | eye, quantization of the real tokens
only (vqjepa_ref.quantize / ema_update), and one backward of the summed loss.
A step is one micro-batch of B examples with the optimizer step, the target
EMA and the queue push (grad_accum_steps = 1), as on the C side.

Same data as the C side: the library itself (ctypes over lib/libvqjepa.so)
builds the examples (vqj_dataset_from_arc, or vqj_dataset_synthetic without
ARC data), visits them in the same order (vqj_dataset_shuffle with the context
seed, epoch 0) and tokenizes them into the padded layout (vqj_tokens_padded;
the C tokenizer matches vqjepa_ref.tokenize_grid, tests/test_tokenizer.c).
All of this happens before timing: the original system trained on
pre-tokenized data, so the padded tensors of every step are in memory first.
The "full" variant's palette and flip views are re-tokenized grids, so they are
also tokenized before timing here; the C trainer builds and tokenizes them
inside its timed step. The translation view (a shift of the coordinate
features) is computed inside the step on both sides.

Variants: "full" is the reference configuration; "core" sets the SIGReg and
the invariance weights to 0 (those terms are then not computed at all).

Pieces imported rather than rewritten: vqjepa_ref.quantize and ema_update (the
codebook), loss_ref.infonce and loss_ref.sigreg (run in float32), plus the
explicit layers of vqjepa_ref for --self-check. The layers themselves use
PyTorch's built-ins (F.linear, F.layer_norm, F.gelu, F.dropout, softmax), the
way a PyTorch model is normally written; --self-check shows they compute
vqjepa_ref.encode_padded exactly, and that the padded relational loss equals
loss_ref.relational (whose per-grid Python loop would be a strawman to time).

train_ref.py (the parity test's whole step) is not used: it computes in
float64 on the packed layout with per-grid Python loops and no dropout, right
for bit-level parity and wrong for timing.

--view-backward each runs the backward of every invariance view right after
its forward (as the C trainer does) instead of one backward of the summed
loss: less peak memory, the same gradient. Its JSON line carries
"view_backward":"each" (tools/bench_table.py leaves such lines out).

--device cuda runs the step on the GPU (PyTorch 2.0 or later: the losses
imported from loss_ref make their constants with the default device, which
torch.set_default_device then sets). The data, parameters and state are
built on the CPU as before, then moved; the random draws inside the step
(SIGReg directions, translation shifts) come from a generator on the GPU.
Step times wait for the GPU (torch.cuda.synchronize). --compile wraps the
encoder and the projection head in torch.compile (PyTorch 2.0 or later;
compilation happens in the warm-up steps). Their JSON lines carry "device"
and "compile"; "max_gpu_mib" is torch.cuda.max_memory_allocated.
"""

import argparse
import ctypes
import math
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "arc-agi-1", "data", "training")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="folder of ARC task files (default: %s when present, "
                    "else the built-in synthetic data)" % os.path.normpath(DEFAULT_DATA))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    ap.add_argument("--variant", choices=("core", "full"), default="full")
    ap.add_argument("--threads", type=int, default=0, help="0 (default): all cores")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--view-backward", choices=("together", "each"), default="together")
    ap.add_argument("--lib", default=os.path.join(ROOT, "lib", "libvqjepa.so"))
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the encoder and head (PyTorch >= 2.0)")
    ap.add_argument("--self-check", action="store_true",
                    help="check the layers and losses against vqjepa_ref / loss_ref, then exit")
    a = ap.parse_args()
    if a.batch < 2 or a.steps < 1 or a.warmup < 0 or a.threads < 0:
        ap.error("--batch needs >= 2, --steps >= 1, --warmup and --threads >= 0")
    if a.threads == 0:
        a.threads = os.cpu_count() or 1
    return a


ARGS = parse_args()
# Thread counts are read when the libraries load: OpenMP (PyTorch's own
# kernels) and OpenBLAS (its GEMMs on Debian's build, the same library the C
# side calls).
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)


def openblas_kernels():
    """Pick OpenBLAS's kernels as bin/vqjepa does (tools/main.c), so that both
    sides run the same GEMM code: Debian's OpenBLAS 0.3.21 falls back to its
    SSE3 "Prescott" kernels on CPUs it does not know (docs/benchmarks.md)."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    probe = subprocess.run(
        [sys.executable, "-c", "import ctypes; l = ctypes.CDLL('libopenblas.so.0'); "
         "l.openblas_get_corename.restype = ctypes.c_char_p; "
         "print(l.openblas_get_corename().decode())"],
        capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip().lower() != "prescott":
        return
    with open("/proc/cpuinfo") as f:
        flags = f.read().split()
    want = "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None
    if want:
        os.environ["OPENBLAS_CORETYPE"] = want


openblas_kernels()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, HERE)
import loss_ref  # noqa: E402
import vqjepa_ref as ref  # noqa: E402

torch.set_num_threads(ARGS.threads)  # loss_ref sets 1 at import
loss_ref.DT = torch.float32  # its SIGReg quadrature points in float32, like the model

# The reference configuration (DESIGN.md section 6; the C defaults).
CFG = dict(F=23, D=384, heads=8, layers=3, dropout=0.1, K=768, beta=0.15, ema_decay=0.95,
           P=256, T=3, M=16, queue=8192, tau=0.07, tau_min=0.05, tau_max=0.20,
           w_rel=0.025, w_self=0.01, sigreg=0.1, slices=1024, points=17,
           w_color=0.1, w_translation=0.05, w_symmetry=0.05, translation_delta=0.1,
           lr=5e-5, weight_decay=1e-6, clip=0.5, warmup_steps=1000, total_steps=1500,
           min_lr_scale=0.1, target_ema=0.99, seed=123)


# ----------------------------------------------------------------------------
# Data through the C library (outside timing)
# ----------------------------------------------------------------------------

class Grid(ctypes.Structure):
    _fields_ = [("height", ctypes.c_int), ("width", ctypes.c_int),
                ("cells", ctypes.POINTER(ctypes.c_uint8))]


class ContextParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("device", ctypes.c_int),
                ("device_index", ctypes.c_int), ("num_threads", ctypes.c_int),
                ("seed", ctypes.c_uint64), ("log_fn", ctypes.c_void_p),
                ("log_user_data", ctypes.c_void_p), ("log_level", ctypes.c_int),
                ("_room", ctypes.c_char * 256)]  # fields a newer library may add


class SyntheticParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("num_examples", ctypes.c_int),
                ("_room", ctypes.c_char * 256)]


class Library:
    """The few public calls of libvqjepa the data preparation needs."""

    def __init__(self, path, threads, seed):
        L = ctypes.CDLL(path)
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        L.vqj_last_error.restype = ctypes.c_char_p
        L.vqj_dataset_num_examples.restype = sz
        L.vqj_dataset_num_examples.argtypes = [vp]
        L.vqj_dataset_context_window.argtypes = [vp]
        L.vqj_dataset_shuffle.argtypes = [vp, ctypes.c_uint64, ctypes.c_int64,
                                          ctypes.POINTER(sz)]
        L.vqj_dataset_example.argtypes = [vp, sz, ctypes.POINTER(ctypes.POINTER(Grid)),
                                          ctypes.POINTER(ctypes.POINTER(Grid))]
        L.vqj_dataset_from_arc.argtypes = [vp, vp, ctypes.c_char_p, ctypes.POINTER(vp)]
        L.vqj_dataset_synthetic.argtypes = [vp, vp, vp, ctypes.POINTER(vp)]
        L.vqj_tokens_create.argtypes = [vp, vp, ctypes.POINTER(vp)]
        L.vqj_tokenize.argtypes = [vp, vp, ctypes.POINTER(Grid), sz]
        L.vqj_tokens_padded.argtypes = [vp, vp, sz, vp, vp, vp]
        L.vqj_tokens_feature_dim.argtypes = [vp]
        L.vqj_tokens_num_objects.restype = sz
        L.vqj_tokens_num_objects.argtypes = [vp]
        L.vqj_view_palette.argtypes = [vp, ctypes.c_uint64, ctypes.c_uint16,
                                       ctypes.POINTER(Grid), ctypes.POINTER(ctypes.c_uint8)]
        L.vqj_view_flip.argtypes = [vp, ctypes.POINTER(Grid), ctypes.c_int,
                                    ctypes.POINTER(ctypes.c_uint8)]
        for name in ("vqj_context_destroy", "vqj_dataset_destroy", "vqj_tokens_destroy"):
            getattr(L, name).argtypes = [vp]
        self.L = L
        p = ContextParams()
        L.vqj_context_params_default(ctypes.byref(p))
        p.num_threads = threads
        p.seed = seed
        self.ctx = vp()
        if L.vqj_context_create(ctypes.byref(p), ctypes.byref(self.ctx)) != 0:
            raise RuntimeError("vqj_context_create: " + L.vqj_last_error().decode())
        self.tp = ctypes.create_string_buffer(512)  # vqj_tokenizer_params, defaults
        L.vqj_tokenizer_params_default(self.tp)
        self.tokens = vp()
        self.check(L.vqj_tokens_create(self.ctx, self.tp, ctypes.byref(self.tokens)))
        self.F = L.vqj_tokens_feature_dim(self.tokens)
        self.M = ctypes.cast(self.tp, ctypes.POINTER(ctypes.c_int))[2]  # after the size_t

    def check(self, status):
        if status != 0:
            raise RuntimeError(self.L.vqj_last_error().decode())

    def dataset(self, data_dir, num_examples):
        dp = ctypes.create_string_buffer(512)
        self.L.vqj_dataset_params_default(dp)
        ds = ctypes.c_void_p()
        if data_dir:
            self.check(self.L.vqj_dataset_from_arc(self.ctx, dp, data_dir.encode(),
                                                   ctypes.byref(ds)))
        else:
            sp = SyntheticParams()
            self.L.vqj_synthetic_params_default(ctypes.byref(sp))
            sp.num_examples = num_examples
            self.check(self.L.vqj_dataset_synthetic(self.ctx, dp, ctypes.byref(sp),
                                                    ctypes.byref(ds)))
        return ds

    def padded(self, grids):
        """Tokenize a list of Grid into (features [G,M,F], mask [G,M], adj [G,M,M])."""
        G = len(grids)
        arr = (Grid * G)(*grids)
        self.check(self.L.vqj_tokenize(self.ctx, self.tokens, arr, G))
        f = np.zeros((G, self.M, self.F), np.float32)
        m = np.zeros((G, self.M), np.float32)
        a = np.zeros((G, self.M, self.M), np.float32)
        for g in range(G):
            self.check(self.L.vqj_tokens_padded(self.ctx, self.tokens, g, f[g].ctypes.data,
                                                 m[g].ctypes.data, a[g].ctypes.data))
        n = self.L.vqj_tokens_num_objects(self.tokens)
        return (torch.from_numpy(f), torch.from_numpy(m) > 0.5, torch.from_numpy(a) > 0.5), n

    def view(self, grids, kind, seed, group):
        """Palette or flip view of grids; the grids of one example (`group`
        consecutive ones) share the permutation or the flip, as in the C trainer."""
        out, keep = [], []
        rng = np.random.default_rng(seed)
        horizontal = 0
        for i, g in enumerate(grids):
            cells = (ctypes.c_uint8 * (g.height * g.width))()
            if i % group == 0:
                example_seed = int(rng.integers(0, 2 ** 63))
                horizontal = int(rng.integers(0, 2))
            if kind == "palette":
                self.check(self.L.vqj_view_palette(self.ctx, example_seed, 1, ctypes.byref(g),
                                                   cells))
            else:
                self.check(self.L.vqj_view_flip(self.ctx, ctypes.byref(g), horizontal, cells))
            keep.append(cells)
            out.append(Grid(g.height, g.width, ctypes.cast(cells, ctypes.POINTER(ctypes.c_uint8))))
        return out, keep

    def close(self):
        self.L.vqj_tokens_destroy(self.tokens)
        self.L.vqj_context_destroy(self.ctx)


def load_batches(args):
    """The padded tensors of every step, built before timing."""
    data_dir = args.data
    if data_dir is None and os.path.isdir(DEFAULT_DATA):
        data_dir = DEFAULT_DATA
    lib = Library(args.lib, args.threads, CFG["seed"])
    total = args.warmup + args.steps
    ds = lib.dataset(data_dir, max(1, args.batch * total))
    n = lib.L.vqj_dataset_num_examples(ds)
    T = lib.L.vqj_dataset_context_window(ds)
    assert T == CFG["T"] and lib.M == CFG["M"] and lib.F == CFG["F"]
    order = (ctypes.c_size_t * n)()
    lib.check(lib.L.vqj_dataset_shuffle(ds, CFG["seed"], 0, order))
    batches, tokens = [], 0
    for s in range(total):
        ctx_grids, tgt_grids = [], []
        for e in range(args.batch):
            cg, tg = ctypes.POINTER(Grid)(), ctypes.POINTER(Grid)()
            lib.check(lib.L.vqj_dataset_example(ds, order[(s * args.batch + e) % n],
                                                ctypes.byref(cg), ctypes.byref(tg)))
            ctx_grids += [cg[k] for k in range(T)]
            tgt_grids.append(tg[0])
        b = {}
        b["ctx"], nc = lib.padded(ctx_grids)
        b["tgt"], _ = lib.padded(tgt_grids)
        if s >= args.warmup:
            tokens += nc
        if args.variant == "full":
            for kind in ("palette", "flip"):
                seed = CFG["seed"] * 1000003 + s * 7 + (kind == "flip")
                vc, keep_c = lib.view(ctx_grids, kind, seed, T)
                vt, keep_t = lib.view(tgt_grids, kind, seed + 1, 1)
                b[kind + ".ctx"], _ = lib.padded(vc)
                b[kind + ".tgt"], _ = lib.padded(vt)
                del keep_c, keep_t
        batches.append(b)
    lib.L.vqj_dataset_destroy(ds)
    lib.close()
    return batches, tokens / args.steps, data_dir


# ----------------------------------------------------------------------------
# The model (padded, as the original system)
# ----------------------------------------------------------------------------

def init_params(g):
    """PyTorch's default Linear init (docs/model.md "Initialization")."""
    D, F_, P = CFG["D"], CFG["F"], CFG["P"]

    def lin(name, out, inp):
        bound = 1.0 / math.sqrt(inp)
        params[name + ".weight"] = (torch.rand(out, inp, generator=g) * 2 - 1) * bound
        params[name + ".bias"] = (torch.rand(out, generator=g) * 2 - 1) * bound

    params = {}
    lin("feature_mlp.fc1", D, F_)
    lin("feature_mlp.fc2", D, D)
    for l in range(CFG["layers"]):
        p = "relational.%d." % l
        for ln in ("ln1", "ln2"):
            params[p + ln + ".weight"] = torch.ones(D)
            params[p + ln + ".bias"] = torch.zeros(D)
        lin(p + "attn.qkv", 3 * D, D)
        lin(p + "attn.out", D, D)
        lin(p + "ffn.fc1", 2 * D, D)
        lin(p + "ffn.fc2", D, 2 * D)
    lin("head.0", P, D)
    lin("head.1", P, P)
    return params


def allowed_mask(mask, adj):
    """Attention mask of the padded layout: ((adj | eye) & key_real) | eye."""
    M = mask.shape[1]
    eye = torch.eye(M, dtype=torch.bool, device=mask.device)
    return ((adj | eye) & mask.unsqueeze(1)) | eye


def encoder(x, allowed, P, train):
    """x [G, M, F] -> z [G, M, D]; F.* built-ins, the math of ref.encode_padded."""
    G, M, _ = x.shape
    D, H = CFG["D"], CFG["heads"]
    dh = D // H
    drop = CFG["dropout"] if train else 0.0
    h = F.linear(F.gelu(F.linear(x, P["feature_mlp.fc1.weight"], P["feature_mlp.fc1.bias"])),
                 P["feature_mlp.fc2.weight"], P["feature_mlp.fc2.bias"])
    blocked = ~allowed.unsqueeze(1)  # [G, 1, M, M]
    for l in range(CFG["layers"]):
        p = "relational.%d." % l
        a = F.layer_norm(h, (D,), P[p + "ln1.weight"], P[p + "ln1.bias"], ref.LN_EPS)
        qkv = F.linear(a, P[p + "attn.qkv.weight"], P[p + "attn.qkv.bias"])
        q, k, v = qkv.view(G, M, 3, H, dh).permute(2, 0, 3, 1, 4)  # each [G, H, M, dh]
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        att = torch.softmax(s.masked_fill(blocked, float("-inf")), -1)
        o = (att @ v).transpose(1, 2).reshape(G, M, D)
        h = h + F.dropout(F.linear(o, P[p + "attn.out.weight"], P[p + "attn.out.bias"]), drop)
        f = F.layer_norm(h, (D,), P[p + "ln2.weight"], P[p + "ln2.bias"], ref.LN_EPS)
        f = F.gelu(F.linear(f, P[p + "ffn.fc1.weight"], P[p + "ffn.fc1.bias"]))
        h = h + F.dropout(F.linear(f, P[p + "ffn.fc2.weight"], P[p + "ffn.fc2.bias"]), drop)
    return h


def quantize_padded(z, mask, E):
    """Real tokens only: (q padded [G, M, D] straight-through, z_real, idx, commitment)."""
    z_real = z[mask]
    q, idx, _, commit = ref.quantize(z_real, E, CFG["beta"])
    G, M, D = z.shape
    qpad = z.new_zeros((G, M, D)).masked_scatter(mask.unsqueeze(-1).expand(G, M, D), q)
    return qpad, z_real, idx, commit


def grid_means(qpad, mask):
    cnt = mask.sum(1, keepdim=True).to(qpad.dtype)
    return qpad.sum(1) / torch.clamp(cnt, min=1.0)


def head(x, P):
    for i in range(2):
        x = torch.relu(F.linear(x, P["head.%d.weight" % i], P["head.%d.bias" % i]))
    return F.normalize(x, dim=-1, eps=ref.L2_EPS)


def predictor_context(qpad, mask, P):
    r = grid_means(qpad, mask)
    return head(r.view(-1, CFG["T"], r.shape[-1]).mean(1), P)


def predictor_grids(qpad, mask, P):
    return head(grid_means(qpad, mask), P)


def relation(qpad, mask, adj):
    """r [G, M, M] = ||h_i - h_j||^2 for adjacent real i != j, else 0 (padded)."""
    sq = (qpad * qpad).sum(-1)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * (qpad @ qpad.transpose(1, 2))
    keep = adj & mask.unsqueeze(1) & mask.unsqueeze(2)
    return torch.where(keep, d2, torch.zeros_like(d2))


def relational_loss(qc, ctx, qt, tgt, w_r, w_s):
    M = qc.shape[1]
    rc = relation(qc, ctx[1], ctx[2]).view(-1, CFG["T"], M, M)
    rt = relation(qt, tgt[1], tgt[2])
    rbar = rc.mean(1)
    return w_r * F.mse_loss(rbar, rt) + w_s * ((rc - rbar.unsqueeze(1)) ** 2).mean()


def translate(tok, gen, group):
    """The translation view: coordinate features shifted by one (dy, dx) per example."""
    x, mask, adj = tok
    G = x.shape[0]
    d = CFG["translation_delta"]
    dyx = (torch.rand(G // group, 2, generator=gen, device=gen.device) * 2 - 1) * d
    dyx = dyx.repeat_interleave(group, 0)
    shift = x.new_zeros((G, 1, x.shape[2]))
    shift[:, 0, 7:13:2] = dyx[:, :1]  # centroid y, bbox min y, max y
    shift[:, 0, 8:13:2] = dyx[:, 1:]  # centroid x, bbox min x, max x
    return (x + shift * mask.unsqueeze(-1), mask, adj)


class Trainer:
    def __init__(self, variant, view_backward, device="cpu"):
        g = torch.Generator().manual_seed(CFG["seed"])
        self.full = variant == "full"
        self.view_backward = view_backward
        # Drawn on the CPU (the same values on every device), then moved.
        self.P = {k: v.to(device).requires_grad_(True) for k, v in init_params(g).items()}
        self.target = {k: v.detach().clone() for k, v in self.P.items()}
        K, D = CFG["K"], CFG["D"]
        self.E = ((torch.rand(K, D, generator=g) * 2 - 1) / K).to(device)
        self.ema_count = torch.ones(K, device=device)
        self.ema_sum = self.E.clone()
        self.log_tau = torch.tensor([math.log(CFG["tau"])], device=device, requires_grad=True)
        q = torch.randn(CFG["queue"], CFG["P"], generator=g)
        self.queue = (q / q.norm(dim=1, keepdim=True)).to(device)  # full: the steady state
        self.head = 0
        self.gen = torch.Generator(device=device).manual_seed(CFG["seed"] + 1)
        params = list(self.P.values()) + [self.log_tau]
        self.opt = torch.optim.Adam(params, lr=CFG["lr"], weight_decay=CFG["weight_decay"])

        def lr_scale(step):  # docs/optimizer.md, cosine
            w, t, lo = CFG["warmup_steps"], CFG["total_steps"], CFG["min_lr_scale"]
            if step < w:
                return step / w
            prog = min(1.0, (step - w) / (t - w)) if t > w else 1.0
            return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * prog))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_scale)
        self.params = params
        self.skipped = 0

    def view_loss(self, tok, original, weight):
        """MSE between the view's grid representations (mean token vectors)
        and the original's (DESIGN.md §4)."""
        x, mask, adj = tok
        z = encoder(x, allowed_mask(mask, adj), self.P, True)
        qpad, _, _, _ = quantize_padded(z, mask, self.E)  # codebook not updated
        return weight * F.mse_loss(grid_means(qpad, mask), original)

    def step(self, b):
        ctx, tgt = b["ctx"], b["tgt"]
        # Target path: target network, no dropout, online codebook not updated.
        with torch.no_grad():
            zt = encoder(tgt[0], allowed_mask(tgt[1], tgt[2]), self.target, False)
            qt, _, _, _ = quantize_padded(zt, tgt[1], self.E)
            t = predictor_grids(qt, tgt[1], self.target)
        # Online path.
        z = encoder(ctx[0], allowed_mask(ctx[1], ctx[2]), self.P, True)
        qc, z_real, idx, commit = quantize_padded(z, ctx[1], self.E)
        c = predictor_context(qc, ctx[1], self.P)
        loss = loss_ref.infonce(c, t, self.queue, self.log_tau, CFG["tau_min"], CFG["tau_max"],
                                1.0)
        loss = loss + relational_loss(qc, ctx, qt, tgt, CFG["w_rel"], CFG["w_self"]) + commit
        if self.full:
            dirs = torch.randn(CFG["P"], CFG["slices"], generator=self.gen,
                               device=self.gen.device)
            dirs = dirs / dirs.norm(dim=0, keepdim=True)
            loss = loss + loss_ref.sigreg(c, dirs, CFG["points"], CFG["sigreg"])
        # The codebook's EMA update from this batch's real context tokens.
        with torch.no_grad():
            cnt, sm, e = ref.ema_update(self.ema_count, self.ema_sum, z_real.detach(), idx,
                                        CFG["ema_decay"])
            self.ema_count, self.ema_sum = cnt, sm
            self.E = e
        if self.full:
            views = (("palette", CFG["w_color"]), ("translation", CFG["w_translation"]),
                     ("flip", CFG["w_symmetry"]))
            # the originals: the main pass's context representations (with
            # gradient) and the target path's (constant)
            r0, rt0 = grid_means(qc, ctx[1]), grid_means(qt, tgt[1])
            for kind, w in views:
                if kind == "translation":
                    vc, vt = translate(ctx, self.gen, CFG["T"]), translate(tgt, self.gen, 1)
                else:
                    vc, vt = b[kind + ".ctx"], b[kind + ".tgt"]
                lv = self.view_loss(vc, r0, w) + self.view_loss(vt, rt0, w)
                if self.view_backward == "each":
                    lv.backward(retain_graph=True)  # r0 belongs to the main graph
                else:
                    loss = loss + lv
        if not torch.isfinite(loss):
            self.skipped += 1
            self.opt.zero_grad()
            return float("nan")
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, CFG["clip"])
        if not torch.isfinite(norm):
            self.skipped += 1
            self.opt.zero_grad()
            return float("nan")
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()
        with torch.no_grad():
            d = CFG["target_ema"]
            for k, v in self.P.items():
                self.target[k].mul_(d).add_(v.detach(), alpha=1 - d)
            B = t.shape[0]
            rows = (self.head + torch.arange(B, device=t.device)) % self.queue.shape[0]
            self.queue[rows] = t
            self.head = (self.head + B) % self.queue.shape[0]
        return float(loss)


# ----------------------------------------------------------------------------
# Checks against the reference implementations
# ----------------------------------------------------------------------------

def self_check():
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(3)
    cfg = ref.Config(F=23, D=32, heads=4, layers=3, K=12, P=8, T=3, B=2)
    saved = dict(CFG)
    CFG.update(D=32, heads=4, layers=3, P=8, M=6)
    try:
        P = {k: v.double() for k, v in init_params(g).items()}
        for k in P:
            if "ln" in k:
                P[k] = P[k] + 0.1 * torch.randn(P[k].shape, generator=g)
        G, M = 6, 6
        mask = torch.zeros(G, M, dtype=torch.bool)
        for gi, n in enumerate([3, 0, 1, 6, 4, 2]):
            mask[gi, :n] = True
        adj = (torch.rand(G, M, M, generator=g) < 0.5)
        adj = (adj | adj.transpose(1, 2)) & mask.unsqueeze(1) & mask.unsqueeze(2)
        adj &= ~torch.eye(M, dtype=torch.bool)
        x = torch.randn(G, M, 23, generator=g) * mask.unsqueeze(-1)
        mine = encoder(x, allowed_mask(mask, adj), P, False)
        theirs = ref.encode_padded(x, mask.double(), adj.double(), P, cfg)
        err = float((mine - theirs)[mask].abs().max())
        assert err < 1e-10, "encoder differs from vqjepa_ref.encode_padded: %g" % err
        # Relational: padded vs loss_ref's packed per-grid loop.
        CFG["T"] = 3
        h = torch.randn(G, M, 32, generator=g) * mask.unsqueeze(-1)
        ht = torch.randn(2, M, 32, generator=g) * mask[:2].unsqueeze(-1)
        tok_c, tok_t = (x, mask, adj), (x[:2], mask[:2], adj[:2])
        mine = relational_loss(h, tok_c, ht, tok_t, 0.025, 0.01)

        def packed(hp, m, a):
            counts = m.sum(1).tolist()
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            blocks = [a[i, :n, :n].reshape(-1).numpy().astype(np.uint8)
                      for i, n in enumerate(counts)]
            adj_offsets = np.concatenate([[0], np.cumsum([n * n for n in counts])])
            return hp[m], (offsets, np.concatenate(blocks), adj_offsets.astype(np.int64))

        hc, pc = packed(h, mask, adj)
        htp, pt = packed(ht, mask[:2], adj[:2])
        loss_ref.DT = torch.float64
        theirs = loss_ref.relational(hc, pc, htp, pt, 2, 3, M, 0.025, 0.01)
        assert abs(float(mine) - float(theirs)) < 1e-12 * max(1.0, abs(float(theirs))), \
            (float(mine), float(theirs))
    finally:
        CFG.clear()
        CFG.update(saved)
        loss_ref.DT = torch.float32
        torch.set_default_dtype(torch.float32)
    print("bench_ref self-check: encoder and relational loss match vqjepa_ref / loss_ref")


# ----------------------------------------------------------------------------

def check_device():
    """Whether this PyTorch can do --device and --compile; exits if not."""
    new_torch = hasattr(torch, "set_default_device") and hasattr(torch, "compile")
    if (ARGS.device != "cpu" or ARGS.compile) and not new_torch:
        sys.exit("bench_ref: --device cuda and --compile need PyTorch 2.0 or later (this is %s)"
                 % torch.__version__)
    if ARGS.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_ref: --device cuda: torch.cuda.is_available() is False")


def use_device(batches):
    """--device and --compile: move the batches, compile the encoder and head."""
    global encoder, head
    if ARGS.device != "cpu":
        for b in batches:
            for k in b:
                b[k] = tuple(t.to(ARGS.device) for t in b[k])
    if ARGS.compile:
        encoder = torch.compile(encoder)
        head = torch.compile(head)


def sync():
    if ARGS.device == "cuda":
        torch.cuda.synchronize()


def main():
    if ARGS.self_check:
        self_check()
        return
    check_device()
    batches, tokens_per_step, data_dir = load_batches(ARGS)
    use_device(batches)
    tr = Trainer(ARGS.variant, ARGS.view_backward, ARGS.device)
    if ARGS.device != "cpu":
        torch.set_default_device(ARGS.device)
    times, loss = [], float("nan")
    for s, b in enumerate(batches):
        sync()
        t0 = time.perf_counter()
        loss = tr.step(b)
        sync()
        dt = time.perf_counter() - t0
        if s >= ARGS.warmup:
            times.append(dt)
    total = sum(times)
    ms = 1e3 * total / len(times)
    sps = ARGS.batch * len(times) / total
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if ARGS.json:
        extra = ',"view_backward":"each"' if ARGS.view_backward == "each" else ""
        if ARGS.device != "cpu" or ARGS.compile:
            extra += ',"device":"%s","compile":%s' % (ARGS.device,
                                                     "true" if ARGS.compile else "false")
        if ARGS.device == "cuda":
            extra += ',"max_gpu_mib":%.1f' % (torch.cuda.max_memory_allocated() / 2.0 ** 20)
        print('{"what":"train_step","impl":"pytorch","variant":"%s","batch":%d,"threads":%d,'
              '"ms_per_step":%.2f,"samples_per_s":%.2f,"max_rss_mib":%.1f%s}'
              % (ARGS.variant, ARGS.batch, ARGS.threads, ms, sps, rss, extra))
    else:
        print("train_step %s (pytorch): batch %d, %d threads, %.1f ms/step, %.1f samples/s, "
              "max RSS %.0f MiB" % (ARGS.variant, ARGS.batch, ARGS.threads, ms, sps, rss))
    sys.stdout.flush()
    print("train_step %s (pytorch %s): %d warm-up + %d timed steps (best %.1f ms); %.0f context "
          "tokens/step in %d padded slots; data %s; view backward %s; last loss %.4f%s"
          % (ARGS.variant, torch.__version__, ARGS.warmup, len(times), 1e3 * min(times),
             tokens_per_step, ARGS.batch * CFG["T"] * CFG["M"], data_dir or "synthetic",
             ARGS.view_backward, loss,
             " (%d steps skipped as non-finite)" % tr.skipped if tr.skipped else ""),
          file=sys.stderr)
    print("train_step %s (pytorch): timed steps %s ms"
          % (ARGS.variant, " ".join("%.0f" % (1e3 * t) for t in times)), file=sys.stderr)


if __name__ == "__main__":
    main()
