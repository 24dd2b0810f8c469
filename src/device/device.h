/* The device interface: a table of operations that the model math calls.
 * Model code never includes cblas.h or cuda_runtime.h; a backend (cpu.c,
 * cuda/) fills this table. Buffers passed to compute ops live on the device
 * (host memory for the CPU backend). Compute ops return nothing: a backend
 * records a failure and reports it at the next sync(), as GPU runtimes do. */
#ifndef VQJ_DEVICE_H
#define VQJ_DEVICE_H

#include "core/core.h"
#include "core/formulas.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct vqji_device_ops vqji_device_ops;

/* The levels of an FSQ code (docs/model.md, "Quantizers"), passed by value
 * to a kernel: l[0..n). */
typedef struct vqji_fsq_levels {
    int n;
    int l[VQJ_FSQ_MAX_LEVELS];
} vqji_fsq_levels;

/* Below this norm the rotation trick falls back to straight-through. */
#define VQJI_ROTATION_EPS 1e-6f

/* Most quadrature points the sigreg_epps_pulley op accepts (its per-slice
 * sums live on the stack). */
#define VQJI_SIGREG_MAX_POINTS VQJI_HI_SIGREG_NUM_POINTS

struct vqji_device {
    const vqji_device_ops *ops;
    const vqj_context *ctx; /* for error messages */
    int num_threads;
    void *impl; /* backend state */
};

/* The op table, declared once: X(return type, name, (parameters)) for every
 * slot, in table order. It yields the members of struct vqji_device_ops
 * below, the names in vqji_device_op_names[] and vqji_device_ops_missing(),
 * which the tests use to check that a backend fills every slot. */
#define VQJI_DEVICE_OPS(X)                                                                         \
    X(void, destroy, (vqji_device *dev))                                                           \
                                                                                                   \
    /* Memory. alloc of 0 bytes gives a valid pointer. free(NULL) is a no-op. */                   \
    X(vqj_status, alloc, (vqji_device *dev, size_t bytes, void **out))                             \
    X(void, free, (vqji_device *dev, void *ptr))                                                   \
    X(vqj_status, upload, (vqji_device *dev, void *dst, const void *host_src, size_t bytes))       \
    X(vqj_status, download, (vqji_device *dev, void *host_dst, const void *src, size_t bytes))     \
    X(void, copy, (vqji_device *dev, void *dst, const void *src, size_t bytes))                    \
    /* Wait for queued work; return (and clear) the first recorded failure. */                     \
    X(vqj_status, sync, (vqji_device *dev))                                                        \
                                                                                                   \
    /* C[m x n] = alpha * op(A) * op(B) + beta * C, row-major, op(A) m x k,                        \
     * op(B) k x n; lda/ldb/ldc are row strides of the stored matrices. */                         \
    X(void, gemm, (vqji_device *dev, bool trans_a, bool trans_b, int m, int n, int k, float alpha, \
                   const float *a, int lda, const float *b, int ldb, float beta, float *c,         \
                   int ldc))                                                                       \
                                                                                                   \
    /* Elementwise. */                                                                             \
    X(void, fill, (vqji_device *dev, size_t n, float value, float *x))                             \
    X(void, scale, (vqji_device *dev, size_t n, float alpha, float *x)) /* x *= a */               \
    /* y += a x */                                                                                 \
    X(void, axpy, (vqji_device *dev, size_t n, float alpha, const float *x, float *y))             \
                                                                                                   \
    /* Reductions into one host float, accumulated in double. */                                   \
    X(float, sum, (vqji_device *dev, size_t n, const float *x))                                    \
    X(float, dot, (vqji_device *dev, size_t n, const float *x, const float *y))                    \
    /* Whether every element is finite. */                                                         \
    X(bool, all_finite, (vqji_device *dev, size_t n, const float *x))                              \
                                                                                                   \
    /* ---- Layers (cpu_layers.c; math in docs/model.md) ----                                      \
     * Conventions: row-major [rows x cols] matrices; backward ops ACCUMULATE                      \
     * (+=) into every gradient they produce (inputs and parameters alike), so                     \
     * callers zero gradient buffers once before a backward pass and residual                      \
     * branches need no extra adds. Packed tokens: grid g owns rows                                \
     * offsets[g] .. offsets[g+1]-1; its adjacency is an n_g x n_g byte block                      \
     * at adj + adj_offsets[g] (adj_offsets[g] = sum over h < g of n_h^2). */                      \
    X(void, bias_forward, (vqji_device *dev, int n, int c, const float *bias, float *y))           \
    X(void, bias_backward, (vqji_device *dev, int n, int c, const float *dy, float *dbias))        \
    X(void, gelu_forward, (vqji_device *dev, size_t n, const float *x, float *y))                  \
    X(void, gelu_backward,                                                                         \
      (vqji_device *dev, size_t n, const float *x, const float *dy, float *dx))                    \
    X(void, relu_forward, (vqji_device *dev, size_t n, const float *x, float *y))                  \
    X(void, relu_backward,                                                                         \
      (vqji_device *dev, size_t n, const float *x, const float *dy, float *dx))                    \
    X(void, tanh_forward, (vqji_device *dev, size_t n, const float *x, float *y))                  \
    /* Uses the forward output y = tanh(x). */                                                     \
    X(void, tanh_backward,                                                                         \
      (vqji_device *dev, size_t n, const float *y, const float *dy, float *dx))                    \
    /* y = (x - mean) * rstd * gamma + beta per row, eps inside the sqrt;                          \
     * mean and rstd [n] are saved for the backward pass. */                                       \
    X(void, layernorm_forward, (vqji_device *dev, int n, int c, const float *x,                    \
                                const float *gamma, const float *beta, float eps, float *y,        \
                                float *mean, float *rstd))                                         \
    X(void, layernorm_backward, (vqji_device *dev, int n, int c, const float *dy, const float *x,  \
                                 const float *gamma, const float *mean, const float *rstd,         \
                                 float *dx, float *dgamma, float *dbeta))                          \
    /* Inverted dropout: keep with probability 1 - p, scale kept values by                         \
     * 1 / (1 - p). The keep decision of element i is a pure function of                           \
     * (seed, i), so results do not depend on threads or devices. mask [n]                         \
     * receives the per-element factor (0 or 1/(1-p)). */                                          \
    X(void, dropout_forward, (vqji_device *dev, size_t n, float p, uint64_t seed, const float *x,  \
                              float *y, float *mask))                                              \
    X(void, dropout_backward, (vqji_device *dev, size_t n, const float *mask, const float *dy,     \
                               float *dx))                                                         \
    /* Multi-head self-attention restricted to adjacency plus self, per grid.                      \
     * qkv [n_tokens x 3d]: q, k, v side by side, head h at columns h*dh.                          \
     * out [n_tokens x d]. probs: softmax weights, heads * n_g^2 floats per                        \
     * grid at heads * adj_offsets[g], saved for the backward pass. */                             \
    X(void, attention_forward, (vqji_device *dev, int num_grids, const int32_t *offsets,           \
                                const uint8_t *adj, const int64_t *adj_offsets, int d, int heads,  \
                                const float *qkv, float *out, float *probs))                       \
    X(void, attention_backward, (vqji_device *dev, int num_grids, const int32_t *offsets,          \
                                 const uint8_t *adj, const int64_t *adj_offsets, int d, int heads, \
                                 const float *qkv, const float *probs, const float *dout,          \
                                 float *dqkv))                                                     \
    /* y[g] = mean of rows of grid g (zero vector for an empty grid). */                           \
    X(void, segment_mean_forward, (vqji_device *dev, int num_grids, const int32_t *offsets, int d, \
                                   const float *x, float *y))                                      \
    X(void, segment_mean_backward, (vqji_device *dev, int num_grids, const int32_t *offsets,       \
                                    int d, const float *dy, float *dx))                            \
    /* y = x / max(||x||, eps) per row; norm [n] saved. */                                         \
    X(void, l2norm_forward, (vqji_device *dev, int n, int c, const float *x, float eps, float *y,  \
                             float *norm))                                                         \
    X(void, l2norm_backward, (vqji_device *dev, int n, int c, const float *x, const float *y,      \
                              const float *norm, float eps, const float *dy, float *dx))           \
    /* Context aggregators over x [batch x t x d] -> y [batch x d]. */                             \
    X(void, aggregate_mean_forward, (vqji_device *dev, int batch, int t, int d, const float *x,    \
                                     float *y))                                                    \
    X(void, aggregate_mean_backward, (vqji_device *dev, int batch, int t, int d, const float *dy,  \
                                      float *dx))                                                  \
    /* Learned query q [d]: s = x q / sqrt(d), w = softmax over t (saved                           \
     * [batch x t]), y = sum_t w_t x_t. */                                                         \
    X(void, aggregate_attention_forward, (vqji_device *dev, int batch, int t, int d,               \
                                          const float *x, const float *q, float *y, float *w))     \
    X(void, aggregate_attention_backward, (vqji_device *dev, int batch, int t, int d,              \
                                           const float *x, const float *q, const float *w,         \
                                           const float *dy, float *dx, float *dq))                 \
    /* One GRU step after the two input GEMMs (PyTorch gate order r, z, n):                        \
     * gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh, both [batch x 3d];                              \
     * h_new = (1 - z) n + z h. gates [batch x 4d] saves r, z, n and the                           \
     * hidden part of n (gh_n) for the backward pass. */                                           \
    X(void, gru_cell_forward, (vqji_device *dev, int batch, int d, const float *gi,                \
                               const float *gh, const float *h, float *h_new, float *gates))       \
    /* Gradients with respect to gi, gh (accumulated) and h (accumulated). */                      \
    X(void, gru_cell_backward, (vqji_device *dev, int batch, int d, const float *h,                \
                                const float *gates, const float *dh_new, float *dgi, float *dgh,   \
                                float *dh))                                                        \
                                                                                                   \
    /* ---- Vector quantization (cpu_vq.c; math in docs/model.md, "Codebook") ----                 \
     * Nearest code by squared L2 for each of n rows of z [n x d] over the                         \
     * codebook e [k x d]: idx[n], dist[n] = max(0, ||z||^2 + min_k(||e_k||^2 -                    \
     * 2 z.e_k)) with the scores z e^T from gemm. Ties go to the lowest index.                     \
     * scratch holds (n + 1) x k floats (the scores and the code norms). */                        \
    X(void, vq_assign, (vqji_device *dev, int n, int d, int k, const float *z, const float *e,     \
                        float *scratch, int32_t *idx, float *dist))                                \
    /* counts[k] += assignments, sums[k x d] += assigned rows; either output                       \
     * may be NULL to skip it. Rows with idx outside 0..k-1 are ignored. */                        \
    X(void, vq_accumulate, (vqji_device *dev, int n, int d, int k, const float *z,                 \
                            const int32_t *idx, float *counts, float *sums))                       \
    /* q_i = e_{idx_i}; err_i = ||z_i - q_i||^2 by differences (exact where                        \
     * vq_assign's expansion cancels); err may be NULL. */                                         \
    X(void, vq_gather, (vqji_device *dev, int n, int d, const float *z, const float *e,            \
                        const int32_t *idx, float *q, float *err))                                 \
    /* EMA codes with Laplace smoothing, total = sum of counts (> 0, else e is                     \
     * left alone): c_k = (counts_k + eps) / (total + k eps) * total,                              \
     * e_k = sums_k / c_k. */                                                                      \
    X(void, vq_ema_normalize, (vqji_device *dev, int k, int d, float eps, float total,             \
                               const float *counts, const float *sums, float *e))                  \
    /* k-means++ seeding: mind_i = min(mind_i, ||z_i - c||^2) for one code                         \
     * c [d], by differences so that a chosen token's distance is exactly 0. */                    \
    X(void, vq_min_sqdist, (vqji_device *dev, int n, int d, const float *z, const float *c,        \
                            float *mind))                                                          \
    /* FSQ over p [n x lv.n], per dimension j with L = lv.l[j], w = L div 2,                       \
     * half_l = (L - 1)(1 + VQJI_FSQ_EPS) / 2, o = 0.5 for even L (else 0),                        \
     * s = atanh(o / half_l): t = tanh(p + s) (saved for the backward),                            \
     * r = round-half-even(t half_l - o) in [-w, L - 1 - w], qc = r / w;                           \
     * idx_i = sum_j (r_j + w_j) prod_{j' < j} L_j' (mixed radix, first                            \
     * dimension least significant). */                                                            \
    X(void, fsq_forward, (vqji_device *dev, int n, const vqji_fsq_levels *lv, const float *p,      \
                          float *t, float *qc, int32_t *idx))                                      \
    /* Straight-through round: dp += dqc half_l (1 - t^2) / w (ACCUMULATES). */                    \
    X(void, fsq_backward, (vqji_device *dev, int n, const vqji_fsq_levels *lv, const float *t,     \
                           const float *dqc, float *dp))                                           \
    /* The rotation trick's backward per row of u, q, dq [n x d]: with                             \
     * a = u / ||u||, b = q / ||q||, r = (a + b) / ||a + b|| and                                   \
     * lambda = ||q|| / ||u||, du += lambda (dq - 2 r (r.dq) + 2 a (b.dq))                         \
     * (the transpose of lambda (I - 2 r r^T + 2 b a^T), which maps u to q);                       \
     * du += dq (straight-through) where ||u||, ||q|| or ||a + b|| is below                        \
     * VQJI_ROTATION_EPS. ACCUMULATES. */                                                          \
    X(void, vq_rotation_backward, (vqji_device *dev, int n, int d, const float *u, const float *q, \
                                   const float *dq, float *du))                                    \
    /* Grouped codes' layout change: dst[i ldd + j] = src[i lds + j] for                          \
     * i < rows, j < cols (a column block of a row-major matrix to or from a                       \
     * contiguous one); src and dst do not overlap. */                                             \
    X(void, vq_copy_block, (vqji_device *dev, int rows, int cols, const float *src, int lds,       \
                            float *dst, int ldd))                                                  \
                                                                                                   \
    /* ---- Optimizer (cpu_optim.c; math in docs/optimizer.md) ---- */                             \
    /* Σ x_i² accumulated in double (the caller needs the exact sum across                         \
     * several buffers before the square root); non-finite inputs give a                           \
     * non-finite result. */                                                                       \
    X(double, sum_squares, (vqji_device *dev, size_t n, const float *x))                           \
    /* One fused Adam/AdamW step over n contiguous floats, one pass over                           \
     * memory, in PyTorch's operation order: g = grad_coef * grad (clip and                        \
     * grad scale folded); Adam: g += weight_decay * p; AdamW: p *= 1 - lr *                       \
     * weight_decay; m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g²;                    \
     * p -= (lr / bias_correction1) * m / (sqrt(v) / sqrt(bias_correction2)                        \
     * + eps). bias_correction_k = 1 - beta_k^step. grad is only read. */                          \
    X(void, adam_update, (vqji_device *dev, size_t n, float *param, const float *grad, float *m,   \
                          float *v, double lr, float beta1, float beta2, float eps,                \
                          float weight_decay, bool decoupled, double bias_correction1,             \
                          double bias_correction2, float grad_coef))                               \
    /* target = decay * target + (1 - decay) * online. */                                          \
    X(void, ema_blend, (vqji_device *dev, size_t n, float decay, const float *online,              \
                        float *target))                                                            \
                                                                                                   \
    /* ---- Losses (cpu_loss.c; math in docs/losses.md) ----                                       \
     * Each op returns per-row (per-example, per-slice) loss values unscaled                       \
     * and OVERWRITES its gradient outputs with the gradient of                                    \
     * scale * Σ_rows loss, so the caller folds the mean and the term's weight                     \
     * into `scale`. */                                                                            \
    /* Softmax cross-entropy over the similarity rows s [rows x cols]                              \
     * (row stride ld, rows <= cols) with logits s / tau and the positive of                       \
     * row i at column i: loss[i] = logsumexp_j(s_ij / tau) - s_ii / tau;                          \
     * dlogtau[i] = scale * d loss[i] / d log(tau) = scale * (s_ii - Σ_j p_ij                      \
     * s_ij) / tau; s is overwritten with scale * (p_ij - [j = i]) / tau. */                       \
    X(void, infonce_xent, (vqji_device *dev, int rows, int cols, int ld, float inv_tau,            \
                           float scale, float *s, float *loss, float *dlogtau))                    \
    /* x[index[i]] = value for i < n (index: device memory, distinct                               \
     * entries): InfoNCE's masked negatives. */                                                    \
    X(void, fill_at, (vqji_device *dev, size_t n, const int64_t *index, float value, float *x))    \
    /* Epps-Pulley statistic per slice of x [slices x n] (a slice is a row):                       \
     * t_k = k * dt (k < points <= VQJI_SIGREG_MAX_POINTS), weights w [points];                    \
     * stat[s] = n Σ_k w_k ((mean_b cos(t_k x_sb) - exp(-t_k²/2))² +                               \
     * (mean_b sin(t_k x_sb))²); dx [slices x n] = scale * d stat[s] / d x_sb. */                  \
    X(void, sigreg_epps_pulley, (vqji_device *dev, int slices, int n, int points, float dt,        \
                                 const float *w, float scale, const float *x, float *stat,         \
                                 float *dx))                                                       \
    /* Relational distances of packed grids (offsets, adjacency as in the                          \
     * layer ops above) into r [num_grids x m x m]: r_ij = ||h_i - h_j||² for                      \
     * adjacent i != j of a grid, 0 elsewhere (slots >= n_g included). Every                       \
     * grid must have n_g <= m. h [n_tokens x d]. */                                               \
    X(void, relational_distances_forward, (vqji_device *dev, int num_grids,                        \
                                           const int32_t *offsets, const uint8_t *adj,             \
                                           const int64_t *adj_offsets, int d, int m,               \
                                           const float *h, float *r))                              \
    /* dh_i += 2 dr_ij (h_i - h_j), dh_j -= 2 dr_ij (h_i - h_j) over the same                      \
     * pairs (ACCUMULATES into dh). */                                                             \
    X(void, relational_distances_backward, (vqji_device *dev, int num_grids,                       \
                                            const int32_t *offsets, const uint8_t *adj,            \
                                            const int64_t *adj_offsets, int d, int m,              \
                                            const float *h, const float *dr, float *dh))           \
    /* Relational consistency of `batch` examples, each T context matrices                         \
     * r_ctx [(b*T + t) x mm] and one target r_tgt [b x mm] (mm = m²):                             \
     * rbar = mean_t r_t; loss[b] = w_align/mm Σ (rbar - r_tgt)² +                                 \
     * w_self/(T mm) Σ_t Σ (r_t - rbar)²; dr_ctx, dr_tgt = scale * gradient. */                    \
    X(void, relational_consistency, (vqji_device *dev, int batch, int t, int mm,                   \
                                     const float *r_ctx, const float *r_tgt, float w_align,        \
                                     float w_self, float scale, float *loss, float *dr_ctx,        \
                                     float *dr_tgt))                                               \
                                                                                                   \
    /* ---- Linear algebra (cpu_linalg.c; math in docs/diagnostics.md) ----                        \
     * In double: the diagnostics need the small covariance eigenvalues that                       \
     * float would lose next to the largest. A backend may leave these NULL:                       \
     * the diagnostics then run the host solver of core/linalg.h. */                               \
    /* cov [d x d] (both triangles) = Xc^T Xc / (n - 1), Xc = x [n x d] minus                      \
     * its column means; n >= 2. centered [n x d] is scratch (it ends as Xc). */                   \
    X(void, covariance, (vqji_device *dev, int n, int d, const float *x, double *centered,         \
                         double *cov))                                                             \
    /* Eigenvalues of the symmetric a [n x n] into w [n], ascending; a is                          \
     * destroyed. Synchronous and fallible (workspace, convergence), so unlike                     \
     * the compute ops it returns its status, with a message. */                                   \
    X(vqj_status, sym_eigvals, (vqji_device *dev, int n, double *a, double *w))

struct vqji_device_ops {
    const char *name;
#define VQJI_OP_MEMBER(ret, op, params) ret(*op) params;
    VQJI_DEVICE_OPS(VQJI_OP_MEMBER)
#undef VQJI_OP_MEMBER
};

/* The number of slots, and their names in table order. */
#define VQJI_OP_ONE(ret, op, params) +1
enum { VQJI_DEVICE_NUM_OPS = 0 VQJI_DEVICE_OPS(VQJI_OP_ONE) };
#undef VQJI_OP_ONE
extern const char *const vqji_device_op_names[VQJI_DEVICE_NUM_OPS];

/* The name of the first slot of `ops` that is NULL, or NULL when every slot
 * is filled. */
const char *vqji_device_ops_missing(const vqji_device_ops *ops);

/* Create the device a context asks for. On failure the message is recorded
 * against `ctx`. */
vqj_status vqji_device_create(const vqj_context *ctx, vqji_device **out);
void vqji_device_destroy(vqji_device *dev);

/* Grow the device buffer *buf to at least `bytes` (contents are NOT kept:
 * for scratch and activation buffers that every call rewrites). *cap is in
 * bytes. */
vqj_status vqji_device_reserve(vqji_device *dev, void **buf, size_t *cap, size_t bytes);

/* Backends. */
vqj_status vqji_cpu_device_create(const vqj_context *ctx, vqji_device **out);
#ifdef VQJ_WITH_CUDA
vqj_status vqji_cuda_device_create(const vqj_context *ctx, vqji_device **out);
#endif

#endif
