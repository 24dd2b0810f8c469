/* CUDA layer kernels: the forward/backward pairs of src/device/cpu_layers.c
 * with the same layouts and formulas (docs/model.md). Every backward op
 * ACCUMULATES into every gradient it writes. Column sums over rows (bias,
 * layer-norm parameters, the attention aggregator's query) go through double
 * partials in a fixed order, so results repeat bit for bit; elementwise
 * formulas round exactly like the C ones (the file is built with
 * --fmad=false). */
#include "cuda_common.h"

#include <math.h>

static __device__ __forceinline__ float dotf(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ---- Bias ---- */

static __global__ void k_bias_forward(size_t total, int c, const float *bias, float *y)
{
    CU_FOR(i, total) y[i] += bias[i % (size_t)c];
}

static void cuda_bias_forward(vqji_device *dev, int n, int c, const float *bias, float *y)
{
    cuda_device *cd = cu_dev(dev);
    size_t total = (size_t)(n > 0 ? n : 0) * (size_t)(c > 0 ? c : 0);
    if (!total || !cu_enter(cd))
        return;
    k_bias_forward<<<cu_blocks(cd, total, CU_THREADS), CU_THREADS, 0, cd->stream>>>(total, c,
                                                                                    bias, y);
    cu_launched(cd, "bias_forward");
}

/* Rows of chunk `chunk` of `chunks` over n rows. */
static __device__ __forceinline__ void chunk_rows(int n, int chunks, int chunk, int *r0, int *r1)
{
    int per = (n + chunks - 1) / chunks;
    *r0 = chunk * per;
    *r1 = *r0 + per < n ? *r0 + per : n;
}

/* partials[chunk][j] = Σ over the chunk's rows of dy[r][j]. */
static __global__ void k_colsum_rows(int n, int c, int chunks, const float *dy, double *partials)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= c)
        return;
    int r0, r1;
    chunk_rows(n, chunks, blockIdx.y, &r0, &r1);
    double acc = 0.0;
    for (int r = r0; r < r1; r++)
        acc += (double)dy[(size_t)r * c + j];
    partials[(size_t)blockIdx.y * c + j] = acc;
}

static void cuda_bias_backward(vqji_device *dev, int n, int c, const float *dy, float *dbias)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || c <= 0 || !cu_enter(cd))
        return;
    int chunks = cu_colsum_chunks(n);
    double *part = (double *)cu_scratch(cd, (size_t)chunks * (size_t)c * sizeof(double));
    if (!part)
        return;
    dim3 grid((unsigned)((c + CU_THREADS - 1) / CU_THREADS), (unsigned)chunks);
    k_colsum_rows<<<grid, CU_THREADS, 0, cd->stream>>>(n, c, chunks, dy, part);
    if (cu_launched(cd, "bias_backward"))
        cu_colsum_finish(cd, c, chunks, part, dbias, NULL);
}

/* ---- Activations (GELU: core/formulas.h, shared with cpu_layers.c) ---- */

/* In place (y == x) is allowed for the forward ops. */
static __global__ void k_gelu_fwd(size_t n, const float *x, float *y)
{
    CU_FOR(i, n) y[i] = vqji_gelu(x[i]);
}
static __global__ void k_gelu_bwd(size_t n, const float *x, const float *dy, float *dx)
{
    CU_FOR(i, n) dx[i] += dy[i] * vqji_gelu_grad(x[i]);
}
static __global__ void k_relu_fwd(size_t n, const float *x, float *y)
{
    CU_FOR(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
static __global__ void k_relu_bwd(size_t n, const float *x, const float *dy, float *dx)
{
    CU_FOR(i, n)
    {
        if (x[i] > 0.0f)
            dx[i] += dy[i];
    }
}
static __global__ void k_tanh_fwd(size_t n, const float *x, float *y)
{
    CU_FOR(i, n) y[i] = tanhf(x[i]);
}
static __global__ void k_tanh_bwd(size_t n, const float *y, const float *dy, float *dx)
{
    CU_FOR(i, n) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

#define ELEMENTWISE2(NAME, KERNEL)                                                             \
    static void NAME(vqji_device *dev, size_t n, const float *x, float *y)                     \
    {                                                                                          \
        cuda_device *cd = cu_dev(dev);                                                         \
        if (!n || !cu_enter(cd))                                                               \
            return;                                                                            \
        KERNEL<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, x, y);          \
        cu_launched(cd, #NAME);                                                                \
    }
#define ELEMENTWISE3(NAME, KERNEL)                                                             \
    static void NAME(vqji_device *dev, size_t n, const float *x, const float *dy, float *dx)   \
    {                                                                                          \
        cuda_device *cd = cu_dev(dev);                                                         \
        if (!n || !cu_enter(cd))                                                               \
            return;                                                                            \
        KERNEL<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, x, dy, dx);     \
        cu_launched(cd, #NAME);                                                                \
    }

ELEMENTWISE2(cuda_gelu_forward, k_gelu_fwd)
ELEMENTWISE3(cuda_gelu_backward, k_gelu_bwd)
ELEMENTWISE2(cuda_relu_forward, k_relu_fwd)
ELEMENTWISE3(cuda_relu_backward, k_relu_bwd)
ELEMENTWISE2(cuda_tanh_forward, k_tanh_fwd)
ELEMENTWISE3(cuda_tanh_backward, k_tanh_bwd)

/* ---- Layer norm: one warp per row ---- */

#define ROW_THREADS 256 /* 8 rows (warps) a block */

static __global__ void k_layernorm_fwd(int n, int c, const float *x, const float *gamma,
                                       const float *beta, float eps, float *y, float *mean,
                                       float *rstd)
{
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    const float *xr = x + (size_t)r * c;
    float *yr = y + (size_t)r * c;
    float inv_c = c > 0 ? 1.0f / (float)c : 0.0f;
    float s = 0.0f;
    for (int j = lane; j < c; j += 32)
        s += xr[j];
    float mu = cu_warp_sum(s) * inv_c;
    float ss = 0.0f;
    for (int j = lane; j < c; j += 32)
        ss += (xr[j] - mu) * (xr[j] - mu);
    ss = cu_warp_sum(ss);
    float rs = 1.0f / sqrtf(ss * inv_c + eps);
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
    for (int j = lane; j < c; j += 32)
        yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
}

static void cuda_layernorm_forward(vqji_device *dev, int n, int c, const float *x,
                                   const float *gamma, const float *beta, float eps, float *y,
                                   float *mean, float *rstd)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || !cu_enter(cd))
        return;
    unsigned rows = ROW_THREADS / 32;
    k_layernorm_fwd<<<(unsigned)((n + rows - 1) / rows), ROW_THREADS, 0, cd->stream>>>(
        n, c, x, gamma, beta, eps, y, mean, rstd);
    cu_launched(cd, "layernorm_forward");
}

/* dx += r (g - mean(g) - x̂ mean(g x̂)), g = dy γ, per row (one warp). */
static __global__ void k_layernorm_bwd_dx(int n, int c, const float *dy, const float *x,
                                          const float *gamma, const float *mean,
                                          const float *rstd, float *dx)
{
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    const float *xr = x + (size_t)r * c, *dyr = dy + (size_t)r * c;
    float *dxr = dx + (size_t)r * c;
    float mu = mean[r], rs = rstd[r];
    float inv_c = c > 0 ? 1.0f / (float)c : 0.0f;
    float sg = 0.0f, sgx = 0.0f;
    for (int j = lane; j < c; j += 32) {
        float g = dyr[j] * gamma[j];
        sg += g;
        sgx += g * (xr[j] - mu) * rs;
    }
    float mg = cu_warp_sum(sg) * inv_c, mgx = cu_warp_sum(sgx) * inv_c;
    for (int j = lane; j < c; j += 32) {
        float xh = (xr[j] - mu) * rs;
        dxr[j] += rs * (dyr[j] * gamma[j] - mg - xh * mgx);
    }
}

/* partials: [chunk][j] Σ dy x̂, then [chunk][j] Σ dy. */
static __global__ void k_layernorm_bwd_params(int n, int c, int chunks, const float *dy,
                                              const float *x, const float *mean,
                                              const float *rstd, double *partials)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= c)
        return;
    int r0, r1;
    chunk_rows(n, chunks, blockIdx.y, &r0, &r1);
    double ag = 0.0, ab = 0.0;
    for (int r = r0; r < r1; r++) {
        size_t o = (size_t)r * c + j;
        float xh = (x[o] - mean[r]) * rstd[r];
        ag += (double)(dy[o] * xh);
        ab += (double)dy[o];
    }
    partials[(size_t)blockIdx.y * c + j] = ag;
    partials[((size_t)chunks + blockIdx.y) * c + j] = ab;
}

static void cuda_layernorm_backward(vqji_device *dev, int n, int c, const float *dy,
                                    const float *x, const float *gamma, const float *mean,
                                    const float *rstd, float *dx, float *dgamma, float *dbeta)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || c <= 0 || !cu_enter(cd))
        return;
    unsigned rows = ROW_THREADS / 32;
    k_layernorm_bwd_dx<<<(unsigned)((n + rows - 1) / rows), ROW_THREADS, 0, cd->stream>>>(
        n, c, dy, x, gamma, mean, rstd, dx);
    if (!cu_launched(cd, "layernorm_backward (dx)"))
        return;
    int chunks = cu_colsum_chunks(n);
    double *part = (double *)cu_scratch(cd, (size_t)2 * chunks * (size_t)c * sizeof(double));
    if (!part)
        return;
    dim3 grid((unsigned)((c + CU_THREADS - 1) / CU_THREADS), (unsigned)chunks);
    k_layernorm_bwd_params<<<grid, CU_THREADS, 0, cd->stream>>>(n, c, chunks, dy, x, mean, rstd,
                                                                 part);
    if (cu_launched(cd, "layernorm_backward (parameters)"))
        cu_colsum_finish(cd, c, chunks, part, dgamma, dbeta);
}

/* ---- Dropout: the CPU's counter-based hash (core/formulas.h), so masks
 * are identical ---- */

static __global__ void k_dropout_fwd(size_t n, float p, float keep, uint64_t seed,
                                     const float *x, float *y, float *mask)
{
    CU_FOR(i, n)
    {
        float m = vqji_dropout_factor(seed, (uint64_t)i, p, keep);
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

static __global__ void k_dropout_identity(size_t n, const float *x, float *y, float *mask)
{
    CU_FOR(i, n)
    {
        mask[i] = 1.0f;
        y[i] = x[i];
    }
}

static void cuda_dropout_forward(vqji_device *dev, size_t n, float p, uint64_t seed,
                                 const float *x, float *y, float *mask)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    unsigned blocks = cu_blocks(cd, n, CU_THREADS);
    if (!(p > 0.0f)) {
        k_dropout_identity<<<blocks, CU_THREADS, 0, cd->stream>>>(n, x, y, mask);
    } else {
        float keep = vqji_dropout_keep(p);
        k_dropout_fwd<<<blocks, CU_THREADS, 0, cd->stream>>>(n, p, keep, seed, x, y, mask);
    }
    cu_launched(cd, "dropout_forward");
}

static __global__ void k_dropout_bwd(size_t n, const float *mask, const float *dy, float *dx)
{
    CU_FOR(i, n) dx[i] += dy[i] * mask[i];
}

static void cuda_dropout_backward(vqji_device *dev, size_t n, const float *mask, const float *dy,
                                  float *dx)
{
    cuda_device *cd = cu_dev(dev);
    if (!n || !cu_enter(cd))
        return;
    k_dropout_bwd<<<cu_blocks(cd, n, CU_THREADS), CU_THREADS, 0, cd->stream>>>(n, mask, dy, dx);
    cu_launched(cd, "dropout_backward");
}

/* ---- Attention over packed grids ----
 * One block per (grid, head), a warp per query row (forward; backward phase
 * A) or per key column (backward phase B). The grid's offsets and adjacency
 * are read on the device, so no host copy of them is needed. Layouts as in
 * cpu_layers.c: probs of (g, h) is an n x n block at
 * probs + heads*adj_offsets[g] + h*n*n. */

#define ATTN_THREADS 128
#define ATTN_WARPS (ATTN_THREADS / 32)
/* Rows whose softmax row term Σ_j p_ij dp_ij is kept in shared memory
 * (16 KiB); a grid beyond it recomputes the term. Tokenizer grids have at
 * most max_objects <= 4096 tokens. */
#define ATTN_CAP 4096

static __device__ __forceinline__ bool allowed(const uint8_t *a, int n, int i, int j)
{
    return j == i || a[(size_t)i * n + j];
}

static __global__ void __launch_bounds__(ATTN_THREADS)
    k_attn_fwd(int heads, const int32_t *offsets, const uint8_t *adj, const int64_t *adj_offsets,
               int d, const float *qkv, float *out, float *probs)
{
    const int g = blockIdx.x, h = blockIdx.y;
    const int base = offsets[g], n = offsets[g + 1] - base;
    if (n <= 0)
        return;
    const uint8_t *a = adj + adj_offsets[g];
    float *pg = probs + (size_t)heads * (size_t)adj_offsets[g] + (size_t)h * n * n;
    const int dh = d / heads;
    const size_t ld = 3 * (size_t)d;
    const float scale = 1.0f / sqrtf((float)dh);
    const float *q0 = qkv + (size_t)base * ld + (size_t)h * dh;
    const float *k0 = q0 + d, *v0 = q0 + 2 * (size_t)d;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int i = warp; i < n; i += ATTN_WARPS) {
        float *p = pg + (size_t)i * n;
        const float *qi = q0 + (size_t)i * ld;
        float mx = -INFINITY;
        for (int j = lane; j < n; j += 32)
            if (allowed(a, n, i, j)) {
                float s = dotf(qi, k0 + (size_t)j * ld, dh) * scale;
                p[j] = s;
                mx = s > mx ? s : mx;
            }
        mx = cu_warp_max(mx);
        float sum = 0.0f;
        for (int j = lane; j < n; j += 32) {
            if (allowed(a, n, i, j)) {
                float e = expf(p[j] - mx);
                p[j] = e;
                sum += e;
            } else {
                p[j] = 0.0f;
            }
        }
        const float inv = 1.0f / cu_warp_sum(sum);
        __syncwarp();
        float *oi = out + ((size_t)base + i) * d + (size_t)h * dh;
        for (int c = lane; c < dh; c += 32) {
            float acc = 0.0f;
            for (int j = 0; j < n; j++) {
                float pj = p[j] * inv;
                if (pj != 0.0f)
                    acc += pj * v0[(size_t)j * ld + c];
            }
            oi[c] = acc;
        }
        __syncwarp();
        for (int j = lane; j < n; j += 32)
            p[j] *= inv;
    }
}

static void cuda_attention_forward(vqji_device *dev, int num_grids, const int32_t *offsets,
                                   const uint8_t *adj, const int64_t *adj_offsets, int d,
                                   int heads, const float *qkv, float *out, float *probs)
{
    cuda_device *cd = cu_dev(dev);
    if (num_grids <= 0 || heads <= 0 || !cu_enter(cd))
        return;
    dim3 grid((unsigned)num_grids, (unsigned)heads);
    k_attn_fwd<<<grid, ATTN_THREADS, 0, cd->stream>>>(heads, offsets, adj, adj_offsets, d, qkv,
                                                      out, probs);
    cu_launched(cd, "attention_forward");
}

/* Σ_j p_ij (do_i · v_j) over the allowed j: the softmax backward's row term. */
static __device__ float attn_row_term(const uint8_t *a, int n, int i, const float *p,
                                      const float *doi, const float *v0, size_t ld, int dh)
{
    float s = 0.0f;
    for (int j = 0; j < n; j++)
        if (allowed(a, n, i, j))
            s += p[j] * dotf(doi, v0 + (size_t)j * ld, dh);
    return s;
}

static __global__ void __launch_bounds__(ATTN_THREADS)
    k_attn_bwd(int heads, const int32_t *offsets, const uint8_t *adj, const int64_t *adj_offsets,
               int d, const float *qkv, const float *probs, const float *dout, float *dqkv)
{
    __shared__ float pdp_s[ATTN_CAP];
    __shared__ float w1[ATTN_WARPS][32], w2[ATTN_WARPS][32];
    const int g = blockIdx.x, h = blockIdx.y;
    const int base = offsets[g], n = offsets[g + 1] - base;
    if (n <= 0)
        return;
    const uint8_t *a = adj + adj_offsets[g];
    const float *pg = probs + (size_t)heads * (size_t)adj_offsets[g] + (size_t)h * n * n;
    const int dh = d / heads;
    const size_t ld = 3 * (size_t)d;
    const float scale = 1.0f / sqrtf((float)dh);
    const size_t col = (size_t)base * ld + (size_t)h * dh;
    const float *q0 = qkv + col, *k0 = q0 + d, *v0 = q0 + 2 * (size_t)d;
    float *dq0 = dqkv + col, *dk0 = dq0 + d, *dv0 = dq0 + 2 * (size_t)d;
    const float *do0 = dout + (size_t)base * d + (size_t)h * dh;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    /* Phase A, a warp per row i: the row term, then dq_i += Σ_j ds_ij k_j
     * with ds_ij = p_ij (dp_ij - Σ_j' p_ij' dp_ij') / √dh, 32 keys at a time. */
    for (int i = warp; i < n; i += ATTN_WARPS) {
        const float *p = pg + (size_t)i * n;
        const float *doi = do0 + (size_t)i * d;
        float s = 0.0f;
        for (int j = lane; j < n; j += 32)
            if (allowed(a, n, i, j))
                s += p[j] * dotf(doi, v0 + (size_t)j * ld, dh);
        const float pdp = cu_warp_sum(s);
        if (lane == 0 && i < ATTN_CAP)
            pdp_s[i] = pdp;
        for (int j0 = 0; j0 < n; j0 += 32) {
            const int j = j0 + lane;
            const bool ok = j < n && allowed(a, n, i, j);
            float ds = 0.0f;
            if (ok)
                ds = p[j] * (dotf(doi, v0 + (size_t)j * ld, dh) - pdp) * scale;
            const unsigned mask = __ballot_sync(CU_FULL_MASK, ok);
            w1[warp][lane] = ds;
            __syncwarp();
            const int cnt = n - j0 < 32 ? n - j0 : 32;
            for (int c = lane; c < dh; c += 32) {
                float acc = 0.0f;
                for (int jj = 0; jj < cnt; jj++)
                    if (mask >> jj & 1u)
                        acc += w1[warp][jj] * k0[(size_t)(j0 + jj) * ld + c];
                dq0[(size_t)i * ld + c] += acc;
            }
            __syncwarp();
        }
    }
    __syncthreads();

    /* Phase B, a warp per key j: dk_j += Σ_i ds_ij q_i, dv_j += Σ_i p_ij do_i,
     * 32 queries at a time. */
    for (int j = warp; j < n; j += ATTN_WARPS) {
        const float *vj = v0 + (size_t)j * ld;
        for (int i0 = 0; i0 < n; i0 += 32) {
            const int i = i0 + lane;
            const bool ok = i < n && allowed(a, n, i, j);
            float ds = 0.0f, pij = 0.0f;
            if (ok) {
                const float *doi = do0 + (size_t)i * d;
                pij = pg[(size_t)i * n + j];
                float row = i < ATTN_CAP
                                ? pdp_s[i]
                                : attn_row_term(a, n, i, pg + (size_t)i * n, doi, v0, ld, dh);
                ds = pij * (dotf(doi, vj, dh) - row) * scale;
            }
            const unsigned mask = __ballot_sync(CU_FULL_MASK, ok);
            w1[warp][lane] = ds;
            w2[warp][lane] = pij;
            __syncwarp();
            const int cnt = n - i0 < 32 ? n - i0 : 32;
            for (int c = lane; c < dh; c += 32) {
                float ak = 0.0f, av = 0.0f;
                for (int ii = 0; ii < cnt; ii++)
                    if (mask >> ii & 1u) {
                        const size_t r = (size_t)(i0 + ii);
                        ak += w1[warp][ii] * q0[r * ld + c];
                        av += w2[warp][ii] * do0[r * d + c];
                    }
                dk0[(size_t)j * ld + c] += ak;
                dv0[(size_t)j * ld + c] += av;
            }
            __syncwarp();
        }
    }
}

static void cuda_attention_backward(vqji_device *dev, int num_grids, const int32_t *offsets,
                                    const uint8_t *adj, const int64_t *adj_offsets, int d,
                                    int heads, const float *qkv, const float *probs,
                                    const float *dout, float *dqkv)
{
    cuda_device *cd = cu_dev(dev);
    if (num_grids <= 0 || heads <= 0 || !cu_enter(cd))
        return;
    dim3 grid((unsigned)num_grids, (unsigned)heads);
    k_attn_bwd<<<grid, ATTN_THREADS, 0, cd->stream>>>(heads, offsets, adj, adj_offsets, d, qkv,
                                                      probs, dout, dqkv);
    cu_launched(cd, "attention_backward");
}

/* ---- Segment mean: a block per grid ---- */

static __global__ void k_segment_mean_fwd(const int32_t *offsets, int d, const float *x,
                                          float *y)
{
    const int g = blockIdx.x;
    const int r0 = offsets[g], r1 = offsets[g + 1], n = r1 - r0;
    const float inv = n > 0 ? 1.0f / (float)n : 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float acc = 0.0f;
        for (int i = r0; i < r1; i++)
            acc += x[(size_t)i * d + j];
        y[(size_t)g * d + j] = n > 0 ? acc * inv : 0.0f;
    }
}

static __global__ void k_segment_mean_bwd(const int32_t *offsets, int d, const float *dy,
                                          float *dx)
{
    const int g = blockIdx.x;
    const int r0 = offsets[g], n = offsets[g + 1] - r0;
    if (n <= 0)
        return;
    const float inv = 1.0f / (float)n;
    const size_t total = (size_t)n * d;
    for (size_t t = threadIdx.x; t < total; t += blockDim.x) {
        size_t i = t / (size_t)d, j = t % (size_t)d;
        dx[((size_t)r0 + i) * d + j] += inv * dy[(size_t)g * d + j];
    }
}

static void cuda_segment_mean_forward(vqji_device *dev, int num_grids, const int32_t *offsets,
                                      int d, const float *x, float *y)
{
    cuda_device *cd = cu_dev(dev);
    if (num_grids <= 0 || d <= 0 || !cu_enter(cd))
        return;
    k_segment_mean_fwd<<<(unsigned)num_grids, 128, 0, cd->stream>>>(offsets, d, x, y);
    cu_launched(cd, "segment_mean_forward");
}

static void cuda_segment_mean_backward(vqji_device *dev, int num_grids, const int32_t *offsets,
                                       int d, const float *dy, float *dx)
{
    cuda_device *cd = cu_dev(dev);
    if (num_grids <= 0 || d <= 0 || !cu_enter(cd))
        return;
    k_segment_mean_bwd<<<(unsigned)num_grids, 128, 0, cd->stream>>>(offsets, d, dy, dx);
    cu_launched(cd, "segment_mean_backward");
}

/* ---- L2 normalisation: a warp per row ---- */

static __global__ void k_l2norm_fwd(int n, int c, const float *x, float eps, float *y,
                                    float *norm)
{
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    const float *xr = x + (size_t)r * c;
    float *yr = y + (size_t)r * c;
    float s = 0.0f;
    for (int j = lane; j < c; j += 32)
        s += xr[j] * xr[j];
    float nr = sqrtf(cu_warp_sum(s));
    float inv = 1.0f / (nr > eps ? nr : eps);
    if (lane == 0)
        norm[r] = nr;
    for (int j = lane; j < c; j += 32)
        yr[j] = xr[j] * inv;
}

static __global__ void k_l2norm_bwd(int n, int c, const float *y, const float *norm, float eps,
                                    const float *dy, float *dx)
{
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    const float *yr = y + (size_t)r * c, *dyr = dy + (size_t)r * c;
    float *dxr = dx + (size_t)r * c;
    if (norm[r] > eps) {
        float inv = 1.0f / norm[r];
        float s = 0.0f;
        for (int j = lane; j < c; j += 32)
            s += yr[j] * dyr[j];
        float ydy = cu_warp_sum(s);
        for (int j = lane; j < c; j += 32)
            dxr[j] += (dyr[j] - yr[j] * ydy) * inv;
    } else {
        float a = 1.0f / eps;
        for (int j = lane; j < c; j += 32)
            dxr[j] += a * dyr[j];
    }
}

static void cuda_l2norm_forward(vqji_device *dev, int n, int c, const float *x, float eps,
                                float *y, float *norm)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || !cu_enter(cd))
        return;
    unsigned rows = ROW_THREADS / 32;
    k_l2norm_fwd<<<(unsigned)((n + rows - 1) / rows), ROW_THREADS, 0, cd->stream>>>(n, c, x, eps,
                                                                                   y, norm);
    cu_launched(cd, "l2norm_forward");
}

static void cuda_l2norm_backward(vqji_device *dev, int n, int c, const float *x, const float *y,
                                 const float *norm, float eps, const float *dy, float *dx)
{
    (void)x;
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || !cu_enter(cd))
        return;
    unsigned rows = ROW_THREADS / 32;
    k_l2norm_bwd<<<(unsigned)((n + rows - 1) / rows), ROW_THREADS, 0, cd->stream>>>(
        n, c, y, norm, eps, dy, dx);
    cu_launched(cd, "l2norm_backward");
}

/* ---- Context aggregators: x [batch x t x d] -> y [batch x d] ---- */

static __global__ void k_agg_mean_fwd(int batch, int t, int d, const float *x, float *y)
{
    const float inv = t > 0 ? 1.0f / (float)t : 0.0f;
    size_t total = (size_t)batch * d;
    CU_FOR(o, total)
    {
        size_t b = o / (size_t)d, j = o % (size_t)d;
        float acc = 0.0f;
        for (int s = 0; s < t; s++)
            acc += inv * x[(b * t + s) * d + j];
        y[o] = acc;
    }
}

static __global__ void k_agg_mean_bwd(int batch, int t, int d, const float *dy, float *dx)
{
    const float inv = t > 0 ? 1.0f / (float)t : 0.0f;
    size_t total = (size_t)batch * t * d;
    CU_FOR(o, total)
    {
        size_t j = o % (size_t)d, b = o / ((size_t)d * t);
        dx[o] += inv * dy[b * d + j];
    }
}

static void cuda_aggregate_mean_forward(vqji_device *dev, int batch, int t, int d,
                                        const float *x, float *y)
{
    cuda_device *cd = cu_dev(dev);
    size_t total = (size_t)(batch > 0 ? batch : 0) * (size_t)(d > 0 ? d : 0);
    if (!total || !cu_enter(cd))
        return;
    k_agg_mean_fwd<<<cu_blocks(cd, total, CU_THREADS), CU_THREADS, 0, cd->stream>>>(batch, t, d,
                                                                                    x, y);
    cu_launched(cd, "aggregate_mean_forward");
}

static void cuda_aggregate_mean_backward(vqji_device *dev, int batch, int t, int d,
                                         const float *dy, float *dx)
{
    cuda_device *cd = cu_dev(dev);
    size_t total =
        (size_t)(batch > 0 ? batch : 0) * (size_t)(t > 0 ? t : 0) * (size_t)(d > 0 ? d : 0);
    if (!total || !cu_enter(cd))
        return;
    k_agg_mean_bwd<<<cu_blocks(cd, total, CU_THREADS), CU_THREADS, 0, cd->stream>>>(batch, t, d,
                                                                                    dy, dx);
    cu_launched(cd, "aggregate_mean_backward");
}

/* A warp per example. Scores go to w first; every lane then forms the same
 * softmax (t is the context window, a handful). */
static __global__ void k_agg_attn_fwd(int batch, int t, int d, const float *x, const float *q,
                                      float *y, float *w)
{
    int b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (b >= batch)
        return;
    const float scale = 1.0f / sqrtf((float)d);
    const float *xb = x + (size_t)b * t * d;
    float *wb = w + (size_t)b * t, *yb = y + (size_t)b * d;
    for (int s = 0; s < t; s++) {
        float part = 0.0f;
        for (int j = lane; j < d; j += 32)
            part += xb[(size_t)s * d + j] * q[j];
        float v = cu_warp_sum(part) * scale;
        if (lane == 0)
            wb[s] = v;
    }
    __syncwarp();
    float mx = -INFINITY, sum = 0.0f;
    for (int s = 0; s < t; s++)
        mx = wb[s] > mx ? wb[s] : mx;
    for (int s = 0; s < t; s++)
        sum += expf(wb[s] - mx);
    for (int j = lane; j < d; j += 32) {
        float acc = 0.0f;
        for (int s = 0; s < t; s++)
            acc += (expf(wb[s] - mx) / sum) * xb[(size_t)s * d + j];
        yb[j] = acc;
    }
    __syncwarp();
    if (lane == 0)
        for (int s = 0; s < t; s++)
            wb[s] = expf(wb[s] - mx) / sum;
}

static void cuda_aggregate_attention_forward(vqji_device *dev, int batch, int t, int d,
                                             const float *x, const float *q, float *y, float *w)
{
    cuda_device *cd = cu_dev(dev);
    if (batch <= 0 || !cu_enter(cd))
        return;
    unsigned rows = ROW_THREADS / 32;
    k_agg_attn_fwd<<<(unsigned)((batch + rows - 1) / rows), ROW_THREADS, 0, cd->stream>>>(
        batch, t, d, x, q, y, w);
    cu_launched(cd, "aggregate_attention_forward");
}

/* dx_t += w_t dy + ds_t q / √d per example (a warp); ds [batch x t] is kept
 * for dq += Σ_{b,t} ds_bt x_bt / √d, a column sum done in a fixed order. */
static __global__ void k_agg_attn_bwd_dx(int batch, int t, int d, const float *x,
                                         const float *q, const float *w, const float *dy,
                                         float *dx, float *ds_out)
{
    int b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (b >= batch)
        return;
    const float scale = 1.0f / sqrtf((float)d);
    const float *xb = x + (size_t)b * t * d, *wb = w + (size_t)b * t;
    const float *dyb = dy + (size_t)b * d;
    float *dxb = dx + (size_t)b * t * d;
    float wdw = 0.0f;
    for (int s = 0; s < t; s++) {
        float part = 0.0f;
        for (int j = lane; j < d; j += 32)
            part += dyb[j] * xb[(size_t)s * d + j];
        wdw += wb[s] * cu_warp_sum(part);
    }
    for (int s = 0; s < t; s++) {
        float part = 0.0f;
        for (int j = lane; j < d; j += 32)
            part += dyb[j] * xb[(size_t)s * d + j];
        float ds = wb[s] * (cu_warp_sum(part) - wdw) * scale;
        for (int j = lane; j < d; j += 32) {
            float *o = dxb + (size_t)s * d + j;
            *o += wb[s] * dyb[j];
            *o += ds * q[j];
        }
        if (lane == 0)
            ds_out[(size_t)b * t + s] = ds;
    }
}

/* partials[chunk][j] = Σ over the chunk's rows r of ds[r] x[r][j]. */
static __global__ void k_colsum_weighted(int n, int c, int chunks, const float *x,
                                         const float *wr, double *partials)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= c)
        return;
    int r0, r1;
    chunk_rows(n, chunks, blockIdx.y, &r0, &r1);
    double acc = 0.0;
    for (int r = r0; r < r1; r++)
        acc += (double)(wr[r] * x[(size_t)r * c + j]);
    partials[(size_t)blockIdx.y * c + j] = acc;
}

static void cuda_aggregate_attention_backward(vqji_device *dev, int batch, int t, int d,
                                              const float *x, const float *q, const float *w,
                                              const float *dy, float *dx, float *dq)
{
    cuda_device *cd = cu_dev(dev);
    if (batch <= 0 || t <= 0 || d <= 0 || !cu_enter(cd))
        return;
    const int rows = batch * t;
    const int chunks = cu_colsum_chunks(rows);
    size_t part_bytes = (size_t)chunks * (size_t)d * sizeof(double);
    char *mem = (char *)cu_scratch(cd, part_bytes + (size_t)rows * sizeof(float));
    if (!mem)
        return;
    double *part = (double *)mem;
    float *ds = (float *)(mem + part_bytes);
    unsigned per = ROW_THREADS / 32;
    k_agg_attn_bwd_dx<<<(unsigned)((batch + per - 1) / per), ROW_THREADS, 0, cd->stream>>>(
        batch, t, d, x, q, w, dy, dx, ds);
    if (!cu_launched(cd, "aggregate_attention_backward (dx)"))
        return;
    dim3 grid((unsigned)((d + CU_THREADS - 1) / CU_THREADS), (unsigned)chunks);
    k_colsum_weighted<<<grid, CU_THREADS, 0, cd->stream>>>(rows, d, chunks, x, ds, part);
    if (cu_launched(cd, "aggregate_attention_backward (dq)"))
        cu_colsum_finish(cd, d, chunks, part, dq, NULL);
}

/* ---- GRU cell (PyTorch gate order r, z, n) ---- */

static __device__ __forceinline__ float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

static __global__ void k_gru_fwd(int batch, int d, const float *gi, const float *gh,
                                 const float *h, float *h_new, float *gates)
{
    size_t total = (size_t)batch * d, dd = (size_t)d;
    CU_FOR(o, total)
    {
        size_t b = o / dd, j = o % dd;
        const float *gib = gi + b * 3 * dd, *ghb = gh + b * 3 * dd;
        float *gt = gates + b * 4 * dd;
        float r = sigmoidf(gib[j] + ghb[j]);
        float z = sigmoidf(gib[dd + j] + ghb[dd + j]);
        float ghn = ghb[2 * dd + j];
        float nn = tanhf(gib[2 * dd + j] + r * ghn);
        gt[j] = r;
        gt[dd + j] = z;
        gt[2 * dd + j] = nn;
        gt[3 * dd + j] = ghn;
        h_new[o] = (1.0f - z) * nn + z * h[o];
    }
}

static __global__ void k_gru_bwd(int batch, int d, const float *h, const float *gates,
                                 const float *dh_new, float *dgi, float *dgh, float *dh)
{
    size_t total = (size_t)batch * d, dd = (size_t)d;
    CU_FOR(o, total)
    {
        size_t b = o / dd, j = o % dd;
        const float *gt = gates + b * 4 * dd;
        float *dgib = dgi + b * 3 * dd, *dghb = dgh + b * 3 * dd;
        float r = gt[j], z = gt[dd + j], nn = gt[2 * dd + j], ghn = gt[3 * dd + j];
        float g = dh_new[o];
        float dan = g * (1.0f - z) * (1.0f - nn * nn);
        float daz = g * (h[o] - nn) * z * (1.0f - z);
        float dar = dan * ghn * r * (1.0f - r);
        dh[o] += g * z;
        dgib[j] += dar;
        dghb[j] += dar;
        dgib[dd + j] += daz;
        dghb[dd + j] += daz;
        dgib[2 * dd + j] += dan;
        dghb[2 * dd + j] += dan * r;
    }
}

static void cuda_gru_cell_forward(vqji_device *dev, int batch, int d, const float *gi,
                                  const float *gh, const float *h, float *h_new, float *gates)
{
    cuda_device *cd = cu_dev(dev);
    size_t total = (size_t)(batch > 0 ? batch : 0) * (size_t)(d > 0 ? d : 0);
    if (!total || !cu_enter(cd))
        return;
    k_gru_fwd<<<cu_blocks(cd, total, CU_THREADS), CU_THREADS, 0, cd->stream>>>(batch, d, gi, gh,
                                                                               h, h_new, gates);
    cu_launched(cd, "gru_cell_forward");
}

static void cuda_gru_cell_backward(vqji_device *dev, int batch, int d, const float *h,
                                   const float *gates, const float *dh_new, float *dgi,
                                   float *dgh, float *dh)
{
    cuda_device *cd = cu_dev(dev);
    size_t total = (size_t)(batch > 0 ? batch : 0) * (size_t)(d > 0 ? d : 0);
    if (!total || !cu_enter(cd))
        return;
    k_gru_bwd<<<cu_blocks(cd, total, CU_THREADS), CU_THREADS, 0, cd->stream>>>(
        batch, d, h, gates, dh_new, dgi, dgh, dh);
    cu_launched(cd, "gru_cell_backward");
}

void vqji_cuda_register_layers(vqji_device_ops *ops)
{
    ops->bias_forward = cuda_bias_forward;
    ops->bias_backward = cuda_bias_backward;
    ops->gelu_forward = cuda_gelu_forward;
    ops->gelu_backward = cuda_gelu_backward;
    ops->relu_forward = cuda_relu_forward;
    ops->relu_backward = cuda_relu_backward;
    ops->tanh_forward = cuda_tanh_forward;
    ops->tanh_backward = cuda_tanh_backward;
    ops->layernorm_forward = cuda_layernorm_forward;
    ops->layernorm_backward = cuda_layernorm_backward;
    ops->dropout_forward = cuda_dropout_forward;
    ops->dropout_backward = cuda_dropout_backward;
    ops->attention_forward = cuda_attention_forward;
    ops->attention_backward = cuda_attention_backward;
    ops->segment_mean_forward = cuda_segment_mean_forward;
    ops->segment_mean_backward = cuda_segment_mean_backward;
    ops->l2norm_forward = cuda_l2norm_forward;
    ops->l2norm_backward = cuda_l2norm_backward;
    ops->aggregate_mean_forward = cuda_aggregate_mean_forward;
    ops->aggregate_mean_backward = cuda_aggregate_mean_backward;
    ops->aggregate_attention_forward = cuda_aggregate_attention_forward;
    ops->aggregate_attention_backward = cuda_aggregate_attention_backward;
    ops->gru_cell_forward = cuda_gru_cell_forward;
    ops->gru_cell_backward = cuda_gru_cell_backward;
}
