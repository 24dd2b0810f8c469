/* The codebook: nearest-code quantization with a straight-through estimator,
 * commitment loss, EMA codes with Laplace smoothing, dead-code refresh and
 * k-means++ seeding (docs/model.md, "Codebook"). Everything that touches
 * token-sized or codebook-sized buffers is a device op, so a GPU backend runs
 * the same code; the host only sees K-sized statistics and, on the rare
 * refresh and the one-time k-means++ pass, N floats. */
#include "model/codebook.h"
#include "comm/comm.h"
#include "core/params.h"
#include "device/tensor.h"
#include "device/device.h"
#include "model/encoder.h"
#include "model/layers.h"
#include "model/workspace.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The first published params and stats structs: core/params.h. */
#define PARAMS_FIRST_SIZE VQJI_V1_CODEBOOK_PARAMS
#define STATS_FIRST_SIZE VQJI_V1_CODEBOOK_STATS

/* The eps of the cosine quantizer's l2 normalization. */
#define NORM_EPS 1e-6f

typedef struct order_item {
    float err;
    int32_t i;
} order_item;

/* What a quantization writes: the assignment and the batch's code counts.
 * Device buffers grow and never shrink (capacities in bytes). */
struct vqji_codebook_ws {
    const vqj_codebook *owner;
    float *scratch;
    size_t scratch_cap;
    int32_t *idx;
    size_t idx_cap;
    float *err;
    size_t err_cap;
    float *counts;   /* [K] device, for the stats */
    float *h_counts; /* [K] host */
    /* The code space (docs/model.md, "Quantizers"), when it is not z. */
    float *proj; /* [N x c] P_in z + b_in */
    size_t proj_cap;
    float *u; /* [N x c] cosine: the normalized tokens */
    size_t u_cap;
    float *norm; /* [N] cosine: the norms before normalization */
    size_t norm_cap;
    float *qc; /* [N x c] the codes, before P_out */
    size_t qc_cap;
    float *codes; /* [K x c] SimVQ: basis W^T */
    size_t codes_cap;
    float *lv_r; /* residual and grouped: [G x (L + 1) x N x s] R_0 = u's group slice,
                  * R_l = R_{l-1} - q_l */
    size_t lv_r_cap;
    float *gq; /* grouped: [G x N x s] each group's q_1 + ... + q_L */
    size_t gq_cap;
};

struct vqj_codebook {
    vqj_context *ctx;
    vqj_codebook_params p;
    int c;      /* code width: code_dim, or D */
    int proj;   /* learned projections D -> c -> D around the search */
    int cosine; /* tokens and codes l2-normalized */
    int fsq;    /* finite scalar quantization: no codes, K = prod of the levels */
    int rot;    /* the rotation trick instead of straight-through */
    int simvq;  /* codes = basis W^T, W trained by gradient */
    int levels; /* residual codes: L levels of K codes; 1 otherwise */
    int groups; /* grouped codes: G slices of the code vector; 1 otherwise */
    int books;  /* G L codebooks of K codes, book g L + l: group g, level l */
    int s;      /* a group's width c / G, the width of the code tensors */
    int rows;   /* G L K: the rows of the code tensors, every book's codes */
    size_t i_basis, i_transform;
    vqji_fsq_levels lv;
    vqj_weights w;
    size_t i_emb, i_count, i_sum;
    size_t i_pin_w, i_pin_b, i_pout_w, i_pout_b;
    vqji_rng kmeans_rng;
    int initialized; /* k-means++ has run, or is not wanted */
    int64_t updates;

    /* The workspace of the public forward. Its counts feed the EMA update
     * too, and its err the refresh. */
    vqji_codebook_ws ws;

    /* Training-only device buffers. */
    float *mind;
    size_t mind_cap;
    float *sums;   /* [K x c] */
    float *knorm;  /* [K] cosine: code norms before normalization */

    /* What the last training forward leaves for the backward pass. The
     * residual z - q rather than q: the EMA update moves the codes after the
     * assignment, so the codes cannot be re-gathered later. */
    int bw_valid;
    int bw_n;
    float *bw_resid;
    size_t bw_resid_cap;
    int32_t *bw_idx;
    size_t bw_idx_cap;
    float *bw_u; /* cosine: [N x c] normalized tokens, [N] their norms */
    size_t bw_u_cap;
    float *bw_norm;
    size_t bw_norm_cap;
    float *bw_z; /* projection: [N x D] input, [N x c] codes */
    size_t bw_z_cap;
    float *bw_qc;
    size_t bw_qc_cap;
    float *bw_t1, *bw_t2; /* [N x c] backward scratch */
    size_t bw_t1_cap, bw_t2_cap;

    /* Host buffers. */
    float *h_ema;    /* [K] */
    int32_t *h_dead; /* [K] */
    float *h_vals;   /* [N] */
    size_t h_vals_cap;
    order_item *h_order; /* [N] */
    size_t h_order_cap;
    int32_t *h_perm; /* [N] dead-code replacement's token draw */
    size_t h_perm_cap;
    order_item *h_dorder; /* [K] dead codes by count, for dead_code_max_per_step */

    /* Data-parallel (docs/distributed.md): the ranks' token counts (2 x size:
     * tokens, then floats of u), the global batch's tokens and errors
     * gathered for k-means++, refresh and replacement, and the global token
     * count of the last training forward, the commitment's N. */
    int64_t *shard;
    size_t shard_cap;
    float *g_u, *g_err;
    size_t g_u_cap, g_err_cap;
    int64_t bw_total;
};

/* FNV-1a of a name: the vqji_rng stream of what it names, so each tensor and
 * each random procedure draws its own sequence from the context seed. */
static uint64_t stream_of(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *s = (const unsigned char *)name; *s; s++)
        h = (h ^ *s) * 0x100000001b3ull;
    return h;
}

static vqj_status dev_reserve(vqji_device *dev, void **buf, size_t *cap, size_t bytes)
{
    if (*buf && bytes <= *cap)
        return VQJ_OK;
    size_t grown = *cap + *cap / 2;
    if (grown < bytes)
        grown = bytes;
    void *p;
    vqj_status st = dev->ops->alloc(dev, grown, &p);
    if (st)
        return st;
    dev->ops->free(dev, *buf);
    *buf = p;
    *cap = grown;
    return VQJ_OK;
}

void vqj_codebook_params_default(vqj_codebook_params *params)
{
    if (!params)
        return;
    *params = (vqj_codebook_params){
        .size = sizeof *params,
        .num_embeddings = 768,
        .dim = 384,
        .enabled = 1,
        .commitment_cost = 0.15f,
        .ema_decay = 0.95f,
        .refresh_enabled = 1,
        .refresh_interval = 3000,
        .refresh_usage_threshold = 0.01f,
        .kmeans_init = 1,
        .fsq_levels = {8, 5, 5, 5},
        .num_quantizers = 2,
        .num_groups = 1,
    };
}

/* The FSQ levels of the params: the entries before the first 0. */
static vqji_fsq_levels fsq_levels_of(const vqj_codebook_params *p)
{
    vqji_fsq_levels lv = {.n = 0};
    while (lv.n < VQJ_FSQ_MAX_LEVELS && p->fsq_levels[lv.n] != 0) {
        lv.l[lv.n] = p->fsq_levels[lv.n];
        lv.n++;
    }
    return lv;
}

static vqj_status validate(const vqj_context *ctx, const vqj_codebook_params *p)
{
    const char *s = "vqj_codebook_params";
    if (p->num_embeddings < VQJI_LO_NUM_EMBEDDINGS || p->num_embeddings > VQJI_HI_NUM_EMBEDDINGS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.num_embeddings is %d; allowed range %d..%d", s, p->num_embeddings,
                         VQJI_LO_NUM_EMBEDDINGS, VQJI_HI_NUM_EMBEDDINGS);
    if (p->dim < VQJI_LO_CODEBOOK_DIM || p->dim > VQJI_HI_CODEBOOK_DIM)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s.dim is %d; allowed range %d..%d", s,
                         p->dim, VQJI_LO_CODEBOOK_DIM, VQJI_HI_CODEBOOK_DIM);
    if (!isfinite(p->commitment_cost) || p->commitment_cost < 0.0f)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.commitment_cost is %g; must be finite and >= 0", s,
                         (double)p->commitment_cost);
    if (!(p->ema_decay >= 0.0f && p->ema_decay < 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.ema_decay is %g; allowed range [0, 1) (0 trains the codes by "
                         "gradient)",
                         s, (double)p->ema_decay);
    if (p->refresh_interval < 1)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s.refresh_interval is %d; must be >= 1",
                         s, p->refresh_interval);
    if (!(p->refresh_usage_threshold >= 0.0f && p->refresh_usage_threshold <= 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.refresh_usage_threshold is %g; allowed range [0, 1]", s,
                         (double)p->refresh_usage_threshold);
    if (!isfinite(p->dead_code_threshold) || p->dead_code_threshold < 0.0f)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.dead_code_threshold is %g; must be finite and >= 0", s,
                         (double)p->dead_code_threshold);
    if ((unsigned)p->quantizer > VQJ_QUANTIZER_RESIDUAL)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.quantizer is %d; allowed: VQJ_QUANTIZER_EUCLIDEAN (0), "
                         "VQJ_QUANTIZER_COSINE (1), VQJ_QUANTIZER_FSQ (2), "
                         "VQJ_QUANTIZER_SIMVQ (3), VQJ_QUANTIZER_RESIDUAL (4)",
                         s, (int)p->quantizer);
    if (p->dead_code_max_per_step < VQJI_LO_DEAD_CODE_MAX_PER_STEP ||
        p->dead_code_max_per_step > VQJI_HI_DEAD_CODE_MAX_PER_STEP)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.dead_code_max_per_step is %d; allowed: 0 (no cap) or 1..%d", s,
                         p->dead_code_max_per_step, VQJI_HI_DEAD_CODE_MAX_PER_STEP);
    if (p->num_quantizers < 1 || p->num_quantizers > VQJ_MAX_QUANTIZERS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.num_quantizers is %d; allowed range 1..%d", s, p->num_quantizers,
                         VQJ_MAX_QUANTIZERS);
    if (p->quantizer == VQJ_QUANTIZER_RESIDUAL &&
        (long long)p->num_embeddings * p->num_quantizers > 1048576)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: residual codes of %d levels x %d codes; at most 1048576 codes in "
                         "all",
                         s, p->num_quantizers, p->num_embeddings);
    if (p->num_groups < 1 || p->num_groups > VQJ_MAX_GROUPS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.num_groups is %d; allowed range 1..%d", s, p->num_groups,
                         VQJ_MAX_GROUPS);
    if (p->num_groups > 1) {
        const int width = p->code_dim > 0 ? p->code_dim : p->dim;
        if (p->quantizer != VQJ_QUANTIZER_EUCLIDEAN && p->quantizer != VQJ_QUANTIZER_RESIDUAL)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s.num_groups is %d but grouped codes are Euclidean or residual "
                             "codes; set quantizer to VQJ_QUANTIZER_EUCLIDEAN or "
                             "VQJ_QUANTIZER_RESIDUAL, or num_groups to 1",
                             s, p->num_groups);
        if (width % p->num_groups != 0)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s.num_groups is %d but the code width (%s) is %d; the groups "
                             "must split it evenly",
                             s, p->num_groups, p->code_dim > 0 ? "code_dim" : "dim", width);
        long long levels = p->quantizer == VQJ_QUANTIZER_RESIDUAL ? p->num_quantizers : 1;
        if ((long long)p->num_embeddings * levels * p->num_groups > 1048576)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: grouped codes of %d groups x %lld levels x %d codes; at most "
                             "1048576 codes in all",
                             s, p->num_groups, levels, p->num_embeddings);
    }
    if (p->quantizer == VQJ_QUANTIZER_SIMVQ && p->dead_code_threshold > 0.0f)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.dead_code_threshold is %g but SimVQ's codes are trained by "
                         "gradient and keep no EMA counts; set it to 0",
                         s, (double)p->dead_code_threshold);
    if (p->quantizer == VQJ_QUANTIZER_FSQ) {
        vqji_fsq_levels lv = fsq_levels_of(p);
        long long prod = 1;
        for (int j = 0; j < lv.n; j++) {
            if (lv.l[j] < VQJI_LO_FSQ_LEVEL || lv.l[j] > VQJI_HI_FSQ_LEVEL)
                return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                                 "%s.fsq_levels[%d] is %d; each level is %d..%d (0 ends the "
                                 "list)",
                                 s, j, lv.l[j], VQJI_LO_FSQ_LEVEL, VQJI_HI_FSQ_LEVEL);
            prod *= lv.l[j];
        }
        if (lv.n == 0 || prod > VQJI_HI_NUM_EMBEDDINGS)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s.fsq_levels: %d levels with product %lld; FSQ needs 1..%d "
                             "levels whose product (the number of codes) is <= %d",
                             s, lv.n, prod, VQJ_FSQ_MAX_LEVELS, VQJI_HI_NUM_EMBEDDINGS);
        if (p->code_dim != 0 && p->code_dim != lv.n)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s.code_dim is %d but FSQ has %d levels: leave code_dim 0 (FSQ "
                             "always projects D -> one dimension per level)",
                             s, p->code_dim, lv.n);
        if (p->dead_code_threshold > 0.0f)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s.dead_code_threshold is %g but FSQ has no codes to re-seed; "
                             "set it to 0",
                             s, (double)p->dead_code_threshold);
    }
    if (p->code_dim < VQJI_LO_CODE_DIM || p->code_dim > VQJI_HI_CODE_DIM)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.code_dim is %d; allowed: 0 (no projection) or 1..%d", s, p->code_dim,
                         VQJI_HI_CODE_DIM);
    if ((unsigned)p->gradient_estimator > VQJ_GRADIENT_ROTATION)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.gradient_estimator is %d; allowed: VQJ_GRADIENT_STRAIGHT_THROUGH "
                         "(0), VQJ_GRADIENT_ROTATION (1)",
                         s, (int)p->gradient_estimator);
    if (p->gradient_estimator == VQJ_GRADIENT_ROTATION && p->quantizer == VQJ_QUANTIZER_FSQ)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.gradient_estimator is the rotation trick, which FSQ does not "
                         "use (its rounding is straight-through)",
                         s);
    if (p->quantizer == VQJ_QUANTIZER_COSINE && p->ema_decay == 0.0f)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.quantizer is cosine but ema_decay is 0: cosine codes are kept on "
                         "the unit sphere by the EMA update; use ema_decay > 0",
                         s);
    if (p->dead_code_threshold > 0.0f && p->ema_decay == 0.0f)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s.dead_code_threshold is %g but ema_decay is 0: dead-code "
                         "replacement reads the EMA counts, which only EMA codes keep",
                         s, (double)p->dead_code_threshold);
    return VQJ_OK;
}

static void ws_release(vqji_device *dev, vqji_codebook_ws *ws)
{
    dev->ops->free(dev, ws->proj);
    dev->ops->free(dev, ws->u);
    dev->ops->free(dev, ws->norm);
    dev->ops->free(dev, ws->qc);
    dev->ops->free(dev, ws->codes);
    dev->ops->free(dev, ws->lv_r);
    dev->ops->free(dev, ws->gq);
    dev->ops->free(dev, ws->scratch);
    dev->ops->free(dev, ws->idx);
    dev->ops->free(dev, ws->err);
    dev->ops->free(dev, ws->counts);
    free(ws->h_counts);
}

void vqj_codebook_destroy(vqj_codebook *cb)
{
    if (!cb)
        return;
    vqji_device *dev = cb->ctx->device;
    ws_release(dev, &cb->ws);
    dev->ops->free(dev, cb->mind);
    dev->ops->free(dev, cb->sums);
    dev->ops->free(dev, cb->bw_resid);
    dev->ops->free(dev, cb->bw_idx);
    dev->ops->free(dev, cb->knorm);
    dev->ops->free(dev, cb->g_u);
    dev->ops->free(dev, cb->g_err);
    float *bw[] = {cb->bw_u, cb->bw_norm, cb->bw_z, cb->bw_qc, cb->bw_t1, cb->bw_t2};
    for (size_t i = 0; i < sizeof bw / sizeof *bw; i++)
        dev->ops->free(dev, bw[i]);
    vqji_weights_release(&cb->w);
    free(cb->h_ema);
    free(cb->h_dead);
    free(cb->shard);
    free(cb->h_vals);
    free(cb->h_order);
    free(cb->h_perm);
    free(cb->h_dorder);
    free(cb);
}

/* Codes uniform in [-1/K, 1/K) from the tensor's stream; ema_count = 1 and
 * ema_sum = e so that an unused code stays where it is until γ^t nears the
 * Laplace ε, then shrinks to the origin (docs/model.md). */
static vqj_status init_codes(vqj_codebook *cb)
{
    vqji_device *dev = cb->ctx->device;
    size_t kd = (size_t)cb->rows * (size_t)cb->s;
    float *host;
    vqj_status st = vqji_malloc(cb->ctx, kd * sizeof(float), "the initial codes", (void **)&host);
    if (st)
        return st;
    vqji_rng rng;
    vqji_rng_seed(&rng, cb->ctx->params.seed, stream_of("codebook.embedding"));
    float bound = 1.0f / (float)cb->p.num_embeddings;
    for (size_t i = 0; i < kd; i++)
        host[i] = bound * (2.0f * vqji_rng_uniform(&rng) - 1.0f);
    float *e = vqji_weights_data(&cb->w, cb->i_emb);
    st = dev->ops->upload(dev, e, host, kd * sizeof(float));
    free(host);
    if (st)
        return st;
    if (cb->cosine) {
        dev->ops->copy(dev, cb->sums, e, kd * sizeof(float));
        dev->ops->l2norm_forward(dev, cb->rows, cb->c, cb->sums, NORM_EPS, e, cb->knorm);
    }
    dev->ops->copy(dev, vqji_weights_data(&cb->w, cb->i_sum), e, kd * sizeof(float));
    dev->ops->fill(dev, (size_t)cb->rows, 1.0f, vqji_weights_data(&cb->w, cb->i_count));
    return dev->ops->sync(dev);
}

/* PyTorch's Linear default: weight and bias uniform(-1/sqrt(in), 1/sqrt(in)). */
static vqj_status init_projections(vqj_codebook *cb)
{
    if (!cb->proj)
        return VQJ_OK;
    float bin = 1.0f / sqrtf((float)cb->p.dim), bout = 1.0f / sqrtf((float)cb->c);
    vqj_status st;
    if ((st = vqji_model_init_uniform(&cb->w, cb->i_pin_w, bin)) ||
        (st = vqji_model_init_uniform(&cb->w, cb->i_pin_b, bin)) ||
        (st = vqji_model_init_uniform(&cb->w, cb->i_pout_w, bout)) ||
        (st = vqji_model_init_uniform(&cb->w, cb->i_pout_b, bout)))
        return st;
    return cb->ctx->device->ops->sync(cb->ctx->device);
}

/* SimVQ: the basis C [K x c] normal with std 1/sqrt(c) (fixed, saved as
 * state), the transform W [c x c] as a PyTorch Linear without bias. */
static vqj_status init_simvq(vqj_codebook *cb)
{
    vqj_status st;
    if ((st = vqji_model_init_normal(&cb->w, cb->i_basis, 1.0f / sqrtf((float)cb->c))) ||
        (st = vqji_model_init_uniform(&cb->w, cb->i_transform, 1.0f / sqrtf((float)cb->c))))
        return st;
    return cb->ctx->device->ops->sync(cb->ctx->device);
}

vqj_status vqj_codebook_create(vqj_context *ctx, const vqj_codebook_params *params,
                               vqj_codebook **out)
{
    if (out)
        *out = NULL;
    if (!ctx || !params || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_codebook_create: NULL argument");
    vqji_clear_error(ctx);
    vqj_codebook_params p;
    vqj_codebook_params_default(&p);
    vqj_status st = vqji_params_copy(ctx, &p, sizeof p, params, PARAMS_FIRST_SIZE,
                                     "vqj_codebook_params");
    if (st)
        return st;
    st = validate(ctx, &p);
    if (st)
        return st;

    vqj_codebook *cb;
    st = vqji_calloc(ctx, 1, sizeof *cb, "a codebook", (void **)&cb);
    if (st)
        return st;
    cb->ctx = ctx;
    cb->ws.owner = cb;
    cb->p = p;
    cb->p.enabled = p.enabled != 0;
    cb->p.refresh_enabled = p.refresh_enabled != 0;
    cb->p.kmeans_init = p.kmeans_init != 0;
    cb->proj = cb->p.enabled && p.code_dim > 0;
    cb->c = p.code_dim > 0 ? p.code_dim : p.dim;
    cb->cosine = p.quantizer == VQJ_QUANTIZER_COSINE;
    cb->fsq = p.quantizer == VQJ_QUANTIZER_FSQ;
    cb->rot = p.gradient_estimator == VQJ_GRADIENT_ROTATION;
    cb->simvq = p.quantizer == VQJ_QUANTIZER_SIMVQ;
    cb->levels = p.quantizer == VQJ_QUANTIZER_RESIDUAL ? p.num_quantizers : 1;
    cb->groups = p.num_groups;
    if (cb->simvq) { /* trained by gradient: no EMA, k-means++ or refresh */
        cb->p.kmeans_init = 0;
        cb->p.refresh_enabled = 0;
        cb->p.ema_decay = 0.0f;
    }
    if (cb->fsq) {
        /* One projected dimension per level, K = their product; nothing of
         * the EMA codebook (k-means++, refresh) applies. */
        cb->lv = fsq_levels_of(&p);
        cb->c = cb->lv.n;
        cb->proj = cb->p.enabled;
        cb->p.num_embeddings = 1;
        for (int j = 0; j < cb->lv.n; j++)
            cb->p.num_embeddings *= cb->lv.l[j];
        cb->p.kmeans_init = 0;
        cb->p.refresh_enabled = 0;
        cb->p.ema_decay = 0.0f;
    }
    vqji_weights_init(&cb->w, ctx);
    vqji_device *dev = ctx->device;
    cb->books = cb->groups * cb->levels;
    cb->s = cb->c / cb->groups;
    cb->rows = cb->books * cb->p.num_embeddings;
    int k = cb->rows, d = p.dim, c = cb->c, cs = cb->s;
    size_t kd = (size_t)k * (size_t)cs;

    /* Trainable tensors come first in a weights view. */
    if (cb->proj &&
        ((st = vqji_weights_add(&cb->w, "codebook.project_in.weight", c, d, 1, &cb->i_pin_w)) ||
         (st = vqji_weights_add(&cb->w, "codebook.project_in.bias", c, 1, 1, &cb->i_pin_b)) ||
         (st = vqji_weights_add(&cb->w, "codebook.project_out.weight", d, c, 1,
                                &cb->i_pout_w)) ||
         (st = vqji_weights_add(&cb->w, "codebook.project_out.bias", d, 1, 1, &cb->i_pout_b)))) {
        vqj_codebook_destroy(cb);
        return st;
    }
    if ((cb->simvq &&
         ((st = vqji_weights_add(&cb->w, "codebook.transform.weight", c, c, 1,
                                 &cb->i_transform)) ||
          (st = vqji_weights_add(&cb->w, "codebook.basis", k, c, 0, &cb->i_basis)))) ||
        (!cb->fsq && !cb->simvq &&
         ((st = vqji_weights_add(&cb->w, "codebook.embedding", k, cs, p.ema_decay == 0.0f,
                                 &cb->i_emb)) ||
          (st = vqji_weights_add(&cb->w, "codebook.ema_count", k, 1, 0, &cb->i_count)) ||
          (st = vqji_weights_add(&cb->w, "codebook.ema_sum", k, cs, 0, &cb->i_sum)))) ||
        (st = vqji_weights_finalize(&cb->w)) ||
        (cb->cosine &&
         (st = dev->ops->alloc(dev, (size_t)k * sizeof(float), (void **)&cb->knorm))) ||
        (st = dev->ops->alloc(dev, (size_t)k * sizeof(float), (void **)&cb->ws.counts)) ||
        (st = dev->ops->alloc(dev, kd * sizeof(float), (void **)&cb->sums)) ||
        (st = vqji_malloc(ctx, (size_t)k * sizeof(float), "codebook counts",
                          (void **)&cb->ws.h_counts)) ||
        (st = vqji_malloc(ctx, (size_t)k * sizeof(float), "codebook counts",
                          (void **)&cb->h_ema)) ||
        (st = vqji_malloc(ctx, (size_t)k * sizeof(int32_t), "codebook refresh list",
                          (void **)&cb->h_dead)) ||
        (st = vqji_malloc(ctx, (size_t)k * sizeof(order_item), "codebook dead codes",
                          (void **)&cb->h_dorder)) ||
        (!cb->fsq && !cb->simvq && (st = init_codes(cb))) || (st = init_projections(cb)) ||
        (cb->simvq && (st = init_simvq(cb)))) {
        vqj_codebook_destroy(cb);
        return st;
    }
    vqji_rng_seed(&cb->kmeans_rng, ctx->params.seed, stream_of("codebook.kmeans++"));
    cb->initialized = !cb->p.kmeans_init || !cb->p.enabled;
    *out = cb;
    return VQJ_OK;
}

vqj_weights *vqj_codebook_weights(vqj_codebook *cb) { return cb ? &cb->w : NULL; }

vqj_context *vqji_codebook_context(const vqj_codebook *cb) { return cb->ctx; }

/* An inference workspace allocates its K-sized count buffers only when a
 * caller asks for stats. */
vqj_status vqji_codebook_ws_create(const vqj_codebook *cb, vqji_codebook_ws **out)
{
    vqji_codebook_ws *ws;
    vqj_status st =
        vqji_calloc(cb->ctx, 1, sizeof *ws, "a codebook workspace", (void **)&ws);
    if (st)
        return st;
    ws->owner = cb;
    *out = ws;
    return VQJ_OK;
}

void vqji_codebook_ws_destroy(vqji_codebook_ws *ws)
{
    if (!ws)
        return;
    ws_release(ws->owner->ctx->device, ws);
    free(ws);
}

const vqj_codebook_params *vqji_codebook_params(const vqj_codebook *cb) { return &cb->p; }

const float *vqji_codebook_embedding(const vqj_codebook *cb)
{
    return vqji_weights_data(&cb->w, cb->i_emb);
}

/* k-means++ (docs/model.md): the first code a uniformly drawn token, each
 * next one a token drawn with probability proportional to its squared
 * distance to the nearest chosen code. A chosen token (and every duplicate
 * of it) has distance exactly 0, so the codes are distinct tokens as long as
 * the batch has K distinct ones; past that, draws fall back to uniform. */
static vqj_status kmeans_seed(vqj_codebook *cb, const float *z, int n, int level)
{
    vqji_device *dev = cb->ctx->device;
    int k = cb->p.num_embeddings, d = cb->s;
    size_t row = (size_t)d * sizeof(float), first = (size_t)level * (size_t)k;
    float *e = vqji_weights_data(&cb->w, cb->i_emb) + first * (size_t)d;
    float *h = cb->h_vals;
    dev->ops->fill(dev, (size_t)n, INFINITY, cb->mind);
    for (int c = 0; c < k; c++) {
        int64_t pick = -1;
        if (c > 0) {
            vqj_status st = dev->ops->download(dev, h, cb->mind, (size_t)n * sizeof(float));
            if (st)
                return st;
            double total = 0.0;
            for (int i = 0; i < n; i++)
                total += h[i];
            if (total > 0.0 && isfinite(total)) {
                double u = (double)(vqji_rng_next(&cb->kmeans_rng) >> 11) * 0x1.0p-53 * total;
                double acc = 0.0;
                for (int i = 0; i < n; i++)
                    if (h[i] > 0.0f) {
                        acc += h[i];
                        pick = i; /* the last positive one if rounding leaves acc <= u */
                        if (acc > u)
                            break;
                    }
            }
        }
        if (pick < 0)
            pick = (int64_t)vqji_rng_below(&cb->kmeans_rng, (uint64_t)n);
        float *code = e + (size_t)c * d;
        dev->ops->copy(dev, code, z + (size_t)pick * d, row);
        if (c + 1 < k)
            dev->ops->vq_min_sqdist(dev, n, d, z, code, cb->mind);
    }
    dev->ops->fill(dev, (size_t)k, 1.0f, vqji_weights_data(&cb->w, cb->i_count) + first);
    dev->ops->copy(dev, vqji_weights_data(&cb->w, cb->i_sum) + first * (size_t)d, e,
                   (size_t)k * row);
    return VQJ_OK;
}

static int order_cmp(const void *a, const void *b)
{
    const order_item *x = a, *y = b;
    if (x->err != y->err)
        return x->err > y->err ? -1 : 1; /* larger error first */
    return (x->i > y->i) - (x->i < y->i);
}

/* Re-seed code k with the token x [c]: e_k = x, ema_count_k = count,
 * ema_sum_k = count x (so that ema_sum / ema_count is the new code). */
static void reseed(vqj_codebook *cb, size_t k, const float *x, float count)
{
    vqji_device *dev = cb->ctx->device;
    const size_t c = (size_t)cb->s;
    float *ema_sum = vqji_weights_data(&cb->w, cb->i_sum) + k * c;
    dev->ops->copy(dev, vqji_weights_data(&cb->w, cb->i_emb) + k * c, x, c * sizeof(float));
    dev->ops->fill(dev, 1, count, vqji_weights_data(&cb->w, cb->i_count) + k);
    dev->ops->copy(dev, ema_sum, x, c * sizeof(float));
    dev->ops->scale(dev, c, count, ema_sum);
}

/* The EMA counts of every level into cb->h_ema [L K]. */
static vqj_status download_counts(vqj_codebook *cb)
{
    vqji_device *dev = cb->ctx->device;
    return dev->ops->download(dev, cb->h_ema, vqji_weights_data(&cb->w, cb->i_count),
                              (size_t)cb->rows * sizeof(float));
}

/* Re-seed the codes of one level whose EMA share is <= the threshold, in
 * ascending k, from the level's input tokens z in descending quantization
 * error err (ties: lower i), one token per code: e_k = z_i, ema_count_k = M/K,
 * ema_sum_k = e_k M/K. Reads the counts download_counts() left. */
static vqj_status refresh_dead(vqj_codebook *cb, const float *z, const float *err, int n, int level,
                               int *refreshed)
{
    vqji_device *dev = cb->ctx->device;
    int k = cb->p.num_embeddings, d = cb->s;
    const float *ema = cb->h_ema + (size_t)level * k;
    *refreshed = 0;
    double m = 0.0;
    for (int c = 0; c < k; c++)
        m += ema[c];
    if (!(m > 0.0))
        return VQJ_OK;
    int ndead = 0;
    for (int c = 0; c < k; c++)
        if (ema[c] / m <= cb->p.refresh_usage_threshold)
            cb->h_dead[ndead++] = level * k + c;
    int count = ndead < n ? ndead : n;
    if (count == 0)
        return VQJ_OK;
    vqj_status st = dev->ops->download(dev, cb->h_vals, err, (size_t)n * sizeof(float));
    if (st)
        return st;
    for (int i = 0; i < n; i++)
        cb->h_order[i] = (order_item){cb->h_vals[i], i};
    qsort(cb->h_order, (size_t)n, sizeof *cb->h_order, order_cmp);
    float share = (float)(m / k);
    for (int j = 0; j < count; j++)
        reseed(cb, (size_t)cb->h_dead[j], z + (size_t)cb->h_order[j].i * d, share);
    *refreshed = count;
    return VQJ_OK;
}

static int count_cmp(const void *a, const void *b)
{
    const order_item *x = a, *y = b;
    if (x->err != y->err)
        return x->err < y->err ? -1 : 1; /* smaller count first */
    return (x->i > y->i) - (x->i < y->i);
}

/* With dead_code_max_per_step m > 0 and more than m dead codes, keep in
 * cb->h_dead the m with the lowest ema_count (ties: lower k), in ascending
 * k; returns how many are kept. */
static int cap_dead(vqj_codebook *cb, int ndead)
{
    const int m = cb->p.dead_code_max_per_step;
    if (m == 0 || ndead <= m)
        return ndead;
    for (int j = 0; j < ndead; j++)
        cb->h_dorder[j] = (order_item){cb->h_ema[cb->h_dead[j]], cb->h_dead[j]};
    qsort(cb->h_dorder, (size_t)ndead, sizeof *cb->h_dorder, count_cmp);
    for (int j = 0; j < m; j++)
        cb->h_dorder[j].err = 0.0f; /* now by k alone */
    qsort(cb->h_dorder, (size_t)m, sizeof *cb->h_dorder, count_cmp);
    for (int j = 0; j < m; j++)
        cb->h_dead[j] = cb->h_dorder[j].i;
    return m;
}

/* Dead-code replacement by count (docs/model.md): every code whose EMA
 * count is below the threshold t gets a token of the batch, drawn uniformly
 * (without replacement while the batch has at least as many tokens as there
 * are dead codes, with replacement past that): e_k = z_i, ema_count_k = t,
 * ema_sum_k = t z_i, so that ema_sum / ema_count is the new code. The draw is
 * a function of the context seed, the update number and the level alone, so
 * a resumed run draws the same tokens. One level at a time (z: its input
 * tokens), at most dead_code_max_per_step codes (cap_dead); reads the counts
 * download_counts() left. */
static vqj_status replace_dead(vqj_codebook *cb, const float *z, int n, int level, int *replaced)
{
    const int k = cb->p.num_embeddings, d = cb->s;
    const float t = cb->p.dead_code_threshold;
    *replaced = 0;
    int ndead = 0;
    for (int c = level * k; c < (level + 1) * k; c++)
        if (cb->h_ema[c] < t)
            cb->h_dead[ndead++] = c;
    ndead = cap_dead(cb, ndead);
    if (ndead == 0)
        return VQJ_OK;
    vqji_rng rng;
    vqji_rng_seed(&rng, cb->ctx->params.seed,
                  stream_of("codebook.dead_code") ^ (uint64_t)cb->updates ^
                      ((uint64_t)level << 48));
    for (int i = 0; i < n; i++)
        cb->h_perm[i] = i;
    for (int j = 0; j < ndead; j++) {
        int pick;
        if (ndead <= n) { /* partial Fisher-Yates: distinct tokens */
            int r = j + (int)vqji_rng_below(&rng, (uint64_t)(n - j));
            int32_t tmp = cb->h_perm[j];
            cb->h_perm[j] = cb->h_perm[r];
            cb->h_perm[r] = tmp;
            pick = cb->h_perm[j];
        } else {
            pick = (int)vqji_rng_below(&rng, (uint64_t)n);
        }
        reseed(cb, (size_t)cb->h_dead[j], z + (size_t)pick * d, t);
    }
    *replaced = ndead;
    return VQJ_OK;
}

static void write_stats(const vqj_codebook *cb, const float *h_counts, int n, int have_counts,
                        float commitment, float codebook_loss, int refreshed,
                        int dead_replaced, vqj_codebook_stats *out)
{
    vqj_codebook_stats s;
    memset(&s, 0, sizeof s);
    s.size = out->size;
    s.commitment_loss = commitment;
    s.codebook_loss = codebook_loss;
    s.dead_replaced = dead_replaced;
    s.refreshed = refreshed;
    s.updates = cb->updates;
    if (have_counts && n > 0) {
        /* residual and grouped codes: active codes over every book,
         * perplexity the mean of the books' (docs/model.md, "Residual codes") */
        double ppl = 0.0;
        for (int l = 0; l < cb->books; l++) {
            double h = 0.0;
            for (int c = 0; c < cb->p.num_embeddings; c++) {
                float cnt = h_counts[(size_t)l * cb->p.num_embeddings + c];
                if (cnt > 0.0f) {
                    double pk = (double)cnt / n;
                    h -= pk * log(pk);
                    s.active_codes++;
                }
            }
            ppl += exp(h);
        }
        s.perplexity = (float)(ppl / cb->books);
    }
    s.usage_ratio = (float)s.active_codes / (float)cb->rows;
    /* a caller built against an older header gets the fields it knows */
    memcpy(out, &s, out->size < sizeof s ? out->size : sizeof s);
}

/* The checks shared by the public forward and the workspace one. */
static vqj_status check_forward(const vqj_codebook *cb, const vqj_tensor *z, const vqj_tensor *q,
                                const vqj_codebook_stats *stats)
{
    vqj_context *ctx = cb->ctx;
    vqji_clear_error(ctx);
    if (!z || !q)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_codebook_forward: %s is NULL",
                         z ? "q" : "z");
    if (!vqji_same_context(z->ctx, ctx) || !vqji_same_context(q->ctx, ctx))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_forward: a tensor belongs to another context");
    if (z == q)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_forward: q must be a different tensor from z");
    const int d = cb->p.dim;
    if (z->cols != d)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_forward: z is %d x %d; expected N x %d (the codebook's "
                         "dim)",
                         z->rows, z->cols, d);
    if (stats && stats->size < STATS_FIRST_SIZE)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_forward: stats->size is %zu, expected at least %zu; set "
                         "it to sizeof(vqj_codebook_stats)",
                         stats->size, (size_t)STATS_FIRST_SIZE);
    return VQJ_OK;
}

/* Room in `ws` for assigning n tokens. */
static vqj_status reserve_assign(const vqj_codebook *cb, vqji_codebook_ws *ws, int n)
{
    vqji_device *dev = cb->ctx->device;
    const int k = cb->p.num_embeddings;
    size_t scratch;
    if (!vqji_mul_size((size_t)n + 1, (size_t)k * sizeof(float), &scratch))
        return vqji_fail(cb->ctx, VQJ_ERR_OUT_OF_MEMORY,
                         "vqj_codebook_forward: %d x %d scores overflow", n, k);
    vqj_status st;
    size_t nc = (size_t)n * (size_t)cb->c * sizeof(float), nl = (size_t)n * cb->books;
    if (cb->fsq) /* no scores, no distances */
        scratch = sizeof(float);
    if ((st = dev_reserve(dev, (void **)&ws->scratch, &ws->scratch_cap, scratch)) ||
        (st = dev_reserve(dev, (void **)&ws->idx, &ws->idx_cap, nl * sizeof(int32_t))) ||
        (st = dev_reserve(dev, (void **)&ws->err, &ws->err_cap, nl * sizeof(float))))
        return st;
    if (cb->books > 1 &&
        (st = dev_reserve(dev, (void **)&ws->lv_r, &ws->lv_r_cap, nc * (cb->levels + 1))))
        return st;
    if (cb->groups > 1 && (st = dev_reserve(dev, (void **)&ws->gq, &ws->gq_cap, nc)))
        return st;
    if (cb->proj && ((st = dev_reserve(dev, (void **)&ws->proj, &ws->proj_cap, nc)) ||
                     (st = dev_reserve(dev, (void **)&ws->qc, &ws->qc_cap, nc))))
        return st;
    if (cb->simvq &&
        (st = dev_reserve(dev, (void **)&ws->codes, &ws->codes_cap,
                          (size_t)k * (size_t)cb->c * sizeof(float))))
        return st;
    if ((cb->cosine || cb->fsq) &&
        ((st = dev_reserve(dev, (void **)&ws->u, &ws->u_cap, nc)) ||
         (st = dev_reserve(dev, (void **)&ws->norm, &ws->norm_cap, (size_t)n * sizeof(float)))))
        return st;
    return VQJ_OK;
}

/* The tokens in the code space (docs/model.md, "Quantizers"): u = z, or
 * P_in z + b_in with a code_dim, then u / max(||u||, eps) for cosine codes.
 * Returns z itself when there is nothing to do. */
static const float *to_code_space(const vqj_codebook *cb, vqji_codebook_ws *ws, const float *z,
                                  int n)
{
    vqji_device *dev = cb->ctx->device;
    const float *u = z;
    if (cb->proj) {
        vqji_linear_forward(dev, n, cb->p.dim, cb->c, z, vqji_weights_data(&cb->w, cb->i_pin_w),
                            vqji_weights_data(&cb->w, cb->i_pin_b), ws->proj);
        u = ws->proj;
    }
    if (cb->cosine) {
        dev->ops->l2norm_forward(dev, n, cb->c, u, NORM_EPS, ws->u, ws->norm);
        u = ws->u;
    }
    return u;
}

/* The input of book b = g L + l (group g, level l): R_l of group g in
 * ws->lv_r [G x (L + 1) x N x s]; the tokens themselves without books. */
static const float *book_input(const vqj_codebook *cb, const vqji_codebook_ws *ws, const float *u,
                               int n, int b)
{
    if (cb->books == 1)
        return u;
    const int g = b / cb->levels, l = b % cb->levels;
    return ws->lv_r + ((size_t)g * (cb->levels + 1) + l) * (size_t)n * cb->s;
}

/* Grouped codes: the column block g of x [N x c] is the block g of the
 * groups' layout [G x N x s] at gstride floats per group; to_groups copies
 * x into the groups' layout, else back. */
static void regroup(const vqj_codebook *cb, int n, float *x, float *groups, size_t gstride,
                    int to_groups)
{
    vqji_device *dev = cb->ctx->device;
    const int c = cb->c, s = cb->s;
    for (int g = 0; g < cb->groups; g++) {
        if (to_groups)
            dev->ops->vq_copy_block(dev, n, s, x + (size_t)g * s, c, groups + g * gstride, s);
        else
            dev->ops->vq_copy_block(dev, n, s, groups + g * gstride, s, x + (size_t)g * s, c);
    }
}

/* Residual and grouped codes (docs/model.md, "Residual codes", "Grouped
 * codes"): each group g's slice of u is its R_0, and for each level l =
 * 1..L the nearest code q_l of R_{l-1} among book (g, l)'s K codes, R_l =
 * R_{l-1} - q_l, the group's qc = q_1 + ... + q_L; qc is the groups'
 * concatenation. Book b's indices go into ws->idx + b N, its errors |R_l|^2
 * into ws->err + b N, R_l into ws->lv_r (book_input). With `seed`, k-means++
 * seeds each book's codes from its input before its assignment. Writes the
 * sum over books of the mean squared error per element into *mse. */
static vqj_status residual_assign(const vqj_codebook *cb, vqji_codebook_ws *ws, const float *u,
                                  int n, float *qc, vqj_codebook *seed, double *mse)
{
    vqji_device *dev = cb->ctx->device;
    const int k = cb->p.num_embeddings, s = cb->s, nlev = cb->levels;
    const size_t ns = (size_t)n * (size_t)s, nc = (size_t)n * (size_t)cb->c;
    const size_t gstride = (size_t)(nlev + 1) * ns;
    float *qg = cb->groups > 1 ? ws->gq : qc; /* [G x N x s] */
    *mse = 0.0;
    if (cb->groups > 1)
        regroup(cb, n, (float *)u, ws->lv_r, gstride, 1);
    else
        dev->ops->copy(dev, ws->lv_r, u, nc * sizeof(float));
    dev->ops->fill(dev, nc, 0.0f, qg);
    for (int b = 0; b < cb->books; b++) {
        const float *in = book_input(cb, ws, u, n, b);
        float *out = (float *)in + ns;
        int32_t *idx = ws->idx + (size_t)b * n;
        float *err = ws->err + (size_t)b * n;
        float *qsum = qg + (size_t)(b / nlev) * ns;
        vqj_status st;
        if (seed && (st = kmeans_seed(seed, in, n, b)))
            return st;
        const float *e = vqji_weights_data(&cb->w, cb->i_emb) + (size_t)b * k * s;
        dev->ops->vq_assign(dev, n, s, k, in, e, ws->scratch, idx, err);
        dev->ops->vq_gather(dev, n, s, in, e, idx, out, err); /* q_l for now */
        dev->ops->axpy(dev, ns, 1.0f, out, qsum);
        dev->ops->scale(dev, ns, -1.0f, out);
        dev->ops->axpy(dev, ns, 1.0f, in, out);
        if (n > 0)
            *mse += (double)dev->ops->sum(dev, (size_t)n, err) / ((double)n * s);
    }
    if (cb->groups > 1)
        regroup(cb, n, qc, qg, ns, 0);
    return VQJ_OK;
}

/* The code of each u_i [N x c]: its index into ws->idx and its vector into
 * qc. Returns the mean squared quantization error per element, the
 * commitment's mean (0 for FSQ, which has none). */
static double assign(const vqj_codebook *cb, vqji_codebook_ws *ws, const float *u, int n,
                     float *qc)
{
    vqji_device *dev = cb->ctx->device;
    const int k = cb->p.num_embeddings, c = cb->c;
    if (cb->fsq) {
        dev->ops->fsq_forward(dev, n, &cb->lv, u, ws->u, qc, ws->idx); /* t into ws->u */
        return 0.0;
    }
    if (cb->books > 1) {
        double mse;
        residual_assign(cb, ws, u, n, qc, NULL, &mse); /* cannot fail without a seed */
        return mse;
    }
    const float *e = vqji_weights_data(&cb->w, cb->simvq ? cb->i_basis : cb->i_emb);
    if (cb->simvq) { /* the codes e = C W^T, for this call */
        vqji_linear_forward(dev, k, c, c, e, vqji_weights_data(&cb->w, cb->i_transform), NULL,
                            ws->codes);
        e = ws->codes;
    }
    dev->ops->vq_assign(dev, n, c, k, u, e, ws->scratch, ws->idx, ws->err);
    dev->ops->vq_gather(dev, n, c, u, e, ws->idx, qc, ws->err);
    return n > 0 ? (double)dev->ops->sum(dev, (size_t)n, ws->err) / ((double)n * c) : 0.0;
}

/* The batch's code counts of every book into ws->counts [G L K], and with
 * `sums` the sums of each code's tokens (each book's input) [G L K x s]. */
static void accumulate(const vqj_codebook *cb, vqji_codebook_ws *ws, const float *u, int n,
                       float *sums)
{
    vqji_device *dev = cb->ctx->device;
    const int k = cb->p.num_embeddings, s = cb->s;
    const size_t ks = (size_t)k * (size_t)s;
    dev->ops->fill(dev, (size_t)cb->rows, 0.0f, ws->counts);
    if (sums)
        dev->ops->fill(dev, ks * cb->books, 0.0f, sums);
    for (int b = 0; b < cb->books; b++)
        dev->ops->vq_accumulate(dev, n, s, k, book_input(cb, ws, u, n, b),
                                ws->idx + (size_t)b * n, ws->counts + (size_t)b * k,
                                sums ? sums + (size_t)b * ks : NULL);
}

/* The output of the codes qc [N x c]: q = qc, or P_out qc + b_out. */
static void from_code_space(const vqj_codebook *cb, const float *qc, int n, float *q)
{
    if (cb->proj)
        vqji_linear_forward(cb->ctx->device, n, cb->c, cb->p.dim, qc,
                            vqji_weights_data(&cb->w, cb->i_pout_w),
                            vqji_weights_data(&cb->w, cb->i_pout_b), q);
}

/* Quantization without training: reads the codes, writes only `ws`, q,
 * codes and stats (stats->updates is read from the handle). */
static vqj_status quantize(const vqj_codebook *cb, vqji_codebook_ws *ws, const vqj_tensor *z,
                           vqj_tensor *q, int32_t *codes, vqj_codebook_stats *stats)
{
    vqj_context *ctx = cb->ctx;
    vqji_device *dev = ctx->device;
    const int k = cb->rows, d = cb->p.dim, n = z->rows;
    const size_t nd = (size_t)n * (size_t)d;
    const float *zd = z->data;
    const int enabled = cb->p.enabled;
    vqj_status st;
    if (enabled) {
        if ((st = reserve_assign(cb, ws, n)))
            return st;
        /* An inference workspace gets its count buffers on first use. */
        if (stats && !ws->counts &&
            (st = dev->ops->alloc(dev, (size_t)k * sizeof(float), (void **)&ws->counts)))
            return st;
        if (stats && !ws->h_counts &&
            (st = vqji_malloc(ctx, (size_t)k * sizeof(float), "codebook counts",
                              (void **)&ws->h_counts)))
            return st;
    }
    if ((st = vqj_tensor_reshape(q, n, d)))
        return st;
    if (!enabled) {
        dev->ops->copy(dev, q->data, zd, nd * sizeof(float));
        if (codes)
            for (int i = 0; i < n; i++)
                codes[i] = -1;
        if (stats)
            write_stats(cb, NULL, n, 0, 0.0f, 0.0f, 0, 0, stats);
        return dev->ops->sync(dev);
    }
    const float *u = to_code_space(cb, ws, zd, n);
    float *qc = cb->proj ? ws->qc : q->data;
    double mse = assign(cb, ws, u, n, qc);
    from_code_space(cb, qc, n, q->data);
    float commitment = (float)(cb->p.commitment_cost * mse);
    float codebook_loss = cb->p.ema_decay == 0.0f ? (float)mse : 0.0f;
    if (stats) {
        accumulate(cb, ws, u, n, NULL);
        if ((st = dev->ops->download(dev, ws->h_counts, ws->counts, (size_t)k * sizeof(float))))
            return st;
    }
    if (codes && n > 0 &&
        (st = dev->ops->download(dev, codes, ws->idx, (size_t)n * sizeof(int32_t))))
        return st;
    if ((st = dev->ops->sync(dev)))
        return st;
    if (stats)
        write_stats(cb, ws->h_counts, n, 1, commitment, codebook_loss, 0, 0, stats);
    return VQJ_OK;
}

int vqji_codebook_levels(const vqj_codebook *cb) { return cb->books; }

vqj_status vqji_codebook_ws_level_codes(const vqji_codebook_ws *ws, int n, int32_t *dst)
{
    const vqj_codebook *cb = ws->owner;
    const int nlev = cb->books;
    const size_t count = (size_t)n * nlev;
    if (!cb->p.enabled || n == 0) {
        for (size_t i = 0; i < count; i++)
            dst[i] = -1;
        return VQJ_OK;
    }
    int32_t *h;
    vqj_status st = vqji_malloc(cb->ctx, count * sizeof *h, "level codes", (void **)&h);
    if (st)
        return st;
    vqji_device *dev = cb->ctx->device;
    st = dev->ops->download(dev, h, ws->idx, count * sizeof *h); /* [L x n] */
    for (int i = 0; !st && i < n; i++)
        for (int l = 0; l < nlev; l++)
            dst[(size_t)i * nlev + l] = h[(size_t)l * n + i];
    free(h);
    return st;
}

vqj_status vqji_codebook_quantize_ws(const vqj_codebook *cb, vqji_codebook_ws *ws,
                                     const vqj_tensor *z, vqj_tensor *q, int32_t *codes,
                                     vqj_codebook_stats *stats)
{
    if (!cb || !ws)
        return vqji_fail(cb ? cb->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_forward: NULL argument");
    vqj_status st = check_forward(cb, z, q, stats);
    if (st)
        return st;
    if (ws->owner != cb)
        return vqji_fail(cb->ctx, VQJ_ERR_INTERNAL,
                         "vqj_codebook_forward: a workspace of another codebook");
    return quantize(cb, ws, z, q, codes, stats);
}

vqj_status vqj_codebook_forward(vqj_codebook *cb, const vqj_tensor *z, int training,
                                vqj_tensor *q, int32_t *codes, vqj_codebook_stats *stats)
{
    if (!cb)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_codebook_forward: cb is NULL");
    vqj_status st = check_forward(cb, z, q, stats);
    if (st)
        return st;
    /* Without training the handle's workspace is the only thing written, so
     * the state kept for the backward pass survives. */
    if (!training)
        return quantize(cb, &cb->ws, z, q, codes, stats);

    vqj_context *ctx = cb->ctx;
    vqji_codebook_ws *ws = &cb->ws;
    const int k = cb->p.num_embeddings, d = cb->p.dim, c = cb->c, n = z->rows;
    const int nlev = cb->books, cs = cb->s; /* every group's levels */
    vqji_device *dev = ctx->device;
    const size_t nd = (size_t)n * (size_t)d, nc = (size_t)n * (size_t)c;
    const size_t kc = (size_t)k * (size_t)cs, ns = (size_t)n * (size_t)cs;
    const float *zd = z->data;
    /* Data-parallel: z is this rank's shard; the ranks agree on a
     * non-finite value and on the global token count (docs/distributed.md). */
    const int size = vqji_comm_size(ctx);
    int32_t bad = n > 0 && !dev->ops->all_finite(dev, nd, zd);
    if (size > 1 && (st = vqji_comm_allreduce_host(ctx, &bad, 1, VQJ_COMM_INT32, VQJ_COMM_MAX)))
        return st;
    if (bad)
        return vqji_fail(ctx, VQJ_ERR_NUMERIC,
                         "vqj_codebook_forward: z holds a non-finite value; the codebook was "
                         "left unchanged");
    if (size > 1 && nlev > 1)
        return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                         "vqj_codebook_forward: residual or grouped codes (num_quantizers %d, "
                         "num_groups %d) do not train data-parallel yet; train them in one "
                         "process",
                         cb->levels, cb->groups);
    int64_t ntok = n, first = 0;
    if (size > 1 &&
        ((st = vqji_reserve(ctx, (void **)&cb->shard, &cb->shard_cap,
                            2 * (size_t)size * sizeof *cb->shard, "codebook shard counts")) ||
         (st = vqji_comm_counts(ctx, n, cb->shard, &ntok, &first))))
        return st;
    if (ntok > INT32_MAX)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_forward: %lld tokens over the ranks is too many",
                         (long long)ntok);
    for (int r = 0; size > 1 && r < size; r++)
        cb->shard[size + r] = cb->shard[r] * c;

    const int enabled = cb->p.enabled;
    const int kmeans = enabled && !cb->initialized && ntok >= k;
    const int ema = enabled && cb->p.ema_decay > 0.0f && ntok > 0;
    /* This call's update is number updates + 1 (written so it cannot overflow). */
    const int refresh = ema && cb->p.refresh_enabled &&
                        cb->updates % cb->p.refresh_interval == cb->p.refresh_interval - 1;
    const int dead = ema && cb->p.dead_code_threshold > 0.0f;
    const int gather = size > 1 && (kmeans || refresh || dead);
    const size_t tn = (size_t)ntok; /* the tokens k-means++, refresh and replacement see */

    /* Every allocation comes first, so a failure leaves everything as it was. */
    if (enabled) {
        if ((st = reserve_assign(cb, ws, n)))
            return st;
        if ((st = dev_reserve(dev, (void **)&cb->bw_resid, &cb->bw_resid_cap,
                              ns * nlev * sizeof(float))) ||
            (st = dev_reserve(dev, (void **)&cb->bw_idx, &cb->bw_idx_cap,
                              (size_t)n * nlev * sizeof(int32_t))))
            return st;
        if ((cb->cosine || cb->fsq || cb->rot) &&
            ((st = dev_reserve(dev, (void **)&cb->bw_u, &cb->bw_u_cap, nc * sizeof(float))) ||
             (st = dev_reserve(dev, (void **)&cb->bw_norm, &cb->bw_norm_cap,
                               (size_t)n * sizeof(float)))))
            return st;
        if (cb->proj &&
            (st = dev_reserve(dev, (void **)&cb->bw_z, &cb->bw_z_cap, nd * sizeof(float))))
            return st;
        if ((cb->proj || cb->rot) &&
            (st = dev_reserve(dev, (void **)&cb->bw_qc, &cb->bw_qc_cap, nc * sizeof(float))))
            return st;
        if ((kmeans || refresh) &&
            (st = vqji_reserve(ctx, (void **)&cb->h_vals, &cb->h_vals_cap,
                               tn * sizeof(float), "codebook distances")))
            return st;
        if (kmeans &&
            (st = dev_reserve(dev, (void **)&cb->mind, &cb->mind_cap, tn * sizeof(float))))
            return st;
        if (refresh && (st = vqji_reserve(ctx, (void **)&cb->h_order, &cb->h_order_cap,
                                          tn * sizeof(order_item), "codebook refresh")))
            return st;
        if (dead && (st = vqji_reserve(ctx, (void **)&cb->h_perm, &cb->h_perm_cap,
                                       tn * sizeof(int32_t), "codebook dead codes")))
            return st;
        if (gather &&
            ((st = dev_reserve(dev, (void **)&cb->g_u, &cb->g_u_cap,
                               tn * (size_t)c * sizeof(float))) ||
             (st = dev_reserve(dev, (void **)&cb->g_err, &cb->g_err_cap, tn * sizeof(float)))))
            return st;
    }
    if ((st = vqj_tensor_reshape(q, n, d)))
        return st;

    if (!enabled) {
        dev->ops->copy(dev, q->data, zd, nd * sizeof(float));
        if (codes)
            for (int i = 0; i < n; i++)
                codes[i] = -1;
        cb->bw_valid = 1;
        cb->bw_n = n;
        if (stats)
            write_stats(cb, NULL, n, 0, 0.0f, 0.0f, 0, 0, stats);
        return dev->ops->sync(dev);
    }

    /* Everything from here to the output projection is in the code space. */
    const float *u = to_code_space(cb, ws, zd, n);
    float *qc = cb->proj ? ws->qc : q->data;
    /* k-means++, refresh and replacement draw from the global batch's
     * tokens, gathered in rank order (the order one process would see).
     * Residual codes train in one process only (refused above). */
    const float *gu = u;
    if (gather) {
        if ((st = vqji_comm_allgatherv_dev(ctx, u, cb->g_u, cb->shard + size, VQJ_COMM_FLOAT32)))
            return st;
        gu = cb->g_u;
    }
    double mse;
    if (nlev > 1) {
        if ((st = residual_assign(cb, ws, u, n, qc, kmeans ? cb : NULL, &mse)))
            return st;
    } else {
        if (kmeans && (st = kmeans_seed(cb, gu, (int)ntok, 0)))
            return st;
        mse = assign(cb, ws, u, n, qc);
    }
    if (kmeans)
        cb->initialized = 1;
    if (size > 1) { /* the global batch's mean */
        float part = (float)(mse * (double)n * c);
        if ((st = vqji_comm_allreduce_host(ctx, &part, 1, VQJ_COMM_FLOAT32, VQJ_COMM_SUM)))
            return st;
        mse = ntok > 0 ? (double)part / ((double)ntok * c) : 0.0;
    }
    from_code_space(cb, qc, n, q->data);
    float commitment = (float)(cb->p.commitment_cost * mse);
    float codebook_loss = cb->p.ema_decay == 0.0f ? (float)mse : 0.0f;

    if (stats || ema) {
        accumulate(cb, ws, u, n, ema ? cb->sums : NULL);
        /* the global batch's counts and sums: every rank applies the same
         * EMA update, so the codebooks stay bit-identical */
        if (size > 1 &&
            ((st = vqji_comm_allreduce_dev(ctx, ws->counts, (size_t)cb->rows, VQJ_COMM_FLOAT32,
                                           VQJ_COMM_SUM)) ||
             (ema && (st = vqji_comm_allreduce_dev(ctx, cb->sums, kc, VQJ_COMM_FLOAT32,
                                                   VQJ_COMM_SUM)))))
            return st;
    }
    if (stats && (st = dev->ops->download(dev, ws->h_counts, ws->counts,
                                          (size_t)cb->rows * sizeof(float))))
        return st;
    if (codes && n > 0 &&
        (st = dev->ops->download(dev, codes, ws->idx, (size_t)n * sizeof(int32_t))))
        return st;
    /* What the backward pass needs: r = u - qc (residual and grouped codes:
     * each book's R_l, book by book), the assignment, and the inputs of the
     * normalization and the projections. */
    if (nlev > 1) {
        for (int b = 0; b < nlev; b++)
            dev->ops->copy(dev, cb->bw_resid + (size_t)b * ns,
                           book_input(cb, ws, u, n, b) + ns, ns * sizeof(float));
    } else {
        dev->ops->copy(dev, cb->bw_resid, u, nc * sizeof(float));
        dev->ops->axpy(dev, nc, -1.0f, qc, cb->bw_resid);
    }
    dev->ops->copy(dev, cb->bw_idx, ws->idx, (size_t)n * nlev * sizeof(int32_t));
    if (cb->cosine || cb->fsq || cb->rot) /* FSQ: its t = tanh(p + s) instead */
        dev->ops->copy(dev, cb->bw_u, cb->fsq ? ws->u : u, nc * sizeof(float));
    if (cb->cosine)
        dev->ops->copy(dev, cb->bw_norm, ws->norm, (size_t)n * sizeof(float));
    if (cb->proj)
        dev->ops->copy(dev, cb->bw_z, zd, nd * sizeof(float));
    if (cb->proj || cb->rot)
        dev->ops->copy(dev, cb->bw_qc, qc, nc * sizeof(float));
    cb->bw_n = n;
    cb->bw_total = ntok;
    cb->bw_valid = 1;
    int refreshed = 0, replaced = 0;
    if (ema) {
        float g = cb->p.ema_decay;
        float *e = vqji_weights_data(&cb->w, cb->i_emb);
        float *ema_count = vqji_weights_data(&cb->w, cb->i_count);
        float *ema_sum = vqji_weights_data(&cb->w, cb->i_sum);
        const size_t rows = (size_t)cb->rows, rc = rows * (size_t)cs;
        dev->ops->scale(dev, rows, g, ema_count);
        dev->ops->axpy(dev, rows, 1.0f - g, ws->counts, ema_count);
        dev->ops->scale(dev, rc, g, ema_sum);
        dev->ops->axpy(dev, rc, 1.0f - g, cb->sums, ema_sum);
        float total = dev->ops->sum(dev, (size_t)k, ema_count);
        if (nlev > 1) { /* each book smoothed over its own K codes */
            for (int l = 0; l < nlev; l++) {
                const size_t o = (size_t)l * k;
                total = dev->ops->sum(dev, (size_t)k, ema_count + o);
                dev->ops->vq_ema_normalize(dev, k, cs, VQJI_CODEBOOK_EPS, total, ema_count + o,
                                           ema_sum + o * cs, e + o * cs);
            }
        } else if (cb->cosine) {
            /* the smoothed means, then back onto the unit sphere */
            dev->ops->vq_ema_normalize(dev, k, c, VQJI_CODEBOOK_EPS, total, ema_count, ema_sum,
                                       cb->sums);
            if (total > 0.0f)
                dev->ops->l2norm_forward(dev, k, c, cb->sums, NORM_EPS, e, cb->knorm);
        } else {
            dev->ops->vq_ema_normalize(dev, k, c, VQJI_CODEBOOK_EPS, total, ema_count, ema_sum,
                                       e);
        }
        cb->updates++;
        const float *gerr = ws->err;
        if (refresh && gather) {
            if ((st = vqji_comm_allgatherv_dev(ctx, ws->err, cb->g_err, cb->shard,
                                               VQJ_COMM_FLOAT32)))
                return st;
            gerr = cb->g_err;
        }
        /* each book re-seeds from its own input tokens R_{l-1} */
        if (refresh && (st = download_counts(cb)))
            return st;
        for (int l = 0; refresh && l < nlev; l++) {
            int r;
            if ((st = refresh_dead(cb, nlev > 1 ? book_input(cb, ws, u, n, l) : gu,
                                   nlev > 1 ? ws->err + (size_t)l * n : gerr,
                                   nlev > 1 ? n : (int)ntok, l, &r)))
                return st;
            refreshed += r;
        }
        if (dead && (st = download_counts(cb)))
            return st;
        for (int l = 0; dead && l < nlev; l++) {
            int r;
            if ((st = replace_dead(cb, nlev > 1 ? book_input(cb, ws, u, n, l) : gu,
                                   nlev > 1 ? n : (int)ntok, l, &r)))
                return st;
            replaced += r;
        }
    }
    /* Every rank decided the same from the same gathered tokens; rank 0's
     * codes are broadcast so the codebooks are identical by construction. */
    if (size > 1 && (kmeans || refreshed || replaced)) {
        size_t idx[3] = {cb->i_emb, cb->i_count, cb->i_sum}, len[3] = {kc, (size_t)k, kc};
        for (int t = 0; t < 3 && !st; t++)
            st = vqji_comm_broadcast_dev(ctx, vqji_weights_data(&cb->w, idx[t]), len[t],
                                         VQJ_COMM_FLOAT32, 0);
        if (st)
            return st;
    }
    (void)first;
    if ((st = dev->ops->sync(dev)))
        return st;
    if (stats)
        write_stats(cb, ws->h_counts, (int)ntok, 1, commitment, codebook_loss, refreshed,
                    replaced, stats);
    return VQJ_OK;
}

vqj_status vqj_codebook_backward(vqj_codebook *cb, const vqj_tensor *dq, vqj_tensor *dz)
{
    if (!cb)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_codebook_backward: cb is NULL");
    vqj_context *ctx = cb->ctx;
    vqji_clear_error(ctx);
    if (!dq || !dz)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_codebook_backward: %s is NULL",
                         dq ? "dz" : "dq");
    if (!cb->bw_valid)
        return vqji_fail(ctx, VQJ_ERR_STATE,
                         "vqj_codebook_backward: no training forward to differentiate; call "
                         "vqj_codebook_forward with training = 1 first");
    if (!vqji_same_context(dq->ctx, ctx) || !vqji_same_context(dz->ctx, ctx))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_backward: a tensor belongs to another context");
    const int n = cb->bw_n, d = cb->p.dim, k = cb->p.num_embeddings, c = cb->c;
    const vqj_tensor *check[2] = {dq, dz};
    for (int t = 0; t < 2; t++)
        if (check[t]->rows != n || check[t]->cols != d)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_codebook_backward: %s is %d x %d; the last training forward "
                             "quantized %d x %d",
                             t ? "dz" : "dq", check[t]->rows, check[t]->cols, n, d);
    if (n == 0)
        return VQJ_OK;
    vqji_device *dev = ctx->device;
    const size_t nd = (size_t)n * (size_t)d, nc = (size_t)n * (size_t)c;
    if (!cb->p.enabled) {
        dev->ops->axpy(dev, nd, 1.0f, dq->data, dz->data);
        return dev->ops->sync(dev);
    }
    /* N is the global batch's token count (this rank's n without a
     * communicator): each rank's shard gets its share of the mean. */
    const int nlev = cb->books, cs = cb->s;
    const size_t ns = (size_t)n * (size_t)cs;
    /* grouped codes: each group's mean is over its N s elements */
    const double gnc = (double)cb->bw_total * (double)cs;
    const float commit = (float)(2.0 * cb->p.commitment_cost / gnc);
    if (!cb->proj && !cb->cosine && !cb->rot && cb->groups == 1) {
        /* dz += dq (straight-through) + 2 beta (z - q) / (N D) (commitment;
         * residual codes: the sum over levels of R_l) */
        dev->ops->axpy(dev, nd, 1.0f, dq->data, dz->data);
        for (int l = 0; l < nlev; l++)
            dev->ops->axpy(dev, nd, commit, cb->bw_resid + (size_t)l * nc, dz->data);
    } else {
        vqj_status st;
        if ((st = dev_reserve(dev, (void **)&cb->bw_t1, &cb->bw_t1_cap, nc * sizeof(float))) ||
            (st = dev_reserve(dev, (void **)&cb->bw_t2, &cb->bw_t2_cap, nc * sizeof(float))))
            return st;
        /* du = dqc (through P_out, or dq itself) + 2 beta (u - qc) / (N c) */
        float *du = cb->bw_t1;
        if (cb->proj) {
            dev->ops->fill(dev, nc, 0.0f, du);
            vqji_linear_backward(dev, n, c, d, cb->bw_qc, vqji_weights_data(&cb->w, cb->i_pout_w),
                                 dq->data, du, vqji_weights_grad(&cb->w, cb->i_pout_w),
                                 vqji_weights_grad(&cb->w, cb->i_pout_b));
        } else {
            dev->ops->copy(dev, du, dq->data, nc * sizeof(float));
        }
        /* the rotation trick: du = lambda R^T dqc in place of dqc */
        if (cb->rot) {
            dev->ops->fill(dev, nc, 0.0f, cb->bw_t2);
            dev->ops->vq_rotation_backward(dev, n, c, cb->bw_u, cb->bw_qc, du, cb->bw_t2);
            dev->ops->copy(dev, du, cb->bw_t2, nc * sizeof(float));
        }
        for (int l = 0; !cb->fsq && cb->groups == 1 && l < nlev; l++)
            dev->ops->axpy(dev, nc, commit, cb->bw_resid + (size_t)l * nc, du);
        /* grouped codes: level l's R_l of every group, concatenated */
        for (int l = 0; cb->groups > 1 && l < cb->levels; l++) {
            regroup(cb, n, cb->bw_t2, cb->bw_resid + (size_t)l * ns, (size_t)cb->levels * ns, 0);
            dev->ops->axpy(dev, nc, commit, cb->bw_t2, du);
        }
        /* FSQ: straight through the rounding, back through the bound */
        if (cb->fsq) {
            dev->ops->fill(dev, nc, 0.0f, cb->bw_t2);
            dev->ops->fsq_backward(dev, n, &cb->lv, cb->bw_u, du, cb->bw_t2);
            du = cb->bw_t2;
        }
        /* through the normalization u = p / ||p|| */
        if (cb->cosine) {
            dev->ops->fill(dev, nc, 0.0f, cb->bw_t2);
            dev->ops->l2norm_backward(dev, n, c, cb->bw_u, cb->bw_u, cb->bw_norm, NORM_EPS, du,
                                      cb->bw_t2);
            du = cb->bw_t2;
        }
        /* through p = P_in z + b_in */
        if (cb->proj)
            vqji_linear_backward(dev, n, d, c, cb->bw_z, vqji_weights_data(&cb->w, cb->i_pin_w),
                                 du, dz->data, vqji_weights_grad(&cb->w, cb->i_pin_w),
                                 vqji_weights_grad(&cb->w, cb->i_pin_b));
        else
            dev->ops->axpy(dev, nd, 1.0f, du, dz->data);
    }
    if (cb->p.ema_decay == 0.0f && !cb->fsq) {
        /* de_k += 2 sum_{i->k} (e_k - u_i) / (N s) = -2/(N s) * sum_{i->k} r_i
         * (s = c without groups). */
        size_t kc = (size_t)k * (size_t)cs;
        dev->ops->fill(dev, kc * nlev, 0.0f, cb->sums);
        for (int l = 0; l < nlev; l++) /* each book's R_l and assignment */
            dev->ops->vq_accumulate(dev, n, cs, k, cb->bw_resid + (size_t)l * ns,
                                    cb->bw_idx + (size_t)l * n, NULL, cb->sums + (size_t)l * kc);
        kc *= nlev;
        if (cb->simvq) { /* e = C W^T: dW += de^T C */
            dev->ops->scale(dev, kc, (float)(-2.0 / gnc), cb->sums);
            vqji_linear_backward(dev, k, c, c, vqji_weights_data(&cb->w, cb->i_basis),
                                 vqji_weights_data(&cb->w, cb->i_transform), cb->sums, NULL,
                                 vqji_weights_grad(&cb->w, cb->i_transform), NULL);
        } else {
            dev->ops->axpy(dev, kc, (float)(-2.0 / gnc), cb->sums,
                           vqji_weights_grad(&cb->w, cb->i_emb));
        }
    }
    return dev->ops->sync(dev);
}

vqj_status vqj_codebook_ema_usage(const vqj_codebook *cb, float *dst, size_t count)
{
    if (!cb || !dst)
        return vqji_fail(cb ? cb->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_ema_usage: NULL argument");
    vqji_clear_error(cb->ctx);
    if (cb->fsq || cb->simvq)
        return vqji_fail(cb->ctx, VQJ_ERR_UNSUPPORTED,
                         "vqj_codebook_ema_usage: an %s codebook keeps no EMA counts",
                         cb->fsq ? "FSQ" : "SimVQ");
    size_t k = (size_t)cb->p.num_embeddings, rows = (size_t)cb->rows;
    if (count != rows)
        return vqji_fail(cb->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_ema_usage: count is %zu; the codebook has %zu codes",
                         count, rows);
    vqji_device *dev = cb->ctx->device;
    vqj_status st = dev->ops->download(dev, dst, vqji_weights_data(&cb->w, cb->i_count),
                                       rows * sizeof(float));
    if (st)
        return st;
    for (size_t first = 0; first < rows; first += k) { /* each level on its own */
        double m = 0.0;
        for (size_t c = first; c < first + k; c++)
            m += dst[c];
        for (size_t c = first; c < first + k; c++)
            dst[c] = m > 0.0 ? (float)(dst[c] / m) : 0.0f;
    }
    return VQJ_OK;
}

vqj_status vqj_codebook_get_progress(const vqj_codebook *cb, int64_t *updates, int *initialized)
{
    if (!cb || !updates || !initialized)
        return vqji_fail(cb ? cb->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_get_progress: NULL argument");
    vqji_clear_error(cb->ctx);
    *updates = cb->updates;
    *initialized = cb->initialized;
    return VQJ_OK;
}

vqj_status vqj_codebook_set_progress(vqj_codebook *cb, int64_t updates, int initialized)
{
    if (!cb)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_codebook_set_progress: cb is NULL");
    vqji_clear_error(cb->ctx);
    if (updates < 0)
        return vqji_fail(cb->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_codebook_set_progress: updates is %lld; must be >= 0",
                         (long long)updates);
    cb->updates = updates;
    cb->initialized = initialized != 0 || !cb->p.kmeans_init || !cb->p.enabled;
    return VQJ_OK;
}
