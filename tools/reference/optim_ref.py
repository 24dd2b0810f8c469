"""Write tests/data/optim.bin: the optimizer's reference trajectory from PyTorch.

Run:  /usr/bin/python3 tools/reference/optim_ref.py [outdir]   (default tests/data)

The container is make_vectors.py's "VQJT" format (its Writer; read in C by
tests/vectors.h). The math being checked is docs/optimizer.md: torch.optim.Adam
(L2 weight decay) and torch.optim.AdamW (decoupled), global-norm clipping by
torch.nn.utils.clip_grad_norm_ over both parameters, and a LambdaLR with a
linear warmup and a cosine decay to a floor. Warmup 5 and total 15 over 20
steps put steps in all three phases (warmup, decay, floor), and the gradient
scales make clipping active on some steps and not on others.

Tensors (float32 unless noted; S = 20 steps; "<opt>" is "adam" or "adamw"):
  hp.lr hp.beta1 hp.beta2 hp.eps hp.weight_decay hp.max_grad_norm
  hp.min_lr_scale                         scalars, already float32-exact
  hp.warmup_steps hp.total_steps hp.steps  i32 scalars
  p0.init [3 x 4], p1.init [5]            initial parameters
  grad.p0 [S x 3 x 4], grad.p1 [S x 5]    the gradient fed at each step
  <opt>.lr [S]        learning rate used by step k (before the scheduler steps)
  <opt>.norm [S]      total gradient norm before clipping, as clip_grad_norm_ returns
  <opt>.p0 [S x 3 x 4], <opt>.p1 [S x 5]  parameters after step k
  <opt>.m0, <opt>.v0 [S x 3 x 4], <opt>.m1, <opt>.v1 [S x 5]  exp_avg, exp_avg_sq after step k

Deterministic: fixed seed, single thread; the same bytes on every run.
"""

import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vectors import Writer  # noqa: E402

torch.set_num_threads(1)

STEPS = 20


def f32(x):
    """The float32 value the C side holds for a float hyperparameter."""
    return float(np.float32(x))


HP = dict(lr=f32(1e-2), beta1=f32(0.9), beta2=f32(0.999), eps=f32(1e-8), weight_decay=f32(0.1),
          max_grad_norm=f32(0.5), min_lr_scale=f32(0.1), warmup_steps=5, total_steps=15)


def lr_scale(step):
    """docs/optimizer.md, cosine schedule: the original's warmup (s + 1) / W
    and floor max(f, cosine)."""
    w, t, lo = HP["warmup_steps"], HP["total_steps"], HP["min_lr_scale"]
    if step < w:
        return (step + 1) / w
    progress = min(1.0, (step - w) / (t - w)) if t > w else 1.0
    return max(lo, 0.5 * (1.0 + math.cos(math.pi * progress)))


def make_inputs():
    g = torch.Generator().manual_seed(2024)
    p0 = torch.randn(3, 4, generator=g)
    p1 = torch.randn(5, generator=g)
    # Unit-normal gradients have a norm near 4 over 17 values; these scales
    # put it on both sides of max_grad_norm = 0.5.
    scales = [0.02, 0.3, 0.05, 0.5, 0.08, 0.04, 1.0, 0.03, 0.2, 0.06,
              0.1, 0.4, 0.05, 0.02, 0.7, 0.09, 0.03, 0.25, 0.06, 0.15]
    assert len(scales) == STEPS
    g0 = torch.stack([torch.randn(3, 4, generator=g) * s for s in scales])
    g1 = torch.stack([torch.randn(5, generator=g) * s for s in scales])
    # Round once so that torch and C start from the very same floats.
    return p0.float(), p1.float(), g0.float(), g1.float()


def run(cls, p0_init, p1_init, g0, g1):
    p0 = p0_init.clone().requires_grad_(True)
    p1 = p1_init.clone().requires_grad_(True)
    opt = cls([p0, p1], lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"],
              weight_decay=HP["weight_decay"], foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_scale)
    out = {k: [] for k in ("lr", "norm", "p0", "p1", "m0", "v0", "m1", "v1")}
    for k in range(STEPS):
        out["lr"].append(opt.param_groups[0]["lr"])
        p0.grad = g0[k].clone()
        p1.grad = g1[k].clone()
        norm = torch.nn.utils.clip_grad_norm_([p0, p1], HP["max_grad_norm"])
        out["norm"].append(float(norm))
        opt.step()
        sched.step()
        out["p0"].append(p0.detach().clone())
        out["p1"].append(p1.detach().clone())
        for i, p in enumerate((p0, p1)):
            st = opt.state[p]
            out["m%d" % i].append(st["exp_avg"].clone())
            out["v%d" % i].append(st["exp_avg_sq"].clone())
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "tests", "data")
    os.makedirs(outdir, exist_ok=True)
    p0, p1, g0, g1 = make_inputs()
    w = Writer()
    for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm", "min_lr_scale"):
        w.add("hp." + k, np.float32(HP[k]))
    w.add("hp.warmup_steps", np.int32(HP["warmup_steps"]))
    w.add("hp.total_steps", np.int32(HP["total_steps"]))
    w.add("hp.steps", np.int32(STEPS))
    w.add("p0.init", p0)
    w.add("p1.init", p1)
    w.add("grad.p0", g0)
    w.add("grad.p1", g1)
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        out = run(cls, p0, p1, g0, g1)
        clipped = sum(n > HP["max_grad_norm"] for n in out["norm"])
        assert 0 < clipped < STEPS, "clipping must be active on some steps only"
        w.add(name + ".lr", np.array(out["lr"], dtype=np.float64))
        w.add(name + ".norm", np.array(out["norm"], dtype=np.float64))
        for k in ("p0", "p1", "m0", "v0", "m1", "v1"):
            w.add(name + "." + k, torch.stack(out[k]))
    path = os.path.join(outdir, "optim.bin")
    w.write(path)
    print("%s: %d bytes" % (os.path.normpath(path), os.path.getsize(path)))


if __name__ == "__main__":
    main()
