/* The predictor: grid pooling, context aggregation and the projection head
 * (docs/model.md, "Grid representation and context aggregation",
 * "Projection head"). Device ops only. A forward writes its activations
 * into a workspace: the handle's own (kept for the backward pass) or an
 * inference one (model/workspace.h). */
#include "model/predictor.h"

#include "core/params.h"
#include "device/tensor.h"
#include "device/device.h"
#include "model/encoder.h"
#include "model/layers.h"
#include "model/tokens.h"
#include "model/workspace.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM VQJI_HI_HIDDEN_DIM
#define MAX_HEAD_LAYERS VQJI_HI_PROJECTION_LAYERS
#define MAX_WINDOW VQJI_HI_PREDICTOR_CONTEXT_WINDOW
#define L2_EPS 1e-12f
/* The first published vqj_predictor_params (core/params.h): a caller built
 * before final_activation existed gets the defaults of the fields after it. */
#define PREDICTOR_PARAMS_V1_SIZE VQJI_V1_PREDICTOR_PARAMS

enum { PATH_NONE, PATH_CONTEXT, PATH_GRIDS };

/* Everything one forward pass writes. */
struct vqji_predictor_ws {
    const vqj_predictor *owner;
    int with_backward; /* the handle's own: room for the backward scratch */

    /* The last forward. */
    int path;
    int num_grids, num_tokens, batch, rows; /* rows: of the head (B or G) */

    /* Device buffers, sized for `cap` grids (B <= G, so G bounds every
     * per-example buffer too). */
    void *arena;
    size_t arena_cap, cap;
    int32_t *offsets;
    size_t offsets_cap;
    float *r;       /* grid vectors [G x D] */
    float *c;       /* context vectors [B x D] (GRU: points at h_T) */
    float *agg_w;   /* attention weights [B x T] */
    float *gru_h;   /* h_0 .. h_T, each [B x D] */
    float *gru_gates; /* per step [B x 4D] */
    float *gi, *gh; /* GRU step pre-activations [B x 3D] */
    float *pre[MAX_HEAD_LAYERS], *act[MAX_HEAD_LAYERS]; /* [rows x P] */
    float *y, *norm; /* normalized output [rows x P] and norms [rows] */
    float *gf;       /* grid features [G x VQJI_GRID_FEATURES] (grid_features only) */
    /* Backward scratch (NULL without with_backward). */
    float *dr, *dc, *da, *db; /* [G x D], [B x D], 2 x [rows x max(D, P)] */
    float *dh, *dh2;          /* GRU [B x D] */
};

struct vqj_predictor {
    vqj_context *ctx;
    vqj_predictor_params p;
    vqj_weights w;
    size_t head_w[MAX_HEAD_LAYERS], head_b[MAX_HEAD_LAYERS];
    size_t query, wih, whh, bih, bhh;
    size_t slot, gf_w, gf_b; /* slot_embedding, grid_features */

    /* The workspace of the public forward and backward calls. */
    vqji_predictor_ws ws;
};

void vqj_predictor_params_default(vqj_predictor_params *params)
{
    if (!params)
        return;
    memset(params, 0, sizeof *params);
    params->size = sizeof *params;
    params->hidden_dim = 384;
    params->projection_dim = 256;
    params->projection_layers = 2;
    params->projection_activation = VQJ_ACT_RELU;
    params->aggregator = VQJ_AGG_MEAN;
    params->context_window = 3;
    params->final_activation = 1;
}

static vqj_status check_params(const vqj_context *ctx, const vqj_predictor_params *p)
{
    const char *fn = "vqj_predictor_create";
    if (p->hidden_dim < 1 || p->hidden_dim > MAX_DIM)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: hidden_dim is %d; it must be in 1..%d",
                         fn, p->hidden_dim, MAX_DIM);
    if (p->projection_dim < 1 || p->projection_dim > VQJI_HI_PROJECTION_DIM)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: projection_dim is %d; it must be in 1..%d", fn, p->projection_dim,
                         VQJI_HI_PROJECTION_DIM);
    if (p->projection_layers < 1 || p->projection_layers > MAX_HEAD_LAYERS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: projection_layers is %d; it must be in 1..%d", fn,
                         p->projection_layers, MAX_HEAD_LAYERS);
    const int act = (int)p->projection_activation;
    if (act < VQJ_ACT_NONE || act > VQJ_ACT_TANH)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: projection_activation %d is not a vqj_activation (NONE 0, RELU 1, "
                         "GELU 2, TANH 3)",
                         fn, (int)p->projection_activation);
    if ((int)p->aggregator < VQJ_AGG_MEAN || (int)p->aggregator > VQJ_AGG_GRU)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: aggregator %d is not a vqj_aggregator (MEAN 0, LAST 1, ATTENTION 2, "
                         "GRU 3)",
                         fn, (int)p->aggregator);
    if ((p->final_activation | p->slot_embedding | p->grid_features | p->analogy_residual) & ~1)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: final_activation (%d), slot_embedding (%d), grid_features (%d) and "
                         "analogy_residual (%d) must be 0 or 1",
                         fn, p->final_activation, p->slot_embedding, p->grid_features,
                         p->analogy_residual);
    if (p->analogy_residual && p->context_window < 3)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: analogy_residual needs context_window >= 3 (demo input, demo "
                         "output, query input); it is %d",
                         fn, p->context_window);
    if ((int)p->vq_path < VQJ_VQ_STRAIGHT_THROUGH || (int)p->vq_path > VQJ_VQ_BESIDE)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: vq_path %d is not a vqj_vq_path (STRAIGHT_THROUGH 0, BESIDE 1)", fn,
                         (int)p->vq_path);
    if (p->context_window < 1 || p->context_window > MAX_WINDOW)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: context_window is %d; it must be in 1..%d", fn, p->context_window,
                         MAX_WINDOW);
    return VQJ_OK;
}

static vqj_status build_weights(vqj_predictor *pr)
{
    vqj_weights *w = &pr->w;
    const int D = pr->p.hidden_dim, P = pr->p.projection_dim;
    char name[VQJI_WEIGHT_NAME_MAX];
    vqj_status st = VQJ_OK;
    for (int i = 0; !st && i < pr->p.projection_layers; i++) {
        snprintf(name, sizeof name, "head.%d.weight", i);
        st = vqji_weights_add(w, name, P, i == 0 ? D : P, 1, &pr->head_w[i]);
        snprintf(name, sizeof name, "head.%d.bias", i);
        if (!st)
            st = vqji_weights_add(w, name, P, 1, 1, &pr->head_b[i]);
    }
    if (!st && pr->p.aggregator == VQJ_AGG_ATTENTION)
        st = vqji_weights_add(w, "aggregator.query", D, 1, 1, &pr->query);
    if (!st && pr->p.aggregator == VQJ_AGG_GRU) {
        st = vqji_weights_add(w, "aggregator.gru.weight_ih", 3 * D, D, 1, &pr->wih);
        if (!st)
            st = vqji_weights_add(w, "aggregator.gru.weight_hh", 3 * D, D, 1, &pr->whh);
        if (!st)
            st = vqji_weights_add(w, "aggregator.gru.bias_ih", 3 * D, 1, 1, &pr->bih);
        if (!st)
            st = vqji_weights_add(w, "aggregator.gru.bias_hh", 3 * D, 1, 1, &pr->bhh);
    }
    if (!st && pr->p.slot_embedding)
        st = vqji_weights_add(w, "aggregator.slot_embedding", pr->p.context_window, D, 1,
                              &pr->slot);
    if (!st && pr->p.grid_features)
        st = vqji_weights_add(w, "grid_features.weight", D, VQJI_GRID_FEATURES, 1, &pr->gf_w);
    if (!st && pr->p.grid_features)
        st = vqji_weights_add(w, "grid_features.bias", D, 1, 1, &pr->gf_b);
    if (!st)
        st = vqji_weights_finalize(w);
    for (int i = 0; !st && i < pr->p.projection_layers; i++) {
        float bound = 1.0f / sqrtf((float)(i == 0 ? D : P));
        st = vqji_model_init_uniform(w, pr->head_w[i], bound);
        if (!st)
            st = vqji_model_init_uniform(w, pr->head_b[i], bound);
    }
    if (!st && pr->p.aggregator == VQJ_AGG_ATTENTION)
        st = vqji_model_init_normal(w, pr->query, 1.0f / sqrtf((float)D));
    if (!st && pr->p.slot_embedding)
        st = vqji_model_init_normal(w, pr->slot, 1.0f / sqrtf((float)D));
    if (!st && pr->p.grid_features) {
        /* PyTorch's Linear default, as every linear layer here. */
        float bound = 1.0f / sqrtf((float)VQJI_GRID_FEATURES);
        st = vqji_model_init_uniform(w, pr->gf_w, bound);
        if (!st)
            st = vqji_model_init_uniform(w, pr->gf_b, bound);
    }
    if (!st && pr->p.aggregator == VQJ_AGG_GRU) {
        float bound = 1.0f / sqrtf((float)D);
        size_t idx[4] = {pr->wih, pr->whh, pr->bih, pr->bhh};
        for (int k = 0; !st && k < 4; k++)
            st = vqji_model_init_uniform(w, idx[k], bound);
    }
    return st;
}

vqj_status vqj_predictor_create(vqj_context *ctx, const vqj_predictor_params *params,
                                vqj_predictor **out)
{
    if (!ctx || !params || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_predictor_create: NULL argument");
    vqji_clear_error(ctx);
    vqj_predictor_params p;
    vqj_predictor_params_default(&p);
    vqj_status st =
        vqji_params_copy(ctx, &p, sizeof p, params, PREDICTOR_PARAMS_V1_SIZE,
                         "vqj_predictor_params");
    if (st)
        return st;
    st = check_params(ctx, &p);
    if (st)
        return st;
    vqj_predictor *pr;
    st = vqji_calloc(ctx, 1, sizeof *pr, "a predictor", (void **)&pr);
    if (st)
        return st;
    pr->ctx = ctx;
    pr->p = p;
    pr->ws.owner = pr;
    pr->ws.with_backward = 1;
    vqji_weights_init(&pr->w, ctx);
    st = build_weights(pr);
    if (st) {
        vqj_predictor_destroy(pr);
        return st;
    }
    *out = pr;
    return VQJ_OK;
}

void vqj_predictor_destroy(vqj_predictor *pr)
{
    if (!pr)
        return;
    vqji_device *dev = pr->ctx->device;
    dev->ops->free(dev, pr->ws.arena);
    dev->ops->free(dev, pr->ws.offsets);
    vqji_weights_release(&pr->w);
    free(pr);
}

vqj_status vqji_predictor_ws_create(const vqj_predictor *pr, vqji_predictor_ws **out)
{
    vqji_predictor_ws *ws;
    vqj_status st =
        vqji_calloc(pr->ctx, 1, sizeof *ws, "a predictor workspace", (void **)&ws);
    if (st)
        return st;
    ws->owner = pr;
    ws->with_backward = 0;
    *out = ws;
    return VQJ_OK;
}

void vqji_predictor_ws_destroy(vqji_predictor_ws *ws)
{
    if (!ws)
        return;
    vqji_device *dev = ws->owner->ctx->device;
    dev->ops->free(dev, ws->arena);
    dev->ops->free(dev, ws->offsets);
    free(ws);
}

vqj_context *vqji_predictor_context(const vqj_predictor *pr) { return pr->ctx; }

vqj_weights *vqj_predictor_weights(vqj_predictor *pr) { return pr ? &pr->w : NULL; }

const vqj_predictor_params *vqji_predictor_params(const vqj_predictor *pr) { return &pr->p; }
const float *vqji_predictor_grid_vectors(const vqj_predictor *pr) { return pr->ws.r; }
const float *vqji_predictor_context_vectors(const vqj_predictor *pr) { return pr->ws.c; }

/* The activation after head layer i: none after the last one without
 * final_activation. */
static vqj_activation layer_activation(const vqj_predictor *pr, int i)
{
    if (i == pr->p.projection_layers - 1 && !pr->p.final_activation)
        return VQJ_ACT_NONE;
    return pr->p.projection_activation;
}

static float *carve(char *base, size_t *off, size_t n)
{
    float *p = base ? (float *)(base + *off) : NULL;
    *off += (n * sizeof(float) + 63) & ~(size_t)63;
    return p;
}

/* Every buffer for `cap` grids; B <= cap examples and rows <= cap. The
 * backward scratch comes last, so an inference workspace simply stops
 * before it. */
static size_t layout(const vqj_predictor *pr, vqji_predictor_ws *ws, char *base, size_t cap)
{
    const size_t D = (size_t)pr->p.hidden_dim, P = (size_t)pr->p.projection_dim;
    const size_t T = (size_t)pr->p.context_window, wide = D > P ? D : P;
    const int gru = pr->p.aggregator == VQJ_AGG_GRU;
    const size_t bcap = (cap + T - 1) / T; /* examples */
    size_t off = 0;
    ws->r = carve(base, &off, cap * D);
    ws->c = carve(base, &off, bcap * D);
    ws->agg_w = carve(base, &off, cap);
    ws->gru_h = gru ? carve(base, &off, (T + 1) * bcap * D) : NULL;
    ws->gru_gates = gru ? carve(base, &off, T * bcap * 4 * D) : NULL;
    ws->gi = gru ? carve(base, &off, bcap * 3 * D) : NULL;
    ws->gh = gru ? carve(base, &off, bcap * 3 * D) : NULL;
    for (int i = 0; i < pr->p.projection_layers; i++) {
        ws->pre[i] = carve(base, &off, cap * P);
        ws->act[i] = layer_activation(pr, i) == VQJ_ACT_NONE ? ws->pre[i]
                                                             : carve(base, &off, cap * P);
    }
    ws->y = carve(base, &off, cap * P);
    ws->norm = carve(base, &off, cap);
    ws->gf = pr->p.grid_features ? carve(base, &off, cap * VQJI_GRID_FEATURES) : NULL;
    if (!ws->with_backward) {
        ws->dr = ws->dc = ws->da = ws->db = ws->dh = ws->dh2 = NULL;
        return off;
    }
    ws->dr = carve(base, &off, cap * D);
    ws->dc = carve(base, &off, bcap * D);
    ws->da = carve(base, &off, cap * wide);
    ws->db = carve(base, &off, cap * wide);
    ws->dh = gru ? carve(base, &off, bcap * D) : NULL;
    ws->dh2 = gru ? carve(base, &off, bcap * D) : NULL;
    return off;
}

static vqj_status reserve(const vqj_predictor *pr, vqji_predictor_ws *ws, size_t grids)
{
    vqji_device *dev = pr->ctx->device;
    if (!ws->arena || grids > ws->cap) {
        size_t grown = ws->cap + ws->cap / 4;
        size_t cap = grids > grown ? grids : grown;
        vqj_status st =
            vqji_device_reserve(dev, &ws->arena, &ws->arena_cap, layout(pr, ws, NULL, cap));
        if (st) {
            layout(pr, ws, ws->arena, ws->cap); /* keep the old, still valid layout */
            return st;
        }
        ws->cap = cap;
    }
    layout(pr, ws, ws->arena, ws->cap);
    return vqji_device_reserve(dev, (void **)&ws->offsets, &ws->offsets_cap,
                              (grids + 1) * sizeof(int32_t));
}

/* Validate the common inputs of both forward paths. */
static vqj_status check_forward(const vqj_predictor *pr, const vqji_predictor_ws *ws,
                                const vqj_tokens *tokens, const vqj_tensor *tv,
                                const vqj_tensor *out, const char *fn)
{
    if (!pr || !ws || !tokens || !tv || !out)
        return vqji_fail(pr ? pr->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqj_context *ctx = pr->ctx;
    vqji_clear_error(ctx);
    if (ws->owner != pr)
        return vqji_fail(ctx, VQJ_ERR_INTERNAL, "%s: a workspace of another predictor", fn);
    if (!vqji_same_context(tokens->ctx, ctx) || !vqji_same_context(tv->ctx, ctx) ||
        !vqji_same_context(out->ctx, ctx))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the tokens and tensors must come from the predictor's context", fn);
    if (out == tv)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: out must not be the token_vectors tensor", fn);
    size_t N = vqj_tokens_num_objects(tokens), G = vqj_tokens_num_grids(tokens);
    if ((size_t)tv->rows != N || tv->cols != pr->p.hidden_dim)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: token_vectors is %d x %d but the tokens have %zu objects and "
                         "hidden_dim is %d",
                         fn, tv->rows, tv->cols, N, pr->p.hidden_dim);
    if (G > (size_t)INT32_MAX / (size_t)(4 * (pr->p.hidden_dim + pr->p.projection_dim)))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %zu grids is too many", fn, G);
    return VQJ_OK;
}

/* Segment means of the token vectors into r [G x D]. */
static vqj_status pool(const vqj_predictor *pr, vqji_predictor_ws *ws, const vqj_tokens *tokens,
                       const vqj_tensor *tv)
{
    vqji_device *dev = pr->ctx->device;
    size_t G = vqj_tokens_num_grids(tokens);
    vqj_status st = dev->ops->upload(dev, ws->offsets, vqj_tokens_offsets(tokens),
                                     (G + 1) * sizeof(int32_t));
    if (st)
        return st;
    dev->ops->segment_mean_forward(dev, (int)G, ws->offsets, pr->p.hidden_dim,
                                   vqji_tensor_data((vqj_tensor *)tv), ws->r);
    if (!pr->p.grid_features || G == 0)
        return VQJ_OK;
    /* r += f W^T + b: the grid features' linear map added to the mean. */
    const int D = pr->p.hidden_dim, F = VQJI_GRID_FEATURES;
    st = dev->ops->upload(dev, ws->gf, vqji_tokens_grid_features(tokens),
                          G * (size_t)F * sizeof(float));
    if (st)
        return st;
    dev->ops->gemm(dev, false, true, (int)G, D, F, 1.0f, ws->gf, F,
                   vqji_weights_data(&pr->w, pr->gf_w), F, 1.0f, ws->r, D);
    dev->ops->bias_forward(dev, (int)G, D, vqji_weights_data(&pr->w, pr->gf_b), ws->r);
    return VQJ_OK;
}

/* Head on x [rows x D] -> normalized y, copied to out [rows x P]. */
static void head_forward(const vqj_predictor *pr, vqji_predictor_ws *ws, int rows,
                         const float *x, vqj_tensor *out)
{
    vqji_device *dev = pr->ctx->device;
    const vqji_device_ops *op = dev->ops;
    const int D = pr->p.hidden_dim, P = pr->p.projection_dim;
    const size_t n = (size_t)rows * (size_t)P;
    const float *in = x;
    for (int i = 0; i < pr->p.projection_layers; i++) {
        vqji_linear_forward(dev, rows, i == 0 ? D : P, P, in,
                            vqji_weights_data(&pr->w, pr->head_w[i]),
                            vqji_weights_data(&pr->w, pr->head_b[i]), ws->pre[i]);
        switch (layer_activation(pr, i)) {
        case VQJ_ACT_RELU: op->relu_forward(dev, n, ws->pre[i], ws->act[i]); break;
        case VQJ_ACT_GELU: op->gelu_forward(dev, n, ws->pre[i], ws->act[i]); break;
        case VQJ_ACT_TANH: op->tanh_forward(dev, n, ws->pre[i], ws->act[i]); break;
        case VQJ_ACT_NONE: break; /* act[i] aliases pre[i] */
        }
        in = ws->act[i];
    }
    op->l2norm_forward(dev, rows, P, in, L2_EPS, ws->y, ws->norm);
    /* The backward pass reads the private copy: the caller may change out. */
    op->copy(dev, vqji_tensor_data(out), ws->y, n * sizeof(float));
}

/* dL/d(head input) from d_out: ACCUMULATED into dx [rows x D] (zeroed by
 * the caller); the head's weight gradients accumulate too. */
static void head_backward(vqj_predictor *pr, int rows, const float *x, const float *dout,
                          float *dx)
{
    vqji_device *dev = pr->ctx->device;
    const vqji_device_ops *op = dev->ops;
    vqji_predictor_ws *ws = &pr->ws;
    const int D = pr->p.hidden_dim, P = pr->p.projection_dim, L = pr->p.projection_layers;
    const size_t n = (size_t)rows * (size_t)P;
    float *cur = ws->da, *other = ws->db; /* cur: d(act[i]) */
    op->fill(dev, n, 0.0f, cur);
    op->l2norm_backward(dev, rows, P, ws->act[L - 1], ws->y, ws->norm, L2_EPS, dout, cur);
    for (int i = L - 1; i >= 0; i--) {
        const float *dpre = cur;
        if (layer_activation(pr, i) != VQJ_ACT_NONE) {
            op->fill(dev, n, 0.0f, other);
            switch (layer_activation(pr, i)) {
            case VQJ_ACT_RELU: op->relu_backward(dev, n, ws->pre[i], cur, other); break;
            case VQJ_ACT_GELU: op->gelu_backward(dev, n, ws->pre[i], cur, other); break;
            case VQJ_ACT_TANH: op->tanh_backward(dev, n, ws->act[i], cur, other); break;
            case VQJ_ACT_NONE: break;
            }
            dpre = other;
            other = cur; /* free again: d(act[i]) is consumed */
        }
        const int in = i == 0 ? D : P;
        float *dxi = i == 0 ? dx : other;
        if (i > 0)
            op->fill(dev, n, 0.0f, dxi);
        vqji_linear_backward(dev, rows, in, P, i == 0 ? x : ws->act[i - 1],
                             vqji_weights_data(&pr->w, pr->head_w[i]), dpre, dxi,
                             vqji_weights_grad(&pr->w, pr->head_w[i]),
                             vqji_weights_grad(&pr->w, pr->head_b[i]));
        /* d(act[i-1]) is in dxi; the buffer dpre sat in is free. */
        other = (float *)dpre;
        cur = dxi;
    }
}

/* The GRU input GEMMs read x_t, the rows b*T + t of r: a strided view, so
 * they call the device GEMM with a leading dimension of T*D. */
/* The analogy residual, c_b += r_{b,T-1} + r_{b,T-2} - r_{b,T-3}: the query
 * input moved by the demonstration's change. dir 1: forward (x = r, y = c);
 * dir -1: backward (x = dc, y = dr), the transpose: each of the three slots
 * receives +dc, +dc, -dc. */
static void analogy_residual(const vqj_predictor *pr, int B, const float *x, float *y, int dir)
{
    vqji_device *dev = pr->ctx->device;
    const vqji_device_ops *op = dev->ops;
    const int D = pr->p.hidden_dim, T = pr->p.context_window;
    static const float sign[3] = {1.0f, 1.0f, -1.0f}; /* slots T-1, T-2, T-3 */
    for (int b = 0; b < B; b++)
        for (int k = 0; k < 3; k++) {
            float *slot = NULL;
            const float *src = NULL;
            if (dir > 0) {
                src = x + ((size_t)b * T + T - 1 - k) * D;
                slot = y + (size_t)b * D;
            } else {
                src = x + (size_t)b * D;
                slot = y + ((size_t)b * T + T - 1 - k) * D;
            }
            op->axpy(dev, (size_t)D, sign[k], src, slot);
        }
}

static void gru_forward(const vqj_predictor *pr, vqji_predictor_ws *ws, int B)
{
    vqji_device *dev = pr->ctx->device;
    const vqji_device_ops *op = dev->ops;
    const int D = pr->p.hidden_dim, T = pr->p.context_window;
    const size_t BD = (size_t)B * (size_t)D;
    const vqj_weights *w = &pr->w;
    op->fill(dev, BD, 0.0f, ws->gru_h);
    for (int t = 0; t < T; t++) {
        float *h = ws->gru_h + (size_t)t * BD, *hn = h + BD;
        op->gemm(dev, false, true, B, 3 * D, D, 1.0f, ws->r + (size_t)t * D, T * D,
                 vqji_weights_data(w, pr->wih), D, 0.0f, ws->gi, 3 * D);
        op->bias_forward(dev, B, 3 * D, vqji_weights_data(w, pr->bih), ws->gi);
        vqji_linear_forward(dev, B, D, 3 * D, h, vqji_weights_data(w, pr->whh),
                            vqji_weights_data(w, pr->bhh), ws->gh);
        op->gru_cell_forward(dev, B, D, ws->gi, ws->gh, h, hn,
                             ws->gru_gates + (size_t)t * 4 * BD);
    }
    op->copy(dev, ws->c, ws->gru_h + (size_t)T * BD, BD * sizeof(float));
}

/* dc [B x D] -> dr (accumulated) and the GRU's weight gradients. */
static void gru_backward(vqj_predictor *pr, int B)
{
    vqji_device *dev = pr->ctx->device;
    const vqji_device_ops *op = dev->ops;
    vqji_predictor_ws *ws = &pr->ws;
    const int D = pr->p.hidden_dim, T = pr->p.context_window;
    const size_t BD = (size_t)B * (size_t)D;
    const vqj_weights *w = &pr->w;
    float *dh = ws->dh, *dprev = ws->dh2;
    float *dgi = ws->gi, *dgh = ws->gh; /* the forward's step scratch is free now */
    op->copy(dev, dh, ws->dc, BD * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        const float *h = ws->gru_h + (size_t)t * BD;
        op->fill(dev, 3 * BD, 0.0f, dgi);
        op->fill(dev, 3 * BD, 0.0f, dgh);
        op->fill(dev, BD, 0.0f, dprev);
        op->gru_cell_backward(dev, B, D, h, ws->gru_gates + (size_t)t * 4 * BD, dh, dgi, dgh,
                              dprev);
        vqji_linear_backward(dev, B, D, 3 * D, h, vqji_weights_data(w, pr->whh), dgh,
                             t > 0 ? dprev : NULL, vqji_weights_grad(w, pr->whh),
                             vqji_weights_grad(w, pr->bhh));
        op->gemm(dev, false, false, B, D, 3 * D, 1.0f, dgi, 3 * D, vqji_weights_data(w, pr->wih),
                 D, 1.0f, ws->dr + (size_t)t * D, T * D);
        op->gemm(dev, true, false, 3 * D, D, B, 1.0f, dgi, 3 * D, ws->r + (size_t)t * D, T * D,
                 1.0f, vqji_weights_grad(w, pr->wih), D);
        op->bias_backward(dev, B, 3 * D, dgi, vqji_weights_grad(w, pr->bih));
        float *s = dh;
        dh = dprev;
        dprev = s;
    }
}

static vqj_status finish_forward(const vqj_predictor *pr, vqji_predictor_ws *ws, int path,
                                 const vqj_tokens *tokens, int B, int rows)
{
    ws->num_grids = (int)vqj_tokens_num_grids(tokens);
    ws->num_tokens = (int)vqj_tokens_num_objects(tokens);
    ws->batch = B;
    ws->rows = rows;
    vqj_status st = pr->ctx->device->ops->sync(pr->ctx->device);
    if (!st)
        ws->path = path;
    return st;
}

static vqj_status forward_context(const vqj_predictor *pr, vqji_predictor_ws *ws,
                                  const vqj_tokens *tokens, const vqj_tensor *tv,
                                  vqj_tensor *out)
{
    const char *fn = "vqj_predictor_forward_context";
    vqj_status st = check_forward(pr, ws, tokens, tv, out, fn);
    if (st)
        return st;
    const int T = pr->p.context_window, D = pr->p.hidden_dim;
    size_t G = vqj_tokens_num_grids(tokens);
    if (G % (size_t)T)
        return vqji_fail(pr->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: %zu grids is not a whole number of examples of context_window %d",
                         fn, G, T);
    const int B = (int)(G / (size_t)T);
    ws->path = PATH_NONE;
    st = vqj_tensor_reshape(out, B, pr->p.projection_dim);
    if (!st)
        st = reserve(pr, ws, G);
    if (st)
        return st;
    if (B == 0)
        return finish_forward(pr, ws, PATH_CONTEXT, tokens, 0, 0);
    st = pool(pr, ws, tokens, tv);
    if (st)
        return st;
    vqji_device *dev = pr->ctx->device;
    const vqji_device_ops *op = dev->ops;
    /* Slot embedding: example b's grid t gets s_t, i.e. a bias of T*D over
     * the B rows of r seen as [B x T*D]. */
    if (pr->p.slot_embedding)
        op->bias_forward(dev, B, T * D, vqji_weights_data(&pr->w, pr->slot), ws->r);
    switch (pr->p.aggregator) {
    case VQJ_AGG_MEAN: op->aggregate_mean_forward(dev, B, T, D, ws->r, ws->c); break;
    case VQJ_AGG_LAST:
        /* One row copy per example: no op gathers strided rows. */
        for (int b = 0; b < B; b++)
            op->copy(dev, ws->c + (size_t)b * D, ws->r + ((size_t)b * T + T - 1) * D,
                     (size_t)D * sizeof(float));
        break;
    case VQJ_AGG_ATTENTION:
        op->aggregate_attention_forward(dev, B, T, D, ws->r,
                                        vqji_weights_data(&pr->w, pr->query), ws->c, ws->agg_w);
        break;
    case VQJ_AGG_GRU: gru_forward(pr, ws, B); break;
    }
    if (pr->p.analogy_residual)
        analogy_residual(pr, B, ws->r, ws->c, 1.0f);
    head_forward(pr, ws, B, ws->c, out);
    return finish_forward(pr, ws, PATH_CONTEXT, tokens, B, B);
}

static vqj_status forward_grids(const vqj_predictor *pr, vqji_predictor_ws *ws,
                                const vqj_tokens *tokens, const vqj_tensor *tv, vqj_tensor *out)
{
    vqj_status st = check_forward(pr, ws, tokens, tv, out, "vqj_predictor_forward_grids");
    if (st)
        return st;
    size_t G = vqj_tokens_num_grids(tokens);
    ws->path = PATH_NONE;
    st = vqj_tensor_reshape(out, (int)G, pr->p.projection_dim);
    if (!st)
        st = reserve(pr, ws, G);
    if (st)
        return st;
    if (G == 0)
        return finish_forward(pr, ws, PATH_GRIDS, tokens, 0, 0);
    st = pool(pr, ws, tokens, tv);
    if (st)
        return st;
    head_forward(pr, ws, (int)G, ws->r, out);
    return finish_forward(pr, ws, PATH_GRIDS, tokens, 0, (int)G);
}

vqj_status vqj_predictor_forward_context(vqj_predictor *pr, const vqj_tokens *tokens,
                                         const vqj_tensor *tv, vqj_tensor *out)
{
    return forward_context(pr, pr ? &pr->ws : NULL, tokens, tv, out);
}

vqj_status vqj_predictor_forward_grids(vqj_predictor *pr, const vqj_tokens *tokens,
                                       const vqj_tensor *tv, vqj_tensor *out)
{
    return forward_grids(pr, pr ? &pr->ws : NULL, tokens, tv, out);
}

vqj_status vqji_predictor_forward_context_ws(const vqj_predictor *pr, vqji_predictor_ws *ws,
                                             const vqj_tokens *tokens, const vqj_tensor *tv,
                                             vqj_tensor *out)
{
    return forward_context(pr, ws, tokens, tv, out);
}

vqj_status vqji_predictor_forward_grids_ws(const vqj_predictor *pr, vqji_predictor_ws *ws,
                                           const vqj_tokens *tokens, const vqj_tensor *tv,
                                           vqj_tensor *out)
{
    return forward_grids(pr, ws, tokens, tv, out);
}

static vqj_status check_backward(vqj_predictor *pr, const vqj_tensor *dout, vqj_tensor *dtv,
                                 int path, const char *fn)
{
    if (!pr || !dout || !dtv)
        return vqji_fail(pr ? pr->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqj_context *ctx = pr->ctx;
    const vqji_predictor_ws *ws = &pr->ws;
    vqji_clear_error(ctx);
    if (ws->path != path)
        return vqji_fail(ctx, VQJ_ERR_STATE,
                         "%s: the last successful forward of this predictor was %s", fn,
                         ws->path == PATH_NONE      ? "none (or it failed)"
                         : ws->path == PATH_CONTEXT ? "the context path"
                                                    : "the grids path");
    if (!vqji_same_context(dout->ctx, ctx) || !vqji_same_context(dtv->ctx, ctx))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: tensors must come from the predictor's context", fn);
    if (dout->rows != ws->rows || dout->cols != pr->p.projection_dim)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: d_out is %d x %d but the last forward produced %d x %d", fn,
                         dout->rows, dout->cols, ws->rows, pr->p.projection_dim);
    if (dtv->rows != ws->num_tokens || dtv->cols != pr->p.hidden_dim)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: d_token_vectors is %d x %d but the last forward had %d x %d "
                         "token vectors",
                         fn, dtv->rows, dtv->cols, ws->num_tokens, pr->p.hidden_dim);
    return VQJ_OK;
}

/* dr [G x D] -> d_token_vectors (accumulated). */
static vqj_status unpool(vqj_predictor *pr, vqj_tensor *dtv)
{
    vqji_device *dev = pr->ctx->device;
    if (pr->p.grid_features && pr->ws.num_grids > 0)
        vqji_linear_backward(dev, pr->ws.num_grids, VQJI_GRID_FEATURES, pr->p.hidden_dim,
                             pr->ws.gf, vqji_weights_data(&pr->w, pr->gf_w), pr->ws.dr, NULL,
                             vqji_weights_grad(&pr->w, pr->gf_w),
                             vqji_weights_grad(&pr->w, pr->gf_b));
    dev->ops->segment_mean_backward(dev, pr->ws.num_grids, pr->ws.offsets, pr->p.hidden_dim,
                                    pr->ws.dr, vqji_tensor_data(dtv));
    return dev->ops->sync(dev);
}

vqj_status vqj_predictor_backward_context(vqj_predictor *pr, const vqj_tensor *dout,
                                          vqj_tensor *dtv)
{
    vqj_status st =
        check_backward(pr, dout, dtv, PATH_CONTEXT, "vqj_predictor_backward_context");
    if (st)
        return st;
    vqji_predictor_ws *ws = &pr->ws;
    const int B = ws->batch, T = pr->p.context_window, D = pr->p.hidden_dim;
    if (B == 0)
        return VQJ_OK;
    vqji_device *dev = pr->ctx->device;
    const vqji_device_ops *op = dev->ops;
    const size_t BD = (size_t)B * (size_t)D;
    op->fill(dev, BD, 0.0f, ws->dc);
    head_backward(pr, B, ws->c, vqji_tensor_data((vqj_tensor *)dout), ws->dc);
    op->fill(dev, (size_t)ws->num_grids * (size_t)D, 0.0f, ws->dr);
    switch (pr->p.aggregator) {
    case VQJ_AGG_MEAN: op->aggregate_mean_backward(dev, B, T, D, ws->dc, ws->dr); break;
    case VQJ_AGG_LAST:
        for (int b = 0; b < B; b++)
            op->copy(dev, ws->dr + ((size_t)b * T + T - 1) * D, ws->dc + (size_t)b * D,
                     (size_t)D * sizeof(float));
        break;
    case VQJ_AGG_ATTENTION:
        op->aggregate_attention_backward(dev, B, T, D, ws->r,
                                         vqji_weights_data(&pr->w, pr->query), ws->agg_w,
                                         ws->dc, ws->dr, vqji_weights_grad(&pr->w, pr->query));
        break;
    case VQJ_AGG_GRU: gru_backward(pr, B); break;
    }
    if (pr->p.analogy_residual)
        analogy_residual(pr, B, ws->dc, ws->dr, -1.0f);
    if (pr->p.slot_embedding)
        op->bias_backward(dev, B, T * D, ws->dr, vqji_weights_grad(&pr->w, pr->slot));
    return unpool(pr, dtv);
}

vqj_status vqj_predictor_backward_grids(vqj_predictor *pr, const vqj_tensor *dout,
                                        vqj_tensor *dtv)
{
    vqj_status st = check_backward(pr, dout, dtv, PATH_GRIDS, "vqj_predictor_backward_grids");
    if (st)
        return st;
    vqji_predictor_ws *ws = &pr->ws;
    if (ws->rows == 0)
        return VQJ_OK;
    vqji_device *dev = pr->ctx->device;
    dev->ops->fill(dev, (size_t)ws->num_grids * (size_t)pr->p.hidden_dim, 0.0f, ws->dr);
    head_backward(pr, ws->rows, ws->r, vqji_tensor_data((vqj_tensor *)dout), ws->dr);
    return unpool(pr, dtv);
}
