/* CPU layer kernels: forward/backward pairs (docs/model.md, "Layers" and
 * "Attention"). GEMMs are not here (cpu.c, OpenBLAS). The kernels run on the
 * context's thread pool, split by element, row, grid or column so that every
 * output is computed by one thread exactly as the serial loop would
 * (threadpool.h): results do not depend on the thread count. The small
 * per-example ops (aggregators, GRU cell) stay serial.
 * Every backward op ACCUMULATES into every gradient it writes. */
#include "device/cpu.h"

#include <math.h>
#include <string.h>

/* GCC 12 at -O2 vectorises a loop only when the vector code replaces the
 * scalar loop entirely, i.e. when the trip count is a known multiple of the
 * vector width, and never reorders a float reduction. So the hot loops run in
 * fixed blocks of VQJI_LANES (which it vectorises) plus a scalar tail, and
 * reductions keep VQJI_LANES independent partial sums. */
#define VQJI_LANES 8

/* Run the statement for every index IDX in [0, N): blocks, then the tail. */
#define VQJI_FOR(IDX, N, ...)                                                                  \
    do {                                                                                       \
        size_t b_ = 0, n_ = (N);                                                               \
        for (; b_ + VQJI_LANES <= n_; b_ += VQJI_LANES)                                        \
            for (size_t IDX = b_; IDX < b_ + VQJI_LANES; IDX++) {                              \
                __VA_ARGS__;                                                                   \
            }                                                                                  \
        for (size_t IDX = b_; IDX < n_; IDX++) {                                               \
            __VA_ARGS__;                                                                       \
        }                                                                                      \
    } while (0)

static inline float vqji_dot(size_t n, const float *restrict a, const float *restrict b)
{
    float acc[VQJI_LANES] = {0};
    size_t i = 0;
    for (; i + VQJI_LANES <= n; i += VQJI_LANES)
        for (size_t k = 0; k < VQJI_LANES; k++)
            acc[k] += a[i + k] * b[i + k];
    float s = 0.0f;
    for (; i < n; i++)
        s += a[i] * b[i];
    for (size_t k = 0; k < VQJI_LANES; k++)
        s += acc[k];
    return s;
}

static inline float vqji_sum(size_t n, const float *restrict a)
{
    float acc[VQJI_LANES] = {0};
    size_t i = 0;
    for (; i + VQJI_LANES <= n; i += VQJI_LANES)
        for (size_t k = 0; k < VQJI_LANES; k++)
            acc[k] += a[i + k];
    float s = 0.0f;
    for (; i < n; i++)
        s += a[i];
    for (size_t k = 0; k < VQJI_LANES; k++)
        s += acc[k];
    return s;
}

/* y += alpha x */
static inline void vqji_axpy(size_t n, float alpha, const float *restrict x, float *restrict y)
{
    VQJI_FOR(i, n, y[i] += alpha * x[i]);
}

/* The arguments of a parallel kernel, for its range function: rows of
 * width c, up to three inputs, three outputs and the op's scalars. Each
 * kernel documents which fields it uses. */
typedef struct layer_args {
    size_t n, c;
    const float *x, *a, *b;
    float *y, *m, *r;
    float eps, p;
    uint64_t seed;
} layer_args;

/* ---- Bias ---- */

/* Rows [r0, r1) of y += bias (a). */
static void bias_forward_rows(void *p, size_t r0, size_t r1)
{
    const layer_args *w = p;
    for (size_t i = r0; i < r1; i++)
        vqji_axpy(w->c, 1.0f, w->a, w->y + i * w->c);
}

static void cpu_bias_forward(vqji_device *dev, int n, int c, const float *restrict bias,
                             float *restrict y)
{
    layer_args w = {.c = (size_t)c, .a = bias, .y = y};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)n, VQJI_PAR_MIN_ELEMS / (c + 1) + 1, 1,
                      bias_forward_rows, &w);
}

/* Column sums over tens of thousands of rows: rows are summed in float in
 * blocks of VQJI_BIAS_ROWS (contiguous, vectorised across columns), block
 * totals in double, so the error does not grow with n. Columns go in chunks
 * that fit the stack buffers (one chunk for every layer of the model). */
#define VQJI_BIAS_COLS 1536
#define VQJI_BIAS_ROWS 64

/* Columns [col0, col1) of dbias (y) += the column sums of dy (x) [n x c]:
 * split by column, each column's sum is the serial one. */
static void bias_backward_cols(void *p, size_t col0, size_t col1)
{
    const layer_args *a = p;
    const size_t c = a->c, n = a->n;
    const float *restrict dy = a->x;
    float *restrict dbias = a->y;
    float part[VQJI_BIAS_COLS];
    double total[VQJI_BIAS_COLS];
    for (size_t c0 = col0; c0 < col1; c0 += VQJI_BIAS_COLS) {
        size_t w = col1 - c0 < VQJI_BIAS_COLS ? col1 - c0 : VQJI_BIAS_COLS;
        memset(total, 0, w * sizeof *total);
        for (size_t r0 = 0; r0 < n; r0 += VQJI_BIAS_ROWS) {
            size_t r1 = n - r0 < VQJI_BIAS_ROWS ? n : r0 + VQJI_BIAS_ROWS;
            memset(part, 0, w * sizeof *part);
            for (size_t r = r0; r < r1; r++)
                vqji_axpy(w, 1.0f, dy + r * c + c0, part);
            for (size_t j = 0; j < w; j++)
                total[j] += part[j];
        }
        for (size_t j = 0; j < w; j++)
            dbias[c0 + j] += (float)total[j];
    }
}

static void cpu_bias_backward(vqji_device *dev, int n, int c, const float *restrict dy,
                              float *restrict dbias)
{
    layer_args w = {.n = (size_t)(n > 0 ? n : 0), .c = (size_t)c, .x = dy, .y = dbias};
    size_t min_cols = (size_t)n * 64 < VQJI_PAR_MIN_ELEMS ? (size_t)c : 64;
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)c, min_cols, 16, bias_backward_cols, &w);
}

/* ---- Activations ----
 * The elementwise forward ops may run in place (y == x) but not on
 * partially overlapping buffers. */

/* GELU, exact form (core/formulas.h: vqji_gelu, vqji_gelu_grad). */

static void vqji_gelu_inplace(size_t n, float *restrict y)
{
    VQJI_FOR(i, n, y[i] = vqji_gelu(y[i]));
}

static void vqji_gelu_apart(size_t n, const float *restrict x, float *restrict y)
{
    VQJI_FOR(i, n, y[i] = vqji_gelu(x[i]));
}

/* Elements [b, e) of y = GELU(x). */
static void gelu_forward_range(void *p, size_t b, size_t e)
{
    const layer_args *w = p;
    /* Two restrict-qualified loops: -O2 will not add an overlap check. */
    if (w->x == w->y)
        vqji_gelu_inplace(e - b, w->y + b);
    else
        vqji_gelu_apart(e - b, w->x + b, w->y + b);
}

static void cpu_gelu_forward(vqji_device *dev, size_t n, const float *x, float *y)
{
    layer_args w = {.x = x, .y = y};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS / 4, VQJI_LANES,
                      gelu_forward_range, &w);
}

static void vqji_gelu_backward(size_t n, const float *restrict x, const float *restrict dy,
                               float *restrict dx)
{
    VQJI_FOR(i, n, dx[i] += dy[i] * vqji_gelu_grad(x[i]));
}

/* Elements [b, e) of dx (y) += dy (a) GELU'(x). */
static void gelu_backward_range(void *p, size_t b, size_t e)
{
    const layer_args *w = p;
    vqji_gelu_backward(e - b, w->x + b, w->a + b, w->y + b);
}

static void cpu_gelu_backward(vqji_device *dev, size_t n, const float *restrict x,
                              const float *restrict dy, float *restrict dx)
{
    layer_args w = {.x = x, .a = dy, .y = dx};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS / 4, VQJI_LANES,
                      gelu_backward_range, &w);
}

static void relu_forward_range(void *p, size_t b, size_t e)
{
    const layer_args *w = p;
    const float *x = w->x;
    float *y = w->y;
    for (size_t i = b; i < e; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void cpu_relu_forward(vqji_device *dev, size_t n, const float *x, float *y)
{
    layer_args w = {.x = x, .y = y};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, relu_forward_range, &w);
}

/* dx (y) += dy (a) where x > 0. The subgradient at 0 is 0, as in PyTorch. */
static void relu_backward_range(void *p, size_t b, size_t e)
{
    const layer_args *w = p;
    const float *restrict x = w->x, *restrict dy = w->a;
    float *restrict dx = w->y;
    for (size_t i = b; i < e; i++)
        if (x[i] > 0.0f)
            dx[i] += dy[i];
}

static void cpu_relu_backward(vqji_device *dev, size_t n, const float *restrict x,
                              const float *restrict dy, float *restrict dx)
{
    layer_args w = {.x = x, .a = dy, .y = dx};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, relu_backward_range, &w);
}

static void tanh_forward_range(void *p, size_t b, size_t e)
{
    const layer_args *w = p;
    for (size_t i = b; i < e; i++)
        w->y[i] = tanhf(w->x[i]);
}

static void cpu_tanh_forward(vqji_device *dev, size_t n, const float *x, float *y)
{
    layer_args w = {.x = x, .y = y};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS / 4, 16, tanh_forward_range,
                      &w);
}

/* dx (y) += dy (a) (1 - t²), t = tanh output (x). */
static void tanh_backward_range(void *p, size_t b, size_t e)
{
    const layer_args *w = p;
    const float *restrict t = w->x + b, *restrict dy = w->a + b;
    float *restrict dx = w->y + b;
    VQJI_FOR(i, e - b, dx[i] += dy[i] * (1.0f - t[i] * t[i]));
}

static void cpu_tanh_backward(vqji_device *dev, size_t n, const float *restrict y,
                              const float *restrict dy, float *restrict dx)
{
    layer_args w = {.x = y, .a = dy, .y = dx};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, tanh_backward_range, &w);
}

/* ---- Layer norm ---- */

/* Two passes over the row (mean, then the centred sum of squares): the
 * one-pass E[x²] - μ² cancels badly when |μ| >> σ. */
/* Rows [r0, r1): x, gamma (a), beta (b) -> y, mean (m), rstd (r). */
static void layernorm_forward_rows(void *p, size_t r0, size_t r1)
{
    const layer_args *w = p;
    const float *restrict x = w->x, *restrict gamma = w->a, *restrict beta = w->b;
    float *restrict y = w->y, *restrict mean = w->m, *restrict rstd = w->r;
    const float eps = w->eps;
    size_t cc = w->c;
    float inv_c = cc > 0 ? 1.0f / (float)cc : 0.0f;
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * cc;
        float *yr = y + (size_t)r * cc;
        float mu = vqji_sum(cc, xr) * inv_c;
        float acc[VQJI_LANES] = {0};
        size_t j = 0;
        for (; j + VQJI_LANES <= cc; j += VQJI_LANES)
            for (size_t k = 0; k < VQJI_LANES; k++)
                acc[k] += (xr[j + k] - mu) * (xr[j + k] - mu);
        float ss = 0.0f;
        for (; j < cc; j++)
            ss += (xr[j] - mu) * (xr[j] - mu);
        for (size_t k = 0; k < VQJI_LANES; k++)
            ss += acc[k];
        float rs = 1.0f / sqrtf(ss * inv_c + eps);
        mean[r] = mu;
        rstd[r] = rs;
        VQJI_FOR(i, cc, yr[i] = (xr[i] - mu) * rs * gamma[i] + beta[i]);
    }
}

static void cpu_layernorm_forward(vqji_device *dev, int n, int c, const float *restrict x,
                                  const float *restrict gamma, const float *restrict beta,
                                  float eps, float *restrict y, float *restrict mean,
                                  float *restrict rstd)
{
    layer_args w = {.c = (size_t)c, .x = x, .a = gamma, .b = beta, .y = y, .m = mean,
                    .r = rstd, .eps = eps};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)n, VQJI_PAR_MIN_ELEMS / (c + 1) + 1, 1,
                      layernorm_forward_rows, &w);
}

/* x̂ = (x - μ) r, g = dy γ: dx += r (g - mean(g) - x̂ mean(g x̂));
 * dγ += Σ_rows dy x̂; dβ += Σ_rows dy. Two parallel passes: dx by row, then
 * dγ and dβ by column, each column summed over the rows in row order as a
 * single loop would. */
typedef struct layernorm_bwd_args {
    size_t n, c;
    const float *dy, *x, *gamma, *mean, *rstd;
    float *dx, *dgamma, *dbeta;
} layernorm_bwd_args;

static void layernorm_backward_rows(void *p, size_t r0, size_t r1)
{
    const layernorm_bwd_args *w = p;
    const float *restrict gamma = w->gamma;
    size_t cc = w->c;
    float inv_c = cc > 0 ? 1.0f / (float)cc : 0.0f;
    for (size_t r = r0; r < r1; r++) {
        const float *restrict xr = w->x + r * cc;
        const float *restrict dyr = w->dy + r * cc;
        float *restrict dxr = w->dx + r * cc;
        float mu = w->mean[r], rs = w->rstd[r];
        float ag[VQJI_LANES] = {0}, agx[VQJI_LANES] = {0};
        size_t j = 0;
        for (; j + VQJI_LANES <= cc; j += VQJI_LANES)
            for (size_t k = 0; k < VQJI_LANES; k++) {
                float g = dyr[j + k] * gamma[j + k];
                ag[k] += g;
                agx[k] += g * (xr[j + k] - mu) * rs;
            }
        float sg = 0.0f, sgx = 0.0f;
        for (; j < cc; j++) {
            float g = dyr[j] * gamma[j];
            sg += g;
            sgx += g * (xr[j] - mu) * rs;
        }
        for (size_t k = 0; k < VQJI_LANES; k++) {
            sg += ag[k];
            sgx += agx[k];
        }
        float mg = sg * inv_c, mgx = sgx * inv_c;
        VQJI_FOR(i, cc, {
            float xh = (xr[i] - mu) * rs;
            dxr[i] += rs * (dyr[i] * gamma[i] - mg - xh * mgx);
        });
    }
}

static void layernorm_backward_cols(void *p, size_t c0, size_t c1)
{
    const layernorm_bwd_args *w = p;
    size_t cc = w->c, nc = c1 - c0;
    float *restrict dgamma = w->dgamma + c0, *restrict dbeta = w->dbeta + c0;
    for (size_t r = 0; r < w->n; r++) {
        const float *restrict xr = w->x + r * cc + c0;
        const float *restrict dyr = w->dy + r * cc + c0;
        float mu = w->mean[r], rs = w->rstd[r];
        VQJI_FOR(i, nc, {
            float xh = (xr[i] - mu) * rs;
            dgamma[i] += dyr[i] * xh;
            dbeta[i] += dyr[i];
        });
    }
}

static void cpu_layernorm_backward(vqji_device *dev, int n, int c, const float *restrict dy,
                                   const float *restrict x, const float *restrict gamma,
                                   const float *restrict mean, const float *restrict rstd,
                                   float *restrict dx, float *restrict dgamma,
                                   float *restrict dbeta)
{
    vqji_pool *pool = vqji_cpu_pool(dev);
    layernorm_bwd_args w = {.n = (size_t)(n > 0 ? n : 0), .c = (size_t)c, .dy = dy, .x = x,
                            .gamma = gamma, .mean = mean, .rstd = rstd, .dx = dx,
                            .dgamma = dgamma, .dbeta = dbeta};
    vqji_parallel_for(pool, w.n, VQJI_PAR_MIN_ELEMS / (c + 1) + 1, 1, layernorm_backward_rows,
                      &w);
    size_t min_cols = w.n * 64 < VQJI_PAR_MIN_ELEMS ? (size_t)c : 64;
    vqji_parallel_for(pool, (size_t)c, min_cols, 16, layernorm_backward_cols, &w);
}

/* ---- Dropout ---- */

/* Elements [b, e): x -> y, mask (m); p, seed; the keep factor in eps. */
static void dropout_forward_range(void *arg, size_t b, size_t e)
{
    const layer_args *w = arg;
    const float *x = w->x;
    float *y = w->y, *restrict mask = w->m;
    const float p = w->p, keep = w->eps;
    if (!(p > 0.0f)) { /* p <= 0: identity, no hashing needed */
        VQJI_FOR(i, e - b, mask[b + i] = 1.0f);
        if (y != x)
            memcpy(y + b, x + b, (e - b) * sizeof *y);
        return;
    }
    for (size_t i = b; i < e; i++) {
        float m = vqji_dropout_factor(w->seed, i, p, keep);
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

static void cpu_dropout_forward(vqji_device *dev, size_t n, float p, uint64_t seed,
                                const float *x, float *y, float *restrict mask)
{
    float keep = vqji_dropout_keep(p);
    layer_args w = {.x = x, .y = y, .m = mask, .p = p, .eps = keep, .seed = seed};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS / 4, 16, dropout_forward_range,
                      &w);
}

/* dx (y) += dy (a) mask (x). */
static void dropout_backward_range(void *arg, size_t b, size_t e)
{
    const layer_args *w = arg;
    const float *restrict mask = w->x + b, *restrict dy = w->a + b;
    float *restrict dx = w->y + b;
    VQJI_FOR(i, e - b, dx[i] += dy[i] * mask[i]);
}

static void cpu_dropout_backward(vqji_device *dev, size_t n, const float *restrict mask,
                                 const float *restrict dy, float *restrict dx)
{
    layer_args w = {.x = mask, .a = dy, .y = dx};
    vqji_parallel_for(vqji_cpu_pool(dev), n, VQJI_PAR_MIN_ELEMS, 16, dropout_backward_range,
                      &w);
}

/* ---- Attention over packed grids ----
 * Grid g has n = n_g tokens starting at row base = offsets[g]; token i of the
 * grid is row base + i. For head h, q_i, k_i, v_i are dh = d / heads floats
 * at columns h*dh, d + h*dh, 2d + h*dh of row i of qkv (row stride 3d).
 * probs of (g, h) is an n x n row-major block at
 * probs + heads*adj_offsets[g] + h*n*n: row i holds p_i·, with exact zeros
 * at the j that are neither adjacent to i nor i itself. */

/* The heads walk a grid's rows at a 3d-float stride, which the hardware
 * prefetcher does not follow; asking for the next grid's rows while this
 * one is computed hides the memory latency that otherwise dominates. */
static inline void vqji_prefetch(const float *p, size_t n)
{
#if defined(__GNUC__) || defined(__clang__)
    for (size_t i = 0; i < n; i += 64 / sizeof *p)
        __builtin_prefetch(p + i);
#else
    (void)p;
    (void)n;
#endif
}

static inline int vqji_allowed(const uint8_t *a, int n, int i, int j)
{
    return j == i || a[(size_t)i * n + j];
}

/* The attention ops' arguments; a range is a range of grids. */
typedef struct attn_args {
    int num_grids, d, heads;
    const int32_t *offsets;
    const uint8_t *adj;
    const int64_t *adj_offsets;
    const float *qkv, *probs, *dout;
    float *out, *probs_out, *dqkv;
} attn_args;

/* Grid rows per part below which attention runs serially. */
#define VQJI_ATTN_MIN_TOKENS 64

static void attention_forward_grids(void *arg, size_t g0, size_t g1)
{
    const attn_args *w = arg;
    const int num_grids = w->num_grids, d = w->d, heads = w->heads;
    const int32_t *offsets = w->offsets;
    const uint8_t *adj = w->adj;
    const int64_t *adj_offsets = w->adj_offsets;
    const float *restrict qkv = w->qkv;
    float *restrict out = w->out, *restrict probs = w->probs_out;
    const size_t dh = (size_t)(d / heads), ld = 3 * (size_t)d;
    const float scale = 1.0f / sqrtf((float)dh);
    for (int g = (int)g0; g < (int)g1; g++) {
        const int base = offsets[g], n = offsets[g + 1] - offsets[g];
        const uint8_t *a = adj + adj_offsets[g];
        float *pg = probs + (size_t)heads * (size_t)adj_offsets[g];
        if (g + 1 < num_grids)
            vqji_prefetch(qkv + (size_t)offsets[g + 1] * ld,
                          (size_t)(offsets[g + 2] - offsets[g + 1]) * ld);
        for (int h = 0; h < heads; h++) {
            const float *q0 = qkv + (size_t)base * ld + (size_t)h * dh;
            const float *k0 = q0 + d, *v0 = q0 + 2 * (size_t)d;
            for (int i = 0; i < n; i++) {
                const float *qi = q0 + (size_t)i * ld;
                float *p = pg + ((size_t)h * n + i) * n;
                float *oi = out + ((size_t)base + i) * d + (size_t)h * dh;
                /* Stable softmax: subtract the row maximum before exp. */
                float mx = -INFINITY;
                for (int j = 0; j < n; j++) {
                    if (vqji_allowed(a, n, i, j)) {
                        p[j] = vqji_dot(dh, qi, k0 + (size_t)j * ld) * scale;
                        mx = p[j] > mx ? p[j] : mx;
                    }
                }
                float sum = 0.0f;
                for (int j = 0; j < n; j++) {
                    if (vqji_allowed(a, n, i, j)) {
                        p[j] = expf(p[j] - mx);
                        sum += p[j];
                    } else {
                        p[j] = 0.0f;
                    }
                }
                /* sum >= 1: the maximum's own term is exp(0). */
                float inv = 1.0f / sum;
                memset(oi, 0, dh * sizeof *oi);
                for (int j = 0; j < n; j++) {
                    if (p[j] != 0.0f) {
                        p[j] *= inv;
                        vqji_axpy(dh, p[j], v0 + (size_t)j * ld, oi);
                    }
                }
            }
        }
    }
}

static void cpu_attention_forward(vqji_device *dev, int num_grids, const int32_t *offsets,
                                  const uint8_t *adj, const int64_t *adj_offsets, int d,
                                  int heads, const float *restrict qkv, float *restrict out,
                                  float *restrict probs)
{
    attn_args w = {.num_grids = num_grids, .d = d, .heads = heads, .offsets = offsets,
                   .adj = adj, .adj_offsets = adj_offsets, .qkv = qkv, .out = out,
                   .probs_out = probs};
    vqji_parallel_for_weighted(vqji_cpu_pool(dev), (size_t)(num_grids > 0 ? num_grids : 0),
                               offsets, VQJI_ATTN_MIN_TOKENS, attention_forward_grids, &w);
}

/* dp_ij = do_i·v_j of one row is kept on the stack for the first
 * VQJI_ATTN_CACHE keys and recomputed beyond that, so no grid size needs a
 * heap buffer (ARC grids have at most 900 tokens; typical ones under 16). */
#define VQJI_ATTN_CACHE 256

static void attention_backward_grids(void *arg, size_t g0, size_t g1)
{
    const attn_args *w = arg;
    const int num_grids = w->num_grids, d = w->d, heads = w->heads;
    const int32_t *offsets = w->offsets;
    const uint8_t *adj = w->adj;
    const int64_t *adj_offsets = w->adj_offsets;
    const float *restrict qkv = w->qkv, *restrict probs = w->probs, *restrict dout = w->dout;
    float *restrict dqkv = w->dqkv;
    const size_t dh = (size_t)(d / heads), ld = 3 * (size_t)d;
    const float scale = 1.0f / sqrtf((float)dh);
    float dp[VQJI_ATTN_CACHE];
    for (int g = (int)g0; g < (int)g1; g++) {
        const int base = offsets[g], n = offsets[g + 1] - offsets[g];
        const uint8_t *a = adj + adj_offsets[g];
        const float *pg = probs + (size_t)heads * (size_t)adj_offsets[g];
        if (g + 1 < num_grids) {
            size_t next = (size_t)offsets[g + 1], rows = (size_t)(offsets[g + 2] - offsets[g + 1]);
            vqji_prefetch(qkv + next * ld, rows * ld);
            vqji_prefetch(dqkv + next * ld, rows * ld);
            vqji_prefetch(dout + next * d, rows * d);
        }
        for (int h = 0; h < heads; h++) {
            const size_t col = (size_t)base * ld + (size_t)h * dh;
            const float *q0 = qkv + col, *k0 = q0 + d, *v0 = q0 + 2 * (size_t)d;
            float *dq0 = dqkv + col, *dk0 = dq0 + d, *dv0 = dq0 + 2 * (size_t)d;
            for (int i = 0; i < n; i++) {
                const float *p = pg + ((size_t)h * n + i) * n;
                const float *qi = q0 + (size_t)i * ld;
                const float *doi = dout + ((size_t)base + i) * d + (size_t)h * dh;
                float *dqi = dq0 + (size_t)i * ld;
                /* Σ_j p_ij dp_ij, the softmax backward's row term. */
                float pdp = 0.0f;
                for (int j = 0; j < n; j++) {
                    if (vqji_allowed(a, n, i, j)) {
                        float v = vqji_dot(dh, doi, v0 + (size_t)j * ld);
                        if (j < VQJI_ATTN_CACHE)
                            dp[j] = v;
                        pdp += p[j] * v;
                    }
                }
                for (int j = 0; j < n; j++) {
                    if (!vqji_allowed(a, n, i, j))
                        continue;
                    float dpj = j < VQJI_ATTN_CACHE ? dp[j]
                                                    : vqji_dot(dh, doi, v0 + (size_t)j * ld);
                    float ds = p[j] * (dpj - pdp) * scale;
                    vqji_axpy(dh, ds, k0 + (size_t)j * ld, dqi);
                    vqji_axpy(dh, ds, qi, dk0 + (size_t)j * ld);
                    vqji_axpy(dh, p[j], doi, dv0 + (size_t)j * ld);
                }
            }
        }
    }
}

static void cpu_attention_backward(vqji_device *dev, int num_grids, const int32_t *offsets,
                                   const uint8_t *adj, const int64_t *adj_offsets, int d,
                                   int heads, const float *restrict qkv,
                                   const float *restrict probs, const float *restrict dout,
                                   float *restrict dqkv)
{
    attn_args w = {.num_grids = num_grids, .d = d, .heads = heads, .offsets = offsets,
                   .adj = adj, .adj_offsets = adj_offsets, .qkv = qkv, .probs = probs,
                   .dout = dout, .dqkv = dqkv};
    vqji_parallel_for_weighted(vqji_cpu_pool(dev), (size_t)(num_grids > 0 ? num_grids : 0),
                               offsets, VQJI_ATTN_MIN_TOKENS, attention_backward_grids, &w);
}

/* ---- Segment mean (grid representation) ---- */

/* Grids [g0, g1): x [tokens x d] -> y [grids x d]; offsets in `offsets`. */
typedef struct segment_args {
    const int32_t *offsets;
    size_t d;
    const float *x;
    float *y;
} segment_args;

static void segment_mean_forward_grids(void *arg, size_t g0, size_t g1)
{
    const segment_args *w = arg;
    const int32_t *offsets = w->offsets;
    const int d = (int)w->d;
    const float *restrict x = w->x;
    float *restrict y = w->y;
    for (int g = (int)g0; g < (int)g1; g++) {
        int n = offsets[g + 1] - offsets[g];
        float *yg = y + (size_t)g * d;
        memset(yg, 0, (size_t)d * sizeof *yg);
        if (n <= 0) /* an empty grid is the zero vector, not 0/0 */
            continue;
        for (int i = offsets[g]; i < offsets[g + 1]; i++)
            vqji_axpy((size_t)d, 1.0f, x + (size_t)i * d, yg);
        float inv = 1.0f / (float)n;
        VQJI_FOR(j, (size_t)d, yg[j] *= inv);
    }
}

static void cpu_segment_mean_forward(vqji_device *dev, int num_grids, const int32_t *offsets,
                                     int d, const float *restrict x, float *restrict y)
{
    segment_args w = {.offsets = offsets, .d = (size_t)d, .x = x, .y = y};
    vqji_parallel_for_weighted(vqji_cpu_pool(dev), (size_t)(num_grids > 0 ? num_grids : 0),
                               offsets, VQJI_PAR_MIN_ELEMS / (d + 1) + 1,
                               segment_mean_forward_grids, &w);
}

/* dy (x) [grids x d] -> dx (y) [tokens x d], grids [g0, g1). */
static void segment_mean_backward_grids(void *arg, size_t g0, size_t g1)
{
    const segment_args *w = arg;
    const int32_t *offsets = w->offsets;
    const size_t d = w->d;
    for (size_t g = g0; g < g1; g++) {
        int n = offsets[g + 1] - offsets[g];
        if (n <= 0)
            continue;
        float inv = 1.0f / (float)n;
        for (int i = offsets[g]; i < offsets[g + 1]; i++)
            vqji_axpy(d, inv, w->x + g * d, w->y + (size_t)i * d);
    }
}

static void cpu_segment_mean_backward(vqji_device *dev, int num_grids, const int32_t *offsets,
                                      int d, const float *restrict dy, float *restrict dx)
{
    segment_args w = {.offsets = offsets, .d = (size_t)d, .x = dy, .y = dx};
    vqji_parallel_for_weighted(vqji_cpu_pool(dev), (size_t)(num_grids > 0 ? num_grids : 0),
                               offsets, VQJI_PAR_MIN_ELEMS / (d + 1) + 1,
                               segment_mean_backward_grids, &w);
}

/* ---- L2 normalisation ---- */

/* norm[r] saves the unclamped ‖x_r‖; the backward chooses the branch. */
/* Rows [r0, r1): x -> y, norm (m). */
static void l2norm_forward_rows(void *arg, size_t r0, size_t r1)
{
    const layer_args *w = arg;
    const size_t c = w->c;
    for (size_t r = r0; r < r1; r++) {
        const float *restrict xr = w->x + r * c;
        float *restrict yr = w->y + r * c;
        float nr = sqrtf(vqji_dot(c, xr, xr));
        float inv = 1.0f / (nr > w->eps ? nr : w->eps);
        w->m[r] = nr;
        VQJI_FOR(j, c, yr[j] = xr[j] * inv);
    }
}

static void cpu_l2norm_forward(vqji_device *dev, int n, int c, const float *restrict x,
                               float eps, float *restrict y, float *restrict norm)
{
    layer_args w = {.c = (size_t)c, .x = x, .y = y, .m = norm, .eps = eps};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)(n > 0 ? n : 0),
                      VQJI_PAR_MIN_ELEMS / (c + 1) + 1, 1, l2norm_forward_rows, &w);
}

/* ‖x‖ > eps: dx += (dy - y (y·dy)) / ‖x‖; else y = x / eps is linear and
 * dx += dy / eps. */
/* Rows [r0, r1): y (x), norm (a), dy (b) -> dx (y). */
static void l2norm_backward_rows(void *arg, size_t r0, size_t r1)
{
    const layer_args *w = arg;
    const size_t c = w->c;
    const float eps = w->eps;
    for (size_t r = r0; r < r1; r++) {
        const float *restrict yr = w->x + r * c, *restrict dyr = w->b + r * c;
        float *restrict dxr = w->y + r * c;
        if (w->a[r] > eps) {
            float inv = 1.0f / w->a[r];
            float ydy = vqji_dot(c, yr, dyr);
            VQJI_FOR(j, c, dxr[j] += (dyr[j] - yr[j] * ydy) * inv);
        } else {
            vqji_axpy(c, 1.0f / eps, dyr, dxr);
        }
    }
}

static void cpu_l2norm_backward(vqji_device *dev, int n, int c, const float *restrict x,
                                const float *restrict y, const float *restrict norm, float eps,
                                const float *restrict dy, float *restrict dx)
{
    (void)x;
    layer_args w = {.c = (size_t)c, .x = y, .a = norm, .b = dy, .y = dx, .eps = eps};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)(n > 0 ? n : 0),
                      VQJI_PAR_MIN_ELEMS / (c + 1) + 1, 1, l2norm_backward_rows, &w);
}

/* ---- Context aggregators: x [batch x t x d] -> y [batch x d] ---- */

static void cpu_aggregate_mean_forward(vqji_device *dev, int batch, int t, int d,
                                       const float *restrict x, float *restrict y)
{
    (void)dev;
    float inv = t > 0 ? 1.0f / (float)t : 0.0f;
    for (int b = 0; b < batch; b++) {
        float *yb = y + (size_t)b * d;
        memset(yb, 0, (size_t)d * sizeof *yb);
        for (int s = 0; s < t; s++)
            vqji_axpy((size_t)d, inv, x + ((size_t)b * t + s) * d, yb);
    }
}

static void cpu_aggregate_mean_backward(vqji_device *dev, int batch, int t, int d,
                                        const float *restrict dy, float *restrict dx)
{
    (void)dev;
    float inv = t > 0 ? 1.0f / (float)t : 0.0f;
    for (int b = 0; b < batch; b++)
        for (int s = 0; s < t; s++)
            vqji_axpy((size_t)d, inv, dy + (size_t)b * d, dx + ((size_t)b * t + s) * d);
}

/* s_t = x_t·q / √d, w = softmax_t(s) (stable), y = Σ_t w_t x_t. */
static void cpu_aggregate_attention_forward(vqji_device *dev, int batch, int t, int d,
                                            const float *restrict x, const float *restrict q,
                                            float *restrict y, float *restrict w)
{
    (void)dev;
    const float scale = 1.0f / sqrtf((float)d);
    for (int b = 0; b < batch; b++) {
        const float *xb = x + (size_t)b * t * d;
        float *wb = w + (size_t)b * t, *yb = y + (size_t)b * d;
        float mx = -INFINITY, sum = 0.0f;
        for (int s = 0; s < t; s++) {
            wb[s] = vqji_dot((size_t)d, xb + (size_t)s * d, q) * scale;
            mx = wb[s] > mx ? wb[s] : mx;
        }
        for (int s = 0; s < t; s++) {
            wb[s] = expf(wb[s] - mx);
            sum += wb[s];
        }
        memset(yb, 0, (size_t)d * sizeof *yb);
        for (int s = 0; s < t; s++) {
            wb[s] /= sum;
            vqji_axpy((size_t)d, wb[s], xb + (size_t)s * d, yb);
        }
    }
}

/* dw_t = dy·x_t; ds_t = w_t (dw_t - Σ w dw); dx_t += w_t dy + ds_t q / √d;
 * dq += Σ_t ds_t x_t / √d. dw_t is recomputed in the second pass (t is the
 * context window, a handful) so no buffer is needed. */
static void cpu_aggregate_attention_backward(vqji_device *dev, int batch, int t, int d,
                                             const float *restrict x, const float *restrict q,
                                             const float *restrict w, const float *restrict dy,
                                             float *restrict dx, float *restrict dq)
{
    (void)dev;
    const float scale = 1.0f / sqrtf((float)d);
    for (int b = 0; b < batch; b++) {
        const float *xb = x + (size_t)b * t * d, *wb = w + (size_t)b * t;
        const float *dyb = dy + (size_t)b * d;
        float *dxb = dx + (size_t)b * t * d;
        float wdw = 0.0f;
        for (int s = 0; s < t; s++)
            wdw += wb[s] * vqji_dot((size_t)d, dyb, xb + (size_t)s * d);
        for (int s = 0; s < t; s++) {
            const float *xs = xb + (size_t)s * d;
            float ds = wb[s] * (vqji_dot((size_t)d, dyb, xs) - wdw) * scale;
            vqji_axpy((size_t)d, wb[s], dyb, dxb + (size_t)s * d);
            vqji_axpy((size_t)d, ds, q, dxb + (size_t)s * d);
            vqji_axpy((size_t)d, ds, xs, dq);
        }
    }
}

/* ---- GRU cell (PyTorch gate order r, z, n) ----
 * gi, gh [batch x 3d] hold the r, z, n pre-activations side by side;
 * gates [batch x 4d] saves r | z | n | gh_n. */

static inline float vqji_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

static void cpu_gru_cell_forward(vqji_device *dev, int batch, int d, const float *restrict gi,
                                 const float *restrict gh, const float *restrict h,
                                 float *restrict h_new, float *restrict gates)
{
    (void)dev;
    const size_t dd = (size_t)d;
    for (int b = 0; b < batch; b++) {
        const float *gib = gi + (size_t)b * 3 * dd, *ghb = gh + (size_t)b * 3 * dd;
        const float *hb = h + (size_t)b * dd;
        float *hn = h_new + (size_t)b * dd, *gt = gates + (size_t)b * 4 * dd;
        for (size_t j = 0; j < dd; j++) {
            float r = vqji_sigmoid(gib[j] + ghb[j]);
            float z = vqji_sigmoid(gib[dd + j] + ghb[dd + j]);
            float ghn = ghb[2 * dd + j];
            float nn = tanhf(gib[2 * dd + j] + r * ghn);
            gt[j] = r;
            gt[dd + j] = z;
            gt[2 * dd + j] = nn;
            gt[3 * dd + j] = ghn;
            hn[j] = (1.0f - z) * nn + z * hb[j];
        }
    }
}

/* h' = (1-z) n + z h: dn = dh' (1-z), dz = dh' (h - n), dh += dh' z;
 * a_n = gi_n + r gh_n: da_n = dn (1 - n²), dgi_n += da_n, dgh_n += r da_n,
 * dr = gh_n da_n; sigmoid gates: da = dgate g (1 - g), added to gi and gh. */
static void cpu_gru_cell_backward(vqji_device *dev, int batch, int d, const float *restrict h,
                                  const float *restrict gates, const float *restrict dh_new,
                                  float *restrict dgi, float *restrict dgh, float *restrict dh)
{
    (void)dev;
    const size_t dd = (size_t)d;
    for (int b = 0; b < batch; b++) {
        const float *hb = h + (size_t)b * dd, *gt = gates + (size_t)b * 4 * dd;
        const float *dhn = dh_new + (size_t)b * dd;
        float *dgib = dgi + (size_t)b * 3 * dd, *dghb = dgh + (size_t)b * 3 * dd;
        float *dhb = dh + (size_t)b * dd;
        VQJI_FOR(j, dd, {
            float r = gt[j], z = gt[dd + j], nn = gt[2 * dd + j], ghn = gt[3 * dd + j];
            float g = dhn[j];
            float dan = g * (1.0f - z) * (1.0f - nn * nn);
            float daz = g * (hb[j] - nn) * z * (1.0f - z);
            float dar = dan * ghn * r * (1.0f - r);
            dhb[j] += g * z;
            dgib[j] += dar;
            dghb[j] += dar;
            dgib[dd + j] += daz;
            dghb[dd + j] += daz;
            dgib[2 * dd + j] += dan;
            dghb[2 * dd + j] += dan * r;
        });
    }
}

void vqji_cpu_register_layers(vqji_device_ops *ops)
{
    ops->bias_forward = cpu_bias_forward;
    ops->bias_backward = cpu_bias_backward;
    ops->gelu_forward = cpu_gelu_forward;
    ops->gelu_backward = cpu_gelu_backward;
    ops->relu_forward = cpu_relu_forward;
    ops->relu_backward = cpu_relu_backward;
    ops->tanh_forward = cpu_tanh_forward;
    ops->tanh_backward = cpu_tanh_backward;
    ops->layernorm_forward = cpu_layernorm_forward;
    ops->layernorm_backward = cpu_layernorm_backward;
    ops->dropout_forward = cpu_dropout_forward;
    ops->dropout_backward = cpu_dropout_backward;
    ops->attention_forward = cpu_attention_forward;
    ops->attention_backward = cpu_attention_backward;
    ops->segment_mean_forward = cpu_segment_mean_forward;
    ops->segment_mean_backward = cpu_segment_mean_backward;
    ops->l2norm_forward = cpu_l2norm_forward;
    ops->l2norm_backward = cpu_l2norm_backward;
    ops->aggregate_mean_forward = cpu_aggregate_mean_forward;
    ops->aggregate_mean_backward = cpu_aggregate_mean_backward;
    ops->aggregate_attention_forward = cpu_aggregate_attention_forward;
    ops->aggregate_attention_backward = cpu_aggregate_attention_backward;
    ops->gru_cell_forward = cpu_gru_cell_forward;
    ops->gru_cell_backward = cpu_gru_cell_backward;
}
