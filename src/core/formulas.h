/* Scalar formulas that the C code and the CUDA kernels must compute alike,
 * defined once, as ggml's ggml-common.h does: both compilers read this
 * header. Each function is the formula of one element (one GELU value, one
 * Adam update, one hash); the loops, threads and memory layouts around it
 * stay in each backend (the cpu_ files of src/device, the .cu files of cuda).
 *
 * Bit identity: the .cu files are built with --fmad=false (Makefile), so
 * nvcc rounds each operation below exactly as the C compiler does; keep every
 * formula free of libm calls whose CUDA twin rounds differently, or say so
 * where one is used (tanhf, atanhf: a few ulp, tests/test_cuda.c).
 *
 * It sits in core, the lowest layer, because core itself uses one of them
 * (splitmix64 seeds vqji_rng). C11 and C++17 (nvcc, and cuda/emu/ with g++):
 * no restrict, no C-only syntax. */
#ifndef VQJ_FORMULAS_H
#define VQJ_FORMULAS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A function of this header: host and device under nvcc, a plain static
 * inline function in C (and in the CPU emulation of cuda/emu/). */
#ifdef __CUDACC__
#define VQJI_HD static __host__ __device__ __forceinline__
#else
#define VQJI_HD static inline
#endif

/* ---- Hashing ---- */

/* splitmix64's increment, the golden gamma 2^64 / φ. */
#define VQJI_SPLITMIX64_GAMMA 0x9E3779B97F4A7C15ull

/* splitmix64's finaliser: a bijective 64-bit mix with good avalanche. */
VQJI_HD uint64_t vqji_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The splitmix64 step (Steele, Lea and Flood 2014): add the golden gamma,
 * then the finaliser; the generator x_{k+1} = x_k + gamma outputs
 * vqji_splitmix64(x_k). */
VQJI_HD uint64_t vqji_splitmix64(uint64_t z) { return vqji_mix64(z + VQJI_SPLITMIX64_GAMMA); }

/* ---- Dropout (device.h, dropout_forward) ---- */

/* u_i = top 24 bits of splitmix64(splitmix64(seed ^ i)) / 2^24, in [0, 1)
 * and exact in float; every backend draws exactly this. */
VQJI_HD float vqji_dropout_uniform(uint64_t seed, uint64_t i)
{
    return (float)(vqji_splitmix64(vqji_splitmix64(seed ^ i)) >> 40) * (1.0f / 16777216.0f);
}

/* The factor of a kept element, 1 / (1 - p); p >= 1 drops everything (the
 * factor would be infinite), p <= 0 is the identity (no draw is made). */
VQJI_HD float vqji_dropout_keep(float p)
{
    return p > 0.0f && p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}

/* Element i's mask value: keep (vqji_dropout_keep(p)) or 0, for p > 0. */
VQJI_HD float vqji_dropout_factor(uint64_t seed, uint64_t i, float p, float keep)
{
    return vqji_dropout_uniform(seed, i) >= p ? keep : 0.0f;
}

/* ---- GELU, exact (erf) form ----
 * y = x Φ(x), Φ(x) = (1 + erf(x / √2)) / 2; dy/dx = Φ(x) + x φ(x). libm's
 * erff/expf per element made GELU cost as much as the GEMM beside it, so
 * erf and exp are branch-free float approximations that GCC -O2 vectorises
 * and nvcc rounds alike. Both are accurate to float rounding (a few 1e-7;
 * tests/test_layers.c sweeps them against double), so this is still the erf
 * form, not the tanh one. */

VQJI_HD uint32_t vqji_float_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

VQJI_HD float vqji_bits_float(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* |x| clamped to the float whose bits are `limit`, sign kept, done on the
 * bits: a float compare-and-select is a branch that -O2 does not vectorise,
 * an integer min is not. NaN stays a finite value here; callers multiply by
 * x, which brings the NaN back. */
VQJI_HD float vqji_clamp_abs(float x, uint32_t limit)
{
    uint32_t b = vqji_float_bits(x);
    uint32_t a = b & 0x7fffffffu; /* non-negative floats order like their bits */
    a = a < limit ? a : limit;
    return vqji_bits_float((b & 0x80000000u) | a);
}

/* erf(x) = x P(x²) / Q(x²) on [-4, 4] (Eigen's and XLA's rational
 * approximation); beyond 4, erf is ±1 in float. */
VQJI_HD float vqji_erf(float x)
{
    x = vqji_clamp_abs(x, 0x40800000u); /* 4.0f */
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 - 2.10102402082508e-06f;
    p = p * x2 - 5.69250639462346e-05f;
    p = p * x2 - 7.34990630326855e-04f;
    p = p * x2 - 2.95459980854025e-03f;
    p = p * x2 - 1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 - 2.13374055278905e-04f;
    q = q * x2 - 1.68282697438203e-03f;
    q = q * x2 - 7.37332916720468e-03f;
    q = q * x2 - 1.42647390514189e-02f;
    return x * p / q;
}

/* exp(x) for x in [-87, 0] (Cephes expf): x = n ln2 + r with |r| <= ln2/2,
 * e^r by a degree-7 polynomial, 2^n built in the exponent bits. Adding
 * 1.5 * 2^23 rounds x log2(e) to the integer n and leaves n in the low
 * mantissa bits. */
VQJI_HD float vqji_exp_nonpos(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23, bits 0x4B400000 */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    int32_t ti = (int32_t)vqji_float_bits(t);
    float r = x - n * 0.693359375f - n * -2.12194440e-4f; /* ln2 in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (ti - 0x4B400000 + 127) * (1 << 23);
    return p * vqji_bits_float((uint32_t)bits);
}

VQJI_HD float vqji_gelu(float x)
{
    return 0.5f * x * (1.0f + vqji_erf(x * 0.70710678118654752f));
}

/* dGELU/dx = Φ(x) + x φ(x). */
VQJI_HD float vqji_gelu_grad(float x)
{
    /* φ(13) ~ 1e-37 is 0 for every purpose; the clamp keeps exp's
     * argument -x²/2 >= -84.5 inside its range. */
    float xc = vqji_clamp_abs(x, 0x41500000u); /* 13.0f */
    float cdf = 0.5f + 0.5f * vqji_erf(x * 0.70710678118654752f);
    float pdf = 0.3989422804014327f * vqji_exp_nonpos(-0.5f * xc * xc);
    return cdf + x * pdf;
}

/* ---- Adam / AdamW (device.h, adam_update; docs/optimizer.md) ---- */

/* The float scalars of one update, formed once in double and rounded once,
 * as PyTorch does with its Python-float hyperparameters. */
typedef struct vqji_adam_consts {
    float beta1, beta2, omb1, omb2, neg_step, bc2_sqrt, eps, l2, shrink, grad_coef;
    int use_l2, use_shrink;
} vqji_adam_consts;

VQJI_HD vqji_adam_consts vqji_adam_consts_make(double lr, float beta1, float beta2, float eps,
                                               float weight_decay, int decoupled,
                                               double bias_correction1,
                                               double bias_correction2, float grad_coef)
{
    vqji_adam_consts k;
    k.beta1 = beta1;
    k.beta2 = beta2;
    k.omb1 = (float)(1.0 - (double)beta1);
    k.omb2 = (float)(1.0 - (double)beta2);
    k.neg_step = (float)(-(lr / bias_correction1));
    k.bc2_sqrt = (float)sqrt(bias_correction2);
    k.eps = eps;
    k.l2 = decoupled ? 0.0f : weight_decay;
    k.shrink = decoupled ? (float)(1.0 - lr * (double)weight_decay) : 1.0f;
    k.grad_coef = grad_coef;
    k.use_l2 = k.l2 != 0.0f;
    k.use_shrink = decoupled && weight_decay != 0.0f;
    return k;
}

/* One element in torch's operation order, in float: g = grad_coef grad;
 * Adam: g += l2 p; AdamW: p *= shrink; m = beta1 m + (1 - beta1) g;
 * v = beta2 v + (1 - beta2) g²; p -= step m / (sqrt(v) / sqrt(bc2) + eps).
 * Updates *m and *v; returns the new parameter. */
VQJI_HD float vqji_adam_element(const vqji_adam_consts k, float p, float grad, float *m,
                                float *v)
{
    float g = grad * k.grad_coef;
    if (k.use_l2)
        g = g + k.l2 * p;
    if (k.use_shrink)
        p = p * k.shrink;
    float mi = *m * k.beta1 + k.omb1 * g;
    float vi = *v * k.beta2 + k.omb2 * g * g;
    float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
    *m = mi;
    *v = vi;
    return p + k.neg_step * mi / denom;
}

/* ---- EMA updates ---- */

/* 1 - decay, formed in double and rounded once (ema_blend's `rest`). */
VQJI_HD float vqji_ema_rest(float decay) { return (float)(1.0 - (double)decay); }

/* One element of target = decay target + (1 - decay) online (ema_blend). */
VQJI_HD float vqji_ema_blend1(float target, float online, float decay, float rest)
{
    return target * decay + rest * online;
}

/* The codebook's Laplace-smoothed EMA count (vq_ema_normalize), in double:
 * c_k = (counts_k + eps) / (total + k eps) * total, with
 * denom = vqji_ema_denom(total, k, eps). */
VQJI_HD double vqji_ema_denom(float total, int k, float eps)
{
    return (double)total + (double)k * eps;
}

VQJI_HD double vqji_ema_smoothed(float count, float eps, double denom, float total)
{
    return ((double)count + eps) / denom * (double)total;
}

/* ---- FSQ's per-dimension bound (device.h, fsq_forward) ---- */

/* One dimension of L levels: half_l = (L - 1)(1 + eps) / 2, o = 0.5 for
 * even L (else 0), shift = atanh(o / half_l), w = L div 2. */
typedef struct vqji_fsq_dim {
    float half_l, offset, shift;
    int w, levels;
} vqji_fsq_dim;

/* VQJI_FSQ_EPS, the bound's margin (as vector-quantize-pytorch), so that
 * tanh's open range still rounds to the outermost levels. */
#define VQJI_FSQ_EPS 1e-3f

VQJI_HD vqji_fsq_dim vqji_fsq_dim_of(int levels)
{
    vqji_fsq_dim f;
    f.levels = levels;
    f.half_l = (float)(levels - 1) * (1.0f + VQJI_FSQ_EPS) / 2.0f;
    f.offset = levels % 2 == 0 ? 0.5f : 0.0f;
    f.shift = atanhf(f.offset / f.half_l);
    f.w = levels / 2;
    return f;
}

/* The level r of t = tanh(p + shift): round half to even (as torch.round)
 * of t half_l - o, clamped to [-w, L - 1 - w]. */
VQJI_HD float vqji_fsq_level(float t, vqji_fsq_dim f)
{
    float r = rintf(t * f.half_l - f.offset);
    if (r < (float)-f.w)
        r = (float)-f.w;
    if (r > (float)(f.levels - 1 - f.w))
        r = (float)(f.levels - 1 - f.w);
    return r;
}

/* The straight-through gradient of one element: dqc half_l (1 - t²) / w. */
VQJI_HD float vqji_fsq_grad(float dqc, float t, vqji_fsq_dim f)
{
    return dqc * (f.half_l / (float)f.w) * (1.0f - t * t);
}

/* ---- Relational consistency (device.h, relational_consistency) ---- */

/* The weights of the two terms: ca = w_align / mm, cs = w_self / (T mm). */
VQJI_HD double vqji_relational_align_coef(float w_align, int mm)
{
    return (double)w_align / mm;
}

VQJI_HD double vqji_relational_self_coef(float w_self, int t, int mm)
{
    return (double)w_self / ((double)t * mm);
}

/* One entry e of one example's M x M matrices: rc[k * stride] is r_k (k <
 * T), rt the target's. Writes dc[k * stride] = scale * 2 (ca (rbar - rt) / T
 * + cs (r_k - rbar)) (the path through rbar of the variance term vanishes,
 * since Σ_k (r_k - rbar) = 0) and returns, with *dtg = -scale * 2 ca
 * (rbar - rt), the entry's loss ca (rbar - rt)² + cs Σ_k (r_k - rbar)². */
VQJI_HD double vqji_relational_entry(int t, size_t stride, const float *rc, float rt, double ca,
                                     double cs, float scale, float *dc, float *dtg)
{
    double rbar = 0.0;
    for (int k = 0; k < t; k++)
        rbar += rc[(size_t)k * stride];
    rbar /= t;
    double diff = rbar - rt, var = 0.0;
    for (int k = 0; k < t; k++) {
        double dev_k = rc[(size_t)k * stride] - rbar;
        var += dev_k * dev_k;
        dc[(size_t)k * stride] = (float)(scale * 2.0 * (ca * diff / t + cs * dev_k));
    }
    *dtg = (float)(-scale * 2.0 * ca * diff);
    return ca * diff * diff + cs * var;
}

#endif
