/* CUDA kernels of the losses (src/device/cpu_loss.c; docs/losses.md). Each
 * returns per-row loss values unscaled and overwrites its gradient outputs
 * with the gradient of scale * Σ_rows loss. Sums run in double, as on the
 * CPU, reduced in a fixed order within a block. */
#include "cuda_common.h"

#include <math.h>

#define LOSS_THREADS 256

/* ---- InfoNCE: a block per row, fused max / logsumexp / gradient ---- */

static __global__ void __launch_bounds__(LOSS_THREADS)
    k_infonce(int cols, int ld, float inv_tau, float scale, float *s, float *loss,
              float *dlogtau)
{
    __shared__ double sh[32];
    __shared__ float shf[32];
    const int i = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *row = s + (size_t)i * ld;
    float zm = -INFINITY;
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
        zm = fmaxf(zm, row[j] * inv_tau);
    zm = cu_warp_max(zm);
    if (lane == 0)
        shf[warp] = zm;
    __syncthreads();
    float zmax = -INFINITY;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++)
        zmax = fmaxf(zmax, shf[w]);
    double z = 0.0, ps = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        double e = exp((double)row[j] * inv_tau - zmax);
        z += e;
        ps += e * row[j];
    }
    z = cu_block_sum_d(z, sh);
    ps = cu_block_sum_d(ps, sh);
    const double lse = zmax + log(z);
    const double pos = row[i];
    __syncthreads(); /* every thread has read row[i] before it changes */
    if (threadIdx.x == 0) {
        loss[i] = (float)(lse - pos * inv_tau);
        dlogtau[i] = (float)(scale * (pos - ps / z) * inv_tau);
    }
    const double g = (double)scale * inv_tau;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = (float)(g * exp((double)row[j] * inv_tau - lse));
        if (j == i)
            v -= (float)g;
        row[j] = v;
    }
}

static void cuda_infonce_xent(vqji_device *dev, int rows, int cols, int ld, float inv_tau,
                              float scale, float *s, float *loss, float *dlogtau)
{
    cuda_device *cd = cu_dev(dev);
    if (rows <= 0 || cols <= 0 || !cu_enter(cd))
        return;
    k_infonce<<<(unsigned)rows, LOSS_THREADS, 0, cd->stream>>>(cols, ld, inv_tau, scale, s, loss,
                                                              dlogtau);
    cu_launched(cd, "infonce_xent");
}

static __global__ void k_fill_at(size_t n, const int64_t *index, float value, float *x)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[index[i]] = value;
}

static void cuda_fill_at(vqji_device *dev, size_t n, const int64_t *index, float value, float *x)
{
    cuda_device *cd = cu_dev(dev);
    if (n == 0 || !cu_enter(cd))
        return;
    k_fill_at<<<(unsigned)((n + 255) / 256), 256, 0, cd->stream>>>(n, index, value, x);
    cu_launched(cd, "fill_at");
}

/* ---- SIGReg: a block per slice ----
 * cos(kθ), sin(kθ) by the same double rotation as the CPU. The per-point
 * means are formed SIG_CHUNK points at a time in registers (compile-time
 * indices) and summed over the block in a fixed order. */

#define SIG_CHUNK 8

static __global__ void __launch_bounds__(LOSS_THREADS)
    k_sigreg(int n, int points, float dt, const float *w, float scale, const float *x,
             float *stat, float *dx)
{
    __shared__ double cmean[VQJI_SIGREG_MAX_POINTS], smean[VQJI_SIGREG_MAX_POINTS];
    __shared__ double gc[VQJI_SIGREG_MAX_POINTS], gs[VQJI_SIGREG_MAX_POINTS];
    __shared__ double sh[32];
    const int sl = blockIdx.x;
    const float *xs = x + (size_t)sl * n;
    float *dxs = dx + (size_t)sl * n;
    for (int k0 = 0; k0 < points; k0 += SIG_CHUNK) {
        double ac[SIG_CHUNK], as[SIG_CHUNK];
#pragma unroll
        for (int u = 0; u < SIG_CHUNK; u++)
            ac[u] = as[u] = 0.0;
        for (int b = threadIdx.x; b < n; b += blockDim.x) {
            double th = (double)dt * xs[b], c1 = cos(th), s1 = sin(th), ck = 1.0, sk = 0.0;
            for (int k = 0; k < k0; k++) {
                double cn = ck * c1 - sk * s1;
                sk = sk * c1 + ck * s1;
                ck = cn;
            }
#pragma unroll
            for (int u = 0; u < SIG_CHUNK; u++) {
                ac[u] += ck;
                as[u] += sk;
                double cn = ck * c1 - sk * s1;
                sk = sk * c1 + ck * s1;
                ck = cn;
            }
        }
#pragma unroll
        for (int u = 0; u < SIG_CHUNK; u++) {
            double tc = cu_block_sum_d(ac[u], sh);
            double ts = cu_block_sum_d(as[u], sh);
            if (threadIdx.x == 0 && k0 + u < points) {
                cmean[k0 + u] = tc;
                smean[k0 + u] = ts;
            }
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double st = 0.0;
        for (int k = 0; k < points; k++) {
            double t = (double)k * dt, phi = exp(-0.5 * t * t);
            cmean[k] /= n;
            smean[k] /= n;
            double ec = cmean[k] - phi;
            st += w[k] * (ec * ec + smean[k] * smean[k]);
            gc[k] = 2.0 * scale * w[k] * t * smean[k];
            gs[k] = -2.0 * scale * w[k] * t * ec;
        }
        stat[sl] = (float)(n * st);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < n; b += blockDim.x) {
        double th = (double)dt * xs[b], c1 = cos(th), s1 = sin(th), ck = 1.0, sk = 0.0;
        double g = 0.0;
        for (int k = 0; k < points; k++) {
            g += gc[k] * ck + gs[k] * sk;
            double cn = ck * c1 - sk * s1;
            sk = sk * c1 + ck * s1;
            ck = cn;
        }
        dxs[b] = (float)g;
    }
}

static void cuda_sigreg_epps_pulley(vqji_device *dev, int slices, int n, int points, float dt,
                                    const float *w, float scale, const float *x, float *stat,
                                    float *dx)
{
    cuda_device *cd = cu_dev(dev);
    if (slices <= 0 || !cu_enter(cd))
        return;
    if (points < 0 || points > VQJI_SIGREG_MAX_POINTS) {
        cu_record(cd, VQJ_ERR_INVALID_ARGUMENT,
                  "sigreg_epps_pulley: %d points; at most %d are supported", points,
                  VQJI_SIGREG_MAX_POINTS);
        return;
    }
    k_sigreg<<<(unsigned)slices, LOSS_THREADS, 0, cd->stream>>>(n, points, dt, w, scale, x, stat,
                                                               dx);
    cu_launched(cd, "sigreg_epps_pulley");
}

/* ---- Relational distances: a block per grid ---- */

#define REL_WARPS (LOSS_THREADS / 32)

static __global__ void __launch_bounds__(LOSS_THREADS)
    k_rel_fwd(const int32_t *offsets, const uint8_t *adj, const int64_t *adj_offsets, int d,
              int m, const float *h, float *r)
{
    const int g = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t mm = (size_t)m * m;
    float *rg = r + (size_t)g * mm;
    for (size_t e = threadIdx.x; e < mm; e += blockDim.x)
        rg[e] = 0.0f;
    __syncthreads();
    const int n = offsets[g + 1] - offsets[g];
    const int nn = n < m ? n : m; /* n <= m is the caller's contract */
    const float *hg = h + (size_t)offsets[g] * d;
    const uint8_t *a = adj + adj_offsets[g];
    for (int pair = warp; pair < nn * nn; pair += REL_WARPS) {
        int i = pair / nn, j = pair % nn;
        if (i == j || !a[(size_t)i * n + j])
            continue;
        const float *hi = hg + (size_t)i * d, *hj = hg + (size_t)j * d;
        double s = 0.0;
        for (int k = lane; k < d; k += 32) {
            double t = (double)hi[k] - hj[k];
            s += t * t;
        }
        s = cu_warp_sum_d(s);
        if (lane == 0)
            rg[(size_t)i * m + j] = (float)s;
    }
}

static void cuda_relational_distances_forward(vqji_device *dev, int num_grids,
                                              const int32_t *offsets, const uint8_t *adj,
                                              const int64_t *adj_offsets, int d, int m,
                                              const float *h, float *r)
{
    cuda_device *cd = cu_dev(dev);
    if (num_grids <= 0 || m <= 0 || !cu_enter(cd))
        return;
    k_rel_fwd<<<(unsigned)num_grids, LOSS_THREADS, 0, cd->stream>>>(offsets, adj, adj_offsets, d,
                                                                   m, h, r);
    cu_launched(cd, "relational_distances_forward");
}

/* Token x of a grid gathers both roles of every pair it is in:
 * dh_x += Σ_j 2 dr_xj (h_x - h_j) [a_xj] - Σ_i 2 dr_ix (h_i - h_x) [a_ix];
 * each (x, k) is owned by one thread, so no atomics are needed. */
static __global__ void __launch_bounds__(LOSS_THREADS)
    k_rel_bwd(const int32_t *offsets, const uint8_t *adj, const int64_t *adj_offsets, int d,
              int m, const float *h, const float *dr, float *dh)
{
    const int g = blockIdx.x;
    const int n = offsets[g + 1] - offsets[g];
    const int nn = n < m ? n : m;
    const float *hg = h + (size_t)offsets[g] * d;
    float *dhg = dh + (size_t)offsets[g] * d;
    const uint8_t *a = adj + adj_offsets[g];
    const float *drg = dr + (size_t)g * m * m;
    const size_t total = (size_t)nn * d;
    for (size_t t = threadIdx.x; t < total; t += blockDim.x) {
        const int x = (int)(t / (size_t)d), k = (int)(t % (size_t)d);
        const float hx = hg[(size_t)x * d + k];
        float acc = 0.0f;
        for (int j = 0; j < nn; j++) {
            if (j == x)
                continue;
            const float hj = hg[(size_t)j * d + k];
            if (a[(size_t)x * n + j])
                acc += 2.0f * drg[(size_t)x * m + j] * (hx - hj);
            if (a[(size_t)j * n + x])
                acc -= 2.0f * drg[(size_t)j * m + x] * (hj - hx);
        }
        dhg[(size_t)x * d + k] += acc;
    }
}

static void cuda_relational_distances_backward(vqji_device *dev, int num_grids,
                                               const int32_t *offsets, const uint8_t *adj,
                                               const int64_t *adj_offsets, int d, int m,
                                               const float *h, const float *dr, float *dh)
{
    cuda_device *cd = cu_dev(dev);
    if (num_grids <= 0 || m <= 0 || d <= 0 || !cu_enter(cd))
        return;
    k_rel_bwd<<<(unsigned)num_grids, LOSS_THREADS, 0, cd->stream>>>(offsets, adj, adj_offsets, d,
                                                                   m, h, dr, dh);
    cu_launched(cd, "relational_distances_backward");
}

/* ---- Relational consistency: a block per example ---- */

static __global__ void __launch_bounds__(LOSS_THREADS)
    k_rel_consistency(int t, int mm, const float *r_ctx, const float *r_tgt, float w_align,
                      float w_self, float scale, float *loss, float *dr_ctx, float *dr_tgt)
{
    __shared__ double sh[32];
    const int b = blockIdx.x;
    const double ca = vqji_relational_align_coef(w_align, mm);
    const double cs = vqji_relational_self_coef(w_self, t, mm);
    const float *rc = r_ctx + (size_t)b * t * mm;
    const float *rt = r_tgt + (size_t)b * mm;
    float *dc = dr_ctx + (size_t)b * t * mm;
    float *dtg = dr_tgt + (size_t)b * mm;
    double lb = 0.0;
    for (int e = threadIdx.x; e < mm; e += blockDim.x)
        lb += vqji_relational_entry(t, (size_t)mm, rc + e, rt[e], ca, cs, scale, dc + e,
                                    dtg + e);
    lb = cu_block_sum_d(lb, sh);
    if (threadIdx.x == 0)
        loss[b] = (float)lb;
}

static void cuda_relational_consistency(vqji_device *dev, int batch, int t, int mm,
                                        const float *r_ctx, const float *r_tgt, float w_align,
                                        float w_self, float scale, float *loss, float *dr_ctx,
                                        float *dr_tgt)
{
    cuda_device *cd = cu_dev(dev);
    if (batch <= 0 || !cu_enter(cd))
        return;
    k_rel_consistency<<<(unsigned)batch, LOSS_THREADS, 0, cd->stream>>>(
        t, mm, r_ctx, r_tgt, w_align, w_self, scale, loss, dr_ctx, dr_tgt);
    cu_launched(cd, "relational_consistency");
}

void vqji_cuda_register_loss(vqji_device_ops *ops)
{
    ops->infonce_xent = cuda_infonce_xent;
    ops->fill_at = cuda_fill_at;
    ops->sigreg_epps_pulley = cuda_sigreg_epps_pulley;
    ops->relational_distances_forward = cuda_relational_distances_forward;
    ops->relational_distances_backward = cuda_relational_distances_backward;
    ops->relational_consistency = cuda_relational_consistency;
}
