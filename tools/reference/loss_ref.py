"""Write tests/data/loss.bin: the losses of docs/losses.md and their gradients
for small cases, computed with PyTorch autograd in float64.

Run:  /usr/bin/python3 tools/reference/loss_ref.py [outdir]   (default tests/data)

The formulas are written the way the original (padded, PyTorch) system
states them, independently of the C kernels: InfoNCE as F.cross_entropy over
[positive, in-batch negatives j != i, queue] with the positive at index 0;
relational matrices padded to max_objects x max_objects and compared with
F.mse_loss; SIGReg with torch.linspace and explicit trapezoid weights. The
gradients come from autograd, not from the formulas in docs/losses.md, so
the C test checks those formulas too.

Container: the VQJT format of make_vectors.py (its Writer is reused; read by
tests/vectors.h). Deterministic: fixed seeds, one thread, float64 on
float32-representable inputs, results rounded to float32.

Tensors (prefix.name):
  infonce.{batch,dim,queue_rows,queue_size} i32; infonce.{weight,temperature}
  f32; infonce.c, infonce.t [B x P] unit rows; infonce.queue [NQ x P] (pushed
  into a ring of queue_size rows: all NQ are negatives);
  infonce.{log_tau,value,dlog_tau} [1], infonce.dc [B x P];
  infonce_clamped.*: the same with log tau above log temperature_max
  (dlog_tau = 0).
  sigreg.{batch,dim,num_slices,num_points} i32, sigreg.weight f32, sigreg.c
  [B x P], sigreg.directions [P x S] unit columns, sigreg.value, sigreg.dc.
  relational.{batch,context,dim,max_objects} i32, relational.weight,
  relational.context_self_weight f32; relational.{ctx,tgt}.{offsets i32,
  adj u8, adj_offsets i64, h f32, dh f32}; relational.value. Example b's
  context grids are ctx grids b*T .. b*T+T-1; one grid of each side is empty
  and one holds a single object.
  invariance.{weight,view,original,value,d_view}.
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vectors import Writer, f32  # noqa: E402

torch.set_num_threads(1)
DT = torch.float64


def unit_rows(g, n, p):
    x = torch.randn(n, p, generator=g, dtype=DT)
    return f32((x / x.norm(dim=1, keepdim=True)).numpy())


# ----------------------------------------------------------------------------
# The losses
# ----------------------------------------------------------------------------

def infonce(c, t, queue, log_tau, tau_min, tau_max, weight):
    tau = torch.clamp(torch.exp(log_tau), tau_min, tau_max)
    B = c.shape[0]
    pos = (c * t).sum(1, keepdim=True)
    sim = c @ t.T
    off_diag = ~torch.eye(B, dtype=torch.bool)
    neg = sim[off_diag].reshape(B, B - 1)
    logits = torch.cat([pos, neg, c @ queue.T], dim=1) / tau
    return weight * F.cross_entropy(logits, torch.zeros(B, dtype=torch.long))


def sigreg(c, directions, num_points, weight):
    B = c.shape[0]
    x = (c @ directions) * math.sqrt(c.shape[1])             # [B x S], ~N(0,1) if isotropic
    t = torch.linspace(0.0, 3.0, num_points, dtype=DT)
    h = 3.0 / (num_points - 1)
    trap = torch.full((num_points,), h, dtype=DT)
    trap[0] = trap[-1] = h / 2
    phi = torch.exp(-0.5 * t * t)
    w = 2.0 * trap * phi
    tx = x.unsqueeze(-1) * t                                 # [B x S x K]
    cos_mean = torch.cos(tx).mean(0)                         # [S x K]
    sin_mean = torch.sin(tx).mean(0)
    stat = B * (((cos_mean - phi) ** 2 + sin_mean ** 2) * w).sum(-1)
    return weight * stat.mean()


def relation_matrices(h, offsets, adj, adj_offsets, m):
    """r [G x m x m]: ||h_i - h_j||^2 for adjacent i != j, padded with 0."""
    mats = []
    for g in range(len(offsets) - 1):
        n = int(offsets[g + 1] - offsets[g])
        r = torch.zeros(m, m, dtype=DT)
        if n:
            hg = h[offsets[g]:offsets[g + 1]]
            a = torch.as_tensor(adj[adj_offsets[g]:adj_offsets[g] + n * n].reshape(n, n),
                                dtype=torch.bool)
            a = a & ~torch.eye(n, dtype=torch.bool)
            d2 = ((hg.unsqueeze(1) - hg.unsqueeze(0)) ** 2).sum(-1)
            r = r.index_put((torch.arange(n).repeat_interleave(n),
                             torch.arange(n).repeat(n)),
                            torch.where(a, d2, torch.zeros_like(d2)).reshape(-1))
        mats.append(r)
    return torch.stack(mats)


def relational(hc, ctx, ht, tgt, B, T, m, w_r, w_s):
    rc = relation_matrices(hc, *ctx, m).reshape(B, T, m, m)
    rt = relation_matrices(ht, *tgt, m)
    rbar = rc.mean(1)
    return w_r * F.mse_loss(rbar, rt) + w_s * ((rc - rbar.unsqueeze(1)) ** 2).mean()


# ----------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------

def random_grids(rs, counts, m):
    """Packed offsets and symmetric adjacency (zero diagonal) for grids
    holding counts[g] objects each."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(counts)
    blocks, adj_offsets = [], np.zeros(len(counts) + 1, dtype=np.int64)
    for g, n in enumerate(counts):
        assert n <= m
        a = (rs.rand(n, n) < 0.6).astype(np.uint8)
        a = np.triu(a, 1)
        a = a | a.T
        blocks.append(a.reshape(-1))
        adj_offsets[g + 1] = adj_offsets[g] + n * n
    adj = np.concatenate(blocks).astype(np.uint8) if blocks else np.zeros(0, np.uint8)
    return offsets, adj, adj_offsets


def make(w):
    g = torch.Generator().manual_seed(2024)
    rs = np.random.RandomState(7)

    # InfoNCE
    B, P, NQ, Q = 6, 8, 5, 7
    weight, temperature, tau_min, tau_max = 1.0, 0.07, 0.05, 0.20
    c, t, queue = unit_rows(g, B, P), unit_rows(g, B, P), unit_rows(g, NQ, P)
    for n, v in (("batch", B), ("dim", P), ("queue_rows", NQ), ("queue_size", Q)):
        w.add("infonce." + n, np.int32(v))
    w.add("infonce.weight", np.float32(weight))
    w.add("infonce.temperature", np.float32(temperature))
    w.add("infonce.c", c)
    w.add("infonce.t", t)
    w.add("infonce.queue", queue)
    for case, lt in (("infonce", math.log(0.09)), ("infonce_clamped", math.log(0.3))):
        log_tau = f32(np.array([lt])).requires_grad_(True)
        cl = c.clone().requires_grad_(True)
        L = infonce(cl, t, queue, log_tau, tau_min, tau_max, weight)
        dc, dlt = torch.autograd.grad(L, [cl, log_tau])
        w.add(case + ".log_tau", log_tau.detach())
        w.add(case + ".value", L.detach().reshape(1))
        w.add(case + ".dc", dc)
        w.add(case + ".dlog_tau", dlt)
    assert float(w.items[-1][1][0]) == 0.0  # the clamp blocks the gradient

    # SIGReg: Gaussian-ish samples, a few slices.
    B, P, S, K, weight = 10, 6, 5, 17, 0.1
    c = f32(torch.randn(B, P, generator=g, dtype=DT).numpy())
    A = torch.randn(P, S, generator=g, dtype=DT)
    A = f32((A / A.norm(dim=0, keepdim=True)).numpy())
    cl = c.clone().requires_grad_(True)
    L = sigreg(cl, A, K, weight)
    (dc,) = torch.autograd.grad(L, [cl])
    for n, v in (("batch", B), ("dim", P), ("num_slices", S), ("num_points", K)):
        w.add("sigreg." + n, np.int32(v))
    w.add("sigreg.weight", np.float32(weight))
    w.add("sigreg.c", c)
    w.add("sigreg.directions", A)
    w.add("sigreg.value", L.detach().reshape(1))
    w.add("sigreg.dc", dc)

    # Relational: B = 3, T = 2, M = 5; an empty grid and a single-object grid
    # on each side.
    B, T, D, M, w_r, w_s = 3, 2, 4, 5, 0.025, 0.01
    ctx_counts = [4, 3, 0, 1, 5, 2]
    tgt_counts = [3, 0, 1]
    ctx = random_grids(rs, ctx_counts, M)
    tgt = random_grids(rs, tgt_counts, M)
    hc = f32(torch.randn(sum(ctx_counts), D, generator=g, dtype=DT).numpy())
    ht = f32(torch.randn(sum(tgt_counts), D, generator=g, dtype=DT).numpy())
    hcl, htl = hc.clone().requires_grad_(True), ht.clone().requires_grad_(True)
    L = relational(hcl, ctx, htl, tgt, B, T, M, w_r, w_s)
    dhc, dht = torch.autograd.grad(L, [hcl, htl])
    for n, v in (("batch", B), ("context", T), ("dim", D), ("max_objects", M)):
        w.add("relational." + n, np.int32(v))
    w.add("relational.weight", np.float32(w_r))
    w.add("relational.context_self_weight", np.float32(w_s))
    for side, arrays, h, dh in (("ctx", ctx, hc, dhc), ("tgt", tgt, ht, dht)):
        w.add("relational.%s.offsets" % side, arrays[0], np.int32)
        w.add("relational.%s.adj" % side, arrays[1], np.uint8)
        w.add("relational.%s.adj_offsets" % side, arrays[2], np.int64)
        w.add("relational.%s.h" % side, h)
        w.add("relational.%s.dh" % side, dh)
    w.add("relational.value", L.detach().reshape(1))

    # Invariance
    weight = 0.05
    view = f32(torch.randn(3, 7, generator=g, dtype=DT).numpy())
    orig = f32(torch.randn(3, 7, generator=g, dtype=DT).numpy())
    vl = view.clone().requires_grad_(True)
    L = weight * F.mse_loss(vl, orig.detach())
    (dv,) = torch.autograd.grad(L, [vl])
    w.add("invariance.weight", np.float32(weight))
    w.add("invariance.view", view)
    w.add("invariance.original", orig)
    w.add("invariance.value", L.detach().reshape(1))
    w.add("invariance.d_view", dv)


def self_check():
    """The gradient formulas of docs/losses.md against autograd, so the
    document and the vectors agree."""
    g = torch.Generator().manual_seed(5)
    B, P, NQ = 4, 5, 3
    c, t, q = unit_rows(g, B, P), unit_rows(g, B, P), unit_rows(g, NQ, P)
    log_tau = torch.tensor([math.log(0.1)], dtype=DT, requires_grad=True)
    cl = c.clone().requires_grad_(True)
    L = infonce(cl, t, q, log_tau, 0.05, 0.2, 1.0)
    dc, dlt = torch.autograd.grad(L, [cl, log_tau])
    tau = 0.1
    s = torch.cat([c @ t.T, c @ q.T], 1)
    p = torch.softmax(s / tau, 1)
    onehot = torch.zeros_like(s)
    onehot[range(B), range(B)] = 1
    ds = (p - onehot) / (tau * B)
    assert torch.allclose(dc, ds[:, :B] @ t + ds[:, B:] @ q, atol=1e-12)
    want = ((s[range(B), range(B)] - (p * s).sum(1)) / tau).mean()
    assert abs(float(dlt) - float(want)) < 1e-12

    # SIGReg: d stat / d x_b = sum_k 2 w_k t_k (S_k cos(t_k x_b) - (C_k - phi_k) sin(t_k x_b))
    B, P, S, K = 7, 4, 3, 9
    c = torch.randn(B, P, generator=g, dtype=DT)
    A = torch.randn(P, S, generator=g, dtype=DT)
    A = A / A.norm(dim=0, keepdim=True)
    cl = c.clone().requires_grad_(True)
    (dc,) = torch.autograd.grad(sigreg(cl, A, K, 1.0), [cl])
    x = (c @ A) * math.sqrt(P)
    tk = torch.linspace(0, 3, K, dtype=DT)
    h = 3.0 / (K - 1)
    trap = torch.full((K,), h, dtype=DT)
    trap[0] = trap[-1] = h / 2
    phi = torch.exp(-0.5 * tk * tk)
    wk = 2 * trap * phi
    tx = x.unsqueeze(-1) * tk
    C, Sn = torch.cos(tx).mean(0), torch.sin(tx).mean(0)
    dx = (2 * wk * tk * (Sn * torch.cos(tx) - (C - phi) * torch.sin(tx))).sum(-1) / S
    assert torch.allclose(dc, (dx @ A.T) * math.sqrt(P), atol=1e-12)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "tests", "data")
    os.makedirs(outdir, exist_ok=True)
    self_check()
    w = Writer()
    make(w)
    path = os.path.join(outdir, "loss.bin")
    w.write(path)
    print("%s: %d bytes" % (os.path.normpath(path), os.path.getsize(path)))


if __name__ == "__main__":
    main()
