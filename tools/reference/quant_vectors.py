#!/usr/bin/env python3
"""PyTorch twin of the codebook's quantizers (docs/model.md, "Quantizers"):
writes tests/data/quant.bin, read by tests/test_codebook.c.

Each case "<case>.<tensor>" holds the inputs (z, the weights the codebook is
given, dq) and what the C library must reproduce: q, the codes, the
commitment and code terms, and by autograd (in float64) dz and the
gradients of the projections and SimVQ's transform for

    L = sum(dq * q) + beta * mean((u - sg(qc))^2) [+ mean((sg(u) - qc)^2)]

Cases: cosine codes with a code_dim (straight-through), Euclidean codes with
a code_dim and the rotation trick, FSQ over levels [8, 5, 5, 5], SimVQ with
the rotation trick, residual codes of LEVELS levels with a code_dim
(straight-through; the commitment summed over the levels, each level's
input residual R_{l-1} = u - sg(q_1 + ... + q_{l-1}), as ResidualVQ), grouped
codes of GROUPS groups of GROUP_LEVELS residual levels with a code_dim (each
group a slice of C / GROUPS of u with codebooks of its own, book g L + l; q
the groups' concatenation; each book's commitment a mean over its slice, the
books' summed, as GroupedResidualVQ's losses summed). Run: /usr/bin/python3 tools/reference/quant_vectors.py
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vectors import DT, Writer, f32, leaf, randn  # noqa: E402

N, D, C, K = 11, 6, 4, 9
BETA = 0.25
FSQ_LEVELS = [8, 5, 5, 5]
LEVELS = 3
GROUPS, GROUP_LEVELS = 2, 2


def linear(x, w, b=None):
    y = x @ w.t()
    return y if b is None else y + b


def nearest(u, e):
    """Squared-L2 nearest code, lowest index on ties (as the C argmin)."""
    d = (u * u).sum(1, keepdim=True) - 2 * u @ e.t() + (e * e).sum(1)[None, :]
    return d.argmin(1)


def rotate(u, qc):
    """The rotation trick: value qc, gradient sg(lambda R)^T through u."""
    nu, nq = u.norm(dim=1, keepdim=True), qc.norm(dim=1, keepdim=True)
    a, b = (u / nu).detach(), (qc / nq).detach()
    r = F.normalize(a + b, dim=1)
    lam = (nq / nu).detach()
    return lam * (u - 2 * r * (r * u).sum(1, keepdim=True) + 2 * b * (a * u).sum(1, keepdim=True))


def fsq(p):
    """Bound, straight-through round, normalize; codes in mixed radix."""
    lv = torch.tensor(FSQ_LEVELS, dtype=DT)
    half_l = (lv - 1) * (1 + 1e-3) / 2
    offset = torch.where(lv % 2 == 0, torch.tensor(0.5, dtype=DT), torch.tensor(0.0, dtype=DT))
    shift = torch.atanh(offset / half_l)
    bounded = torch.tanh(p + shift) * half_l - offset
    rounded = bounded + (torch.round(bounded) - bounded).detach()
    w = torch.div(lv, 2, rounding_mode="floor")
    qc = rounded / w
    basis = torch.cumprod(torch.tensor([1] + FSQ_LEVELS[:-1], dtype=DT), 0)
    codes = ((torch.round(bounded) + w) * basis).sum(1).long()
    return qc, codes


def residual(u, e, levels):
    """ResidualVQ over `levels` books of K codes in e: qc, the commitment
    (each level's mean, summed) and the codes [N x levels]."""
    res, qc, commit, level_codes = u, torch.zeros_like(u), torch.zeros((), dtype=DT), []
    for lv in range(levels):
        el = e[lv * K:(lv + 1) * K]
        idx = nearest(res.detach(), el.detach())
        ql = el[idx]
        commit = commit + BETA * ((res - ql.detach()) ** 2).mean()
        qc = qc + ql
        res = res - ql.detach()
        level_codes.append(idx)
    return qc, commit, torch.stack(level_codes, 1)


def case(w, name, g, kind):
    z = randn(g, N, D)
    dq = randn(g, N, D)
    w.add(name + ".z", z)
    w.add(name + ".dq", dq)
    zl = leaf(z)
    params = {}

    def param(pname, t):
        w.add(name + "." + pname, t)
        params[pname] = leaf(t)
        return params[pname]

    c = len(FSQ_LEVELS) if kind == "fsq" else C
    wi = param("codebook.project_in.weight", randn(g, c, D, scale=D ** -0.5))
    bi = param("codebook.project_in.bias", randn(g, c, scale=0.1))
    wo = param("codebook.project_out.weight", randn(g, D, c, scale=c ** -0.5))
    bo = param("codebook.project_out.bias", randn(g, D, scale=0.1))
    p = linear(zl, wi, bi)
    code_term = torch.zeros((), dtype=DT)
    commit = torch.zeros((), dtype=DT)
    if kind == "fsq":
        qc_st, codes = fsq(p)
    else:
        if kind == "simvq":
            basis = randn(g, K, c, scale=c ** -0.5)
            w.add(name + ".codebook.basis", basis)
            tw = param("codebook.transform.weight", randn(g, c, c, scale=c ** -0.5))
            e = linear(basis, tw)
            u = p
        elif kind == "residual":
            # level l's codes shrink by 2^-l, as residuals do
            e = torch.cat([randn(g, K, c) * 0.5 ** lv for lv in range(LEVELS)])
            w.add(name + ".codebook.embedding", e)
            u = p
        elif kind == "grouped":
            s = c // GROUPS
            e = torch.cat([randn(g, K, s) * 0.5 ** lv for _ in range(GROUPS)
                           for lv in range(GROUP_LEVELS)])
            w.add(name + ".codebook.embedding", e)
            u = p
        elif kind == "cosine":
            e = F.normalize(randn(g, K, c), dim=1)
            w.add(name + ".codebook.embedding", e)
            u = F.normalize(p, dim=1)
        else:
            e = randn(g, K, c)
            w.add(name + ".codebook.embedding", e)
            u = p
        if kind == "residual":
            qc, commit, level_codes = residual(u, e, LEVELS)
            w.add(name + ".level_codes", level_codes.int())
            codes = level_codes[:, 0]
        elif kind == "grouped":
            s, nb = c // GROUPS, GROUP_LEVELS * K
            parts = [residual(u[:, gi * s:(gi + 1) * s], e[gi * nb:(gi + 1) * nb], GROUP_LEVELS)
                     for gi in range(GROUPS)]
            qc = torch.cat([x[0] for x in parts], 1)
            commit = sum(x[1] for x in parts)
            level_codes = torch.cat([x[2] for x in parts], 1)  # group by group
            w.add(name + ".level_codes", level_codes.int())
            codes = level_codes[:, 0]
        else:
            codes = nearest(u.detach(), e.detach())
            qc = e[codes]
            commit = BETA * ((u - qc.detach()) ** 2).mean()
        if kind == "simvq":
            code_term = ((u.detach() - qc) ** 2).mean()
        qc_st = rotate(u, qc.detach()) if kind in ("rotation", "simvq") else u + (qc - u).detach()
    q = linear(qc_st, wo, bo)
    loss = (dq * q).sum() + commit + code_term
    names = list(params)
    grads = torch.autograd.grad(loss, [zl] + [params[k] for k in names])
    w.add(name + ".q", q)
    w.add(name + ".codes", codes.int())
    w.add(name + ".commitment", commit)
    w.add(name + ".codebook_loss", code_term)
    w.add(name + ".dz", grads[0])
    for k, gr in zip(names, grads[1:]):
        w.add(name + ".grad." + k, gr)


def main():
    g = torch.Generator().manual_seed(1234)
    w = Writer()
    for kind in ("cosine", "rotation", "fsq", "simvq", "residual", "grouped"):
        case(w, kind, g, kind)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data",
                       "quant.bin")
    w.write(out)
    print("%s: %d bytes" % (os.path.normpath(out), os.path.getsize(out)))


if __name__ == "__main__":
    main()
