/* CPU kernels of the losses (docs/losses.md). Each op returns per-row loss
 * values unscaled and overwrites its gradient outputs with the gradient of
 * scale * Σ_rows loss (see device.h). Sums run in double: they add up
 * hundreds to thousands of terms whose differences matter (a softmax's
 * normalizer, a characteristic function near its target). Rows, slices,
 * grids and examples are independent: the loops run on the context's thread
 * pool, each output computed as the serial loop would (threadpool.h). */
#include "device/cpu.h"
#include "device/device.h"

#include <math.h>
#include <string.h>

/* ---- InfoNCE: softmax cross-entropy with the positive on the diagonal ---- */

/* The loss ops' arguments, for the pool's range functions. */
typedef struct loss_args {
    int rows, cols, ld, n, points, d, m, t, mm;
    float inv_tau, scale, dt, w_align, w_self;
    float *s, *loss, *dlogtau, *out, *dh, *dr_ctx, *dr_tgt;
    const float *w, *x, *h, *dr, *r_ctx, *r_tgt;
    const int32_t *offsets;
    const uint8_t *adj;
    const int64_t *adj_offsets;
} loss_args;

/* Rows [r0, r1) of the similarity matrix. */
static void infonce_rows(void *arg, size_t r0, size_t r1)
{
    const loss_args *a = arg;
    const int cols = a->cols, ld = a->ld;
    const float inv_tau = a->inv_tau, scale = a->scale;
    float *s = a->s, *loss = a->loss, *dlogtau = a->dlogtau;
    for (int i = (int)r0; i < (int)r1; i++) {
        float *row = s + (size_t)i * ld;
        /* Subtract the row's largest logit so exp never overflows. */
        float zmax = row[0] * inv_tau;
        for (int j = 1; j < cols; j++)
            zmax = fmaxf(zmax, row[j] * inv_tau);
        double z = 0.0, ps = 0.0; /* Σ exp(z_j - zmax), Σ exp(z_j - zmax) s_ij */
        for (int j = 0; j < cols; j++) {
            double e = exp((double)row[j] * inv_tau - zmax);
            z += e;
            ps += e * row[j];
        }
        double lse = zmax + log(z);
        double pos = row[i];
        loss[i] = (float)(lse - pos * inv_tau);
        dlogtau[i] = (float)(scale * (pos - ps / z) * inv_tau);
        /* d loss_i / d s_ij = (p_ij - [j = i]) / tau */
        double g = (double)scale * inv_tau;
        for (int j = 0; j < cols; j++)
            row[j] = (float)(g * exp((double)row[j] * inv_tau - lse));
        row[i] -= (float)g;
    }
}

static void cpu_infonce_xent(vqji_device *dev, int rows, int cols, int ld, float inv_tau,
                             float scale, float *s, float *loss, float *dlogtau)
{
    loss_args a = {.cols = cols, .ld = ld, .inv_tau = inv_tau, .scale = scale, .s = s,
                   .loss = loss, .dlogtau = dlogtau};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)(rows > 0 ? rows : 0),
                      VQJI_PAR_MIN_ELEMS / 8 / ((size_t)cols + 1) + 1, 1, infonce_rows, &a);
}

static void cpu_fill_at(vqji_device *dev, size_t n, const int64_t *index, float value, float *x)
{
    (void)dev;
    for (size_t i = 0; i < n; i++)
        x[index[i]] = value;
}

/* ---- SIGReg: Epps-Pulley statistic per slice ----
 * cos(k θ) and sin(k θ) for k = 0..points-1 come from the rotation
 * e^{i(k+1)θ} = e^{ikθ} e^{iθ} in double: one cos/sin pair per sample
 * instead of `points`, with a rounding error that grows only linearly in k
 * (~1e-15 per step, far below float). */

/* Slices [s0, s1): x -> stat (loss), dx (out). */
static void sigreg_slices(void *arg, size_t s0, size_t s1)
{
    const loss_args *a = arg;
    const int n = a->n, points = a->points;
    const float dt = a->dt, scale = a->scale, *w = a->w, *x = a->x;
    float *stat = a->loss, *dx = a->out;
    double cmean[VQJI_SIGREG_MAX_POINTS], smean[VQJI_SIGREG_MAX_POINTS];
    double gc[VQJI_SIGREG_MAX_POINTS], gs[VQJI_SIGREG_MAX_POINTS];
    for (int sl = (int)s0; sl < (int)s1; sl++) {
        const float *xs = x + (size_t)sl * n;
        float *dxs = dx + (size_t)sl * n;
        memset(cmean, 0, (size_t)points * sizeof *cmean);
        memset(smean, 0, (size_t)points * sizeof *smean);
        for (int b = 0; b < n; b++) {
            double th = (double)dt * xs[b], c1 = cos(th), s1 = sin(th), ck = 1.0, sk = 0.0;
            for (int k = 0; k < points; k++) {
                cmean[k] += ck;
                smean[k] += sk;
                double cn = ck * c1 - sk * s1;
                sk = sk * c1 + ck * s1;
                ck = cn;
            }
        }
        double st = 0.0;
        for (int k = 0; k < points; k++) {
            double t = (double)k * dt, phi = exp(-0.5 * t * t);
            cmean[k] /= n;
            smean[k] /= n;
            double ec = cmean[k] - phi;
            st += w[k] * (ec * ec + smean[k] * smean[k]);
            /* d stat / d x_b = Σ_k 2 w_k t_k (S_k cos(t_k x_b) - (C_k - φ_k) sin(t_k x_b)):
             * the factor n of the statistic cancels the 1/n of the means. */
            gc[k] = 2.0 * scale * w[k] * t * smean[k];
            gs[k] = -2.0 * scale * w[k] * t * ec;
        }
        stat[sl] = (float)(n * st);
        for (int b = 0; b < n; b++) {
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
}

static void cpu_sigreg_epps_pulley(vqji_device *dev, int slices, int n, int points, float dt,
                                   const float *w, float scale, const float *x, float *stat,
                                   float *dx)
{
    loss_args a = {.n = n, .points = points, .dt = dt, .w = w, .scale = scale, .x = x,
                   .loss = stat, .out = dx};
    vqji_parallel_for(vqji_cpu_pool(dev), (size_t)(slices > 0 ? slices : 0),
                      VQJI_PAR_MIN_ELEMS / 16 / ((size_t)n * (size_t)points + 1) + 1, 1,
                      sigreg_slices, &a);
}

/* ---- Relational distances r_ij = ||h_i - h_j||² over adjacent pairs ---- */

static double sqdist(int d, const float *a, const float *b)
{
    double s = 0.0;
    for (int k = 0; k < d; k++) {
        double t = (double)a[k] - b[k];
        s += t * t;
    }
    return s;
}

/* Grids [g0, g1): h -> r (out). */
static void relational_forward_grids(void *arg, size_t g0, size_t g1)
{
    const loss_args *w = arg;
    const int32_t *offsets = w->offsets;
    const int d = w->d, m = w->m;
    const float *h = w->h;
    size_t mm = (size_t)m * m;
    memset(w->out + g0 * mm, 0, (g1 - g0) * mm * sizeof *w->out);
    for (int g = (int)g0; g < (int)g1; g++) {
        int n = offsets[g + 1] - offsets[g];
        const float *hg = h + (size_t)offsets[g] * d;
        const uint8_t *a = w->adj + w->adj_offsets[g];
        float *rg = w->out + (size_t)g * mm;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (i != j && a[i * n + j])
                    rg[i * m + j] = (float)sqdist(d, hg + (size_t)i * d, hg + (size_t)j * d);
    }
}

static void cpu_relational_distances_forward(vqji_device *dev, int num_grids,
                                             const int32_t *offsets, const uint8_t *adj,
                                             const int64_t *adj_offsets, int d, int m,
                                             const float *h, float *r)
{
    loss_args a = {.offsets = offsets, .adj = adj, .adj_offsets = adj_offsets, .d = d, .m = m,
                   .h = h, .out = r};
    vqji_parallel_for_weighted(vqji_cpu_pool(dev), (size_t)(num_grids > 0 ? num_grids : 0),
                               offsets, 256, relational_forward_grids, &a);
}

/* Grids [g0, g1): h, dr -> dh. */
static void relational_backward_grids(void *arg, size_t g0, size_t g1)
{
    const loss_args *w = arg;
    const int32_t *offsets = w->offsets;
    const int d = w->d, m = w->m;
    size_t mm = (size_t)m * m;
    for (int g = (int)g0; g < (int)g1; g++) {
        int n = offsets[g + 1] - offsets[g];
        const float *hg = w->h + (size_t)offsets[g] * d;
        float *dhg = w->dh + (size_t)offsets[g] * d;
        const uint8_t *a = w->adj + w->adj_offsets[g];
        const float *drg = w->dr + (size_t)g * mm;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                if (i == j || !a[i * n + j])
                    continue;
                float c = 2.0f * drg[i * m + j];
                const float *hi = hg + (size_t)i * d, *hj = hg + (size_t)j * d;
                float *dhi = dhg + (size_t)i * d, *dhj = dhg + (size_t)j * d;
                for (int k = 0; k < d; k++) {
                    float t = c * (hi[k] - hj[k]);
                    dhi[k] += t;
                    dhj[k] -= t;
                }
            }
    }
}

static void cpu_relational_distances_backward(vqji_device *dev, int num_grids,
                                              const int32_t *offsets, const uint8_t *adj,
                                              const int64_t *adj_offsets, int d, int m,
                                              const float *h, const float *dr, float *dh)
{
    loss_args a = {.offsets = offsets, .adj = adj, .adj_offsets = adj_offsets, .d = d, .m = m,
                   .h = h, .dr = dr, .dh = dh};
    vqji_parallel_for_weighted(vqji_cpu_pool(dev), (size_t)(num_grids > 0 ? num_grids : 0),
                               offsets, 256, relational_backward_grids, &a);
}

/* ---- Relational consistency over the M x M matrices of each example ---- */

static void cpu_relational_consistency(vqji_device *dev, int batch, int t, int mm,
                                       const float *r_ctx, const float *r_tgt, float w_align,
                                       float w_self, float scale, float *loss, float *dr_ctx,
                                       float *dr_tgt)
{
    (void)dev;
    /* The entry's formula: core/formulas.h. */
    const double ca = vqji_relational_align_coef(w_align, mm);
    const double cs = vqji_relational_self_coef(w_self, t, mm);
    for (int b = 0; b < batch; b++) {
        const float *rc = r_ctx + (size_t)b * t * mm;
        const float *rt = r_tgt + (size_t)b * mm;
        float *dc = dr_ctx + (size_t)b * t * mm;
        float *dtg = dr_tgt + (size_t)b * mm;
        double lb = 0.0;
        for (int e = 0; e < mm; e++)
            lb += vqji_relational_entry(t, (size_t)mm, rc + e, rt[e], ca, cs, scale, dc + e,
                                        dtg + e);
        loss[b] = (float)lb;
    }
}

void vqji_cpu_register_loss(vqji_device_ops *ops)
{
    ops->infonce_xent = cpu_infonce_xent;
    ops->fill_at = cpu_fill_at;
    ops->sigreg_epps_pulley = cpu_sigreg_epps_pulley;
    ops->relational_distances_forward = cpu_relational_distances_forward;
    ops->relational_distances_backward = cpu_relational_distances_backward;
    ops->relational_consistency = cpu_relational_consistency;
}
