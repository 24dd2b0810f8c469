"""PyTorch reference of libvqjepa's math (docs/model.md), padded and packed.

This file is independent of the C library: it re-derives every layer from
docs/model.md and DESIGN.md section 2 so that the C code can be checked
against it. Two formulations of the same forward pass live here:

* padded (the original research system's layout): tokens [G, M, F] with a
  real-token mask [G, M] and adjacency [G, M, M]; attention uses the boolean
  mask ((adjacency | eye) & key_is_real) | eye, so real tokens never attend
  to padding and padding rows only see themselves (their outputs are
  ignored, the eye keeps their softmax non-empty);
* packed (the C library's layout): real tokens only, grid g owns rows
  offsets[g] .. offsets[g+1]-1, attention runs per grid.

Everything is written with explicit matmuls/softmax so the math is visible;
a few built-ins (F.layer_norm, F.gelu, F.normalize, nn.GRUCell) are used only
to cross-check the explicit versions (see self_check()).

Computation runs in whatever dtype the inputs have (make_vectors.py uses
float64 on float32-representable inputs and writes float32 results).
"""

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------
# Tokenizer (DESIGN.md section 2, include/vqjepa_stages.h)
# ----------------------------------------------------------------------------

BASE_FEATURES = 13
NUM_COLORS = 10


class TokenizerParams:
    def __init__(self, max_objects=16, max_color_features=10, background=1,
                 connectivity=4, normalize=True, respect_colors=True):
        self.max_objects = max_objects
        self.max_color_features = max_color_features
        self.background = background  # bit c set: color c is background
        self.connectivity = connectivity
        self.normalize = normalize
        self.respect_colors = respect_colors

    @property
    def feature_dim(self):
        return BASE_FEATURES + self.max_color_features


def _components(grid, p):
    """Connected components of non-background cells, in order of their first
    cell in a row-major scan. Each is a list of (y, x) in BFS order."""
    H, W = grid.shape
    label = -np.ones((H, W), dtype=np.int64)
    if p.connectivity == 4:
        nbrs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    elif p.connectivity == 8:
        nbrs = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    else:
        raise ValueError("connectivity must be 4 or 8")
    comps = []
    for y in range(H):
        for x in range(W):
            c = int(grid[y, x])
            if (p.background >> c) & 1 or label[y, x] >= 0:
                continue
            idx = len(comps)
            label[y, x] = idx
            cells = [(y, x)]
            head = 0
            while head < len(cells):
                cy, cx = cells[head]
                head += 1
                for dy, dx in nbrs:
                    ny, nx = cy + dy, cx + dx
                    if not (0 <= ny < H and 0 <= nx < W) or label[ny, nx] >= 0:
                        continue
                    nc = int(grid[ny, nx])
                    if (p.background >> nc) & 1:
                        continue
                    if p.respect_colors and nc != c:
                        continue
                    label[ny, nx] = idx
                    cells.append((ny, nx))
            comps.append(cells)
    return comps, label


def tokenize_grid(grid, p):
    """grid: uint8 array [H, W]. Returns (features float64 [n, F],
    adjacency uint8 [n, n], bboxes) for the kept objects in token order."""
    grid = np.asarray(grid, dtype=np.uint8)
    H, W = grid.shape
    comps, label = _components(grid, p)
    # area descending; ties by first appearance (the component index), so a
    # stable sort on -area.
    order = sorted(range(len(comps)), key=lambda i: (-len(comps[i]), i))
    order = order[:p.max_objects]
    HW = float(H * W)
    feats, boxes = [], []
    for ci in order:
        cells = comps[ci]
        area = len(cells)
        # perimeter: 4-neighbour sides whose neighbour is outside the grid or
        # not in the same object (whatever the connectivity)
        per = 0
        for (y, x) in cells:
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = y + dy, x + dx
                if not (0 <= ny < H and 0 <= nx < W) or label[ny, nx] != ci:
                    per += 1
        ys = [c[0] for c in cells]
        xs = [c[1] for c in cells]
        y0, y1, x0, x1 = min(ys), max(ys), min(xs), max(xs)
        bh, bw = y1 - y0 + 1, x1 - x0 + 1
        counts = np.zeros(NUM_COLORS, dtype=np.int64)
        first_seen = {}
        # row-major order of the object's cells for "first seen"
        for (y, x) in sorted(cells):
            c = int(grid[y, x])
            counts[c] += 1
            first_seen.setdefault(c, (y, x))
        colors = sorted(first_seen.keys())
        best = max(counts[c] for c in colors)
        dominant = min((c for c in colors if counts[c] == best), key=lambda c: first_seen[c])
        cy = sum(ys) / area
        cx = sum(xs) / area
        f = np.zeros(p.feature_dim, dtype=np.float64)
        if p.normalize:
            f[0] = area / HW
            f[1] = per / HW
            f[2] = bh / H
            f[3] = bw / W
            f[7] = cy / H
            f[8] = cx / W
            f[9] = y0 / H
            f[10] = x0 / W
            f[11] = y1 / H
            f[12] = x1 / W
        else:
            f[0], f[1], f[2], f[3] = area, per, bh, bw
            f[7], f[8] = cy, cx
            f[9], f[10], f[11], f[12] = y0, x0, y1, x1
        f[4] = bw / bh  # aspect ratio width / height of the bbox, in cells, raw
        f[5] = len(colors)
        f[6] = dominant
        for j, c in enumerate(colors[:p.max_color_features]):
            f[BASE_FEATURES + j] = counts[c] / HW if p.normalize else counts[c]
        feats.append(f)
        boxes.append((y0, x0, y1, x1))
    n = len(order)
    adj = np.zeros((n, n), dtype=np.uint8)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            a, b = boxes[i], boxes[j]
            rows = a[0] <= b[2] + 1 and b[0] <= a[2] + 1
            cols = a[1] <= b[3] + 1 and b[1] <= a[3] + 1
            adj[i, j] = 1 if (rows and cols) else 0
    feats = np.stack(feats) if n else np.zeros((0, p.feature_dim))
    return feats, adj, boxes


def tokenize_batch(grids, p):
    """Packed and padded token layouts for a list of grids."""
    per = [tokenize_grid(g, p) for g in grids]
    counts = [f.shape[0] for f, _, _ in per]
    offsets = np.zeros(len(grids) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(counts)
    adj_offsets = np.zeros(len(grids) + 1, dtype=np.int64)
    adj_offsets[1:] = np.cumsum([n * n for n in counts])
    features = (np.concatenate([f for f, _, _ in per]) if offsets[-1]
                else np.zeros((0, p.feature_dim)))
    adj = (np.concatenate([a.reshape(-1) for _, a, _ in per]).astype(np.uint8)
           if adj_offsets[-1] else np.zeros(0, dtype=np.uint8))
    M = p.max_objects
    G = len(grids)
    pf = np.zeros((G, M, p.feature_dim))
    pm = np.zeros((G, M))
    pa = np.zeros((G, M, M))
    for g, (f, a, _) in enumerate(per):
        n = f.shape[0]
        pf[g, :n] = f
        pm[g, :n] = 1
        pa[g, :n, :n] = a
    return dict(offsets=offsets, features=features, adj=adj, adj_offsets=adj_offsets,
                padded_features=pf, padded_mask=pm, padded_adjacency=pa)


# ----------------------------------------------------------------------------
# Layers (docs/model.md "Layers")
# ----------------------------------------------------------------------------

LN_EPS = 1e-5
L2_EPS = 1e-12
LAPLACE_EPS = 1e-5


def linear(x, w, b):
    return x @ w.t() + b


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def layernorm(x, g, b, eps=LN_EPS):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased
    return (x - mu) / torch.sqrt(var + eps) * g + b


def l2normalize(x, eps=L2_EPS):
    # torch's norm has gradient 0 at x = 0 (sqrt would give 0 * inf); where
    # the clamp is active the norm gets no gradient anyway: dx = dy / eps.
    n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return x / torch.clamp(n, min=eps)


def activation(name, x):
    if name == "relu":
        return torch.relu(x)
    if name == "gelu":
        return gelu(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "none":
        return x
    raise ValueError(name)


def masked_softmax(s, allowed):
    """softmax over the last axis restricted to `allowed` (others exactly 0)."""
    s = s.masked_fill(~allowed, float("-inf"))
    s = s - s.max(-1, keepdim=True).values
    e = torch.exp(s)  # exp(-inf) = 0
    return e / e.sum(-1, keepdim=True)


def attention_core(qkv, allowed, heads):
    """qkv [..., n, 3D]; allowed bool [..., n, n] (row i may attend to col j).
    Returns out [..., n, D] and probs [..., heads, n, n]."""
    D = qkv.shape[-1] // 3
    dh = D // heads
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    lead = qkv.shape[:-2]
    n = qkv.shape[-2]

    def split(t):  # [..., n, D] -> [..., heads, n, dh]
        return t.reshape(*lead, n, heads, dh).transpose(-3, -2)

    q, k, v = split(q), split(k), split(v)
    s = q @ k.transpose(-1, -2) / math.sqrt(dh)
    p = masked_softmax(s, allowed.unsqueeze(-3))
    o = p @ v  # [..., heads, n, dh]
    o = o.transpose(-3, -2).reshape(*lead, n, D)
    return o, p


def attention_packed(qkv, offsets, adj, adj_offsets, heads):
    """Per-grid attention on packed tokens. adj: flat uint8 tensor (numpy ok),
    grid g's n_g x n_g block at adj_offsets[g]. Returns out [N, D] and the
    list of per-grid probs [heads, n_g, n_g]."""
    outs, probs = [], []
    for g in range(len(offsets) - 1):
        a, b = int(offsets[g]), int(offsets[g + 1])
        n = b - a
        if n == 0:
            probs.append(qkv.new_zeros((heads, 0, 0)))
            continue
        blk = torch.as_tensor(np.asarray(adj[int(adj_offsets[g]):int(adj_offsets[g]) + n * n])
                              .reshape(n, n).astype(bool))
        allowed = blk | torch.eye(n, dtype=torch.bool)
        o, p = attention_core(qkv[a:b], allowed, heads)
        outs.append(o)
        probs.append(p)
    D = qkv.shape[-1] // 3
    out = torch.cat(outs, 0) if outs else qkv.new_zeros((0, D))
    return out, probs


def segment_mean(x, offsets):
    G = len(offsets) - 1
    rows = []
    for g in range(G):
        a, b = int(offsets[g]), int(offsets[g + 1])
        if b > a:
            rows.append(x[a:b].sum(0) / (b - a))
        else:
            rows.append(x.new_zeros(x.shape[1]))
    return torch.stack(rows, 0)


def gru_cell(gi, gh, h):
    """PyTorch gate order r, z, n. Returns h_new and the saved gates
    [batch, 4d] = r | z | n | gh_n."""
    d = h.shape[-1]
    r = torch.sigmoid(gi[:, :d] + gh[:, :d])
    z = torch.sigmoid(gi[:, d:2 * d] + gh[:, d:2 * d])
    n = torch.tanh(gi[:, 2 * d:] + r * gh[:, 2 * d:])
    h_new = (1 - z) * n + z * h
    return h_new, torch.cat([r, z, n, gh[:, 2 * d:]], 1)


def aggregate(kind, r, P):
    """r [B, T, D] -> c [B, D]."""
    B, T, D = r.shape
    if kind == "mean":
        return r.sum(1) / T
    if kind == "last":
        return r[:, T - 1]
    if kind == "attention":
        s = (r @ P["aggregator.query"]) / math.sqrt(D)  # [B, T]
        w = torch.softmax(s, 1)
        return (w.unsqueeze(-1) * r).sum(1)
    if kind == "gru":
        h = r.new_zeros((B, D))
        for t in range(T):
            gi = linear(r[:, t], P["aggregator.gru.weight_ih"], P["aggregator.gru.bias_ih"])
            gh = linear(h, P["aggregator.gru.weight_hh"], P["aggregator.gru.bias_hh"])
            h, _ = gru_cell(gi, gh, h)
        return h
    raise ValueError(kind)


AGGREGATORS = ("mean", "last", "attention", "gru")


def aggregator_param_names(kind):
    if kind == "attention":
        return ["aggregator.query"]
    if kind == "gru":
        return ["aggregator.gru.weight_ih", "aggregator.gru.weight_hh",
                "aggregator.gru.bias_ih", "aggregator.gru.bias_hh"]
    return []


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

class Config:
    def __init__(self, F=23, D=16, heads=4, layers=2, K=12, P=8, T=3, B=3,
                 projection_layers=2, projection_activation="relu",
                 commitment_cost=0.15, ema_decay=0.9):
        self.F, self.D, self.heads, self.layers = F, D, heads, layers
        self.K, self.P, self.T, self.B = K, P, T, B
        self.projection_layers = projection_layers
        self.projection_activation = projection_activation
        self.commitment_cost = commitment_cost
        self.ema_decay = ema_decay


def param_shapes(cfg):
    D, F_, K, P = cfg.D, cfg.F, cfg.K, cfg.P
    s = OrderedDict()
    s["feature_mlp.fc1.weight"] = (D, F_)
    s["feature_mlp.fc1.bias"] = (D,)
    s["feature_mlp.fc2.weight"] = (D, D)
    s["feature_mlp.fc2.bias"] = (D,)
    for l in range(cfg.layers):
        p = "relational.%d." % l
        s[p + "ln1.weight"] = (D,)
        s[p + "ln1.bias"] = (D,)
        s[p + "attn.qkv.weight"] = (3 * D, D)
        s[p + "attn.qkv.bias"] = (3 * D,)
        s[p + "attn.out.weight"] = (D, D)
        s[p + "attn.out.bias"] = (D,)
        s[p + "ln2.weight"] = (D,)
        s[p + "ln2.bias"] = (D,)
        s[p + "ffn.fc1.weight"] = (2 * D, D)
        s[p + "ffn.fc1.bias"] = (2 * D,)
        s[p + "ffn.fc2.weight"] = (D, 2 * D)
        s[p + "ffn.fc2.bias"] = (D,)
    s["codebook.embedding"] = (K, D)
    s["aggregator.query"] = (D,)
    s["aggregator.gru.weight_ih"] = (3 * D, D)
    s["aggregator.gru.weight_hh"] = (3 * D, D)
    s["aggregator.gru.bias_ih"] = (3 * D,)
    s["aggregator.gru.bias_hh"] = (3 * D,)
    for i in range(cfg.projection_layers):
        s["head.%d.weight" % i] = (P, D if i == 0 else P)
        s["head.%d.bias" % i] = (P,)
    return s


def encoder_param_names(cfg):
    return [n for n in param_shapes(cfg) if n.startswith("feature_mlp.")
            or n.startswith("relational.")]


def head_param_names(cfg):
    return [n for n in param_shapes(cfg) if n.startswith("head.")]


def feature_mlp(x, P):
    h = gelu(linear(x, P["feature_mlp.fc1.weight"], P["feature_mlp.fc1.bias"]))
    return linear(h, P["feature_mlp.fc2.weight"], P["feature_mlp.fc2.bias"])


def relational_block(h, P, l, attn_fn):
    p = "relational.%d." % l
    a = layernorm(h, P[p + "ln1.weight"], P[p + "ln1.bias"])
    qkv = linear(a, P[p + "attn.qkv.weight"], P[p + "attn.qkv.bias"])
    o = attn_fn(qkv)
    h = h + linear(o, P[p + "attn.out.weight"], P[p + "attn.out.bias"])
    f = layernorm(h, P[p + "ln2.weight"], P[p + "ln2.bias"])
    f = gelu(linear(f, P[p + "ffn.fc1.weight"], P[p + "ffn.fc1.bias"]))
    return h + linear(f, P[p + "ffn.fc2.weight"], P[p + "ffn.fc2.bias"])


def encode_padded(x, mask, adjacency, P, cfg):
    """x [G, M, F], mask [G, M] (0/1), adjacency [G, M, M] (0/1) -> z [G, M, D]."""
    G, M, _ = x.shape
    eye = torch.eye(M, dtype=torch.bool).expand(G, M, M)
    real = mask > 0.5
    allowed = ((adjacency > 0.5) | eye) & real.unsqueeze(1)  # key must be real
    allowed = allowed | eye  # padding rows see themselves only (ignored)
    h = feature_mlp(x, P)
    for l in range(cfg.layers):
        h = relational_block(h, P, l, lambda qkv: attention_core(qkv, allowed, cfg.heads)[0])
    return h


def encode_packed(x, offsets, adj, adj_offsets, P, cfg):
    """x [N, F] packed -> z [N, D]."""
    h = feature_mlp(x, P)
    for l in range(cfg.layers):
        h = relational_block(
            h, P, l, lambda qkv: attention_packed(qkv, offsets, adj, adj_offsets, cfg.heads)[0])
    return h


def vq_assign(z, e):
    """Nearest code (squared L2), ties to the lowest index. Returns idx [N]
    (int64), dist [N] (the exact squared distance), and the distance matrix."""
    d = (z * z).sum(1, keepdim=True) - 2 * z @ e.t() + (e * e).sum(1).unsqueeze(0)
    idx = torch.argmin(d, 1)  # first minimum = lowest index
    dist = ((z - e[idx]) ** 2).sum(1)
    return idx, dist, d


def quantize(z, e, beta):
    """z [N, D] real tokens only. Straight-through forward value q = e_k, with
    dq passed to dz; commitment beta * mean((z - sg(e))^2)."""
    e = e.detach()
    idx, dist, _ = vq_assign(z.detach(), e)
    sel = e[idx]
    q = sel + (z - z.detach())  # value exactly e_k, gradient 1 to z
    N, D = z.shape
    if N > 0:
        commit = beta * ((z - sel) ** 2).sum() / (N * D)
    else:
        commit = z.new_zeros(())
    return q, idx, dist.detach(), commit


def head(c, P, cfg):
    x = c
    for i in range(cfg.projection_layers):
        x = activation(cfg.projection_activation,
                       linear(x, P["head.%d.weight" % i], P["head.%d.bias" % i]))
    return l2normalize(x)


def forward_padded(tok, P, cfg, ctx_index, kinds=AGGREGATORS):
    """tok: padded tensors (features [G,M,F] requiring grad, mask, adjacency).
    Returns a dict of results; `z_real`/`q` in packed order (g, slot)."""
    x, mask, adjacency = tok["x"], tok["mask"], tok["adjacency"]
    z = encode_padded(x, mask, adjacency, P, cfg)
    real = mask > 0.5
    z_real = z[real]  # row-major over (g, slot) = packed order
    q, idx, dist, commit = quantize(z_real, P["codebook.embedding"], cfg.commitment_cost)
    G, M, D = z.shape
    qpad = z.new_zeros((G, M, D))
    qpad = qpad.masked_scatter(real.unsqueeze(-1).expand(G, M, D), q)
    cnt = mask.sum(1, keepdim=True)
    grid_vec = (qpad * mask.unsqueeze(-1)).sum(1) / torch.clamp(cnt, min=1.0)
    r = grid_vec[torch.as_tensor(np.asarray(ctx_index), dtype=torch.long)]  # [B, T, D]
    out = dict(z=z_real, idx=idx, dist=dist, q=q, commitment=commit, grid_vectors=grid_vec)
    for kind in kinds:
        c = aggregate(kind, r, P)
        out["context." + kind] = c
        out["head." + kind] = head(c, P, cfg)
    return out


def forward_packed(x, offsets, adj, adj_offsets, P, cfg, ctx_index, kinds=AGGREGATORS,
                   keep=None):
    z = feature_mlp(x, P)
    if keep is not None:
        keep["h0"] = z
    for l in range(cfg.layers):
        z = relational_block(
            z, P, l, lambda qkv: attention_packed(qkv, offsets, adj, adj_offsets, cfg.heads)[0])
        if keep is not None:
            keep["block%d" % l] = z
    q, idx, dist, commit = quantize(z, P["codebook.embedding"], cfg.commitment_cost)
    grid_vec = segment_mean(q, offsets)
    r = grid_vec[torch.as_tensor(np.asarray(ctx_index), dtype=torch.long)]
    out = dict(z=z, idx=idx, dist=dist, q=q, commitment=commit, grid_vectors=grid_vec)
    for kind in kinds:
        c = aggregate(kind, r, P)
        out["context." + kind] = c
        out["head." + kind] = head(c, P, cfg)
    return out


# ----------------------------------------------------------------------------
# Codebook EMA, refresh, statistics (no gradients)
# ----------------------------------------------------------------------------

def ema_update(ema_count, ema_sum, z, idx, decay, eps=LAPLACE_EPS):
    """Returns new (ema_count, ema_sum, embedding)."""
    K = ema_count.shape[0]
    n = torch.zeros_like(ema_count).index_add_(0, idx, torch.ones_like(idx, dtype=z.dtype))
    s = torch.zeros_like(ema_sum).index_add_(0, idx, z)
    ema_count = decay * ema_count + (1 - decay) * n
    ema_sum = decay * ema_sum + (1 - decay) * s
    M = ema_count.sum()
    c = (ema_count + eps) / (M + K * eps) * M
    return ema_count, ema_sum, ema_sum / c.unsqueeze(1)


def refresh(embedding, ema_count, ema_sum, z, err, threshold):
    """Re-seed codes with share ema_count_k / M <= threshold, in ascending k,
    from tokens in descending order of err (ties: lower i first), one token
    per code while tokens last. M is taken once, before any re-seeding.
    Returns (embedding, ema_count, ema_sum, dead mask, refreshed list)."""
    K = ema_count.shape[0]
    M = ema_count.sum()
    share = ema_count / M
    dead = share <= threshold
    order = sorted(range(z.shape[0]), key=lambda i: (-float(err[i]), i))
    e, cnt, sm = embedding.clone(), ema_count.clone(), ema_sum.clone()
    refreshed = []
    j = 0
    for k in range(K):
        if not bool(dead[k]):
            continue
        if j >= len(order):
            break
        i = order[j]
        j += 1
        e[k] = z[i]
        cnt[k] = M / K
        sm[k] = z[i] * (M / K)
        refreshed.append((k, i))
    return e, cnt, sm, dead, refreshed


def vq_stats(idx, K):
    N = idx.shape[0]
    n = torch.bincount(idx, minlength=K).to(torch.float64)
    if N == 0:
        return 1.0, 0
    p = n / N
    ent = -sum(float(pk) * math.log(float(pk)) for pk in p if pk > 0)
    return math.exp(ent), int((n > 0).sum())


# ----------------------------------------------------------------------------
# Cross-checks of the explicit layers against PyTorch built-ins
# ----------------------------------------------------------------------------

def self_check():
    g = torch.Generator().manual_seed(7)
    dt = torch.float64
    x = torch.randn(5, 9, generator=g, dtype=dt)
    w = torch.randn(9, generator=g, dtype=dt)
    b = torch.randn(9, generator=g, dtype=dt)
    assert torch.allclose(layernorm(x, w, b), F.layer_norm(x, (9,), w, b, LN_EPS), atol=1e-12)
    assert torch.allclose(gelu(x), F.gelu(x), atol=1e-12)
    assert torch.allclose(l2normalize(x), F.normalize(x, dim=-1, eps=L2_EPS), atol=1e-12)
    d = 6
    cell = torch.nn.GRUCell(d, d).to(dt)
    xi = torch.randn(4, d, generator=g, dtype=dt)
    h = torch.randn(4, d, generator=g, dtype=dt)
    with torch.no_grad():
        gi = linear(xi, cell.weight_ih, cell.bias_ih)
        gh = linear(h, cell.weight_hh, cell.bias_hh)
        assert torch.allclose(gru_cell(gi, gh, h)[0], cell(xi, h), atol=1e-12)
    # attention: compare with nn.MultiheadAttention semantics written out
    n, D, heads = 5, 8, 2
    qkv = torch.randn(n, 3 * D, generator=g, dtype=dt)
    allowed = torch.rand(n, n, generator=g) > 0.5
    allowed = allowed | torch.eye(n, dtype=torch.bool)
    o, _ = attention_core(qkv, allowed, heads)
    dh = D // heads
    for hh in range(heads):
        q = qkv[:, hh * dh:(hh + 1) * dh]
        k = qkv[:, D + hh * dh:D + (hh + 1) * dh]
        v = qkv[:, 2 * D + hh * dh:2 * D + (hh + 1) * dh]
        for i in range(n):
            js = [j for j in range(n) if allowed[i, j]]
            s = torch.stack([q[i] @ k[j] for j in js]) / math.sqrt(dh)
            p = torch.softmax(s, 0)
            oi = sum(p[m] * v[j] for m, j in enumerate(js))
            assert torch.allclose(o[i, hh * dh:(hh + 1) * dh], oi, atol=1e-12)
    check_doc_backward()


def check_doc_backward():
    """The backward formulas written in docs/model.md agree with autograd."""
    g = torch.Generator().manual_seed(11)
    dt = torch.float64
    # GELU
    x = torch.randn(50, generator=g, dtype=dt, requires_grad=True)
    dy = torch.randn(50, generator=g, dtype=dt)
    (ad,) = torch.autograd.grad((gelu(x) * dy).sum(), [x])
    xd = x.detach()
    Phi = 0.5 * (1 + torch.erf(xd / math.sqrt(2)))
    phi = torch.exp(-xd * xd / 2) / math.sqrt(2 * math.pi)
    assert torch.allclose(ad, dy * (Phi + xd * phi), atol=1e-12)
    # layer norm
    x = torch.randn(4, 10, generator=g, dtype=dt, requires_grad=True)
    gam = torch.randn(10, generator=g, dtype=dt, requires_grad=True)
    bet = torch.randn(10, generator=g, dtype=dt, requires_grad=True)
    dy = torch.randn(4, 10, generator=g, dtype=dt)
    adx, adg, adb = torch.autograd.grad((layernorm(x, gam, bet) * dy).sum(), [x, gam, bet])
    xd = x.detach()
    mu = xd.mean(1, keepdim=True)
    r = 1 / torch.sqrt(((xd - mu) ** 2).mean(1, keepdim=True) + LN_EPS)
    xh = (xd - mu) * r
    gg = dy * gam.detach()
    dx = r * (gg - gg.mean(1, keepdim=True) - xh * (gg * xh).mean(1, keepdim=True))
    assert torch.allclose(adx, dx, atol=1e-12)
    assert torch.allclose(adg, (dy * xh).sum(0), atol=1e-12)
    assert torch.allclose(adb, dy.sum(0), atol=1e-12)
    # L2 normalize
    x = torch.randn(3, 6, generator=g, dtype=dt, requires_grad=True)
    dy = torch.randn(3, 6, generator=g, dtype=dt)
    y = l2normalize(x)
    (ad,) = torch.autograd.grad((y * dy).sum(), [x])
    y, n = y.detach(), x.detach().norm(dim=1, keepdim=True)
    assert torch.allclose(ad, (dy - y * (y * dy).sum(1, keepdim=True)) / n, atol=1e-12)
    # attention, one head
    n, dh = 5, 3
    qkv = torch.randn(n, 3 * dh, generator=g, dtype=dt, requires_grad=True)
    allowed = (torch.rand(n, n, generator=g) > 0.5) | torch.eye(n, dtype=torch.bool)
    do = torch.randn(n, dh, generator=g, dtype=dt)
    o, p = attention_core(qkv, allowed, 1)
    (ad,) = torch.autograd.grad((o * do).sum(), [qkv])
    p = p[0].detach()
    q, k, v = qkv.detach()[:, :dh], qkv.detach()[:, dh:2 * dh], qkv.detach()[:, 2 * dh:]
    dv = p.t() @ do
    dp = do @ v.t()
    ds = p * (dp - (p * dp).sum(1, keepdim=True))
    dq = ds @ k / math.sqrt(dh)
    dk = ds.t() @ q / math.sqrt(dh)
    assert torch.allclose(ad, torch.cat([dq, dk, dv], 1), atol=1e-12)
