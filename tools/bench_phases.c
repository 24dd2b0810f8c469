/* `vqjepa bench --only train_step --phases`: where a training step's time
 * goes, by kind of device op, and how the step compares with plain sgemm at
 * its own GEMM shapes.
 *
 * The context's op table is replaced by a copy whose entries time the
 * original op (CLOCK_MONOTONIC around each call; an op that calls another,
 * like vq_assign's GEMM, is charged only for its own time) and, for gemm,
 * count 2 m n k FLOPs and keep the call's shape. Time the wrappers do not
 * see (tokenizing, host loops, the trainer's own code) is "host/other".
 * After the timed steps, bench_phases_sgemm() replays every recorded GEMM
 * call, same shapes, flags and thread count, through cblas_sgemm on fresh
 * buffers: that time is what the step's GEMMs cost at this machine's
 * sgemm rate, and (replayed GEMM time) / (step time) is the share of that
 * rate the whole step reaches. */
#include "core/core.h"
#include "device/device.h"

#include "bench_phases.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    PH_GEMM,
    PH_ATTENTION,
    PH_LAYERNORM,
    PH_ACTIVATION,
    PH_DROPOUT,
    PH_BIAS,
    PH_CODEBOOK,
    PH_LOSS,
    PH_OPTIMIZER,
    PH_MEMORY,
    PH_SMALL,
    PH_COUNT
};

static const char *const phase_names[PH_COUNT] = {
    "gemm",        "attention", "layernorm", "gelu/relu/tanh", "dropout",       "bias",
    "codebook",    "losses",    "optimizer", "fill/copy/axpy", "segment/aggr/l2/gru",
};

typedef struct gemm_call {
    int m, n, k, ta, tb;
} gemm_call;

static const vqji_device_ops *orig;
static vqji_device_ops timed;
static double phase_s[PH_COUNT], child_s, gemm_flop;
static gemm_call *calls;
static size_t num_calls, cap_calls;
static int recording;
static double replayed_s; /* < 0: not yet replayed since the last reset */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Run CALL, charge its own time (minus that of ops it called) to phase P. */
#define TIMED(P, CALL)                                                                         \
    do {                                                                                       \
        double saved_ = child_s, t0_ = now_s();                                                \
        child_s = 0.0;                                                                         \
        CALL;                                                                                  \
        double dt_ = now_s() - t0_;                                                            \
        phase_s[P] += dt_ - child_s;                                                           \
        child_s = saved_ + dt_;                                                                \
    } while (0)

/* A wrapper for a void op: W(phase, name, (params), (args)). */
#define W(P, NAME, PARAMS, ARGS)                                                               \
    static void w_##NAME PARAMS { TIMED(P, orig->NAME ARGS); }

static void w_gemm(vqji_device *dev, bool ta, bool tb, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    TIMED(PH_GEMM, orig->gemm(dev, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc));
    if (!recording || m <= 0 || n <= 0 || k <= 0)
        return;
    gemm_flop += 2.0 * m * n * k;
    if (num_calls == cap_calls) {
        size_t cap = cap_calls ? 2 * cap_calls : 4096;
        gemm_call *grown = realloc(calls, cap * sizeof *grown);
        if (!grown)
            return; /* the replay then covers fewer calls; bench_phases_sgemm says so */
        calls = grown;
        cap_calls = cap;
    }
    calls[num_calls++] = (gemm_call){m, n, k, ta, tb};
}

W(PH_MEMORY, fill, (vqji_device * d, size_t n, float v, float *x), (d, n, v, x))
W(PH_MEMORY, scale, (vqji_device * d, size_t n, float a, float *x), (d, n, a, x))
W(PH_MEMORY, axpy, (vqji_device * d, size_t n, float a, const float *x, float *y),
  (d, n, a, x, y))
W(PH_MEMORY, copy, (vqji_device * d, void *dst, const void *src, size_t b), (d, dst, src, b))
W(PH_BIAS, bias_forward, (vqji_device * d, int n, int c, const float *b, float *y),
  (d, n, c, b, y))
W(PH_BIAS, bias_backward, (vqji_device * d, int n, int c, const float *dy, float *db),
  (d, n, c, dy, db))
W(PH_ACTIVATION, gelu_forward, (vqji_device * d, size_t n, const float *x, float *y),
  (d, n, x, y))
W(PH_ACTIVATION, gelu_backward,
  (vqji_device * d, size_t n, const float *x, const float *dy, float *dx), (d, n, x, dy, dx))
W(PH_ACTIVATION, relu_forward, (vqji_device * d, size_t n, const float *x, float *y),
  (d, n, x, y))
W(PH_ACTIVATION, relu_backward,
  (vqji_device * d, size_t n, const float *x, const float *dy, float *dx), (d, n, x, dy, dx))
W(PH_ACTIVATION, tanh_forward, (vqji_device * d, size_t n, const float *x, float *y),
  (d, n, x, y))
W(PH_ACTIVATION, tanh_backward,
  (vqji_device * d, size_t n, const float *y, const float *dy, float *dx), (d, n, y, dy, dx))
W(PH_LAYERNORM, layernorm_forward,
  (vqji_device * d, int n, int c, const float *x, const float *g, const float *b, float eps,
   float *y, float *mean, float *rstd),
  (d, n, c, x, g, b, eps, y, mean, rstd))
W(PH_LAYERNORM, layernorm_backward,
  (vqji_device * d, int n, int c, const float *dy, const float *x, const float *g,
   const float *mean, const float *rstd, float *dx, float *dg, float *db),
  (d, n, c, dy, x, g, mean, rstd, dx, dg, db))
W(PH_DROPOUT, dropout_forward,
  (vqji_device * d, size_t n, float p, uint64_t seed, const float *x, float *y, float *mask),
  (d, n, p, seed, x, y, mask))
W(PH_DROPOUT, dropout_backward,
  (vqji_device * d, size_t n, const float *mask, const float *dy, float *dx),
  (d, n, mask, dy, dx))
W(PH_ATTENTION, attention_forward,
  (vqji_device * d, int g, const int32_t *o, const uint8_t *a, const int64_t *ao, int dd, int h,
   const float *qkv, float *out, float *probs),
  (d, g, o, a, ao, dd, h, qkv, out, probs))
W(PH_ATTENTION, attention_backward,
  (vqji_device * d, int g, const int32_t *o, const uint8_t *a, const int64_t *ao, int dd, int h,
   const float *qkv, const float *probs, const float *dout, float *dqkv),
  (d, g, o, a, ao, dd, h, qkv, probs, dout, dqkv))
W(PH_SMALL, segment_mean_forward,
  (vqji_device * d, int g, const int32_t *o, int dd, const float *x, float *y),
  (d, g, o, dd, x, y))
W(PH_SMALL, segment_mean_backward,
  (vqji_device * d, int g, const int32_t *o, int dd, const float *dy, float *dx),
  (d, g, o, dd, dy, dx))
W(PH_SMALL, l2norm_forward,
  (vqji_device * d, int n, int c, const float *x, float eps, float *y, float *norm),
  (d, n, c, x, eps, y, norm))
W(PH_SMALL, l2norm_backward,
  (vqji_device * d, int n, int c, const float *x, const float *y, const float *norm, float eps,
   const float *dy, float *dx),
  (d, n, c, x, y, norm, eps, dy, dx))
W(PH_SMALL, aggregate_attention_forward,
  (vqji_device * d, int b, int t, int dd, const float *x, const float *q, float *y, float *w),
  (d, b, t, dd, x, q, y, w))
W(PH_SMALL, aggregate_attention_backward,
  (vqji_device * d, int b, int t, int dd, const float *x, const float *q, const float *w,
   const float *dy, float *dx, float *dq),
  (d, b, t, dd, x, q, w, dy, dx, dq))
W(PH_CODEBOOK, vq_assign,
  (vqji_device * d, int n, int dd, int k, const float *z, const float *e, float *s, int32_t *idx,
   float *dist),
  (d, n, dd, k, z, e, s, idx, dist))
W(PH_CODEBOOK, vq_accumulate,
  (vqji_device * d, int n, int dd, int k, const float *z, const int32_t *idx, float *counts,
   float *sums),
  (d, n, dd, k, z, idx, counts, sums))
W(PH_CODEBOOK, vq_gather,
  (vqji_device * d, int n, int dd, const float *z, const float *e, const int32_t *idx, float *q,
   float *err),
  (d, n, dd, z, e, idx, q, err))
W(PH_CODEBOOK, vq_ema_normalize,
  (vqji_device * d, int k, int dd, float eps, float total, const float *counts,
   const float *sums, float *e),
  (d, k, dd, eps, total, counts, sums, e))
W(PH_CODEBOOK, vq_min_sqdist,
  (vqji_device * d, int n, int dd, const float *z, const float *c, float *mind),
  (d, n, dd, z, c, mind))
W(PH_CODEBOOK, vq_rotation_backward,
  (vqji_device * d, int n, int dd, const float *u, const float *q, const float *dq, float *du),
  (d, n, dd, u, q, dq, du))
W(PH_CODEBOOK, fsq_forward,
  (vqji_device * d, int n, const vqji_fsq_levels *lv, const float *p, float *t, float *qc,
   int32_t *idx),
  (d, n, lv, p, t, qc, idx))
W(PH_CODEBOOK, fsq_backward,
  (vqji_device * d, int n, const vqji_fsq_levels *lv, const float *t, const float *dqc,
   float *dp),
  (d, n, lv, t, dqc, dp))
W(PH_CODEBOOK, vq_copy_block,
  (vqji_device * d, int rows, int cols, const float *src, int lds, float *dst, int ldd),
  (d, rows, cols, src, lds, dst, ldd))
W(PH_LOSS, infonce_xent,
  (vqji_device * d, int rows, int cols, int ld, float it, float sc, float *s, float *loss,
   float *dlt),
  (d, rows, cols, ld, it, sc, s, loss, dlt))
W(PH_LOSS, sigreg_epps_pulley,
  (vqji_device * d, int sl, int n, int pts, float dt, const float *w, float sc, const float *x,
   float *stat, float *dx),
  (d, sl, n, pts, dt, w, sc, x, stat, dx))
W(PH_LOSS, relational_distances_forward,
  (vqji_device * d, int g, const int32_t *o, const uint8_t *a, const int64_t *ao, int dd, int m,
   const float *h, float *r),
  (d, g, o, a, ao, dd, m, h, r))
W(PH_LOSS, relational_distances_backward,
  (vqji_device * d, int g, const int32_t *o, const uint8_t *a, const int64_t *ao, int dd, int m,
   const float *h, const float *dr, float *dh),
  (d, g, o, a, ao, dd, m, h, dr, dh))
W(PH_LOSS, relational_consistency,
  (vqji_device * d, int b, int t, int mm, const float *rc, const float *rt, float wa, float ws,
   float sc, float *loss, float *drc, float *drt),
  (d, b, t, mm, rc, rt, wa, ws, sc, loss, drc, drt))
W(PH_OPTIMIZER, adam_update,
  (vqji_device * d, size_t n, float *p, const float *g, float *m, float *v, double lr, float b1,
   float b2, float eps, float wd, bool dec, double bc1, double bc2, float gc),
  (d, n, p, g, m, v, lr, b1, b2, eps, wd, dec, bc1, bc2, gc))
W(PH_OPTIMIZER, ema_blend, (vqji_device * d, size_t n, float decay, const float *o, float *t),
  (d, n, decay, o, t))

static double w_sum_squares(vqji_device *d, size_t n, const float *x)
{
    double r = 0.0;
    TIMED(PH_OPTIMIZER, r = orig->sum_squares(d, n, x));
    return r;
}

void bench_phases_install(vqj_context *ctx)
{
    vqji_device *dev = ctx->device;
    orig = dev->ops;
    timed = *orig;
    timed.gemm = w_gemm;
#define SET(NAME) timed.NAME = orig->NAME ? w_##NAME : NULL
    SET(fill);
    SET(scale);
    SET(axpy);
    SET(copy);
    SET(bias_forward);
    SET(bias_backward);
    SET(gelu_forward);
    SET(gelu_backward);
    SET(relu_forward);
    SET(relu_backward);
    SET(tanh_forward);
    SET(tanh_backward);
    SET(layernorm_forward);
    SET(layernorm_backward);
    SET(dropout_forward);
    SET(dropout_backward);
    SET(attention_forward);
    SET(attention_backward);
    SET(segment_mean_forward);
    SET(segment_mean_backward);
    SET(l2norm_forward);
    SET(l2norm_backward);
    SET(aggregate_attention_forward);
    SET(aggregate_attention_backward);
    SET(vq_assign);
    SET(vq_accumulate);
    SET(vq_gather);
    SET(vq_ema_normalize);
    SET(vq_min_sqdist);
    SET(vq_rotation_backward);
    SET(fsq_forward);
    SET(fsq_backward);
    SET(vq_copy_block);
    SET(infonce_xent);
    SET(sigreg_epps_pulley);
    SET(relational_distances_forward);
    SET(relational_distances_backward);
    SET(relational_consistency);
    SET(adam_update);
    SET(ema_blend);
    SET(sum_squares);
#undef SET
    dev->ops = &timed;
    bench_phases_reset(0);
}

void bench_phases_uninstall(vqj_context *ctx)
{
    if (orig && ctx->device->ops == &timed)
        ctx->device->ops = orig;
    free(calls);
    calls = NULL;
    num_calls = cap_calls = 0;
    recording = 0;
}

void bench_phases_reset(int record)
{
    memset(phase_s, 0, sizeof phase_s);
    child_s = gemm_flop = 0.0;
    num_calls = 0;
    recording = record;
    replayed_s = -1.0;
}

/* The recorded GEMMs again through cblas_sgemm, on buffers of the largest
 * size, best of `rounds`; seconds for all of them. */
static double replay_s(int rounds)
{
    size_t amax = 1, bmax = 1, cmax = 1;
    for (size_t i = 0; i < num_calls; i++) {
        const gemm_call *g = &calls[i];
        size_t a = (size_t)g->m * g->k, b = (size_t)g->k * g->n, c = (size_t)g->m * g->n;
        amax = a > amax ? a : amax;
        bmax = b > bmax ? b : bmax;
        cmax = c > cmax ? c : cmax;
    }
    float *a = malloc(amax * sizeof *a), *b = malloc(bmax * sizeof *b);
    float *c = malloc(cmax * sizeof *c);
    double best = -1.0;
    if (a && b && c) {
        for (size_t i = 0; i < amax; i++)
            a[i] = (float)(i % 17) * 0.01f - 0.08f;
        for (size_t i = 0; i < bmax; i++)
            b[i] = (float)(i % 13) * 0.01f - 0.06f;
        memset(c, 0, cmax * sizeof *c);
        for (int r = 0; r < rounds; r++) {
            double t0 = now_s();
            for (size_t i = 0; i < num_calls; i++) {
                const gemm_call *g = &calls[i];
                cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,
                            g->tb ? CblasTrans : CblasNoTrans, g->m, g->n, g->k, 1.0f, a,
                            g->ta ? g->m : g->k, b, g->tb ? g->k : g->n, 0.0f, c, g->n);
            }
            double dt = now_s() - t0;
            if (best < 0 || dt < best)
                best = dt;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

void bench_phases_report(FILE *f, const char *variant, int steps, double step_s, int json)
{
    double known = 0.0;
    for (int p = 0; p < PH_COUNT; p++)
        known += phase_s[p];
    double other = steps * step_s - known;
    if (replayed_s < 0 && num_calls)
        replayed_s = replay_s(2);
    double sgemm_s = num_calls ? replayed_s : -1.0;
    double per = steps > 0 ? 1e3 / steps : 0.0;
    if (json) {
        fprintf(f, "{\"what\":\"train_step_phases\",\"impl\":\"c\",\"variant\":\"%s\"", variant);
        for (int p = 0; p < PH_COUNT; p++)
            fprintf(f, ",\"%s_ms\":%.2f", phase_names[p], phase_s[p] * per);
        fprintf(f, ",\"host/other_ms\":%.2f,\"step_ms\":%.2f,\"gemm_gflop\":%.3f", other * per,
                step_s * 1e3, gemm_flop * 1e-9 / (steps > 0 ? steps : 1));
        if (sgemm_s > 0)
            fprintf(f, ",\"sgemm_ms\":%.2f,\"sgemm_gflops\":%.1f,\"step_vs_sgemm\":%.3f",
                    sgemm_s * per, gemm_flop * 1e-9 / sgemm_s, sgemm_s / (steps * step_s));
        fprintf(f, "}\n");
        return;
    }
    fprintf(f, "train_step %s: time by phase, ms per step (share of the step)\n", variant);
    for (int p = 0; p < PH_COUNT; p++)
        fprintf(f, "  %-22s %9.1f  %5.1f%%\n", phase_names[p], phase_s[p] * per,
                100.0 * phase_s[p] / (steps * step_s));
    fprintf(f, "  %-22s %9.1f  %5.1f%%\n", "host/other", other * per,
            100.0 * other / (steps * step_s));
    fprintf(f, "  GEMMs: %.1f GFLOP per step, %.1f GFLOP/s inside the step\n",
            gemm_flop * 1e-9 / (steps > 0 ? steps : 1),
            phase_s[PH_GEMM] > 0 ? gemm_flop * 1e-9 / phase_s[PH_GEMM] : 0.0);
    if (sgemm_s > 0)
        fprintf(f,
                "  the same %zu GEMM calls replayed through cblas_sgemm: %.1f ms per step, "
                "%.1f GFLOP/s; the step runs at %.1f%% of that rate\n",
                num_calls, sgemm_s * per, gemm_flop * 1e-9 / sgemm_s,
                100.0 * sgemm_s / (steps * step_s));
}
