/* CPU vector-quantization kernels: nearest code and EMA statistics
 * (docs/model.md, "Codebook"). The nearest-code search is one GEMM plus a
 * tight argmin; everything else is O(n d) or O(k d). The loops run on the
 * context's thread pool, split by row or by code so that each output is
 * computed as the serial loop would (threadpool.h). */
#include "device/cpu.h"

#include <math.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Rows per GEMM in vq_assign: the score block (rows x k floats, 768 KiB for
 * k = 768) stays in cache between the GEMM that writes it and the argmin that
 * reads it, instead of a round trip through memory for all n x k scores. */
#define VQ_ASSIGN_ROWS 256

/* Eight independent partial sums: the compiler may vectorize them without
 * reassociating a single accumulator (which it must not do without
 * -ffast-math). */
static inline float sqnorm(const float *x, int d)
{
    float a[8] = {0};
    int j = 0;
    for (; j + 8 <= d; j += 8)
        for (int l = 0; l < 8; l++)
            a[l] += x[j + l] * x[j + l];
    float s = 0.0f;
    for (; j < d; j++)
        s += x[j] * x[j];
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + s;
}

static inline float sqdiff(const float *x, const float *y, int d)
{
    float a[8] = {0};
    int j = 0;
    for (; j + 8 <= d; j += 8)
        for (int l = 0; l < 8; l++) {
            float t = x[j + l] - y[j + l];
            a[l] += t * t;
        }
    float s = 0.0f;
    for (; j < d; j++) {
        float t = x[j] - y[j];
        s += t * t;
    }
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + s;
}

/* argmin_j (s[j] + en[j]) in one pass over the row, lowest j on ties: each
 * lane keeps the first index at its running minimum (strict <), and lanes
 * are merged by value, then index. NaN entries never win; a row where
 * nothing is below +inf gives index 0 and that entry's value. */
#if defined(__SSE2__)
static inline int32_t row_argmin(const float *s, const float *en, int k, float *best)
{
    /* Two 4-lane accumulators hide the compare-select latency. */
    __m128 ma = _mm_set1_ps(INFINITY), mb = ma;
    __m128i ia = _mm_set1_epi32(-1), ib = ia;
    __m128i ja = _mm_setr_epi32(0, 1, 2, 3), jb = _mm_setr_epi32(4, 5, 6, 7);
    const __m128i step = _mm_set1_epi32(8);
    int j = 0;
    for (; j + 8 <= k; j += 8) {
        __m128 xa = _mm_add_ps(_mm_loadu_ps(s + j), _mm_loadu_ps(en + j));
        __m128 xb = _mm_add_ps(_mm_loadu_ps(s + j + 4), _mm_loadu_ps(en + j + 4));
        __m128i lta = _mm_castps_si128(_mm_cmplt_ps(xa, ma));
        __m128i ltb = _mm_castps_si128(_mm_cmplt_ps(xb, mb));
        ma = _mm_min_ps(xa, ma);
        mb = _mm_min_ps(xb, mb);
        ia = _mm_or_si128(_mm_and_si128(lta, ja), _mm_andnot_si128(lta, ia));
        ib = _mm_or_si128(_mm_and_si128(ltb, jb), _mm_andnot_si128(ltb, ib));
        ja = _mm_add_epi32(ja, step);
        jb = _mm_add_epi32(jb, step);
    }
    float m8[8];
    int32_t i8[8];
    _mm_storeu_ps(m8, ma);
    _mm_storeu_ps(m8 + 4, mb);
    _mm_storeu_si128((__m128i *)i8, ia);
    _mm_storeu_si128((__m128i *)(i8 + 4), ib);
    float m = INFINITY;
    int32_t bi = -1;
    for (int l = 0; l < 8; l++)
        if (i8[l] >= 0 && (m8[l] < m || (m8[l] == m && i8[l] < bi))) {
            m = m8[l];
            bi = i8[l];
        }
    for (; j < k; j++) {
        float x = s[j] + en[j];
        if (x < m) {
            m = x;
            bi = j;
        }
    }
    if (bi < 0) {
        *best = s[0] + en[0];
        return 0;
    }
    *best = m;
    return bi;
}
#else
static inline int32_t row_argmin(const float *s, const float *en, int k, float *best)
{
    float m = INFINITY;
    int32_t bi = -1;
    for (int j = 0; j < k; j++) {
        float x = s[j] + en[j];
        if (x < m) {
            m = x;
            bi = j;
        }
    }
    if (bi < 0) {
        *best = s[0] + en[0];
        return 0;
    }
    *best = m;
    return bi;
}
#endif

/* The VQ ops' arguments, for the pool's range functions. */
typedef struct vq_args {
    int n, d, k;
    const float *z, *e, *s, *en;
    const int32_t *idx;
    int32_t *idx_out;
    float *dist, *counts, *sums, *q, *out;
    const float *counts_in, *sums_in; /* vq_ema_normalize's statistics */
    float eps;
    double total;
} vq_args;

/* Rows [i0, i1) of a score block s [rows x k] of the rows z: nearest code
 * and distance (idx_out, dist, both offset to the block). */
static void assign_rows(void *arg, size_t i0, size_t i1)
{
    const vq_args *w = arg;
    const int d = w->d, k = w->k;
    for (size_t i = i0; i < i1; i++) {
        float best;
        w->idx_out[i] = row_argmin(w->s + i * (size_t)k, w->en, k, &best);
        float dd = sqnorm(w->z + i * (size_t)d, d) + best;
        w->dist[i] = dd > 0.0f ? dd : (dd == dd ? 0.0f : dd);
    }
}

/* Code norms en (out) [k] of e, codes [c0, c1). */
static void code_norms(void *arg, size_t c0, size_t c1)
{
    const vq_args *w = arg;
    for (size_t c = c0; c < c1; c++)
        w->out[c] = sqnorm(w->e + c * (size_t)w->d, w->d);
}

static void cpu_vq_assign(vqji_device *dev, int n, int d, int k, const float *z, const float *e,
                          float *scratch, int32_t *idx, float *dist)
{
    if (n <= 0 || k <= 0)
        return;
    vqji_pool *pool = vqji_cpu_pool(dev);
    float *en = scratch; /* ||e_k||^2, then the score block */
    float *s = scratch + k;
    vq_args w = {.d = d, .k = k, .e = e, .s = s, .en = en, .out = en};
    size_t min_rows = VQJI_PAR_MIN_ELEMS / ((size_t)d + 1) + 1;
    vqji_parallel_for(pool, (size_t)k, min_rows, 1, code_norms, &w);
    for (int r0 = 0; r0 < n; r0 += VQ_ASSIGN_ROWS) {
        int m = n - r0 < VQ_ASSIGN_ROWS ? n - r0 : VQ_ASSIGN_ROWS;
        const float *zb = z + (size_t)r0 * d;
        /* alpha = -2 is exact, so s + en equals ||e||^2 - 2 z.e as specified. */
        dev->ops->gemm(dev, false, true, m, k, d, -2.0f, zb, d, e, d, 0.0f, s, k);
        w.z = zb;
        w.idx_out = idx + r0;
        w.dist = dist + r0;
        vqji_parallel_for(pool, (size_t)m, VQJI_PAR_MIN_ELEMS / ((size_t)k + 1) + 1, 1,
                          assign_rows, &w);
    }
}

/* Codes [c0, c1): every thread scans all rows in order and adds those
 * assigned to its codes, so each code's sums are the serial ones. */
static void accumulate_codes(void *arg, size_t c0, size_t c1)
{
    const vq_args *w = arg;
    const int n = w->n, d = w->d;
    const float *z = w->z;
    const int32_t *idx = w->idx;
    float *counts = w->counts, *sums = w->sums;
    for (int i = 0; i < n; i++) {
        int32_t c = idx[i];
        if (c < (int32_t)c0 || c >= (int32_t)c1)
            continue;
        if (counts)
            counts[c] += 1.0f;
        if (sums) {
            float *dst = sums + (size_t)c * d;
            const float *src = z + (size_t)i * d;
            for (int j = 0; j < d; j++)
                dst[j] += src[j];
        }
    }
}

static void cpu_vq_accumulate(vqji_device *dev, int n, int d, int k, const float *z,
                              const int32_t *idx, float *counts, float *sums)
{
    if (n <= 0 || k <= 0)
        return;
    vq_args w = {.n = n, .d = d, .z = z, .idx = idx, .counts = counts, .sums = sums};
    /* Parallel only when there are sums to add (counts alone are a scan). */
    size_t min_codes = sums && (size_t)n * (size_t)d >= VQJI_PAR_MIN_ELEMS ? 16 : (size_t)k;
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)k, min_codes, 1, accumulate_codes, &w);
}

/* Rows [i0, i1): q, err (dist) from z, e, idx. */
static void gather_rows(void *arg, size_t i0, size_t i1)
{
    const vq_args *w = arg;
    const int d = w->d;
    const float *z = w->z, *e = w->e;
    const int32_t *idx = w->idx;
    float *q = w->q, *err = w->dist;
    for (int i = (int)i0; i < (int)i1; i++) {
        const float *code = e + (size_t)idx[i] * d;
        if (err)
            err[i] = sqdiff(z + (size_t)i * d, code, d);
        memcpy(q + (size_t)i * d, code, (size_t)d * sizeof(float));
    }
}

static void cpu_vq_gather(vqji_device *dev, int n, int d, const float *z, const float *e,
                          const int32_t *idx, float *q, float *err)
{
    vq_args w = {.d = d, .z = z, .e = e, .idx = idx, .q = q, .dist = err};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)(n > 0 ? n : 0),
                      VQJI_PAR_MIN_ELEMS / ((size_t)d + 1) + 1, 1, gather_rows, &w);
}

/* Codes [c0, c1) of e (out) from counts, sums; k in n. */
static void ema_normalize_codes(void *arg, size_t c0, size_t c1)
{
    const vq_args *w = arg;
    const int d = w->d;
    const float eps = w->eps, *counts = w->counts_in, *sums = w->sums_in;
    float *e = w->out;
    const double denom = vqji_ema_denom(w->total, w->n, eps);
    for (int c = (int)c0; c < (int)c1; c++) {
        double smoothed = vqji_ema_smoothed(counts[c], eps, denom, w->total);
        const float *src = sums + (size_t)c * d;
        float *dst = e + (size_t)c * d;
        for (int j = 0; j < d; j++)
            dst[j] = (float)(src[j] / smoothed);
    }
}

static void cpu_vq_ema_normalize(vqji_device *dev, int k, int d, float eps, float total,
                                 const float *counts, const float *sums, float *e)
{
    if (!(total > 0.0f) || k <= 0)
        return;
    vq_args w = {.n = k, .d = d, .eps = eps, .total = total, .counts_in = counts,
                 .sums_in = sums, .out = e};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)k, VQJI_PAR_MIN_ELEMS / ((size_t)d + 1) + 1,
                      1, ema_normalize_codes, &w);
}

/* Rows [i0, i1) of mind (out) against the code e. */
static void min_sqdist_rows(void *arg, size_t i0, size_t i1)
{
    const vq_args *w = arg;
    for (size_t i = i0; i < i1; i++) {
        float dd = sqdiff(w->z + i * (size_t)w->d, w->e, w->d);
        if (dd < w->out[i])
            w->out[i] = dd;
    }
}

static void cpu_vq_min_sqdist(vqji_device *dev, int n, int d, const float *z, const float *c,
                              float *mind)
{
    vq_args w = {.d = d, .z = z, .e = c, .out = mind};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)(n > 0 ? n : 0),
                      VQJI_PAR_MIN_ELEMS / ((size_t)d + 1) + 1, 1, min_sqdist_rows, &w);
}

static void cpu_fsq_forward(vqji_device *dev, int n, const vqji_fsq_levels *lv, const float *p,
                            float *t, float *qc, int32_t *idx)
{
    (void)dev;
    const int l = lv->n;
    for (int i = 0; i < n; i++) {
        int32_t code = 0, basis = 1;
        for (int j = 0; j < l; j++) {
            const vqji_fsq_dim f = vqji_fsq_dim_of(lv->l[j]);
            size_t o = (size_t)i * l + j;
            float tj = tanhf(p[o] + f.shift);
            t[o] = tj;
            float r = vqji_fsq_level(tj, f);
            qc[o] = r / (float)f.w;
            code += ((int32_t)r + f.w) * basis;
            basis *= lv->l[j];
        }
        idx[i] = code;
    }
}

static void cpu_fsq_backward(vqji_device *dev, int n, const vqji_fsq_levels *lv, const float *t,
                             const float *dqc, float *dp)
{
    (void)dev;
    const int l = lv->n;
    for (int j = 0; j < l; j++) {
        const vqji_fsq_dim f = vqji_fsq_dim_of(lv->l[j]);
        for (int i = 0; i < n; i++) {
            size_t o = (size_t)i * l + j;
            dp[o] += vqji_fsq_grad(dqc[o], t[o], f);
        }
    }
}

static void cpu_vq_rotation_backward(vqji_device *dev, int n, int d, const float *u,
                                     const float *q, const float *dq, float *du)
{
    (void)dev;
    for (int i = 0; i < n; i++) {
        const float *ui = u + (size_t)i * d, *qi = q + (size_t)i * d, *gi = dq + (size_t)i * d;
        float *di = du + (size_t)i * d;
        double nu = sqrt((double)sqnorm(ui, d)), nq = sqrt((double)sqnorm(qi, d));
        double nr = 0.0, rg = 0.0, bg = 0.0;
        if (nu >= VQJI_ROTATION_EPS && nq >= VQJI_ROTATION_EPS) {
            for (int j = 0; j < d; j++) {
                double r = ui[j] / nu + qi[j] / nq; /* a + b */
                nr += r * r;
            }
            nr = sqrt(nr);
        }
        if (!(nr >= VQJI_ROTATION_EPS)) { /* no direction to rotate: straight-through */
            for (int j = 0; j < d; j++)
                di[j] += gi[j];
            continue;
        }
        /* r = (a + b) / ||a + b||, a = u / ||u||, b = q / ||q|| */
        const double ia = 1.0 / nu, ib = 1.0 / nq, ir = 1.0 / nr;
        for (int j = 0; j < d; j++) {
            rg += (ui[j] * ia + qi[j] * ib) * ir * gi[j];
            bg += qi[j] * ib * gi[j];
        }
        const double lambda = nq * ia, cr = 2.0 * rg * ir, ca = 2.0 * bg * ia;
        for (int j = 0; j < d; j++)
            di[j] += (float)(lambda * (gi[j] - cr * (ui[j] * ia + qi[j] * ib) + ca * ui[j]));
    }
}

static void cpu_vq_copy_block(vqji_device *dev, int rows, int cols, const float *src, int lds,
                              float *dst, int ldd)
{
    (void)dev;
    for (int i = 0; i < rows && cols > 0; i++)
        memcpy(dst + (size_t)i * ldd, src + (size_t)i * lds, (size_t)cols * sizeof(float));
}

void vqji_cpu_register_vq(vqji_device_ops *ops)
{
    ops->vq_assign = cpu_vq_assign;
    ops->vq_accumulate = cpu_vq_accumulate;
    ops->vq_gather = cpu_vq_gather;
    ops->vq_ema_normalize = cpu_vq_ema_normalize;
    ops->vq_min_sqdist = cpu_vq_min_sqdist;
    ops->fsq_forward = cpu_fsq_forward;
    ops->fsq_backward = cpu_fsq_backward;
    ops->vq_rotation_backward = cpu_vq_rotation_backward;
    ops->vq_copy_block = cpu_vq_copy_block;
}
