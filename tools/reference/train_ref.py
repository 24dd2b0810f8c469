"""Write tests/data/train.bin: ten training micro-steps of the whole system in
PyTorch, step for step what vqj_trainer_step() does (include/vqjepa.h,
"Trainer"), from identical weights and batches.

Run:  /usr/bin/python3 tools/reference/train_ref.py [outdir]   (default tests/data)

One micro-step, for B examples (B*T context grids, B target grids):
  1. target path, no gradient: the target encoder (an EMA copy), the codebook
     without updating it, the target predictor's grids path -> t [B x P];
  2. online path: encoder, codebook training forward (assignment with the
     codes before the update, then the EMA update, then the refresh on every
     refresh_interval-th update), predictor context path -> c [B x P];
  3. InfoNCE(c, t; queue, learnable clamped temperature), SIGReg(c) with
     directions drawn from the context seed and the micro-step, relational
     consistency (quantized context tokens against the quantized target
     tokens), the codebook's commitment;
  4. the invariance views, in the order color, translation, symmetry, each
     through the online network with the codebook *after* this step's update
     (straight-through without commitment; with ema_update_passes all_online
     each view's context pass and target pass update the codebook again,
     refresh included, as the main pass does): MSE between each grid's
     representation (the mean of its quantized token vectors) in the view
     and in the original, the context side against the main pass's q
     (gradient into both sides) and the target side against the target
     path's qt (a constant: the target network has no gradient);
  5. backward of the sum (autograd; the C side accumulates the same terms);
  6. every grad_accum_steps micro-batches: gradients times 1/accum, global
     norm clipping (torch.nn.utils.clip_grad_norm_), torch.optim.Adam with the
     scheduled lr, then the target EMA (encoder and head) and the push of the
     cycle's target projections (every micro-batch's t, oldest first) into the
     FIFO queue.

Every random choice of the C side is reproduced bit for bit with a port of
src/core/rng.c (splitmix64 seeding, xoshiro256**, uniform, below, Box-Muller
normal in double): SIGReg's directions (src/loss/loss.c), the palette
permutation (src/data/augment.c), the flip direction and the translation
deltas (src/train/trainer.c). self_check() compares the port with values
printed by the C library.

Three runs: accumulation 2 with the codebook updated by every online pass,
accumulation 1 by the main pass only, and "switches" (accumulation 1, every
pass) through the built-in default's predictor path: codes beside the path,
grid features, slot embedding, GRU, analogy residual, linear last head
layer.

For parity the encoder's dropout is 0 and k-means++ is off (both draw from
hashes or RNG streams that a reference would have to mirror mask by mask; the
trainer's own random choices are covered). The refresh is on with a short
interval so it fires within the ten steps; the temperature is learnable.

Computation in float64 on float32-representable inputs, results rounded to
float32, one thread, fixed seeds: the same bytes on every run. The run checks
that it is well conditioned for a float32 implementation (every nearest-code
assignment wins by a clear margin, refresh decisions and the order of the
quantization errors are clear, ReLU inputs stay off the kink, the
temperature stays off its clamp) and stops otherwise.

Reuses vqjepa_ref (tokenizer, packed model, codebook EMA/refresh), loss_ref
(InfoNCE, SIGReg, relational), optim_ref (the lr schedule) and make_vectors
(the VQJT Writer, weight and codebook initialisation, random grids).
Tensors: see tools/reference/README.md, "train.bin".
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loss_ref  # noqa: E402
import optim_ref  # noqa: E402
import vqjepa_ref as ref  # noqa: E402
from make_vectors import (Writer, f32, init_weights, make_codebook, random_grid,  # noqa: E402
                          randn, uniform)

torch.set_num_threads(1)
DT = torch.float64

# ----------------------------------------------------------------------------
# src/core/rng.c, ported
# ----------------------------------------------------------------------------

M64 = (1 << 64) - 1


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Rng:
    """vqji_rng: xoshiro256** seeded through splitmix64 from (seed, stream)."""

    def __init__(self, seed, stream):
        x = (seed ^ (stream * 0xD1B54A32D192ED03)) & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    def next(self):
        s = self.s
        result = (_rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def uniform(self):
        """float in [0, 1) with 24 bits (exact in float32)."""
        return np.float32((self.next() >> 40) * (1.0 / 16777216.0))

    def below(self, n):
        limit = M64 - M64 % n
        while True:
            r = self.next()
            if r < limit:
                return r % n

    def normal(self):
        """Box-Muller in double, rounded to float once (C evaluates u1 first)."""
        u1 = 1.0 - (self.next() >> 11) * 2.0 ** -53
        u2 = (self.next() >> 11) * 2.0 ** -53
        return np.float32(math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2))


SIGREG_STREAM = 0x5349475245470000       # src/loss/loss.h, VQJI_SIGREG_STREAM
VIEW_PALETTE_STREAM = 0x50414C45          # src/data/augment.c
VIEW_STEP_MUL = 0xA24BAED4963EE407        # src/train/trainer.c, invariance_views()
VIEW_KIND_MUL = 0x632BE59BD9B4E019
EXAMPLE_MUL = 0x9E3779B97F4A7C15          # make_grid_view()
OBJECT_DROPOUT_STREAM = 0x4F424A44524F50  # src/data/augment.c ("OBJDROP")
DROPOUT_STEP_MUL = 0xD1B54A32D192ED03     # src/train/trainer.c, train_micro()


def stream_of(name):
    """FNV-1a 64 of a name: src/model/codebook.c's stream_of()."""
    h = 0xCBF29CE484222325
    for ch in name.encode():
        h = ((h ^ ch) * 0x100000001B3) & M64
    return h


DEAD_CODE_STREAM = stream_of("codebook.dead_code")


def sigreg_directions(seed, step, P, S):
    """vqj_loss_sigreg(): column s holds P consecutive normals, normalized
    with a double sum of squares and a float reciprocal."""
    rng = Rng(seed, (SIGREG_STREAM + step) & M64)
    A = np.zeros((P, S), np.float32)
    for s in range(S):
        g = np.array([rng.normal() for _ in range(P)], np.float32)
        nn = float(sum(float(v) * float(v) for v in g))
        inv = np.float32(1.0 / math.sqrt(nn)) if nn > 0 else np.float32(0)
        A[:, s] = g * inv
        if nn == 0:
            A[0, s] = 1
    return A


def palette_permutation(rng, background_mask):
    """vqji_palette_permutation(): Fisher-Yates over the non-background colors."""
    perm = list(range(ref.NUM_COLORS))
    free = [c for c in range(ref.NUM_COLORS) if not (background_mask >> c) & 1]
    sh = list(free)
    for i in range(len(sh), 1, -1):
        j = rng.below(i)
        sh[i - 1], sh[j] = sh[j], sh[i - 1]
    for i, c in enumerate(free):
        perm[c] = sh[i]
    return np.array(perm, np.uint8)


def view_palette(seed, background_mask, grid):
    return palette_permutation(Rng(seed, VIEW_PALETTE_STREAM), background_mask)[grid]


def view_flip(grid, horizontal):
    """vqj_view_flip: horizontal reverses the columns, else the rows."""
    return grid[:, ::-1].copy() if horizontal else grid[::-1, :].copy()


def views_seed(ctx_seed, micro_step, kind):
    """The seed of view kind k (0 color, 1 translation, 2 symmetry) at a
    micro-step (the number of micro-batches accepted before it)."""
    seed = ctx_seed ^ ((VIEW_STEP_MUL * (micro_step + 1)) & M64)
    return (seed + VIEW_KIND_MUL * (kind + 1)) & M64


def example_seed(kseed, i, group):
    return kseed ^ ((EXAMPLE_MUL * (i // group + 1)) & M64)


def flip_horizontal(eseed, symmetry_modes):
    if symmetry_modes == 3:
        return Rng(eseed, 0).next() & 1
    return int(symmetry_modes == 1)


def translation_delta(kseed, example, max_delta):
    """dy, dx of one example: two uniforms on stream `example`, float math."""
    rng = Rng(kseed, example)
    d = np.float32(max_delta)
    dy = np.float32(np.float32(2 * rng.uniform() - 1) * d)
    dx = np.float32(np.float32(2 * rng.uniform() - 1) * d)
    return dy, dx


def self_check():
    """The port against values printed by the C library (a throwaway program
    calling vqji_rng_*, vqj_view_palette, vqj_view_flip and vqj_loss_sigreg;
    see tools/reference/README.md, "train.bin")."""
    r = Rng(42, 7)
    assert [r.next() for _ in range(4)] == [12324983354704563866, 327361404529169866,
                                           10333031322192220770, 481284209650591596]
    assert [float(r.uniform()) for _ in range(3)] == [
        float(np.float32(v)) for v in (0.41576618, 0.220818758, 0.289805532)]
    got = [float(r.normal()) for _ in range(3)]
    for g, w in zip(got, (-0.542252898, 0.179286838, 0.0359942466)):
        assert abs(g - w) < 5e-9, (got, w)
    assert [r.below(9) for _ in range(3)] == [6, 8, 3]
    assert Rng(M64, SIGREG_STREAM + 3).next() == 1893540486781223586
    cells = np.arange(10, dtype=np.uint8).reshape(1, 10)
    assert view_palette(1234567, 1, cells).tolist() == [[0, 1, 6, 9, 4, 5, 8, 2, 7, 3]]
    assert view_palette(1234567, 1 | 1 << 5, cells).tolist() == [[0, 1, 6, 8, 9, 5, 7, 4, 3, 2]]
    g = np.arange(1, 7, dtype=np.uint8).reshape(2, 3)
    assert view_flip(g, 1).reshape(-1).tolist() == [3, 2, 1, 6, 5, 4]
    assert view_flip(g, 0).reshape(-1).tolist() == [4, 5, 6, 1, 2, 3]
    # SIGReg at steps 0..2 with seed 42, P 8, 8 slices, 17 points, weight 0.1
    # on 4 fixed unit rows: checks the direction procedure end to end.
    c = np.array([((i * 37 % 17) - 8) / 8.0 for i in range(32)], np.float32).reshape(4, 8)
    for b in range(4):
        n = float(sum(float(v) * float(v) for v in c[b]))
        c[b] = c[b] / np.float32(math.sqrt(n))
    for step, want in enumerate((0.0660511106, 0.0591238923, 0.0431840234)):
        A = sigreg_directions(42, step, 8, 8)
        v = float(loss_ref.sigreg(f32(c), f32(A), 17, float(np.float32(0.1))))
        assert abs(v - want) < 1e-6 * want, (step, v, want)


# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------

STEPS = 10
SEED = 42  # the context seed the C test creates its context with


class TrainConfig:
    def __init__(self):
        self.model = ref.Config(F=23, D=16, heads=4, layers=2, K=12, P=8, T=3, B=4,
                                projection_layers=2, projection_activation="relu",
                                commitment_cost=0.15, ema_decay=0.9)
        self.max_objects = 8               # tokenizer, and the loss's M
        self.refresh_interval = 3
        self.refresh_threshold = f32s(0.05)
        self.queue_size = 16
        self.temperature, self.temperature_min, self.temperature_max = (
            f32s(0.07), f32s(0.05), f32s(0.2))
        self.infonce_weight = f32s(1.0)
        self.relational_weight, self.context_self_weight = f32s(0.05), f32s(0.02)
        self.sigreg_weight, self.sigreg_num_slices, self.sigreg_num_points = f32s(0.1), 8, 17
        self.color_weight, self.translation_weight, self.symmetry_weight = (
            f32s(0.5), f32s(0.5), f32s(0.5))
        self.lr, self.beta1, self.beta2, self.eps = f32s(3e-3), f32s(0.9), f32s(0.999), f32s(1e-8)
        self.weight_decay, self.max_grad_norm = f32s(1e-4), f32s(3.0)
        self.warmup_steps, self.total_steps, self.min_lr_scale = 1, 4, f32s(0.1)
        self.target_ema_decay = f32s(0.9)
        self.translation_max_delta = f32s(0.1)
        self.symmetry_modes = 3
        self.background = 1
        # the "dropout" run's: object dropout, dead-code replacement by count
        self.object_dropout = f32s(0.25)
        self.dead_code_threshold = f32s(1.5)
        self.dead_code_max_per_step = 2


def f32s(x):
    """The float32 value the C side holds for a float parameter."""
    return float(np.float32(x))


def make_batches(cfg, rs):
    """STEPS batches of B*T context grids then B target grids. Step 2 has an
    empty context grid and step 5 an empty target grid."""
    B, T = cfg.model.B, cfg.model.T
    batches = []
    for s in range(STEPS):
        grids = [random_grid(rs, 4, 9) for _ in range(B * T + B)]
        if s == 2:
            grids[4] = np.zeros_like(grids[4])
        if s == 5:
            grids[B * T + 1] = np.zeros_like(grids[B * T + 1])
        batches.append((grids[:B * T], grids[B * T:]))
    return batches


# ----------------------------------------------------------------------------
# The model pieces on packed tokens (vqjepa_ref)
# ----------------------------------------------------------------------------

class Tokens:
    def __init__(self, grids, tp, features=None):
        tk = ref.tokenize_batch(grids, tp)
        self.offsets, self.adj, self.adj_offsets = tk["offsets"], tk["adj"], tk["adj_offsets"]
        # The C tokenizer writes float features; the model sees those values.
        self.features = np.asarray(tk["features"], np.float32) if features is None else features
        self.grid_features = grid_features(grids, self.offsets, tp.max_objects)

    def translated(self, deltas, group):
        """vqj_view_translate_features on each grid's rows, float adds."""
        f = self.features.copy()
        for g in range(len(self.offsets) - 1):
            dy, dx = deltas[g // group]
            a, b = self.offsets[g], self.offsets[g + 1]
            f[a:b, [7, 9, 11]] += dy
            f[a:b, [8, 10, 12]] += dx
        out = Tokens.__new__(Tokens)
        out.offsets, out.adj, out.adj_offsets, out.features = (
            self.offsets, self.adj, self.adj_offsets, f)
        out.grid_features = self.grid_features
        return out

    def rel(self):
        return (self.offsets, self.adj, self.adj_offsets)

    def drop_objects(self, p, seed, max_objects):
        """vqji_tokens_drop_objects: each object (grid by grid, in order)
        kept when its uniform draw on the stream OBJECT_DROPOUT_STREAM of
        `seed` is >= p; kept rows, their adjacency, the grid features with
        the object count updated (a double quotient rounded to float)."""
        rng = Rng(seed, OBJECT_DROPOUT_STREAM)
        pf = np.float32(p)
        rows, adj, offsets, adj_offsets = [], [], [0], [0]
        gf = self.grid_features.copy()
        for g in range(len(self.offsets) - 1):
            a, n = int(self.offsets[g]), int(self.offsets[g + 1] - self.offsets[g])
            keep = [i for i in range(n) if rng.uniform() >= pf]
            block = self.adj[int(self.adj_offsets[g]):int(self.adj_offsets[g]) + n * n]
            adj.append(block.reshape(n, n)[np.ix_(keep, keep)].reshape(-1))
            rows += [a + i for i in keep]
            offsets.append(offsets[-1] + len(keep))
            adj_offsets.append(adj_offsets[-1] + len(keep) ** 2)
            gf[g, -1] = np.float32(len(keep) / float(max_objects))
        out = Tokens.__new__(Tokens)
        out.offsets = np.array(offsets, np.int32)
        out.adj_offsets = np.array(adj_offsets, np.int64)
        out.adj = np.concatenate(adj).astype(np.uint8) if adj else np.zeros(0, np.uint8)
        out.features = self.features[rows]
        out.grid_features = gf
        return out


def grid_features(grids, offsets, max_objects):
    """The tokenizer's whole-grid features (src/model/tokenizer.c,
    write_grid_features): H/30, W/30, the share of each color's cells, the
    objects kept / max_objects; each a double quotient rounded to float."""
    rows = []
    for g, grid in enumerate(grids):
        H, W = grid.shape
        f = [H / 30.0, W / 30.0]
        f += [float(np.count_nonzero(grid == c)) / (H * W) for c in range(ref.NUM_COLORS)]
        f.append((int(offsets[g + 1]) - int(offsets[g])) / float(max_objects))
        rows.append(np.array(f, np.float32))
    return np.stack(rows) if rows else np.zeros((0, 2 + ref.NUM_COLORS + 1), np.float32)


# Margins the discrete decisions must clear. Squared distances are
# O(0.1 .. 2) and head pre-activations O(0.1 .. 1); the C library's float32
# run drifts from this float64 one by at most ~3e-6 relative over the ten
# steps (tests/test_trainer_parity.c prints it), so an assignment margin of
# 1e-4 and a ReLU margin of 1e-5 keep every decision the same.
ASSIGN_MARGIN = 1e-4
RELU_MARGIN = 1e-5


class Conditioning:
    """The smallest margins of the run's discrete decisions (float64)."""

    def __init__(self):
        self.assign = math.inf     # second-nearest minus nearest squared distance
        self.relu = math.inf       # |head pre-activation|
        self.refresh_order = math.inf
        self.refresh_share = math.inf
        self.dead_count = math.inf  # |ema_count - dead_code_threshold|, relative
        self.dead_order = math.inf  # the gap between distinct counts the cap sorts
        self.tau = math.inf

    def check(self):
        assert self.assign > ASSIGN_MARGIN, "near-tie code assignment: %g" % self.assign
        assert self.relu > RELU_MARGIN, "head ReLU input near 0: %g" % self.relu
        assert self.refresh_order > 1e-4, "near-tie refresh order: %g" % self.refresh_order
        assert self.refresh_share > 1e-4, "EMA share near the threshold: %g" % self.refresh_share
        assert self.tau > 1e-4, "temperature near its clamp: %g" % self.tau
        assert self.dead_count > 1e-4, "EMA count near the dead-code threshold: %g" % (
            self.dead_count)
        assert self.dead_order > 1e-4, "near-tie dead-code order: %g" % self.dead_order


def replace_dead(e, cnt, sm, zd, updates, t, cap, cond):
    """Dead-code replacement by count (src/model/codebook.c, replace_dead):
    codes with ema_count < t, at most `cap` of them (the lowest counts, ties
    by lower k; then in ascending k) when cap > 0, each re-seeded from a token
    drawn on the stream DEAD_CODE_STREAM ^ updates of the context seed: a
    partial Fisher-Yates (distinct tokens) while the tokens are at least as
    many as the dead codes, uniform draws otherwise; e_k = z_i,
    ema_count_k = t, ema_sum_k = t z_i. Returns the new state and the count."""
    K, n = cnt.shape[0], zd.shape[0]
    cond.dead_count = min(cond.dead_count, float(((cnt - t).abs() / t).min()))
    dead = [k for k in range(K) if float(cnt[k]) < t]
    if cap and len(dead) > cap:
        by_count = sorted(dead, key=lambda k: (float(cnt[k]), k))
        vals = [float(cnt[k]) for k in by_count]
        for a, b in zip(vals, vals[1:]):
            if b != a:
                cond.dead_order = min(cond.dead_order, (b - a) / max(abs(b), 1e-30))
        dead = sorted(by_count[:cap])
    if not dead:
        return e, cnt, sm, 0
    rng = Rng(SEED, (DEAD_CODE_STREAM ^ updates) & M64)
    perm = list(range(n))
    e, cnt, sm = e.clone(), cnt.clone(), sm.clone()
    for j, k in enumerate(dead):
        if len(dead) <= n:
            r = j + rng.below(n - j)
            perm[j], perm[r] = perm[r], perm[j]
            pick = perm[j]
        else:
            pick = rng.below(n)
        e[k] = zd[pick]
        cnt[k] = t
        sm[k] = t * zd[pick]
    return e, cnt, sm, len(dead)


def encode(tok, P, cfg):
    x = torch.as_tensor(tok.features.astype(np.float64))
    return ref.encode_packed(x, tok.offsets, tok.adj, tok.adj_offsets, P, cfg.model)


def assign(z, e, cond):
    idx, dist, d = ref.vq_assign(z.detach(), e)
    if d.shape[0]:
        s = torch.sort(d, 1).values
        cond.assign = min(cond.assign, float((s[:, 1] - s[:, 0]).min()))
    return idx, dist


def straight_through(z, e, cond):
    """The codebook's eval forward under a gradient: value e_k, gradient 1."""
    idx, _ = assign(z, e, cond)
    return z + (e[idx] - z).detach()


def head(x, P, cfg, cond, sw):
    """Linear layers, each followed by the activation (the last one only
    with final_activation), then L2 normalization."""
    m = cfg.model
    L = m.projection_layers
    for i in range(L):
        x = ref.linear(x, P["head.%d.weight" % i], P["head.%d.bias" % i])
        if i < L - 1 or sw["final_activation"]:
            cond.relu = min(cond.relu, float(x.detach().abs().min()))
            x = ref.activation(m.projection_activation, x)
    return ref.l2normalize(x)


def pool(v, tok, P, sw):
    """Grid vectors: segment means (+ f W^T + b with grid features)."""
    r = ref.segment_mean(v, tok.offsets)
    if sw["grid_features"]:
        f = torch.as_tensor(tok.grid_features.astype(np.float64))
        r = r + ref.linear(f, P["grid_features.weight"], P["grid_features.bias"])
    return r


def context_path(v, tok, P, cfg, cond, sw):
    """Pool, slot embedding, aggregation, analogy residual, head."""
    m = cfg.model
    r = pool(v, tok, P, sw).reshape(-1, m.T, m.D)
    if sw["slot_embedding"]:
        r = r + P["aggregator.slot_embedding"]
    c = ref.aggregate(sw["aggregator"], r, P)
    if sw["analogy_residual"]:  # query input + demo output - demo input
        c = c + r[:, m.T - 1] + r[:, m.T - 2] - r[:, m.T - 3]
    return head(c, P, cfg, cond, sw)


def grids_path(v, tok, P, cfg, cond, sw):
    return head(pool(v, tok, P, sw), P, cfg, cond, sw)


# ----------------------------------------------------------------------------
# The training run
# ----------------------------------------------------------------------------

# The predictor switches of a run (vqj_predictor_params): the first two runs
# use the reference configuration's, "switches." the built-in default's.
PLAIN = dict(aggregator="mean", final_activation=1, slot_embedding=0, analogy_residual=0,
             grid_features=0, beside=0)
DEFAULT_PATH = dict(aggregator="gru", final_activation=0, slot_embedding=1, analogy_residual=1,
                    grid_features=1, beside=1)
AGGREGATOR_IDS = {"mean": 0, "last": 1, "attention": 2, "gru": 3}
GRID_FEATURES = 2 + ref.NUM_COLORS + 1


def trainable_names(cfg, sw=PLAIN):
    names = ref.encoder_param_names(cfg.model) + ref.head_param_names(cfg.model)
    names += ref.aggregator_param_names(sw["aggregator"])
    if sw["slot_embedding"]:
        names.append("aggregator.slot_embedding")
    if sw["grid_features"]:
        names += ["grid_features.weight", "grid_features.bias"]
    return names


def run(cfg, init, batches, accum, cond, ema_passes, sw=PLAIN, extra=False):
    """The trajectory of vqj_trainer_step over the batches. Returns the
    per-step records and the final state. ema_passes: 0 main (the codebook's
    EMA updated by the main context pass only), 1 all_online (by every
    training pass of the online encoder: the views' passes too). sw: the
    predictor switches; with `beside` the predictor, the relational loss and
    the invariance read z instead of q (the codebook still runs). extra:
    object dropout on the context tokens of the main pass and dead-code
    replacement (capped) after every EMA update."""
    m = cfg.model
    B, T, K = m.B, m.T, m.K
    tp = ref.TokenizerParams(max_objects=cfg.max_objects)
    names = trainable_names(cfg, sw)
    via = (lambda z, q: z) if sw["beside"] else (lambda z, q: q)
    P = {n: init[n].clone().requires_grad_(True) for n in names}
    P["loss.log_temperature"] = init["loss.log_temperature"].clone().requires_grad_(True)
    target = {n: init[n].clone() for n in names}
    e = init["codebook.embedding"].clone()
    cnt = init["codebook.ema_count"].clone()
    sm = init["codebook.ema_sum"].clone()
    queue = init["loss.queue"].clone()
    fill, qhead = int(init["loss.queue_fill"][0]), int(init["loss.queue_head"][0])
    updates = 0
    params = [P[n] for n in names] + [P["loss.log_temperature"]]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                           weight_decay=cfg.weight_decay, foreach=False)
    # optim_ref.lr_scale() reads its schedule from optim_ref.HP: point it at
    # this run's (optim_ref's own vectors are written by its own process).
    optim_ref.HP.update(warmup_steps=cfg.warmup_steps, total_steps=cfg.total_steps,
                        min_lr_scale=cfg.min_lr_scale)
    opt_steps = 0
    rec = {k: [] for k in ("infonce", "relational", "commitment", "sigreg", "invariance_color",
                           "invariance_translation", "invariance_symmetry", "total",
                           "temperature", "grad_norm", "lr", "optimizer_step", "refreshed",
                           "dead_replaced", "context_tokens", "active_codes", "perplexity",
                           "c", "t")}
    view_w = (cfg.color_weight, cfg.translation_weight, cfg.symmetry_weight)
    view_names = ("invariance_color", "invariance_translation", "invariance_symmetry")

    pending_t = []  # target projections of the cycle so far, pushed at its end
    for ms in range(STEPS):  # every micro-batch is accepted: ms = micro_step
        ctx_grids, tgt_grids = batches[ms]
        ctok, ttok = Tokens(ctx_grids, tp), Tokens(tgt_grids, tp)
        if extra:  # the main pass's context without some objects (rank 0)
            ctok = ctok.drop_objects(cfg.object_dropout,
                                     SEED ^ ((DROPOUT_STEP_MUL * (ms + 1)) & M64),
                                     cfg.max_objects)

        # 1. target path
        with torch.no_grad():
            zt = encode(ttok, target, cfg)
            idx_t, _ = assign(zt, e, cond)
            qt = e[idx_t]
            t = grids_path(via(zt, qt), ttok, target, cfg, cond, sw)

        # 2. online path; the codebook updates after the assignment
        z = encode(ctok, P, cfg)
        assign(z, e, cond)  # margins only; quantize() assigns the same way
        q, idx, dist, commit = ref.quantize(z, e, m.commitment_cost)
        c = context_path(via(z, q), ctok, P, cfg, cond, sw)
        perp, active = ref.vq_stats(idx, K)

        def update(zd, idx, dist):
            """The codebook's training forward after its assignment: the EMA
            update, then the refresh on every refresh_interval-th update,
            then (extra) dead-code replacement. Returns the numbers of codes
            refreshed and replaced."""
            nonlocal cnt, sm, e, updates
            cnt, sm, e = ref.ema_update(cnt, sm, zd, idx, m.ema_decay)
            updates += 1
            done = []
            if updates % cfg.refresh_interval == 0:
                share = cnt / cnt.sum()
                cond.refresh_share = min(cond.refresh_share,
                                         float((share - cfg.refresh_threshold).abs().min()))
                e, cnt, sm, dead, done = ref.refresh(e, cnt, sm, zd, dist,
                                                     cfg.refresh_threshold)
                srt = torch.sort(dist, descending=True).values[:len(done) + 1]
                if srt.numel() > 1:
                    cond.refresh_order = min(cond.refresh_order,
                                             float((srt[:-1] - srt[1:]).min() / srt[0]))
            replaced = 0
            if extra:
                e, cnt, sm, replaced = replace_dead(e, cnt, sm, zd, updates,
                                                    cfg.dead_code_threshold,
                                                    cfg.dead_code_max_per_step, cond)
            return len(done), replaced

        def view_quantize(zv):
            """A view's pass through the codebook: straight-through with the
            codes as they are, then (all_online) their update. Returns the
            vectors the invariance reads."""
            if not ema_passes:
                return via(zv, straight_through(zv, e, cond))
            idx_v, dist_v = assign(zv, e, cond)
            qv = zv + (e[idx_v] - zv).detach()
            update(zv.detach(), idx_v, dist_v)
            return via(zv, qv)

        refreshed, replaced = update(z.detach(), idx, dist)

        # 3. losses
        log_tau = P["loss.log_temperature"]
        raw = math.exp(float(log_tau))
        cond.tau = min(cond.tau, abs(raw - cfg.temperature_min) / raw,
                       abs(raw - cfg.temperature_max) / raw)
        qrows = queue[:fill]
        L_inf = loss_ref.infonce(c, t, qrows, log_tau, cfg.temperature_min,
                                 cfg.temperature_max, cfg.infonce_weight)
        A = f32(sigreg_directions(SEED, ms, m.P, cfg.sigreg_num_slices))
        L_sig = loss_ref.sigreg(c, A, cfg.sigreg_num_points, cfg.sigreg_weight)
        L_rel = loss_ref.relational(via(z, q), ctok.rel(), via(zt, qt), ttok.rel(), B, T,
                                    cfg.max_objects, cfg.relational_weight,
                                    cfg.context_self_weight)
        terms = {"infonce": L_inf, "sigreg": L_sig, "relational": L_rel, "commitment": commit}

        # 4. invariance views, codebook as updated above
        for k in range(3):
            kseed = views_seed(SEED, ms, k)
            if k == 1:
                deltas = [translation_delta(kseed, b, cfg.translation_max_delta)
                          for b in range(B)]
                vc, vt = ctok.translated(deltas, T), ttok.translated(deltas, 1)
            else:
                def view(grids, group):
                    out = []
                    for i, gr in enumerate(grids):
                        es = example_seed(kseed, i, group)
                        out.append(view_palette(es, cfg.background, gr) if k == 0 else
                                   view_flip(gr, flip_horizontal(es, cfg.symmetry_modes)))
                    return Tokens(out, tp)
                vc, vt = view(ctx_grids, T), view(tgt_grids, 1)
            # representations: each grid's mean token vector (DESIGN.md
            # §4, §3.4); the context side against the main pass's (gradient
            # into both), the target side against the target path's
            rc = ref.segment_mean(view_quantize(encode(vc, P, cfg)), vc.offsets)
            rt = ref.segment_mean(view_quantize(encode(vt, P, cfg)), vt.offsets)
            ro = ref.segment_mean(via(z, q), ctok.offsets)
            rto = ref.segment_mean(via(zt, qt), ttok.offsets)
            terms[view_names[k]] = (view_w[k] * F.mse_loss(rc, ro)
                                    + view_w[k] * F.mse_loss(rt, rto))

        # 5. backward (gradients accumulate over the cycle)
        total = sum(terms.values())
        total.backward()
        pending_t.append(t.detach().clone())

        # 6. optimizer step at the end of a cycle
        boundary = (ms + 1) % accum == 0
        grad_norm = 0.0
        lr = cfg.lr * optim_ref.lr_scale(opt_steps)  # this step's, or the next one's
        if boundary:
            for p in params:
                p.grad.mul_(1.0 / accum)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            for gr in opt.param_groups:
                gr["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=False)
            opt_steps += 1
            with torch.no_grad():
                d = cfg.target_ema_decay
                for n in names:
                    target[n] = d * target[n] + (1 - d) * P[n]
            # the queue: every micro-batch's t of the cycle, oldest first,
            # row r at (head + r) mod Q
            Q = cfg.queue_size
            for row in torch.cat(pending_t):
                queue[qhead] = row
                qhead = (qhead + 1) % Q
                fill = min(fill + 1, Q)
            pending_t = []
        tau = min(max(math.exp(float(P["loss.log_temperature"])), cfg.temperature_min),
                  cfg.temperature_max)
        for k, v in terms.items():
            rec[k].append(float(v))
        rec["total"].append(float(total))
        rec["temperature"].append(tau)
        rec["grad_norm"].append(grad_norm)
        rec["lr"].append(lr)
        rec["optimizer_step"].append(int(boundary))
        rec["refreshed"].append(refreshed)
        rec["dead_replaced"].append(replaced)
        rec["context_tokens"].append(int(ctok.offsets[-1]))
        rec["active_codes"].append(active)
        rec["perplexity"].append(perp)
        rec["c"].append(c.detach().numpy())
        rec["t"].append(t.numpy())

    final = {n: P[n].detach() for n in names}
    final["loss.log_temperature"] = P["loss.log_temperature"].detach()
    final.update({"codebook.embedding": e, "codebook.ema_count": cnt, "codebook.ema_sum": sm,
                  "loss.queue": queue, "loss.queue_fill": torch.tensor([float(fill)]),
                  "loss.queue_head": torch.tensor([float(qhead)])})
    final_target = {n: target[n] for n in names}
    return rec, final, final_target


# ----------------------------------------------------------------------------
# Initial state and the file
# ----------------------------------------------------------------------------

def make_init(cfg, batches, seed):
    """Weights as make_vectors.py's (perturbed layer norms); the codebook
    near the first batch's encoder outputs with three far codes (2, 7, 11)
    that the refresh re-seeds; EMA state count 1, sum = codes; the queue
    empty; log tau = log(float temperature)."""
    m = cfg.model
    g = torch.Generator().manual_seed(seed)
    W = init_weights(m, g)
    init = {n: W[n] for n in trainable_names(cfg, DEFAULT_PATH) if n in W}
    # the built-in default path's own tensors (the library's init scales)
    init["aggregator.slot_embedding"] = randn(g, m.T, m.D, scale=1.0 / math.sqrt(m.D))
    b = 1.0 / math.sqrt(GRID_FEATURES)
    init["grid_features.weight"] = uniform(g, -b, b, m.D, GRID_FEATURES)
    init["grid_features.bias"] = uniform(g, -b, b, m.D)
    tok = Tokens(batches[0][0], ref.TokenizerParams(max_objects=cfg.max_objects))
    with torch.no_grad():
        z0 = encode(tok, init, cfg)
    e = make_codebook(z0, m, seed)
    init["codebook.embedding"] = e
    init["codebook.ema_count"] = torch.ones(m.K, dtype=DT)
    init["codebook.ema_sum"] = e.clone()
    init["loss.log_temperature"] = f32(np.array([math.log(np.float32(cfg.temperature))]))
    init["loss.queue"] = torch.zeros(cfg.queue_size, m.P, dtype=DT)
    init["loss.queue_fill"] = torch.zeros(1, dtype=DT)
    init["loss.queue_head"] = torch.zeros(1, dtype=DT)
    return init


def write_config(w, cfg):
    m = cfg.model
    ints = dict(seed=SEED, steps=STEPS, batch=m.B, context_window=m.T, feature_dim=m.F,
                hidden_dim=m.D, heads=m.heads, layers=m.layers, num_embeddings=m.K,
                projection_dim=m.P, projection_layers=m.projection_layers,
                projection_activation=1, max_objects=cfg.max_objects,
                refresh_interval=cfg.refresh_interval, queue_size=cfg.queue_size,
                sigreg_num_slices=cfg.sigreg_num_slices,
                sigreg_num_points=cfg.sigreg_num_points, warmup_steps=cfg.warmup_steps,
                total_steps=cfg.total_steps, schedule=1, symmetry_modes=cfg.symmetry_modes,
                background=cfg.background, relational_dropout=0, kmeans_init=0)
    for k, v in ints.items():
        w.add("config." + k, np.int32(v))
    floats = dict(commitment_cost=m.commitment_cost, ema_decay=m.ema_decay,
                  refresh_threshold=cfg.refresh_threshold, temperature=cfg.temperature,
                  temperature_min=cfg.temperature_min, temperature_max=cfg.temperature_max,
                  infonce_weight=cfg.infonce_weight, relational_weight=cfg.relational_weight,
                  context_self_weight=cfg.context_self_weight, sigreg_weight=cfg.sigreg_weight,
                  color_weight=cfg.color_weight, translation_weight=cfg.translation_weight,
                  symmetry_weight=cfg.symmetry_weight, lr=cfg.lr, beta1=cfg.beta1,
                  beta2=cfg.beta2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                  max_grad_norm=cfg.max_grad_norm, min_lr_scale=cfg.min_lr_scale,
                  target_ema_decay=cfg.target_ema_decay,
                  translation_max_delta=cfg.translation_max_delta)
    for k, v in floats.items():
        w.add("config." + k, np.float32(v))


# The runs: (name, grad_accum_steps, ema_update_passes, switches, extra).
# accum2 updates the codebook from every online pass (the library's
# default), accum1 from the main pass only; switches takes the built-in
# default's predictor path with all_online updates; dropout (EXTRA_RUNS) is
# switches with object dropout and capped dead-code replacement, the codebook
# updated by the main pass only (so that every replacement is the main
# pass's, which the step's metrics count), from an
# initial state of its own ("dropout.init.*"): its decisions add to those the
# other runs must keep clear, and no one initial state suits all four.
RUNS = (("accum2", 2, 1, PLAIN, False), ("accum1", 1, 0, PLAIN, False),
        ("switches", 1, 1, DEFAULT_PATH, False))
EXTRA_RUNS = (("dropout", 1, 0, DEFAULT_PATH, True),)


def search(cfg, batches, runs):
    """The first initial state (seed 100, 101, ...) whose runs are all well
    conditioned: (seed, init, conditioning, [(run..., rec, final, target)])."""
    for seed in range(100, 400):
        init = make_init(cfg, batches, seed)
        cond = Conditioning()
        out = []
        try:
            # the margins only shrink run by run: stop at the first failure
            for name, accum, passes, sw, extra in runs:
                out.append((name, accum, passes, sw, extra,
                            *run(cfg, init, batches, accum, cond, passes, sw, extra)))
                cond.check()
            return seed, init, cond, out
        except AssertionError as err:
            print("init seed %d: %s; next" % (seed, err))
    raise SystemExit("no well-conditioned initial state")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "tests", "data")
    os.makedirs(outdir, exist_ok=True)
    self_check()
    cfg = TrainConfig()
    batches = make_batches(cfg, np.random.RandomState(31))
    seed, init, cond, runs = search(cfg, batches, RUNS)
    seed_x, init_x, cond_x, runs_x = search(cfg, batches, EXTRA_RUNS)

    w = Writer()
    write_config(w, cfg)
    grids = [g for ctx, tgt in batches for g in list(ctx) + list(tgt)]
    w.add("grids.shape", np.array([g.shape for g in grids], np.int32))
    w.add("grids.cell_offsets", np.concatenate([[0], np.cumsum([g.size for g in grids])])
          .astype(np.int32))
    w.add("grids.cells", np.concatenate([g.reshape(-1) for g in grids]).astype(np.uint8))
    for n, v in init.items():
        w.add("init." + n, v)
    for name, accum, passes, sw, extra, rec, final, final_target in runs + runs_x:
        p = name + "."
        if extra:  # its own initial state
            for n, v in init_x.items():
                w.add(p + "init." + n, v)
        w.add(p + "grad_accum_steps", np.int32(accum))
        w.add(p + "ema_update_passes", np.int32(passes))
        if extra:
            w.add(p + "object_dropout", np.float32(cfg.object_dropout))
            w.add(p + "dead_code_threshold", np.float32(cfg.dead_code_threshold))
            w.add(p + "dead_code_max_per_step", np.int32(cfg.dead_code_max_per_step))
        if sw is not PLAIN:
            w.add(p + "aggregator", np.int32(AGGREGATOR_IDS[sw["aggregator"]]))
            for k in ("final_activation", "slot_embedding", "analogy_residual",
                      "grid_features"):
                w.add(p + k, np.int32(sw[k]))
            w.add(p + "vq_path", np.int32(sw["beside"]))  # VQJ_VQ_BESIDE = 1
        for k, v in rec.items():
            dtype = (np.int32 if k in ("optimizer_step", "refreshed", "dead_replaced",
                                       "context_tokens", "active_codes") else None)
            w.add(p + k, np.array(v), dtype)
        for n, v in final.items():
            w.add(p + "final." + n, v)
        for n, v in final_target.items():
            w.add(p + "target." + n, v)
        print("%s: total %s" % (name, " ".join("%.4f" % v for v in rec["total"])))
        print("  refreshed %s, dead replaced %s, active %s, grad_norm %s" % (
            rec["refreshed"], rec["dead_replaced"], rec["active_codes"],
            " ".join("%.3g" % v for v in rec["grad_norm"])))
        for k in ("infonce", "relational", "commitment", "sigreg", "invariance_color",
                  "invariance_translation", "invariance_symmetry"):
            print("  %-22s %s" % (k, " ".join("%.3g" % v for v in rec[k])))
    for what, sd, cd in (("", seed, cond), ("dropout run: ", seed_x, cond_x)):
        print("%sinit seed %d; margins: assignment %.3g, relu %.3g, refresh order %.3g, "
              "refresh share %.3g, temperature %.3g, dead count %.3g, dead order %.3g"
              % (what, sd, cd.assign, cd.relu, cd.refresh_order, cd.refresh_share, cd.tau,
                 cd.dead_count, cd.dead_order))
    path = os.path.join(outdir, "train.bin")
    w.write(path)
    print("%s: %d bytes" % (os.path.normpath(path), os.path.getsize(path)))


if __name__ == "__main__":
    main()
