/* The objective's terms (DESIGN.md §4; every formula and its gradient in
 * docs/losses.md). Each public call validates, computes the value and
 * accumulates the gradient in one pass, through device ops only: the heavy
 * products are gemm calls, the rest fused kernels of cpu_loss.c. */
#include "loss/loss.h"
#include "comm/comm.h"

#include "core/params.h"
#include "device/tensor.h"
#include "device/device.h"
#include "model/tokens.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The first published structs: core/params.h. */
#define LOSS_PARAMS_V1_SIZE VQJI_V1_LOSS_PARAMS
#define LOSS_VALUES_V1_SIZE VQJI_V1_LOSS_VALUES

/* SIGReg's quadrature interval [0, 3] (DESIGN.md §4). */
#define SIGREG_T_MAX 3.0

struct vqj_loss {
    vqj_context *ctx;
    vqj_loss_params p;
    vqj_weights w;
    size_t i_logtau, i_queue, i_fill, i_head; /* tensor indices (queue: when queue_size > 0) */
    size_t i_qids;     /* "loss.queue_ids" [Q x 4]: each row's grid id, 16 bits a float */
    vqj_loss_values acc;                      /* the running report (total unused) */

    float *sig_w;      /* device [num_points]: quadrature weights w_k */
    float *dir_host;   /* host [P x S]: this step's directions */
    float *dir;        /* device [P x S] */
    uint64_t sigreg_draws;

    void *ws;          /* device scratch, contents not kept between calls */
    size_t ws_cap;     /* bytes */
    void *idx;         /* device copies of token offsets / adjacency */
    size_t idx_cap;

    /* Duplicate-negative masking: host scratch and the masked entries. */
    float *qid_pieces;   /* host [fill x 4] */
    uint64_t *qid_host;  /* host [fill] */
    int64_t *mask_host;  /* host, entries of s to mask */
    size_t qid_pieces_cap, qid_host_cap, mask_host_cap; /* bytes */
    int64_t *mask_dev;   /* device copy of mask_host */
    size_t mask_dev_cap; /* bytes */
    int64_t masked;      /* entries masked by the last InfoNCE call */
};

/* ---- helpers ---- */

static vqji_device *devof(const vqj_loss *l) { return l->ctx->device; }

/* Carve `n` floats out of the scratch at *off (64-byte aligned pieces). */
static float *carve(vqj_loss *l, size_t *off, size_t n)
{
    float *p = (float *)((char *)l->ws + *off);
    *off += (n * sizeof(float) + 63) & ~(size_t)63;
    return p;
}

static size_t span(size_t n) { return (n * sizeof(float) + 63) & ~(size_t)63; }

static vqj_status check_tensor(const vqj_loss *l, const vqj_tensor *t, const char *fn,
                               const char *name)
{
    if (!t)
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, name);
    if (!vqji_same_context(t->ctx, l->ctx))
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: %s belongs to another context", fn, name);
    return VQJ_OK;
}

static vqj_status check_shape(const vqj_loss *l, const vqj_tensor *t, int rows, int cols,
                              const char *fn, const char *name)
{
    vqj_status st = check_tensor(l, t, fn, name);
    if (st)
        return st;
    if (t->rows != rows || t->cols != cols)
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %s is %d x %d, expected %d x %d",
                         fn, name, t->rows, t->cols, rows, cols);
    return VQJ_OK;
}

static vqj_status check_finite(const vqj_loss *l, const float *x, size_t n, const char *fn,
                               const char *name)
{
    vqji_device *dev = devof(l);
    if (!dev->ops->all_finite(dev, n, x))
        return vqji_fail(l->ctx, VQJ_ERR_NUMERIC, "%s: %s holds a NaN or infinite value", fn,
                         name);
    return VQJ_OK;
}

static vqj_status read_scalar(const vqj_loss *l, size_t index, float *out)
{
    vqji_device *dev = devof(l);
    return dev->ops->download(dev, out, vqji_weights_data(&l->w, index), sizeof *out);
}

static vqj_status write_scalar(vqj_loss *l, float *dst, float v)
{
    vqji_device *dev = devof(l);
    return dev->ops->upload(dev, dst, &v, sizeof v);
}

/* log tau from the device; *raw = exp(log tau) before the clamp. */
static vqj_status read_temperature(const vqj_loss *l, const char *fn, float *tau, float *raw)
{
    float lt;
    vqj_status st = read_scalar(l, l->i_logtau, &lt);
    if (st)
        return st;
    if (!isfinite(lt))
        return vqji_fail(l->ctx, VQJ_ERR_NUMERIC, "%s: loss.log_temperature is not finite", fn);
    float e = expf(lt);
    *raw = e;
    *tau = fminf(fmaxf(e, l->p.temperature_min), l->p.temperature_max);
    return VQJ_OK;
}

/* The ring's counters, checked: 0 <= fill <= Q, 0 <= head < Q, integers,
 * and head = fill until the ring first fills (pushes start at row 0). */
static vqj_status read_queue(const vqj_loss *l, const char *fn, int *fill, int *head)
{
    *fill = *head = 0;
    if (l->p.queue_size == 0)
        return VQJ_OK;
    float f, h;
    vqj_status st = read_scalar(l, l->i_fill, &f);
    if (!st)
        st = read_scalar(l, l->i_head, &h);
    if (st)
        return st;
    int q = l->p.queue_size;
    if (!(f >= 0.0f && f <= (float)q && f == floorf(f) && h >= 0.0f && h < (float)q &&
          h == floorf(h) && (f == (float)q || h == f)))
        return vqji_fail(l->ctx, VQJ_ERR_STATE,
                         "%s: loss.queue_fill = %g and loss.queue_head = %g are not a valid "
                         "position of a ring of %d rows",
                         fn, (double)f, (double)h, q);
    *fill = (int)f;
    *head = (int)h;
    return VQJ_OK;
}

static void set_value(float *value, float v)
{
    if (value)
        *value = v;
}

/* ---- params ---- */

void vqj_loss_params_default(vqj_loss_params *params)
{
    if (!params)
        return;
    *params = (vqj_loss_params){
        .size = sizeof *params,
        .projection_dim = 256,
        .queue_size = 8192,
        .temperature = 0.07f,
        .temperature_min = 0.05f,
        .temperature_max = 0.20f,
        .learnable_temperature = 1,
        .relational_weight = 0.025f,
        .context_self_weight = 0.01f,
        .max_objects = 16,
        .sigreg_weight = 0.1f,
        .sigreg_num_slices = 1024,
        .sigreg_num_points = 17,
        .color_weight = 0.1f,
        .translation_weight = 0.05f,
        .symmetry_weight = 0.05f,
        .infonce_weight = 1.0f,
        .mask_duplicate_negatives = 1,
    };
}

static vqj_status check_int(const vqj_context *ctx, const char *name, int v, int lo, int hi)
{
    if (v < lo || v > hi)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_params.%s is %d; must be in %d..%d", name, v, lo, hi);
    return VQJ_OK;
}

static vqj_status check_weight(const vqj_context *ctx, const char *name, float v)
{
    if (!(isfinite(v) && v >= 0.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_params.%s is %g; must be finite and >= 0", name, (double)v);
    return VQJ_OK;
}

static vqj_status validate(const vqj_context *ctx, const vqj_loss_params *p)
{
    vqj_status st;
    if ((st = check_int(ctx, "projection_dim", p->projection_dim, VQJI_LO_PROJECTION_DIM,
                        VQJI_HI_PROJECTION_DIM)) ||
        (st = check_int(ctx, "queue_size", p->queue_size, VQJI_LO_QUEUE_SIZE,
                        VQJI_HI_QUEUE_SIZE)) ||
        (st = check_int(ctx, "max_objects", p->max_objects, VQJI_LO_MAX_OBJECTS,
                        VQJI_HI_MAX_OBJECTS)) ||
        (st = check_int(ctx, "sigreg_num_slices", p->sigreg_num_slices,
                        VQJI_LO_SIGREG_NUM_SLICES, VQJI_HI_SIGREG_NUM_SLICES)) ||
        (st = check_int(ctx, "sigreg_num_points", p->sigreg_num_points,
                        VQJI_LO_SIGREG_NUM_POINTS, VQJI_HI_SIGREG_NUM_POINTS)) ||
        (st = check_weight(ctx, "infonce_weight", p->infonce_weight)) ||
        (st = check_weight(ctx, "relational_weight", p->relational_weight)) ||
        (st = check_weight(ctx, "context_self_weight", p->context_self_weight)) ||
        (st = check_weight(ctx, "sigreg_weight", p->sigreg_weight)) ||
        (st = check_weight(ctx, "color_weight", p->color_weight)) ||
        (st = check_weight(ctx, "translation_weight", p->translation_weight)) ||
        (st = check_weight(ctx, "symmetry_weight", p->symmetry_weight)) ||
        (st = check_int(ctx, "mask_duplicate_negatives", p->mask_duplicate_negatives, 0, 1)) ||
        (st = check_int(ctx, "objective", (int)p->objective, VQJ_OBJECTIVE_INFONCE,
                        VQJ_OBJECTIVE_SIGREG)))
        return st;
    if (!(isfinite(p->temperature_min) && p->temperature_min > 0.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_params.temperature_min is %g; must be finite and > 0",
                         (double)p->temperature_min);
    if (!(isfinite(p->temperature_max) && p->temperature_max >= p->temperature_min))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_params.temperature_max is %g; must be finite and >= "
                         "temperature_min (%g)",
                         (double)p->temperature_max, (double)p->temperature_min);
    if (!(p->temperature >= p->temperature_min && p->temperature <= p->temperature_max))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_params.temperature is %g; must be in [temperature_min, "
                         "temperature_max] = [%g, %g]",
                         (double)p->temperature, (double)p->temperature_min,
                         (double)p->temperature_max);
    size_t dirs;
    if (!vqji_mul_size((size_t)p->projection_dim, (size_t)p->sigreg_num_slices, &dirs) ||
        !vqji_mul_size(dirs, sizeof(float), &dirs))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_params: projection_dim x sigreg_num_slices is too large");
    return VQJ_OK;
}

/* ---- create / destroy ---- */

void vqj_loss_destroy(vqj_loss *l)
{
    if (!l)
        return;
    vqji_device *dev = devof(l);
    dev->ops->free(dev, l->sig_w);
    dev->ops->free(dev, l->dir);
    dev->ops->free(dev, l->ws);
    dev->ops->free(dev, l->idx);
    dev->ops->free(dev, l->mask_dev);
    free(l->qid_pieces);
    free(l->qid_host);
    free(l->mask_host);
    free(l->dir_host);
    vqji_weights_release(&l->w);
    free(l);
}

vqj_status vqj_loss_create(vqj_context *ctx, const vqj_loss_params *params, vqj_loss **out)
{
    if (!ctx || !params || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_loss_create: NULL argument");
    vqji_clear_error(ctx);
    vqj_loss_params p;
    vqj_loss_params_default(&p);
    vqj_status st =
        vqji_params_copy(ctx, &p, sizeof p, params, LOSS_PARAMS_V1_SIZE, "vqj_loss_params");
    if (st || (st = validate(ctx, &p)))
        return st;

    vqj_loss *l;
    if ((st = vqji_calloc(ctx, 1, sizeof *l, "the loss", (void **)&l)))
        return st;
    l->ctx = ctx;
    l->p = p;
    vqji_weights_init(&l->w, ctx);
    vqji_device *dev = ctx->device;
    int P = p.projection_dim, S = p.sigreg_num_slices, K = p.sigreg_num_points;

    st = vqji_weights_add(&l->w, "loss.log_temperature", 1, 1, p.learnable_temperature != 0,
                          &l->i_logtau);
    if (!st && p.queue_size > 0) {
        st = vqji_weights_add(&l->w, "loss.queue", p.queue_size, P, 0, &l->i_queue);
        if (!st)
            st = vqji_weights_add(&l->w, "loss.queue_fill", 1, 1, 0, &l->i_fill);
        if (!st)
            st = vqji_weights_add(&l->w, "loss.queue_head", 1, 1, 0, &l->i_head);
        /* Zeros: "unknown", never masked; so a checkpoint written before
         * the ids existed loads with no masking of its old rows. */
        if (!st)
            st = vqji_weights_add(&l->w, "loss.queue_ids", p.queue_size, 4, 0, &l->i_qids);
        if (!st)
            l->w.items[l->i_qids].optional = 1;
    }
    if (!st)
        st = vqji_weights_finalize(&l->w);
    if (!st)
        st = write_scalar(l, vqji_weights_data(&l->w, l->i_logtau), logf(p.temperature));

    /* Trapezoid weights on [0, 3] (h/2 at the ends, h inside), doubled for
     * the symmetric half-line t < 0, times the Gaussian window exp(-t²/2). */
    float wk[VQJI_SIGREG_MAX_POINTS];
    double h = SIGREG_T_MAX / (K - 1);
    for (int k = 0; k < K; k++) {
        double t = k * h, trap = (k == 0 || k == K - 1) ? h / 2 : h;
        wk[k] = (float)(2.0 * trap * exp(-0.5 * t * t));
    }
    if (!st)
        st = dev->ops->alloc(dev, (size_t)K * sizeof(float), (void **)&l->sig_w);
    if (!st)
        st = dev->ops->upload(dev, l->sig_w, wk, (size_t)K * sizeof(float));
    if (!st)
        st = vqji_malloc(ctx, (size_t)P * S * sizeof(float), "SIGReg directions",
                         (void **)&l->dir_host);
    if (!st)
        st = dev->ops->alloc(dev, (size_t)P * S * sizeof(float), (void **)&l->dir);
    if (st) {
        vqj_loss_destroy(l);
        return st;
    }
    *out = l;
    return VQJ_OK;
}

vqj_weights *vqj_loss_weights(vqj_loss *l) { return l ? &l->w : NULL; }

uint64_t vqji_loss_sigreg_draws(const vqj_loss *l) { return l->sigreg_draws; }

/* ---- report ---- */

void vqj_loss_reset(vqj_loss *l)
{
    if (!l)
        return;
    memset(&l->acc, 0, sizeof l->acc);
}

vqj_status vqj_loss_temperature(const vqj_loss *l, float *tau)
{
    if (!l || !tau)
        return vqji_fail(l ? l->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_temperature: NULL argument");
    vqji_clear_error(l->ctx);
    float raw;
    return read_temperature(l, "vqj_loss_temperature", tau, &raw);
}

vqj_status vqj_loss_get_values(const vqj_loss *l, vqj_loss_values *out)
{
    if (!l || !out)
        return vqji_fail(l ? l->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_get_values: NULL argument");
    vqji_clear_error(l->ctx);
    if (out->size < LOSS_VALUES_V1_SIZE)
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_get_values: out->size is %zu, smaller than any published "
                         "vqj_loss_values (%zu)",
                         out->size, LOSS_VALUES_V1_SIZE);
    vqj_loss_values v = l->acc;
    float raw;
    vqj_status st = read_temperature(l, "vqj_loss_get_values", &v.temperature, &raw);
    if (st)
        return st;
    v.total = v.infonce + v.relational + v.commitment + v.sigreg + v.invariance_color +
              v.invariance_translation + v.invariance_symmetry;
    v.size = out->size;
    memcpy(out, &v, out->size < sizeof v ? out->size : sizeof v);
    return VQJ_OK;
}

vqj_status vqj_loss_add_commitment(vqj_loss *l, float value)
{
    if (!l)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_loss_add_commitment: loss is NULL");
    vqji_clear_error(l->ctx);
    if (!isfinite(value))
        return vqji_fail(l->ctx, VQJ_ERR_NUMERIC,
                         "vqj_loss_add_commitment: the commitment loss is not finite");
    l->acc.commitment += value;
    return VQJ_OK;
}

vqj_status vqj_loss_queue_fill(const vqj_loss *l, int *fill)
{
    if (!l || !fill)
        return vqji_fail(l ? l->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_loss_queue_fill: NULL argument");
    vqji_clear_error(l->ctx);
    int f, h;
    vqj_status st = read_queue(l, "vqj_loss_queue_fill", &f, &h);
    if (!st)
        *fill = f;
    return st;
}

/* ---- InfoNCE ----
 * S = [c t^T | c Q^T] / tau, [B x (B + fill)], positive of row i at column i
 * (the order of the negatives does not change a cross-entropy). The kernel
 * turns S into dL/dS in place; dc = dS_t t + dS_q Q. */

/* A masked similarity: far enough below any cosine that exp(s / tau) is 0
 * in double, so the entry drops out of the softmax and gets no gradient;
 * finite, so 0 * s stays 0 in the kernel's sums. */
#define MASKED_SIMILARITY -1.0e4f

/* The queue's grid ids, rows 0..fill-1, into l->qid_host. */
static vqj_status read_queue_ids(vqj_loss *l, int fill)
{
    size_t n = (size_t)fill;
    vqj_status st = vqji_reserve(l->ctx, (void **)&l->qid_pieces, &l->qid_pieces_cap,
                                 (n ? n : 1) * 4 * sizeof(float), "queue ids");
    if (!st)
        st = vqji_reserve(l->ctx, (void **)&l->qid_host, &l->qid_host_cap,
                          (n ? n : 1) * sizeof(uint64_t), "queue ids");
    if (!st && n)
        st = devof(l)->ops->download(devof(l), l->qid_pieces, vqji_weights_data(&l->w, l->i_qids),
                                     n * 4 * sizeof(float));
    for (size_t m = 0; !st && m < n; m++) {
        uint64_t id = 0;
        for (int k = 0; k < 4; k++)
            id |= (uint64_t)l->qid_pieces[m * 4 + (size_t)k] << (16 * k);
        l->qid_host[m] = id;
    }
    return st;
}

/* Set s_ij to MASKED_SIMILARITY for every negative j of row i whose grid id
 * equals ids[i] (0: unknown, never masked): batch columns j != i, then the
 * queue's rows at columns B + m. */
static vqj_status mask_duplicates(vqj_loss *l, int B, int fill, const uint64_t *ids, float *s,
                                  int cols)
{
    vqj_status st = read_queue_ids(l, fill);
    size_t n = 0, cap = 0;
    for (int i = 0; !st && i < B; i++) {
        if (!ids[i])
            continue;
        for (int j = 0; j < cols; j++) {
            uint64_t other = j < B ? (j == i ? 0 : ids[j]) : l->qid_host[j - B];
            if (other != ids[i])
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                st = vqji_reserve(l->ctx, (void **)&l->mask_host, &l->mask_host_cap,
                                  cap * sizeof(int64_t), "masked negatives");
                if (st)
                    break;
            }
            l->mask_host[n++] = (int64_t)i * cols + j;
        }
    }
    l->masked = (int64_t)n;
    if (st || n == 0)
        return st;
    vqji_device *dev = devof(l);
    if ((st = vqji_device_reserve(dev, (void **)&l->mask_dev, &l->mask_dev_cap,
                                  n * sizeof(int64_t))) ||
        (st = dev->ops->upload(dev, l->mask_dev, l->mask_host, n * sizeof(int64_t))))
        return st;
    dev->ops->fill_at(dev, n, l->mask_dev, MASKED_SIMILARITY, s);
    return VQJ_OK;
}

vqj_status vqj_loss_infonce(vqj_loss *l, const vqj_tensor *c, const vqj_tensor *t,
                            vqj_tensor *dc, float *value)
{
    return vqj_loss_infonce_ids(l, c, t, NULL, dc, value);
}

/* objective sigreg: L = w (1/B) sum_i ||c_i - t_i||^2, dc += 2 w / B (c - t).
 * The temperature, the queue and the ids play no part. */
static vqj_status prediction_l2(vqj_loss *l, const vqj_tensor *c, const vqj_tensor *t,
                                vqj_tensor *dc, float *value)
{
    static const char fn[] = "vqj_loss_infonce";
    int B = c->rows, P = l->p.projection_dim;
    size_t n = (size_t)B * P, off = 0;
    float w = l->p.infonce_weight;
    vqj_status st;
    if ((st = vqji_device_reserve(devof(l), &l->ws, &l->ws_cap, span(n))))
        return st;
    vqji_device *dev = devof(l);
    float *diff = carve(l, &off, n);
    dev->ops->copy(dev, diff, c->data, n * sizeof(float));
    dev->ops->axpy(dev, n, -1.0f, t->data, diff);
    float v = w * dev->ops->dot(dev, n, diff, diff) / (float)B;
    if ((st = dev->ops->sync(dev)))
        return st;
    if (!isfinite(v))
        return vqji_fail(l->ctx, VQJ_ERR_NUMERIC, "%s: the loss is not finite", fn);
    if (dc)
        dev->ops->axpy(dev, n, 2.0f * w / (float)B, diff, dc->data);
    if ((st = dev->ops->sync(dev)))
        return st;
    l->acc.infonce += v;
    set_value(value, v);
    return VQJ_OK;
}

vqj_status vqj_loss_infonce_ids(vqj_loss *l, const vqj_tensor *c, const vqj_tensor *t,
                                 const uint64_t *ids, vqj_tensor *dc, float *value)
{
    static const char fn[] = "vqj_loss_infonce";
    if (!l)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: loss is NULL", fn);
    vqji_clear_error(l->ctx);
    int P = l->p.projection_dim;
    vqj_status st = check_tensor(l, c, fn, "c");
    if (st)
        return st;
    int B = c->rows;
    if ((st = check_shape(l, c, B, P, fn, "c")) || (st = check_shape(l, t, B, P, fn, "t")) ||
        (dc && (st = check_shape(l, dc, B, P, fn, "dc"))))
        return st;
    float w = l->p.infonce_weight;
    if (w == 0.0f || B == 0) {
        set_value(value, 0.0f);
        return VQJ_OK;
    }
    if ((st = check_finite(l, c->data, (size_t)B * P, fn, "c")) ||
        (st = check_finite(l, t->data, (size_t)B * P, fn, "t")))
        return st;
    l->masked = 0;
    if (l->p.objective == VQJ_OBJECTIVE_SIGREG)
        return prediction_l2(l, c, t, dc, value);
    float tau, raw;
    int fill, head;
    if ((st = read_temperature(l, fn, &tau, &raw)) || (st = read_queue(l, fn, &fill, &head)))
        return st;

    vqji_device *dev = devof(l);
    const vqji_device_ops *op = dev->ops;
    int cols = B + fill;
    size_t off = 0;
    if ((st = vqji_device_reserve(devof(l), &l->ws, &l->ws_cap,
                      span((size_t)B * cols) + 2 * span((size_t)B))))
        return st;
    float *s = carve(l, &off, (size_t)B * cols);
    float *row_loss = carve(l, &off, (size_t)B);
    float *row_dlt = carve(l, &off, (size_t)B);
    const float *q = fill ? vqji_weights_data(&l->w, l->i_queue) : NULL;

    op->gemm(dev, false, true, B, B, P, 1.0f, c->data, P, t->data, P, 0.0f, s, cols);
    if (fill)
        op->gemm(dev, false, true, B, fill, P, 1.0f, c->data, P, q, P, 0.0f, s + B, cols);
    l->masked = 0;
    if (ids && l->p.mask_duplicate_negatives && (st = mask_duplicates(l, B, fill, ids, s, cols)))
        return st;
    float scale = w / (float)B;
    op->infonce_xent(dev, B, cols, cols, 1.0f / tau, scale, s, row_loss, row_dlt);
    float v = w * op->sum(dev, (size_t)B, row_loss) / (float)B;
    float dlt = op->sum(dev, (size_t)B, row_dlt);
    if ((st = op->sync(dev)))
        return st;
    if (!isfinite(v) || !isfinite(dlt))
        return vqji_fail(l->ctx, VQJ_ERR_NUMERIC, "%s: the loss or its gradient is not finite",
                         fn);

    if (dc) {
        op->gemm(dev, false, false, B, P, B, 1.0f, s, cols, t->data, P, 1.0f, dc->data, P);
        if (fill)
            op->gemm(dev, false, false, B, P, fill, 1.0f, s + B, cols, q, P, 1.0f, dc->data, P);
    }
    /* torch.clamp's rule: the gradient passes where min <= exp(log tau) <= max. */
    if (l->p.learnable_temperature && raw >= l->p.temperature_min &&
        raw <= l->p.temperature_max) {
        float *g = vqji_weights_grad(&l->w, l->i_logtau), cur;
        if ((st = op->download(dev, &cur, g, sizeof cur)) ||
            (st = write_scalar(l, g, cur + dlt)))
            return st;
    }
    if ((st = op->sync(dev)))
        return st;
    l->acc.infonce += v;
    set_value(value, v);
    return VQJ_OK;
}

/* ---- the queue ---- */

vqj_status vqj_loss_queue_push(vqj_loss *l, const vqj_tensor *t)
{
    return vqj_loss_queue_push_ids(l, t, NULL);
}

/* The grid ids of rows first .. first+m-1 (0 without ids) into the queue's
 * id rows pos .. (wrapping at Q), 16 bits a float. */
static vqj_status write_queue_ids(vqj_loss *l, const uint64_t *ids, int first, int m, int pos)
{
    size_t n = (size_t)m;
    vqj_status st = vqji_reserve(l->ctx, (void **)&l->qid_pieces, &l->qid_pieces_cap,
                                 n * 4 * sizeof(float), "queue ids");
    if (st)
        return st;
    for (size_t r = 0; r < n; r++) {
        uint64_t id = ids ? ids[(size_t)first + r] : 0;
        for (int k = 0; k < 4; k++)
            l->qid_pieces[r * 4 + (size_t)k] = (float)((id >> (16 * k)) & 0xFFFFu);
    }
    vqji_device *dev = devof(l);
    float *qids = vqji_weights_data(&l->w, l->i_qids);
    int Q = l->p.queue_size, run1 = m < Q - pos ? m : Q - pos;
    st = dev->ops->upload(dev, qids + (size_t)pos * 4, l->qid_pieces,
                          (size_t)run1 * 4 * sizeof(float));
    if (!st && m > run1)
        st = dev->ops->upload(dev, qids, l->qid_pieces + (size_t)run1 * 4,
                              (size_t)(m - run1) * 4 * sizeof(float));
    return st;
}

vqj_status vqj_loss_queue_push_ids(vqj_loss *l, const vqj_tensor *t, const uint64_t *ids)
{
    static const char fn[] = "vqj_loss_queue_push";
    if (!l)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: loss is NULL", fn);
    vqji_clear_error(l->ctx);
    int P = l->p.projection_dim;
    vqj_status st = check_tensor(l, t, fn, "t");
    if (st || (st = check_shape(l, t, t->rows, P, fn, "t")))
        return st;
    int Q = l->p.queue_size, n = t->rows;
    if (Q == 0 || n == 0)
        return VQJ_OK;
    if ((st = check_finite(l, t->data, (size_t)n * P, fn, "t")))
        return st;
    int fill, head;
    if ((st = read_queue(l, fn, &fill, &head)))
        return st;

    /* Row r of t lands at (head + r) mod Q, as if pushed one at a time; only
     * the last min(n, Q) rows survive, so only those are written, in at
     * most two contiguous pieces. */
    vqji_device *dev = devof(l);
    float *queue = vqji_weights_data(&l->w, l->i_queue);
    int m = n < Q ? n : Q;
    int first = n - m;
    int pos = (int)(((int64_t)head + first) % Q);
    int run1 = m < Q - pos ? m : Q - pos;
    size_t row = (size_t)P * sizeof(float);
    dev->ops->copy(dev, queue + (size_t)pos * P, t->data + (size_t)first * P, (size_t)run1 * row);
    if (m > run1)
        dev->ops->copy(dev, queue, t->data + (size_t)(first + run1) * P,
                       (size_t)(m - run1) * row);
    if ((st = write_queue_ids(l, ids, first, m, pos)))
        return st;
    int new_head = (int)(((int64_t)head + n) % Q);
    int new_fill = (int64_t)fill + n < Q ? fill + n : Q;
    if ((st = write_scalar(l, vqji_weights_data(&l->w, l->i_fill), (float)new_fill)) ||
        (st = write_scalar(l, vqji_weights_data(&l->w, l->i_head), (float)new_head)))
        return st;
    return dev->ops->sync(dev);
}

/* ---- SIGReg ----
 * x^T [S x B] = sqrt(P) A^T c^T so that each slice is a contiguous row for the
 * kernel; dc += dx A^T computed as (dx^T)^T A^T. */

vqj_status vqji_loss_sigreg_with(vqj_loss *l, const vqj_tensor *c, const float *directions,
                                 vqj_tensor *dc, float *value)
{
    static const char fn[] = "vqj_loss_sigreg";
    int P = l->p.projection_dim, S = l->p.sigreg_num_slices, K = l->p.sigreg_num_points;
    int B = c->rows;
    vqji_device *dev = devof(l);
    const vqji_device_ops *op = dev->ops;
    float w = l->p.sigreg_weight;
    size_t off = 0;
    vqj_status st = vqji_device_reserve(devof(l), &l->ws, &l->ws_cap,
                                        2 * span((size_t)S * B) + span((size_t)S));
    if (st)
        return st;
    float *xt = carve(l, &off, (size_t)S * B);
    float *dxt = carve(l, &off, (size_t)S * B);
    float *stat = carve(l, &off, (size_t)S);
    if ((st = op->upload(dev, l->dir, directions, (size_t)P * S * sizeof(float))))
        return st;
    /* sqrt(P) makes the projection of isotropic unit rows ~ N(0, 1), the
     * distribution the statistic tests for (docs/losses.md, "SIGReg"). */
    const float scale = sqrtf((float)P);
    op->gemm(dev, true, true, S, B, P, scale, l->dir, S, c->data, P, 0.0f, xt, B);
    op->sigreg_epps_pulley(dev, S, B, K, (float)(SIGREG_T_MAX / (K - 1)), l->sig_w,
                           w / (float)S, xt, stat, dxt);
    float v = w * op->sum(dev, (size_t)S, stat) / (float)S;
    if ((st = op->sync(dev)))
        return st;
    if (!isfinite(v))
        return vqji_fail(l->ctx, VQJ_ERR_NUMERIC, "%s: the statistic is not finite", fn);
    if (dc)
        op->gemm(dev, true, true, B, P, S, scale, dxt, B, l->dir, S, 1.0f, dc->data, P);
    if ((st = op->sync(dev)))
        return st;
    l->acc.sigreg += v;
    set_value(value, v);
    return VQJ_OK;
}

static vqj_status sigreg_args(vqj_loss *l, const vqj_tensor *c, vqj_tensor *dc, bool *skip)
{
    static const char fn[] = "vqj_loss_sigreg";
    int P = l->p.projection_dim;
    vqj_status st = check_tensor(l, c, fn, "c");
    if (st || (st = check_shape(l, c, c->rows, P, fn, "c")) ||
        (dc && (st = check_shape(l, dc, c->rows, P, fn, "dc"))))
        return st;
    *skip = l->p.sigreg_weight == 0.0f || c->rows == 0;
    if (*skip)
        return VQJ_OK;
    return check_finite(l, c->data, (size_t)c->rows * P, fn, "c");
}

vqj_status vqj_loss_sigreg(vqj_loss *l, const vqj_tensor *c, uint64_t step, vqj_tensor *dc,
                           float *value)
{
    if (!l)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_loss_sigreg: loss is NULL");
    vqji_clear_error(l->ctx);
    bool skip;
    vqj_status st = sigreg_args(l, c, dc, &skip);
    if (st)
        return st;
    if (skip) {
        set_value(value, 0.0f);
        return VQJ_OK;
    }
    /* Directions: each column an isotropic Gaussian vector, normalized. A
     * column's P draws are consecutive, so the first directions do not
     * depend on the number of slices. */
    int P = l->p.projection_dim, S = l->p.sigreg_num_slices;
    vqji_rng rng;
    vqji_rng_seed(&rng, l->ctx->params.seed, VQJI_SIGREG_STREAM + step);
    for (int s = 0; s < S; s++) {
        double nn = 0.0;
        for (int p = 0; p < P; p++) {
            float g = vqji_rng_normal(&rng);
            l->dir_host[(size_t)p * S + s] = g;
            nn += (double)g * g;
        }
        /* A zero vector has probability 0; fall back to e_0 all the same. */
        float inv = nn > 0.0 ? (float)(1.0 / sqrt(nn)) : 0.0f;
        for (int p = 0; p < P; p++)
            l->dir_host[(size_t)p * S + s] *= inv;
        if (nn == 0.0)
            l->dir_host[s] = 1.0f;
    }
    l->sigreg_draws++;
    return vqji_loss_sigreg_with(l, c, l->dir_host, dc, value);
}

/* ---- relational consistency ---- */

vqj_status vqji_loss_relational_packed(vqj_loss *l, int batch, int t, int d,
                                       const int32_t *ctx_offsets, const uint8_t *ctx_adj,
                                       const int64_t *ctx_adj_offsets, size_t n_ctx,
                                       const float *h_ctx, float *dh_ctx,
                                       const int32_t *tgt_offsets, const uint8_t *tgt_adj,
                                       const int64_t *tgt_adj_offsets, size_t n_tgt,
                                       const float *h_tgt, float *dh_tgt, float *value)
{
    static const char fn[] = "vqj_loss_relational";
    float wr = l->p.relational_weight, wsf = l->p.context_self_weight;
    if ((wr == 0.0f && wsf == 0.0f) || batch == 0) {
        set_value(value, 0.0f);
        return VQJ_OK;
    }
    vqj_status st;
    if ((st = check_finite(l, h_ctx, n_ctx * d, fn, "h_context")) ||
        (st = check_finite(l, h_tgt, n_tgt * d, fn, "h_target")))
        return st;
    vqji_device *dev = devof(l);
    const vqji_device_ops *op = dev->ops;
    int M = l->p.max_objects, mm = M * M;
    size_t nc = (size_t)batch * t * mm, nt = (size_t)batch * mm, off = 0;
    if ((st = vqji_device_reserve(devof(l), &l->ws, &l->ws_cap,
                      2 * span(nc) + 2 * span(nt) + span((size_t)batch))))
        return st;
    float *r_ctx = carve(l, &off, nc), *dr_ctx = carve(l, &off, nc);
    float *r_tgt = carve(l, &off, nt), *dr_tgt = carve(l, &off, nt);
    float *loss_b = carve(l, &off, (size_t)batch);

    op->relational_distances_forward(dev, batch * t, ctx_offsets, ctx_adj, ctx_adj_offsets, d,
                                     M, h_ctx, r_ctx);
    op->relational_distances_forward(dev, batch, tgt_offsets, tgt_adj, tgt_adj_offsets, d, M,
                                     h_tgt, r_tgt);
    /* Data-parallel: this rank's examples get their share of the global
     * batch's mean, and the value is the global one (docs/distributed.md). */
    int64_t gbatch = batch;
    if (vqji_comm_size(l->ctx) > 1 &&
        (st = vqji_comm_allreduce_host(l->ctx, &gbatch, 1, VQJ_COMM_INT64, VQJ_COMM_SUM)))
        return st;
    op->relational_consistency(dev, batch, t, mm, r_ctx, r_tgt, wr, wsf, 1.0f / (float)gbatch,
                               loss_b, dr_ctx, dr_tgt);
    float v = op->sum(dev, (size_t)batch, loss_b);
    if ((st = op->sync(dev)))
        return st;
    if (vqji_comm_size(l->ctx) > 1 &&
        (st = vqji_comm_allreduce_host(l->ctx, &v, 1, VQJ_COMM_FLOAT32, VQJ_COMM_SUM)))
        return st;
    v /= (float)gbatch;
    if (!isfinite(v))
        return vqji_fail(l->ctx, VQJ_ERR_NUMERIC, "%s: the loss is not finite", fn);
    if (dh_ctx)
        op->relational_distances_backward(dev, batch * t, ctx_offsets, ctx_adj, ctx_adj_offsets,
                                          d, M, h_ctx, dr_ctx, dh_ctx);
    if (dh_tgt)
        op->relational_distances_backward(dev, batch, tgt_offsets, tgt_adj, tgt_adj_offsets, d,
                                          M, h_tgt, dr_tgt, dh_tgt);
    if ((st = op->sync(dev)))
        return st;
    l->acc.relational += v;
    set_value(value, v);
    return VQJ_OK;
}

/* Upload one token batch's offsets, adjacency offsets and adjacency to the
 * device scratch at *off; returns the three device pointers. */
static void upload_tokens(vqj_loss *l, const vqj_tokens *tk, size_t *off, int32_t **offs,
                          int64_t **adj_offs, uint8_t **adj, vqj_status *st)
{
    if (*st)
        return;
    vqji_device *dev = devof(l);
    size_t g = vqj_tokens_num_grids(tk);
    const int64_t *ao = vqji_tokens_adjacency_offsets(tk);
    size_t adj_bytes = (size_t)ao[g];
    char *base = (char *)l->idx;
    *offs = (int32_t *)(base + *off);
    *off += ((g + 1) * sizeof(int32_t) + 63) & ~(size_t)63;
    *adj_offs = (int64_t *)(base + *off);
    *off += ((g + 1) * sizeof(int64_t) + 63) & ~(size_t)63;
    *adj = (uint8_t *)(base + *off);
    *off += (adj_bytes + 63) & ~(size_t)63;
    if (!(*st = dev->ops->upload(dev, *offs, vqj_tokens_offsets(tk), (g + 1) * sizeof(int32_t))))
        if (!(*st = dev->ops->upload(dev, *adj_offs, ao, (g + 1) * sizeof(int64_t))))
            *st = dev->ops->upload(dev, *adj, vqji_tokens_adjacency_all(tk), adj_bytes);
}

static size_t token_bytes(const vqj_tokens *tk)
{
    size_t g = vqj_tokens_num_grids(tk);
    size_t adj = (size_t)vqji_tokens_adjacency_offsets(tk)[g];
    return (((g + 1) * sizeof(int32_t) + 63) & ~(size_t)63) +
           (((g + 1) * sizeof(int64_t) + 63) & ~(size_t)63) + ((adj + 63) & ~(size_t)63);
}

static vqj_status check_tokens(const vqj_loss *l, const vqj_tokens *tk, const vqj_tensor *h,
                               const vqj_tensor *dh, int d, const char *name)
{
    static const char fn[] = "vqj_loss_relational";
    if (!vqji_same_context(tk->ctx, l->ctx))
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %s tokens belong to another "
                         "context", fn, name);
    int n = (int)vqj_tokens_num_objects(tk);
    vqj_status st = check_shape(l, h, n, d, fn, name[0] == 'c' ? "h_context" : "h_target");
    if (st || (dh && (st = check_shape(l, dh, n, d, fn,
                                       name[0] == 'c' ? "dh_context" : "dh_target"))))
        return st;
    const int32_t *o = vqj_tokens_offsets(tk);
    size_t g = vqj_tokens_num_grids(tk);
    for (size_t i = 0; i < g; i++)
        if (o[i + 1] - o[i] > l->p.max_objects)
            return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: %s grid %zu has %d objects, more than max_objects (%d)", fn,
                             name, i, o[i + 1] - o[i], l->p.max_objects);
    return VQJ_OK;
}

vqj_status vqj_loss_relational(vqj_loss *l, const vqj_tokens *context,
                               const vqj_tensor *h_context, vqj_tensor *dh_context,
                               const vqj_tokens *target, const vqj_tensor *h_target,
                               vqj_tensor *dh_target, float *value)
{
    static const char fn[] = "vqj_loss_relational";
    if (!l)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: loss is NULL", fn);
    vqji_clear_error(l->ctx);
    if (!context || !target)
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: tokens are NULL", fn);
    vqj_status st = check_tensor(l, h_context, fn, "h_context");
    if (st)
        return st;
    int d = h_context->cols;
    size_t gc = vqj_tokens_num_grids(context), gt = vqj_tokens_num_grids(target);
    if (gt == 0 ? gc != 0 : gc % gt != 0 || gc == 0)
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: %zu context grids for %zu target grids; expected B * T context "
                         "grids for B targets",
                         fn, gc, gt);
    if (gc > (size_t)INT32_MAX)
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: too many grids", fn);
    if ((st = check_tokens(l, context, h_context, dh_context, d, "context")) ||
        (st = check_tokens(l, target, h_target, dh_target, d, "target")))
        return st;
    int batch = (int)gt, t = gt ? (int)(gc / gt) : 1;
    if ((l->p.relational_weight == 0.0f && l->p.context_self_weight == 0.0f) || batch == 0) {
        set_value(value, 0.0f);
        return VQJ_OK;
    }
    if ((st = vqji_device_reserve(devof(l), &l->idx, &l->idx_cap,
                                  token_bytes(context) + token_bytes(target))))
        return st;
    size_t off = 0;
    int32_t *co, *to;
    int64_t *cao, *tao;
    uint8_t *ca, *ta;
    upload_tokens(l, context, &off, &co, &cao, &ca, &st);
    upload_tokens(l, target, &off, &to, &tao, &ta, &st);
    if (st)
        return st;
    return vqji_loss_relational_packed(
        l, batch, t, d, co, ca, cao, vqj_tokens_num_objects(context), h_context->data,
        dh_context ? dh_context->data : NULL, to, ta, tao, vqj_tokens_num_objects(target),
        h_target->data, dh_target ? dh_target->data : NULL, value);
}

/* ---- invariance: weight * mean (view - original)² ---- */

/* The weight and the report field of one kind. */
static vqj_status invariance_kind(vqj_loss *l, vqj_invariance_kind kind, const char *fn,
                                  float *w, float **acc)
{
    switch (kind) {
    case VQJ_INVARIANCE_COLOR:
        *w = l->p.color_weight, *acc = &l->acc.invariance_color;
        return VQJ_OK;
    case VQJ_INVARIANCE_TRANSLATION:
        *w = l->p.translation_weight, *acc = &l->acc.invariance_translation;
        return VQJ_OK;
    case VQJ_INVARIANCE_SYMMETRY:
        *w = l->p.symmetry_weight, *acc = &l->acc.invariance_symmetry;
        return VQJ_OK;
    }
    return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: unknown kind %d", fn, (int)kind);
}

/* L = w Σ (v - o)² / n over device arrays of n floats; diff = v - o is
 * left in `diff` for the gradients, 2 w diff / n into the view and its
 * negative into the original. */
static vqj_status invariance_value(vqj_loss *l, const char *fn, float w, const float *v,
                                   const float *o, size_t n, float *diff, float *value)
{
    vqji_device *dev = devof(l);
    const vqji_device_ops *op = dev->ops;
    op->copy(dev, diff, v, n * sizeof(float));
    op->axpy(dev, n, -1.0f, o, diff);
    float L = w * op->dot(dev, n, diff, diff) / (float)n;
    vqj_status st = op->sync(dev);
    if (st)
        return st;
    if (!isfinite(L))
        return vqji_fail(l->ctx, VQJ_ERR_NUMERIC, "%s: the loss is not finite", fn);
    *value = L;
    return VQJ_OK;
}

vqj_status vqj_loss_invariance(vqj_loss *l, vqj_invariance_kind kind, const vqj_tensor *view,
                               const vqj_tensor *original, vqj_tensor *d_view, float *value)
{
    static const char fn[] = "vqj_loss_invariance";
    if (!l)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: loss is NULL", fn);
    vqji_clear_error(l->ctx);
    float w = 0.0f, *acc = NULL;
    vqj_status st = invariance_kind(l, kind, fn, &w, &acc);
    if (st || (st = check_tensor(l, view, fn, "view")))
        return st;
    int rows = view->rows, cols = view->cols;
    if ((st = check_shape(l, original, rows, cols, fn, "original")) ||
        (d_view && (st = check_shape(l, d_view, rows, cols, fn, "d_view"))))
        return st;
    size_t n = (size_t)rows * cols;
    if (w == 0.0f || n == 0) {
        set_value(value, 0.0f);
        return VQJ_OK;
    }
    if ((st = check_finite(l, view->data, n, fn, "view")) ||
        (st = check_finite(l, original->data, n, fn, "original")))
        return st;
    vqji_device *dev = devof(l);
    size_t off = 0;
    if ((st = vqji_device_reserve(dev, &l->ws, &l->ws_cap, span(n))))
        return st;
    float *diff = carve(l, &off, n), v;
    if ((st = invariance_value(l, fn, w, view->data, original->data, n, diff, &v)))
        return st;
    if (d_view)
        dev->ops->axpy(dev, n, 2.0f * w / (float)n, diff, d_view->data);
    if ((st = dev->ops->sync(dev)))
        return st;
    *acc += v;
    set_value(value, v);
    return VQJ_OK;
}

/* ---- invariance on representations (DESIGN.md §4, §3.4) ----
 * r_g = mean of grid g's token vectors (0 objects: the zero vector), for
 * the view (rv) and the original (ro), G grids each, D columns:
 *   L = w Σ_g ‖rv_g - ro_g‖² / (G D),
 *   dh_view_i     += 2 w (rv_g - ro_g) / (G D n_g)   (token i of view grid g),
 *   dh_original_j -= 2 w (rv_g - ro_g) / (G D n'_g)  (token j of original grid g). */

static vqj_status invariance_tokens_args(vqj_loss *l, const vqj_tokens *tk, const vqj_tensor *h,
                                         const vqj_tensor *dh, int d, const char *name,
                                         const char *dname)
{
    static const char fn[] = "vqj_loss_invariance_tokens";
    if (!tk)
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: the %s tokens are NULL", fn,
                         name);
    if (!vqji_same_context(tk->ctx, l->ctx))
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the %s tokens belong to another context", fn, name);
    int n = (int)vqj_tokens_num_objects(tk);
    vqj_status st = check_shape(l, h, n, d, fn, name[0] == 'v' ? "h_view" : "h_original");
    if (!st && dh)
        st = check_shape(l, dh, n, d, fn, dname);
    return st;
}

vqj_status vqj_loss_invariance_tokens(vqj_loss *l, vqj_invariance_kind kind,
                                      const vqj_tokens *view, const vqj_tensor *h_view,
                                      vqj_tensor *dh_view, const vqj_tokens *original,
                                      const vqj_tensor *h_original, vqj_tensor *dh_original,
                                      float *value)
{
    static const char fn[] = "vqj_loss_invariance_tokens";
    if (!l)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: loss is NULL", fn);
    vqji_clear_error(l->ctx);
    float w = 0.0f, *acc = NULL;
    vqj_status st = invariance_kind(l, kind, fn, &w, &acc);
    if (st || (st = check_tensor(l, h_view, fn, "h_view")))
        return st;
    const int d = h_view->cols;
    if ((st = invariance_tokens_args(l, view, h_view, dh_view, d, "view", "dh_view")) ||
        (st = invariance_tokens_args(l, original, h_original, dh_original, d, "original",
                                     "dh_original")))
        return st;
    size_t G = vqj_tokens_num_grids(view);
    if (vqj_tokens_num_grids(original) != G)
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the view has %zu grids and the original %zu; they must match", fn,
                         G, vqj_tokens_num_grids(original));
    if (G > (size_t)INT32_MAX / (size_t)(d ? d : 1))
        return vqji_fail(l->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %zu grids is too many", fn, G);
    size_t n = G * (size_t)d;
    if (w == 0.0f || n == 0) {
        set_value(value, 0.0f);
        return VQJ_OK;
    }
    size_t nv = vqj_tokens_num_objects(view) * (size_t)d;
    size_t no = vqj_tokens_num_objects(original) * (size_t)d;
    if ((st = check_finite(l, h_view->data, nv, fn, "h_view")) ||
        (st = check_finite(l, h_original->data, no, fn, "h_original")))
        return st;
    vqji_device *dev = devof(l);
    const vqji_device_ops *op = dev->ops;
    size_t obytes = ((G + 1) * sizeof(int32_t) + 63) & ~(size_t)63;
    if ((st = vqji_device_reserve(dev, &l->idx, &l->idx_cap, 2 * obytes)) ||
        (st = vqji_device_reserve(dev, &l->ws, &l->ws_cap, 4 * span(n))))
        return st;
    int32_t *vo = (int32_t *)l->idx, *oo = (int32_t *)((char *)l->idx + obytes);
    if ((st = op->upload(dev, vo, vqj_tokens_offsets(view), (G + 1) * sizeof(int32_t))) ||
        (st = op->upload(dev, oo, vqj_tokens_offsets(original), (G + 1) * sizeof(int32_t))))
        return st;
    size_t off = 0;
    float *rv = carve(l, &off, n), *ro = carve(l, &off, n);
    float *diff = carve(l, &off, n), *dr = carve(l, &off, n), v;
    op->segment_mean_forward(dev, (int)G, vo, d, h_view->data, rv);
    op->segment_mean_forward(dev, (int)G, oo, d, h_original->data, ro);
    if ((st = invariance_value(l, fn, w, rv, ro, n, diff, &v)))
        return st;
    /* Data-parallel: each rank holds its grids and their views; the mean is
     * over the global batch's grids, and the value is the global one
     * (docs/distributed.md). */
    float nn = (float)n;
    if (vqji_comm_size(l->ctx) > 1) {
        int64_t gg = (int64_t)G;
        float part = v * (float)n;
        if ((st = vqji_comm_allreduce_host(l->ctx, &gg, 1, VQJ_COMM_INT64, VQJ_COMM_SUM)) ||
            (st = vqji_comm_allreduce_host(l->ctx, &part, 1, VQJ_COMM_FLOAT32, VQJ_COMM_SUM)))
            return st;
        nn = (float)gg * (float)d;
        v = part / nn;
    }
    if (dh_view) { /* dr = dL/drv = 2 w diff / n */
        op->fill(dev, n, 0.0f, dr);
        op->axpy(dev, n, 2.0f * w / nn, diff, dr);
        op->segment_mean_backward(dev, (int)G, vo, d, dr, dh_view->data);
    }
    if (dh_original) { /* dL/dro = -dL/drv */
        op->fill(dev, n, 0.0f, dr);
        op->axpy(dev, n, -2.0f * w / nn, diff, dr);
        op->segment_mean_backward(dev, (int)G, oo, d, dr, dh_original->data);
    }
    if ((st = op->sync(dev)))
        return st;
    *acc += v;
    set_value(value, v);
    return VQJ_OK;
}

const vqj_loss_params *vqji_loss_params(const vqj_loss *loss) { return &loss->p; }

int64_t vqji_loss_masked(const vqj_loss *loss) { return loss->masked; }
