/* CUDA vector-quantization kernels (src/device/cpu_vq.c; docs/model.md,
 * "Codebook"). The nearest-code search is one cuBLAS GEMM for the scores
 * and a fused argmin (code norms, lowest index on ties, the distance with
 * ||z||^2 added back); the EMA statistics (counts and sums per code) are one
 * kernel that adds every code's rows in token order, so the sums are the
 * CPU's bit for bit and repeat run after run (no atomics). */
#include "cuda_common.h"

#include <math.h>

static __device__ __forceinline__ float warp_sqnorm(const float *x, int d, int lane)
{
    float s = 0.0f;
    for (int j = lane; j < d; j += 32)
        s += x[j] * x[j];
    return cu_warp_sum(s);
}

static __device__ __forceinline__ float warp_sqdiff(const float *x, const float *y, int d,
                                                    int lane)
{
    float s = 0.0f;
    for (int j = lane; j < d; j += 32) {
        float t = x[j] - y[j];
        s += t * t;
    }
    return cu_warp_sum(s);
}

#define VQ_THREADS 256
#define VQ_WARPS (VQ_THREADS / 32)

/* en[c] = ||e_c||^2, a warp per code. */
static __global__ void k_code_norms(int k, int d, const float *e, float *en)
{
    int c = blockIdx.x * VQ_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (c >= k)
        return;
    float s = warp_sqnorm(e + (size_t)c * d, d, lane);
    if (lane == 0)
        en[c] = s;
}

/* argmin_j (s[j] + en[j]) per row, a warp per row: each lane keeps the
 * first index at its running minimum (strict <), lanes merge by value then
 * index, so ties go to the lowest j; NaN never wins; a row with nothing
 * below +inf gives index 0 and that entry's value (as cpu_vq.c). */
static __global__ void k_vq_argmin(int n, int d, int k, const float *z, const float *en,
                                   const float *s, int32_t *idx, float *dist)
{
    int r = blockIdx.x * VQ_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    const float *sr = s + (size_t)r * k;
    float m = INFINITY;
    int bi = -1;
    for (int j = lane; j < k; j += 32) {
        float x = sr[j] + en[j];
        if (x < m) {
            m = x;
            bi = j;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float om = __shfl_xor_sync(CU_FULL_MASK, m, o);
        int oi = __shfl_xor_sync(CU_FULL_MASK, bi, o);
        bool take = oi >= 0 && (bi < 0 || om < m || (om == m && oi < bi));
        if (take) {
            m = om;
            bi = oi;
        }
    }
    float zn = warp_sqnorm(z + (size_t)r * d, d, lane);
    if (lane == 0) {
        float best = m;
        if (bi < 0) {
            bi = 0;
            best = sr[0] + en[0];
        }
        idx[r] = bi;
        float dd = zn + best;
        dist[r] = dd > 0.0f ? dd : (dd == dd ? 0.0f : dd);
    }
}

static void cuda_vq_assign(vqji_device *dev, int n, int d, int k, const float *z, const float *e,
                           float *scratch, int32_t *idx, float *dist)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || k <= 0 || !cu_enter(cd))
        return;
    float *en = scratch, *s = scratch + k;
    k_code_norms<<<(unsigned)((k + VQ_WARPS - 1) / VQ_WARPS), VQ_THREADS, 0, cd->stream>>>(k, d, e,
                                                                                           en);
    if (!cu_launched(cd, "vq_assign (code norms)"))
        return;
    /* alpha = -2 is exact: s + en is ||e||^2 - 2 z.e as specified. */
    dev->ops->gemm(dev, false, true, n, k, d, -2.0f, z, d, e, d, 0.0f, s, k);
    k_vq_argmin<<<(unsigned)((n + VQ_WARPS - 1) / VQ_WARPS), VQ_THREADS, 0, cd->stream>>>(
        n, d, k, z, en, s, idx, dist);
    cu_launched(cd, "vq_assign (argmin)");
}

/* A block per code c: the block walks idx in token order, compacts the rows
 * assigned to c (order kept) into shared memory, and adds them in that
 * order: counts[c] += 1 per row, sums[c][j] += z[i][j]. */
static __global__ void __launch_bounds__(VQ_THREADS)
    k_vq_accumulate(int n, int d, const float *z, const int32_t *idx, float *counts, float *sums)
{
    __shared__ int rows[VQ_THREADS];
    __shared__ int warp_count[VQ_WARPS];
    const int c = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float cnt = counts && threadIdx.x == 0 ? counts[c] : 0.0f;
    for (int base = 0; base < n; base += VQ_THREADS) {
        int i = base + (int)threadIdx.x;
        bool hit = i < n && idx[i] == c;
        unsigned ballot = __ballot_sync(CU_FULL_MASK, hit);
        if (lane == 0)
            warp_count[warp] = __popc(ballot);
        __syncthreads();
        int before = 0, total = 0;
        for (int w = 0; w < VQ_WARPS; w++) {
            before += w < warp ? warp_count[w] : 0;
            total += warp_count[w];
        }
        if (hit)
            rows[before + __popc(ballot & ((1u << lane) - 1u))] = i;
        __syncthreads();
        if (total > 0) {
            if (counts && threadIdx.x == 0)
                for (int t = 0; t < total; t++)
                    cnt += 1.0f;
            if (sums)
                for (int j = threadIdx.x; j < d; j += VQ_THREADS) {
                    float *dst = sums + (size_t)c * d + j;
                    float acc = *dst;
                    for (int t = 0; t < total; t++)
                        acc += z[(size_t)rows[t] * d + j];
                    *dst = acc;
                }
        }
        __syncthreads(); /* rows and warp_count are rewritten next round */
    }
    if (counts && threadIdx.x == 0)
        counts[c] = cnt;
}

static void cuda_vq_accumulate(vqji_device *dev, int n, int d, int k, const float *z,
                               const int32_t *idx, float *counts, float *sums)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || k <= 0 || (!counts && !sums) || !cu_enter(cd))
        return;
    k_vq_accumulate<<<(unsigned)k, VQ_THREADS, 0, cd->stream>>>(n, d, z, idx, counts, sums);
    cu_launched(cd, "vq_accumulate");
}

/* q_i = e_{idx_i}, err_i = ||z_i - q_i||^2 by differences; a warp per row. */
static __global__ void k_vq_gather(int n, int d, const float *z, const float *e,
                                   const int32_t *idx, float *q, float *err)
{
    int r = blockIdx.x * VQ_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    const float *code = e + (size_t)idx[r] * d, *zr = z + (size_t)r * d;
    float *qr = q + (size_t)r * d;
    if (err) {
        float s = warp_sqdiff(zr, code, d, lane);
        if (lane == 0)
            err[r] = s;
    }
    for (int j = lane; j < d; j += 32)
        qr[j] = code[j];
}

static void cuda_vq_gather(vqji_device *dev, int n, int d, const float *z, const float *e,
                           const int32_t *idx, float *q, float *err)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || !cu_enter(cd))
        return;
    k_vq_gather<<<(unsigned)((n + VQ_WARPS - 1) / VQ_WARPS), VQ_THREADS, 0, cd->stream>>>(
        n, d, z, e, idx, q, err);
    cu_launched(cd, "vq_gather");
}

/* e_k = sums_k / c_k with the Laplace-smoothed count in double (as the CPU). */
static __global__ void k_vq_ema_normalize(int k, int d, float eps, float total,
                                          const float *counts, const float *sums, float *e)
{
    size_t all = (size_t)k * d;
    const double denom = vqji_ema_denom(total, k, eps);
    CU_FOR(o, all)
    {
        size_t c = o / (size_t)d;
        double smoothed = vqji_ema_smoothed(counts[c], eps, denom, total);
        e[o] = (float)(sums[o] / smoothed);
    }
}

static void cuda_vq_ema_normalize(vqji_device *dev, int k, int d, float eps, float total,
                                  const float *counts, const float *sums, float *e)
{
    cuda_device *cd = cu_dev(dev);
    size_t all = (size_t)(k > 0 ? k : 0) * (size_t)(d > 0 ? d : 0);
    if (!(total > 0.0f) || !all || !cu_enter(cd))
        return;
    k_vq_ema_normalize<<<cu_blocks(cd, all, CU_THREADS), CU_THREADS, 0, cd->stream>>>(
        k, d, eps, total, counts, sums, e);
    cu_launched(cd, "vq_ema_normalize");
}

static __global__ void k_vq_min_sqdist(int n, int d, const float *z, const float *c,
                                       float *mind)
{
    int r = blockIdx.x * VQ_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= n)
        return;
    float s = warp_sqdiff(z + (size_t)r * d, c, d, lane);
    if (lane == 0 && s < mind[r])
        mind[r] = s;
}

static void cuda_vq_min_sqdist(vqji_device *dev, int n, int d, const float *z, const float *c,
                               float *mind)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || !cu_enter(cd))
        return;
    k_vq_min_sqdist<<<(unsigned)((n + VQ_WARPS - 1) / VQ_WARPS), VQ_THREADS, 0, cd->stream>>>(
        n, d, z, c, mind);
    cu_launched(cd, "vq_min_sqdist");
}

/* FSQ (device.h; cpu_vq.c's loops): one thread per (row, dimension) for
 * t, qc and the gradient, one per row for the mixed-radix code. */
/* One dimension's constants for element o of a [n x lv.n] block. */
static __device__ __forceinline__ vqji_fsq_dim fsq_dim_at(const vqji_fsq_levels &lv, size_t o)
{
    return vqji_fsq_dim_of(lv.l[o % (size_t)lv.n]);
}

static __global__ void k_fsq_forward(size_t all, vqji_fsq_levels lv, const float *p, float *t,
                                     float *qc)
{
    CU_FOR(o, all)
    {
        const vqji_fsq_dim f = fsq_dim_at(lv, o);
        float tj = tanhf(p[o] + f.shift);
        t[o] = tj;
        qc[o] = vqji_fsq_level(tj, f) / (float)f.w;
    }
}

static __global__ void k_fsq_codes(int n, vqji_fsq_levels lv, const float *qc, int32_t *idx)
{
    CU_FOR(i, (size_t)n)
    {
        int32_t code = 0, basis = 1;
        for (int j = 0; j < lv.n; j++) {
            int w = lv.l[j] / 2;
            code += ((int32_t)rintf(qc[i * lv.n + j] * (float)w) + w) * basis;
            basis *= lv.l[j];
        }
        idx[i] = code;
    }
}

static __global__ void k_fsq_backward(size_t all, vqji_fsq_levels lv, const float *t,
                                      const float *dqc, float *dp)
{
    CU_FOR(o, all)
    {
        dp[o] += vqji_fsq_grad(dqc[o], t[o], fsq_dim_at(lv, o));
    }
}

static void cuda_fsq_forward(vqji_device *dev, int n, const vqji_fsq_levels *lv, const float *p,
                             float *t, float *qc, int32_t *idx)
{
    cuda_device *cd = cu_dev(dev);
    size_t all = (size_t)(n > 0 ? n : 0) * (size_t)lv->n;
    if (!all || !cu_enter(cd))
        return;
    unsigned blocks = cu_blocks(cd, all, CU_THREADS);
    k_fsq_forward<<<blocks, CU_THREADS, 0, cd->stream>>>(all, *lv, p, t, qc);
    blocks = cu_blocks(cd, (size_t)n, CU_THREADS);
    k_fsq_codes<<<blocks, CU_THREADS, 0, cd->stream>>>(n, *lv, qc, idx);
    cu_launched(cd, "fsq_forward");
}

static void cuda_fsq_backward(vqji_device *dev, int n, const vqji_fsq_levels *lv, const float *t,
                              const float *dqc, float *dp)
{
    cuda_device *cd = cu_dev(dev);
    size_t all = (size_t)(n > 0 ? n : 0) * (size_t)lv->n;
    if (!all || !cu_enter(cd))
        return;
    unsigned blocks = cu_blocks(cd, all, CU_THREADS);
    k_fsq_backward<<<blocks, CU_THREADS, 0, cd->stream>>>(all, *lv, t, dqc, dp);
    cu_launched(cd, "fsq_backward");
}

/* The rotation trick's backward (device.h), a warp per row; the dot
 * products in float warp sums (the CPU's in double: RED_TOL). */
static __global__ void k_vq_rotation_bwd(int n, int d, const float *u, const float *q,
                                         const float *dq, float *du)
{
    int i = blockIdx.x * VQ_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (i >= n)
        return;
    const float *ui = u + (size_t)i * d, *qi = q + (size_t)i * d, *gi = dq + (size_t)i * d;
    float *di = du + (size_t)i * d;
    float nu = sqrtf(warp_sqnorm(ui, d, lane)), nq = sqrtf(warp_sqnorm(qi, d, lane));
    float nr = 0.0f;
    if (nu >= VQJI_ROTATION_EPS && nq >= VQJI_ROTATION_EPS) {
        for (int j = lane; j < d; j += 32) {
            float r = ui[j] / nu + qi[j] / nq;
            nr += r * r;
        }
        nr = sqrtf(cu_warp_sum(nr));
    }
    if (!(nr >= VQJI_ROTATION_EPS)) { /* no direction to rotate: straight-through */
        for (int j = lane; j < d; j += 32)
            di[j] += gi[j];
        return;
    }
    float rg = 0.0f, bg = 0.0f;
    for (int j = lane; j < d; j += 32) {
        rg += (ui[j] / nu + qi[j] / nq) / nr * gi[j];
        bg += qi[j] / nq * gi[j];
    }
    rg = cu_warp_sum(rg);
    bg = cu_warp_sum(bg);
    float lambda = nq / nu;
    for (int j = lane; j < d; j += 32) {
        float r = (ui[j] / nu + qi[j] / nq) / nr;
        di[j] += lambda * (gi[j] - 2.0f * r * rg + 2.0f * ui[j] / nu * bg);
    }
}

static void cuda_vq_rotation_backward(vqji_device *dev, int n, int d, const float *u,
                                      const float *q, const float *dq, float *du)
{
    cuda_device *cd = cu_dev(dev);
    if (n <= 0 || !cu_enter(cd))
        return;
    k_vq_rotation_bwd<<<(unsigned)((n + VQ_WARPS - 1) / VQ_WARPS), VQ_THREADS, 0, cd->stream>>>(
        n, d, u, q, dq, du);
    cu_launched(cd, "vq_rotation_backward");
}

static __global__ void k_vq_copy_block(int rows, int cols, const float *src, int lds,
                                       float *dst, int ldd)
{
    size_t total = (size_t)rows * cols;
    CU_FOR(t, total)
    {
        size_t i = t / (size_t)cols, j = t % (size_t)cols;
        dst[i * (size_t)ldd + j] = src[i * (size_t)lds + j];
    }
}

static void cuda_vq_copy_block(vqji_device *dev, int rows, int cols, const float *src, int lds,
                               float *dst, int ldd)
{
    cuda_device *cd = cu_dev(dev);
    if (rows <= 0 || cols <= 0 || !cu_enter(cd))
        return;
    size_t total = (size_t)rows * cols;
    k_vq_copy_block<<<cu_blocks(cd, total, CU_THREADS), CU_THREADS, 0, cd->stream>>>(
        rows, cols, src, lds, dst, ldd);
    cu_launched(cd, "vq_copy_block");
}

void vqji_cuda_register_vq(vqji_device_ops *ops)
{
    ops->vq_assign = cuda_vq_assign;
    ops->vq_accumulate = cuda_vq_accumulate;
    ops->vq_gather = cuda_vq_gather;
    ops->vq_ema_normalize = cuda_vq_ema_normalize;
    ops->vq_min_sqdist = cuda_vq_min_sqdist;
    ops->fsq_forward = cuda_fsq_forward;
    ops->fsq_backward = cuda_fsq_backward;
    ops->vq_rotation_backward = cuda_vq_rotation_backward;
    ops->vq_copy_block = cuda_vq_copy_block;
}
