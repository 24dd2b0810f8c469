"""Write the test vectors under tests/data/ from the PyTorch reference.

Run:  /usr/bin/python3 tools/reference/make_vectors.py [outdir]   (default tests/data)

Output is deterministic: same bytes on every run (single thread, fixed seeds,
float64 computation on float32-representable inputs, float32 results).

File format "VQJT" (all integers little-endian; read by tests/vectors.h):

    char  magic[4]  = "VQJT"
    u32   version   = 1
    u32   count                      number of tensors
    count times:
        u32   name_len
        char  name[name_len]         ASCII, not NUL-terminated
        u32   dtype                  0 = f32, 1 = i32, 2 = u8, 3 = i64
        u32   ndim                   0 for a scalar (count 1)
        i64   dims[ndim]
        bytes data[prod(dims) * size(dtype)]   row-major, little-endian, unaligned

Files written:
  layers.bin  per-layer cases "<case>.<tensor>" (inputs, outputs, the fixed
              upstream gradient dy/dout and the resulting input/parameter
              gradients, each computed as if the gradient buffers started at 0)
  model.bin   the whole forward/backward of a small configuration from grids,
              plus tokenizer variants and the codebook EMA/refresh/statistics.
See tools/reference/README.md for the tensor list.
"""

import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vqjepa_ref as ref  # noqa: E402

torch.set_num_threads(1)
DT = torch.float64

# ----------------------------------------------------------------------------
# Container
# ----------------------------------------------------------------------------

_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.uint8): 2,
           np.dtype(np.int64): 3}


class Writer:
    def __init__(self):
        self.items = []
        self.names = set()

    def add(self, name, value, dtype=None):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if dtype is None:
            if arr.dtype.kind == "f":
                dtype = np.float32
            elif arr.dtype.kind in "iu" and arr.dtype != np.uint8:
                dtype = np.int32
            elif arr.dtype == np.uint8:
                dtype = np.uint8
            elif arr.dtype.kind == "b":
                dtype = np.uint8
            else:
                raise TypeError(arr.dtype)
        arr = np.array(arr, dtype=dtype, order="C")  # keeps 0-d scalars 0-d
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError("non-finite values in " + name)
        assert name not in self.names, name
        self.names.add(name)
        self.items.append((name, arr))

    def write(self, path):
        out = [b"VQJT", struct.pack("<II", 1, len(self.items))]
        for name, arr in self.items:
            nb = name.encode("ascii")
            out.append(struct.pack("<I", len(nb)))
            out.append(nb)
            out.append(struct.pack("<II", _DTYPES[arr.dtype], arr.ndim))
            out.append(struct.pack("<%dq" % arr.ndim, *arr.shape))
            out.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes(order="C"))
        with open(path, "wb") as f:
            f.write(b"".join(out))


def f32(t):
    """Round to float32 and return a float64 tensor (the C side sees exactly
    these values)."""
    return torch.as_tensor(np.asarray(t, dtype=np.float32).astype(np.float64))


def randn(g, *shape, scale=1.0):
    return f32((torch.randn(*shape, generator=g, dtype=DT) * scale).numpy())


def uniform(g, lo, hi, *shape):
    return f32((lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=DT)).numpy())


def leaf(t):
    return t.clone().requires_grad_(True)


def backward(y, dy, *inputs):
    grads = torch.autograd.grad((y * dy).sum(), inputs, allow_unused=True)
    return [torch.zeros_like(i) if gr is None else gr for gr, i in zip(grads, inputs)]


# ----------------------------------------------------------------------------
# layers.bin
# ----------------------------------------------------------------------------

def make_layers(w):
    g = torch.Generator().manual_seed(1234)

    # linear: y = x W^T + b
    x, W, b = randn(g, 5, 7), uniform(g, -0.5, 0.5, 6, 7), randn(g, 6, scale=0.1)
    xl, Wl, bl = leaf(x), leaf(W), leaf(b)
    y = ref.linear(xl, Wl, bl)
    dy = randn(g, 5, 6)
    dx, dW, db = backward(y, dy, xl, Wl, bl)
    for n, v in (("x", x), ("w", W), ("b", b), ("y", y), ("dy", dy), ("dx", dx), ("dw", dW),
                 ("db", db)):
        w.add("linear." + n, v)

    # elementwise activations
    x = randn(g, 41, scale=2.0)
    x[0], x[1], x[2] = 0.0, -6.0, 6.0
    dy = randn(g, 41)
    for name, fn in (("gelu", ref.gelu), ("tanh", torch.tanh), ("relu", torch.relu)):
        xx = x.clone()
        if name == "relu":  # keep away from the kink
            step = torch.where(xx >= 0, torch.full_like(xx, 0.1), torch.full_like(xx, -0.1))
            xx = f32(torch.where(xx.abs() < 0.05, xx + step, xx).numpy())
        xl = leaf(xx)
        y = fn(xl)
        (dx,) = backward(y, dy, xl)
        w.add(name + ".x", xx)
        w.add(name + ".y", y)
        w.add(name + ".dy", dy)
        w.add(name + ".dx", dx)

    # layer norm (one row with a large mean, one nearly constant row)
    n, c = 6, 16
    x = randn(g, n, c)
    x[1] += 10.0
    x[2] = f32((0.5 + 1e-3 * torch.randn(c, generator=g, dtype=DT)).numpy())
    gam, bet = f32((1 + 0.3 * torch.randn(c, generator=g, dtype=DT)).numpy()), randn(g, c, scale=0.3)
    xl, gl, bl = leaf(x), leaf(gam), leaf(bet)
    y = ref.layernorm(xl, gl, bl)
    dy = randn(g, n, c)
    dx, dg, db = backward(y, dy, xl, gl, bl)
    mu = x.mean(1)
    rstd = 1.0 / torch.sqrt(((x - mu[:, None]) ** 2).mean(1) + ref.LN_EPS)
    for nm, v in (("x", x), ("gamma", gam), ("beta", bet), ("eps", ref.LN_EPS), ("y", y),
                  ("mean", mu), ("rstd", rstd), ("dy", dy), ("dx", dx), ("dgamma", dg),
                  ("dbeta", db)):
        w.add("layernorm." + nm, v)

    # attention on a packed batch
    d, heads = 16, 4
    counts = [3, 0, 1, 5, 4]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    adj_offsets = np.concatenate([[0], np.cumsum([k * k for k in counts])]).astype(np.int64)
    rs = np.random.RandomState(99)
    blocks = []
    for gi, k in enumerate(counts):
        if gi == 0:
            a = np.ones((k, k), np.uint8)  # fully connected
        elif gi == 4:
            a = np.zeros((k, k), np.uint8)  # self only
        else:
            a = (rs.rand(k, k) < 0.5).astype(np.uint8)
            a = np.triu(a, 1)
            a = a | a.T
        np.fill_diagonal(a, 0)
        blocks.append(a.reshape(-1))
    adj = np.concatenate(blocks).astype(np.uint8)
    N = int(offsets[-1])
    qkv = randn(g, N, 3 * d)
    ql = leaf(qkv)
    out, probs = ref.attention_packed(ql, offsets, adj, adj_offsets, heads)
    dout = randn(g, N, d)
    (dqkv,) = backward(out, dout, ql)
    probs_flat = torch.cat([p.reshape(-1) for p in probs])
    assert probs_flat.numel() == heads * adj_offsets[-1]
    for nm, v in (("qkv", qkv), ("offsets", offsets), ("adj", adj),
                  ("adj_offsets", adj_offsets), ("out", out), ("probs", probs_flat),
                  ("dout", dout), ("dqkv", dqkv)):
        w.add("attention." + nm, v, np.int64 if nm == "adj_offsets" else None)
    w.add("attention.d", d)
    w.add("attention.heads", heads)

    # segment mean (grid 2 empty)
    offsets = np.array([0, 3, 3, 4, 8], np.int32)
    x = randn(g, 8, 6)
    xl = leaf(x)
    y = ref.segment_mean(xl, offsets)
    dy = randn(g, 4, 6)
    (dx,) = backward(y, dy, xl)
    for nm, v in (("offsets", offsets), ("x", x), ("y", y), ("dy", dy), ("dx", dx)):
        w.add("segment_mean." + nm, v)

    # l2 normalize: ordinary rows, and a case with rows at/below eps
    x = randn(g, 4, 8)
    x[3] *= 1e-3
    xl = leaf(x)
    y = ref.l2normalize(xl)
    dy = randn(g, 4, 8)
    (dx,) = backward(y, dy, xl)
    norm = torch.sqrt((x * x).sum(1))
    for nm, v in (("x", x), ("eps", ref.L2_EPS), ("y", y), ("norm", norm), ("dy", dy),
                  ("dx", dx)):
        w.add("l2norm." + nm, v)
    x = torch.zeros(2, 8, dtype=DT)
    x[1] = randn(g, 8, scale=1e-14)
    xl = leaf(x)
    y = ref.l2normalize(xl)
    dy = randn(g, 2, 8)
    (dx,) = backward(y, dy, xl)
    norm = torch.sqrt((x * x).sum(1))
    for nm, v in (("x", x), ("eps", ref.L2_EPS), ("y", y), ("norm", norm), ("dy", dy),
                  ("dx", dx)):
        w.add("l2norm_small." + nm, v)

    # aggregators over [batch x t x d]
    B, T, D = 3, 3, 8
    x = randn(g, B, T, D)
    xl = leaf(x)
    y = ref.aggregate("mean", xl, {})
    dy = randn(g, B, D)
    (dx,) = backward(y, dy, xl)
    for nm, v in (("x", x), ("y", y), ("dy", dy), ("dx", dx)):
        w.add("aggregate_mean." + nm, v)
    q = randn(g, D, scale=2.0)
    xl, qlf = leaf(x), leaf(q)
    y = ref.aggregate("attention", xl, {"aggregator.query": qlf})
    wts = torch.softmax((x @ q) / np.sqrt(D), 1)
    dx, dq = backward(y, dy, xl, qlf)
    for nm, v in (("x", x), ("q", q), ("y", y), ("w", wts), ("dy", dy), ("dx", dx),
                  ("dq", dq)):
        w.add("aggregate_attention." + nm, v)

    # GRU cell after the input GEMMs
    Bg, d = 3, 5
    gi, gh, h = randn(g, Bg, 3 * d), randn(g, Bg, 3 * d), randn(g, Bg, d, scale=0.5)
    gil, ghl, hl = leaf(gi), leaf(gh), leaf(h)
    hn, gates = ref.gru_cell(gil, ghl, hl)
    dh_new = randn(g, Bg, d)
    dgi, dgh, dh = backward(hn, dh_new, gil, ghl, hl)
    for nm, v in (("gi", gi), ("gh", gh), ("h", h), ("h_new", hn), ("gates", gates),
                  ("dh_new", dh_new), ("dgi", dgi), ("dgh", dgh), ("dh", dh)):
        w.add("gru_cell." + nm, v)

    # nearest code with exact ties (small integers: every distance is exact in
    # f32 whatever the summation order); code 3 duplicates code 1, code 4
    # duplicates code 0, and token 5 is equidistant from codes 0 and 2.
    e = torch.tensor([[0, 0, 0, 0], [2, 0, 1, 0], [2, 2, 0, 0], [2, 0, 1, 0], [0, 0, 0, 0]],
                     dtype=DT)
    z = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [2, 1, 0, 0], [3, 0, 1, 0], [1, 1, 1, 1],
                      [1, 1, 0, 0], [-1, 0, 0, 0]], dtype=DT)
    idx, dist, full = ref.vq_assign(z, e)
    w.add("vq_assign.z", z)
    w.add("vq_assign.e", e)
    w.add("vq_assign.idx", idx.numpy().astype(np.int32))
    w.add("vq_assign.dist", dist)
    counts = torch.zeros(5, dtype=DT).index_add_(0, idx, torch.ones(7, dtype=DT))
    sums = torch.zeros(5, 4, dtype=DT).index_add_(0, idx, z)
    w.add("vq_accumulate.counts", counts)
    w.add("vq_accumulate.sums", sums)


# ----------------------------------------------------------------------------
# Grids
# ----------------------------------------------------------------------------

def random_grid(rs, hmin=4, hmax=9):
    H, W = rs.randint(hmin, hmax + 1), rs.randint(hmin, hmax + 1)
    gr = np.zeros((H, W), np.uint8)
    for _ in range(rs.randint(2, 6)):
        c = rs.randint(1, 10)
        rh, rw = rs.randint(1, 4), rs.randint(1, 4)
        y, x = rs.randint(0, H - rh + 1), rs.randint(0, W - rw + 1)
        gr[y:y + rh, x:x + rw] = c
    return gr


def make_grids():
    rs = np.random.RandomState(2024)
    grids = [random_grid(rs) for _ in range(12)]
    # grid 1: empty (a context position)
    grids[1] = np.zeros((4, 5), np.uint8)
    # grid 4: many objects; one of area 2, then 8 of area 1 (truncation to
    # max_objects keeps the first ones in row-major order)
    g4 = np.zeros((7, 9), np.uint8)
    pts = [(0, 0, 1), (0, 3, 2), (0, 6, 3), (2, 1, 4), (2, 8, 5), (4, 0, 6), (4, 4, 7),
           (6, 2, 8), (6, 6, 9)]
    for y, x, c in pts:
        g4[y, x] = c
    g4[6, 7] = 9  # grows (6,6) to area 2
    grids[4] = g4
    # grid 6: a 2x2 block of colors 3,1/1,3 (one object when colors mix, with
    # a dominant-color tie that goes to 3, seen first) and a 2-cell object
    grids[6] = np.array([[3, 1, 0, 0], [1, 3, 0, 2], [0, 0, 0, 2]], np.uint8)
    # grid 10 (a target): a single object in a 1 x 3 grid plus a lone cell
    grids[10] = np.array([[1, 0, 2]], np.uint8)
    # grid 8: one object only
    g8 = np.zeros((5, 6), np.uint8)
    g8[1:4, 2:5] = 5
    g8[2, 3] = 5
    grids[8] = g8
    return grids


TOKENIZER_VARIANTS = [
    # name, params
    ("tok_raw", dict(max_objects=6, max_color_features=10, background=1, connectivity=4,
                     normalize=False, respect_colors=True)),
    ("tok_c8mix", dict(max_objects=16, max_color_features=2, background=1, connectivity=8,
                       normalize=True, respect_colors=False)),
    ("tok_bg", dict(max_objects=16, max_color_features=10, background=1 | (1 << 5),
                    connectivity=4, normalize=True, respect_colors=True)),
]


def add_tokenizer_params(w, prefix, p):
    w.add(prefix + ".max_objects", p.max_objects)
    w.add(prefix + ".max_color_features", p.max_color_features)
    w.add(prefix + ".background", p.background)
    w.add(prefix + ".connectivity", p.connectivity)
    w.add(prefix + ".normalize", int(p.normalize))
    w.add(prefix + ".respect_colors", int(p.respect_colors))


# ----------------------------------------------------------------------------
# model.bin
# ----------------------------------------------------------------------------

def init_weights(cfg, g):
    P = {}
    for name, shape in ref.param_shapes(cfg).items():
        if name == "codebook.embedding":
            continue
        if name.endswith("ln1.weight") or name.endswith("ln2.weight"):
            P[name] = f32((1 + 0.2 * torch.randn(*shape, generator=g, dtype=DT)).numpy())
        elif name.endswith("ln1.bias") or name.endswith("ln2.bias"):
            P[name] = randn(g, *shape, scale=0.2)
        elif name == "aggregator.query":
            P[name] = randn(g, *shape, scale=2.0)
        elif name.startswith("aggregator.gru"):
            bound = 1.0 / np.sqrt(cfg.D)
            P[name] = uniform(g, -2 * bound, 2 * bound, *shape)
        else:
            fan_in = shape[1] if len(shape) == 2 else ref.param_shapes(cfg)[
                name.replace(".bias", ".weight")][1]
            bound = 1.0 / np.sqrt(fan_in)
            P[name] = uniform(g, -bound, bound, *shape)
    return P


def make_codebook(z, cfg, seed):
    """Codes near some tokens (so assignments vary) and three far codes at
    k = 2, 7, 11 that no token uses (so the refresh has dead codes)."""
    K, D = cfg.K, cfg.D
    g = torch.Generator().manual_seed(seed)
    N = z.shape[0]
    dead_k = [2, 7, 11]
    live = [k for k in range(K) if k not in dead_k]
    pick = torch.randperm(N, generator=g)[:len(live)]
    std = float(z.std())
    e = torch.zeros(K, D, dtype=DT)
    e[live] = z[pick] + 0.3 * std * torch.randn(len(live), D, generator=g, dtype=DT)
    e[dead_k] = z.mean(0) + 8 * std * torch.randn(len(dead_k), D, generator=g, dtype=DT)
    return f32(e.numpy())


def assignment_margin(z, e):
    _, _, d = ref.vq_assign(z, e)
    s = torch.sort(d, 1).values
    return float((s[:, 1] - s[:, 0]).min())


def make_model(w):
    cfg = ref.Config()
    g = torch.Generator().manual_seed(4321)
    grids = make_grids()
    G = len(grids)
    B, T = cfg.B, cfg.T
    ctx_index = np.arange(B * T).reshape(B, T)
    tgt_index = np.arange(B * T, B * T + B)
    tp = ref.TokenizerParams(max_objects=6)
    tok = ref.tokenize_batch(grids, tp)
    assert tp.feature_dim == cfg.F

    # config
    for k, v in (("num_grids", G), ("batch", B), ("context_window", T), ("feature_dim", cfg.F),
                 ("hidden_dim", cfg.D), ("heads", cfg.heads), ("layers", cfg.layers),
                 ("num_embeddings", cfg.K), ("projection_dim", cfg.P),
                 ("projection_layers", cfg.projection_layers)):
        w.add("config." + k, v)
    w.add("config.projection_activation", {"none": 0, "relu": 1, "gelu": 2, "tanh": 3}[
        cfg.projection_activation])
    w.add("config.commitment_cost", cfg.commitment_cost)
    w.add("config.ema_decay", cfg.ema_decay)
    w.add("config.laplace_eps", ref.LAPLACE_EPS)
    w.add("config.context_grid", ctx_index.astype(np.int32))
    w.add("config.target_grid", tgt_index.astype(np.int32))

    # grids
    shapes = np.array([gr.shape for gr in grids], np.int32)
    cell_off = np.concatenate([[0], np.cumsum([gr.size for gr in grids])]).astype(np.int32)
    w.add("grids.shape", shapes)
    w.add("grids.cell_offsets", cell_off)
    w.add("grids.cells", np.concatenate([gr.reshape(-1) for gr in grids]).astype(np.uint8))

    # tokenizer (the model's own params, then variants)
    add_tokenizer_params(w, "tokens.params", tp)
    w.add("tokens.offsets", tok["offsets"])
    w.add("tokens.features", tok["features"])
    w.add("tokens.adj", tok["adj"])
    w.add("tokens.adj_offsets", tok["adj_offsets"], np.int64)
    w.add("tokens.padded_features", tok["padded_features"])
    w.add("tokens.padded_mask", tok["padded_mask"])
    w.add("tokens.padded_adjacency", tok["padded_adjacency"])
    for name, kw in TOKENIZER_VARIANTS:
        p = ref.TokenizerParams(**kw)
        t = ref.tokenize_batch(grids, p)
        add_tokenizer_params(w, name + ".params", p)
        w.add(name + ".offsets", t["offsets"])
        w.add(name + ".features", t["features"])
        w.add(name + ".adj", t["adj"])
        w.add(name + ".adj_offsets", t["adj_offsets"], np.int64)

    offsets, adj, adj_offsets = tok["offsets"], tok["adj"], tok["adj_offsets"]
    x = f32(tok["features"])
    N = x.shape[0]
    counts = np.diff(offsets)
    assert 0 in counts and counts.max() == tp.max_objects, counts

    # weights; the codebook is placed near the encoder's outputs
    P = init_weights(cfg, g)
    with torch.no_grad():
        z0 = ref.encode_packed(x, offsets, adj, adj_offsets, P, cfg)
    seed = 77
    while True:
        e = make_codebook(z0, cfg, seed)
        if assignment_margin(z0, e) > 1e-3:
            break
        seed += 1
    P["codebook.embedding"] = e
    for name in ref.param_shapes(cfg):
        w.add(name, P[name])

    R = randn(g, B, cfg.P)
    w.add("loss.R", R)

    # ---- forward + backward, packed and padded, per aggregator ----
    train_names = ref.encoder_param_names(cfg) + ref.head_param_names(cfg)
    pad = {"mask": torch.as_tensor(tok["padded_mask"]),
           "adjacency": torch.as_tensor(tok["padded_adjacency"])}
    real = pad["mask"] > 0.5
    maxdiff = 0.0
    first = True
    for kind in ref.AGGREGATORS:
        names = train_names + ref.aggregator_param_names(kind)
        # packed
        Pk = {n: leaf(v) if n in names else v for n, v in P.items()}
        xk = leaf(x)
        keep = {}
        outk = ref.forward_packed(xk, offsets, adj, adj_offsets, Pk, cfg, ctx_index, (kind,),
                                  keep=keep)
        Lk = (outk["head." + kind] * R).sum() + outk["commitment"]
        gk = torch.autograd.grad(Lk, [xk] + [Pk[n] for n in names])
        # padded
        Pp = {n: leaf(v) if n in names else v for n, v in P.items()}
        xp = leaf(f32(tok["padded_features"]))
        pad["x"] = xp
        outp = ref.forward_padded(pad, Pp, cfg, ctx_index, (kind,))
        Lp = (outp["head." + kind] * R).sum() + outp["commitment"]
        gp = torch.autograd.grad(Lp, [xp] + [Pp[n] for n in names])
        # packed == padded on the real slots
        pairs = [("z", outk["z"], outp["z"]), ("q", outk["q"], outp["q"]),
                 ("idx", outk["idx"].to(DT), outp["idx"].to(DT)),
                 ("commitment", outk["commitment"], outp["commitment"]),
                 ("grid_vectors", outk["grid_vectors"], outp["grid_vectors"]),
                 ("context", outk["context." + kind], outp["context." + kind]),
                 ("head", outk["head." + kind], outp["head." + kind]),
                 ("loss", Lk, Lp), ("d_features", gk[0], gp[0][real])]
        pairs += [("d_" + n, a, b) for n, a, b in zip(names, gk[1:], gp[1:])]
        for nm, a, b in pairs:
            diff = float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0
            maxdiff = max(maxdiff, diff)
            if os.environ.get("VQJT_DEBUG"):
                print(kind, nm, diff)
            assert diff < 1e-5, "packed != padded for %s/%s: %g" % (kind, nm, diff)
        # write (the padded formulation's values, real slots only)
        if first:
            first = False
            w.add("fwd.h0", keep["h0"])
            for l in range(cfg.layers):
                w.add("fwd.block%d" % l, keep["block%d" % l])
            w.add("fwd.z", outp["z"])
            w.add("fwd.idx", outp["idx"].numpy().astype(np.int32))
            w.add("fwd.dist", outp["dist"])
            w.add("fwd.q", outp["q"])
            w.add("fwd.commitment", outp["commitment"])
            w.add("fwd.grid_vectors", outp["grid_vectors"])
            z, idx, dist = outp["z"].detach(), outp["idx"], outp["dist"]
        w.add("fwd.context." + kind, outp["context." + kind])
        w.add("fwd.head." + kind, outp["head." + kind])
        w.add("loss." + kind, Lp)
        w.add("grad.%s.features" % kind, gp[0][real])
        for n, gr in zip(names, gp[1:]):
            w.add("grad.%s.%s" % (kind, n), gr)
    print("packed vs padded: max abs diff %.3g over %d tokens, %d grids" % (maxdiff, N, G))
    float32_check(w, cfg, P, x, offsets, adj, adj_offsets, ctx_index, R, train_names)

    # ---- codebook trained by gradient (ema_decay = 0): the code term ----
    el = leaf(e)
    sel = el[idx]
    Lcode = ((z - sel) ** 2).sum() / (N * cfg.D)
    (de,) = torch.autograd.grad(Lcode, [el])
    w.add("vqgrad.loss", Lcode)
    w.add("vqgrad.d_embedding", de)

    # ---- EMA update from the initial state (count 1, sum e) ----
    K = cfg.K
    cnt0, sum0 = torch.ones(K, dtype=DT), e.clone()
    w.add("codebook.ema_count", cnt0)
    w.add("codebook.ema_sum", sum0)
    cnt1, sum1, e1 = ref.ema_update(cnt0, sum0, z, idx, cfg.ema_decay)
    M1 = cnt1.sum()
    w.add("ema.ema_count", cnt1)
    w.add("ema.ema_sum", sum1)
    w.add("ema.embedding", e1)
    w.add("ema.usage", cnt1 / M1)

    # ---- refresh: threshold halfway between the unused codes' share and the
    # smallest used share ----
    n = torch.bincount(idx, minlength=K)
    share = cnt1 / M1
    unused = share[n == 0]
    used = share[n > 0]
    assert unused.numel() >= 1
    thr = float(0.5 * (unused.max() + used.min()))
    thr = float(np.float32(thr))
    e2, cnt2, sum2, dead, refreshed = ref.refresh(e1, cnt1, sum1, z, dist, thr)
    assert len(refreshed) >= 1
    # the order of the first len(refreshed)+1 errors must be clear in f32
    srt = torch.sort(dist, descending=True).values
    gaps = (srt[:len(refreshed) + 1][:-1] - srt[1:len(refreshed) + 1]).abs()
    assert float(gaps.min()) > 1e-4 * float(srt[0]), gaps
    w.add("refresh.threshold", thr)
    w.add("refresh.dead", dead.numpy().astype(np.uint8))
    w.add("refresh.count", len(refreshed))
    w.add("refresh.codes", np.array([k for k, _ in refreshed], np.int32))
    w.add("refresh.tokens", np.array([i for _, i in refreshed], np.int32))
    w.add("refresh.embedding", e2)
    w.add("refresh.ema_count", cnt2)
    w.add("refresh.ema_sum", sum2)
    w.add("refresh.usage", cnt2 / cnt2.sum())

    # ---- statistics of the forward batch ----
    perp, active = ref.vq_stats(idx, K)
    w.add("stats.perplexity", perp)
    w.add("stats.active_codes", active)
    w.add("stats.counts", n.numpy().astype(np.int32))
    print("tokens %d, objects per grid %s, active codes %d, perplexity %.3f, refreshed %s"
          % (N, counts.tolist(), active, perp, refreshed))


def rel_err(a, b):
    """max |a - b| / max |b| (the C tests' measure), 0 for empty tensors."""
    a, b = a.detach().to(DT), b.detach().to(DT)
    if b.numel() == 0:
        return 0.0
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-30))


def float32_check(w, cfg, P, x, offsets, adj, adj_offsets, ctx_index, R, train_names):
    """The same packed computation in float32 must land within 1e-4 (relative,
    max norm) of the float64 values written: the vectors are well
    conditioned for a float32 implementation (no near-tie assignment, no
    activation sitting on a kink)."""
    worst = (0.0, "")
    for kind in ref.AGGREGATORS:
        names = train_names + ref.aggregator_param_names(kind)
        P32 = {n: (leaf(v.float()) if n in names else v.float()) for n, v in P.items()}
        x32 = leaf(x.float())
        out = ref.forward_packed(x32, offsets, adj, adj_offsets, P32, cfg, ctx_index, (kind,))
        L = (out["head." + kind] * R.float()).sum() + out["commitment"]
        grads = torch.autograd.grad(L, [x32] + [P32[n] for n in names])
        got = {"fwd.z": out["z"], "fwd.q": out["q"], "fwd.grid_vectors": out["grid_vectors"],
               "fwd.commitment": out["commitment"], "fwd.context." + kind: out["context." + kind],
               "fwd.head." + kind: out["head." + kind], "loss." + kind: L,
               "grad.%s.features" % kind: grads[0]}
        for n, gr in zip(names, grads[1:]):
            got["grad.%s.%s" % (kind, n)] = gr
        want = dict(w.items)
        assert np.array_equal(out["idx"].numpy().astype(np.int32), want["fwd.idx"])
        for n, v in got.items():
            e = rel_err(v, torch.as_tensor(want[n]))
            if e > worst[0]:
                worst = (e, n)
    print("float32 torch vs written vectors: worst relative error %.3g (%s)" % worst)
    assert worst[0] < 1e-4, worst


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "tests", "data")
    os.makedirs(outdir, exist_ok=True)
    ref.self_check()
    wl = Writer()
    make_layers(wl)
    wl.write(os.path.join(outdir, "layers.bin"))
    wm = Writer()
    make_model(wm)
    wm.write(os.path.join(outdir, "model.bin"))
    for nm in ("layers.bin", "model.bin"):
        pth = os.path.join(outdir, nm)
        print("%s: %d bytes" % (os.path.normpath(pth), os.path.getsize(pth)))


if __name__ == "__main__":
    main()
