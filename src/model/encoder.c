/* The encoder: feature MLP and pre-LayerNorm relational blocks over packed
 * tokens (docs/model.md, "Feature MLP" and "Relational block"). Device ops
 * only. A forward writes its activations into a workspace: the handle's own
 * (kept for the backward pass) or an inference one (model/workspace.h). */
#include "model/encoder.h"
#include "comm/comm.h"

#include "core/params.h"
#include "model/layers.h"
#include "model/tokens.h"
#include "model/workspace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LN_EPS 1e-5f
#define MAX_FEATURE_DIM VQJI_HI_FEATURE_DIM
#define MAX_HIDDEN_DIM VQJI_HI_HIDDEN_DIM
#define MAX_LAYERS VQJI_HI_RELATIONAL_LAYERS

/* ---- helpers shared by the model handles ---- */

uint64_t vqji_model_stream(const char *name)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (const unsigned char *s = (const unsigned char *)name; *s; s++)
        h = (h ^ *s) * 0x100000001B3ull;
    return h;
}

enum { INIT_UNIFORM, INIT_NORMAL, INIT_CONST };

static vqj_status init_tensor(vqj_weights *w, size_t index, int kind, float a)
{
    const vqji_weight *it = &w->items[index];
    float *host;
    vqj_status st = vqji_malloc(w->ctx, it->count * sizeof *host, it->name, (void **)&host);
    if (st)
        return st;
    vqji_rng rng;
    vqji_rng_seed(&rng, w->ctx->params.seed, vqji_model_stream(it->name));
    for (size_t i = 0; i < it->count; i++) {
        if (kind == INIT_UNIFORM)
            host[i] = a * (2.0f * vqji_rng_uniform(&rng) - 1.0f);
        else if (kind == INIT_NORMAL)
            host[i] = a * vqji_rng_normal(&rng);
        else
            host[i] = a;
    }
    vqji_device *dev = w->ctx->device;
    st = dev->ops->upload(dev, vqji_weights_data(w, index), host, it->count * sizeof *host);
    free(host);
    return st;
}

vqj_status vqji_model_init_uniform(vqj_weights *w, size_t index, float bound)
{
    return init_tensor(w, index, INIT_UNIFORM, bound);
}

vqj_status vqji_model_init_normal(vqj_weights *w, size_t index, float std)
{
    return init_tensor(w, index, INIT_NORMAL, std);
}

vqj_status vqji_model_init_const(vqj_weights *w, size_t index, float value)
{
    return init_tensor(w, index, INIT_CONST, value);
}

/* ---- the encoder ---- */

/* Indices of one relational block's tensors in the weights view. */
typedef struct block_idx {
    size_t ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} block_idx;

/* Saved activations of one block (pointers into the arena). */
typedef struct block_acts {
    float *h;     /* block input [N x D] (the residual stream) */
    float *a;     /* LN1(h) [N x D] */
    float *qkv;   /* [N x 3D] */
    float *o;     /* attention output [N x D] */
    float *mid;   /* h + attention branch [N x D] */
    float *f;     /* LN2(mid) [N x D] */
    float *u;     /* fc1 pre-activation [N x 2D] */
    float *gu;    /* GELU(u) [N x 2D] */
    float *mask1, *mask2; /* dropout factors [N x D], only with dropout */
    float *mean1, *rstd1, *mean2, *rstd2; /* [N] */
    float *probs; /* attention weights, heads * sum n_g^2 (probs arena) */
} block_acts;

/* Everything one forward pass writes. */
struct vqji_encoder_ws {
    const vqj_encoder *owner;
    /* 1 (the handle's own): every block keeps its activations and dropout
     * masks for the backward pass. 0 (inference): the blocks share one set
     * of buffers, each overwriting the last, and there are no masks. */
    int keep;
    int with_masks;
    block_acts *acts; /* one per block (at least one entry) */

    /* The last forward: shapes, whether dropout was on, and the token
     * layout the backward pass needs. */
    int have_forward;
    int dropout_on;
    int num_grids, num_tokens;

    /* Device buffers, grown to the largest batch seen. */
    void *arena;        /* activations, sized by arena_tokens */
    size_t arena_cap, arena_tokens;
    void *probs;        /* attention weights of every kept block */
    size_t probs_cap;
    int32_t *offsets;
    size_t offsets_cap;
    uint8_t *adj;
    size_t adj_cap;
    int64_t *adj_offsets;
    size_t adj_offsets_cap;

    /* Forward-only pointers into the arena. */
    float *x, *pre1, *act1, *tmp;
};

struct vqj_encoder {
    vqj_context *ctx;
    vqj_encoder_params p;
    vqj_weights w;
    size_t fc1_w, fc1_b, fc2_w, fc2_b;
    block_idx *blk;
    uint64_t step;

    /* The workspace of the public forward and backward calls. */
    vqji_encoder_ws ws;

    void *scratch;      /* backward scratch, allocated by the first backward */
    size_t scratch_cap, scratch_tokens;
    /* Backward scratch: g [N x D] the residual stream's gradient, s3 [N x 3D],
     * s2 [N x 2D], s1a and s1b [N x D]. */
    float *g, *s3, *s2, *s1a, *s1b;
};

void vqj_encoder_params_default(vqj_encoder_params *params)
{
    if (!params)
        return;
    memset(params, 0, sizeof *params);
    params->size = sizeof *params;
    params->feature_dim = VQJ_BASE_FEATURES + 10;
    params->hidden_dim = 384;
    params->relational_layers = 3;
    params->relational_heads = 8;
    params->relational_dropout = 0.1f;
}

static vqj_status check_params(const vqj_context *ctx, const vqj_encoder_params *p)
{
    const char *fn = "vqj_encoder_create";
    if (p->feature_dim < 1 || p->feature_dim > MAX_FEATURE_DIM)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: feature_dim is %d; it must be in 1..%d (the tokenizer's "
                         "vqj_tokenizer_feature_dim())",
                         fn, p->feature_dim, MAX_FEATURE_DIM);
    if (p->hidden_dim < 1 || p->hidden_dim > MAX_HIDDEN_DIM)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: hidden_dim is %d; it must be in 1..%d", fn, p->hidden_dim,
                         MAX_HIDDEN_DIM);
    if (p->relational_layers < 0 || p->relational_layers > MAX_LAYERS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: relational_layers is %d; it must be in 0..%d", fn,
                         p->relational_layers, MAX_LAYERS);
    if (p->relational_heads < 1 || p->relational_heads > p->hidden_dim)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: relational_heads is %d; it must be in 1..hidden_dim (%d)", fn,
                         p->relational_heads, p->hidden_dim);
    if (p->hidden_dim % p->relational_heads)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: hidden_dim %d is not divisible by relational_heads %d", fn,
                         p->hidden_dim, p->relational_heads);
    if (!(p->relational_dropout >= 0.0f && p->relational_dropout < 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: relational_dropout is %g; it must be in [0, 1)", fn,
                         (double)p->relational_dropout);
    return VQJ_OK;
}

static vqj_status add_linear(vqj_weights *w, const char *prefix, int in, int out, size_t *wi,
                             size_t *bi)
{
    char name[VQJI_WEIGHT_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    vqj_status st = vqji_weights_add(w, name, out, in, 1, wi);
    if (st)
        return st;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return vqji_weights_add(w, name, out, 1, 1, bi);
}

static vqj_status add_ln(vqj_weights *w, const char *prefix, int d, size_t *gi, size_t *bi)
{
    char name[VQJI_WEIGHT_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    vqj_status st = vqji_weights_add(w, name, d, 1, 1, gi);
    if (st)
        return st;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return vqji_weights_add(w, name, d, 1, 1, bi);
}

/* PyTorch's Linear default: weight and bias uniform(-1/sqrt(in), 1/sqrt(in)). */
static vqj_status init_linear(vqj_weights *w, size_t wi, size_t bi, int in)
{
    float bound = 1.0f / sqrtf((float)in);
    vqj_status st = vqji_model_init_uniform(w, wi, bound);
    return st ? st : vqji_model_init_uniform(w, bi, bound);
}

static vqj_status build_weights(vqj_encoder *e)
{
    vqj_weights *w = &e->w;
    const int F = e->p.feature_dim, D = e->p.hidden_dim;
    vqj_status st = add_linear(w, "feature_mlp.fc1", F, D, &e->fc1_w, &e->fc1_b);
    if (!st)
        st = add_linear(w, "feature_mlp.fc2", D, D, &e->fc2_w, &e->fc2_b);
    for (int l = 0; !st && l < e->p.relational_layers; l++) {
        block_idx *b = &e->blk[l];
        char pre[48];
        snprintf(pre, sizeof pre, "relational.%d.ln1", l);
        st = add_ln(w, pre, D, &b->ln1_w, &b->ln1_b);
        snprintf(pre, sizeof pre, "relational.%d.attn.qkv", l);
        if (!st)
            st = add_linear(w, pre, D, 3 * D, &b->qkv_w, &b->qkv_b);
        snprintf(pre, sizeof pre, "relational.%d.attn.out", l);
        if (!st)
            st = add_linear(w, pre, D, D, &b->out_w, &b->out_b);
        snprintf(pre, sizeof pre, "relational.%d.ln2", l);
        if (!st)
            st = add_ln(w, pre, D, &b->ln2_w, &b->ln2_b);
        snprintf(pre, sizeof pre, "relational.%d.ffn.fc1", l);
        if (!st)
            st = add_linear(w, pre, D, 2 * D, &b->fc1_w, &b->fc1_b);
        snprintf(pre, sizeof pre, "relational.%d.ffn.fc2", l);
        if (!st)
            st = add_linear(w, pre, 2 * D, D, &b->fc2_w, &b->fc2_b);
    }
    if (!st)
        st = vqji_weights_finalize(w);
    if (!st)
        st = init_linear(w, e->fc1_w, e->fc1_b, F);
    if (!st)
        st = init_linear(w, e->fc2_w, e->fc2_b, D);
    for (int l = 0; !st && l < e->p.relational_layers; l++) {
        const block_idx *b = &e->blk[l];
        st = vqji_model_init_const(w, b->ln1_w, 1.0f);
        if (!st)
            st = vqji_model_init_const(w, b->ln1_b, 0.0f);
        if (!st)
            st = init_linear(w, b->qkv_w, b->qkv_b, D);
        if (!st)
            st = init_linear(w, b->out_w, b->out_b, D);
        if (!st)
            st = vqji_model_init_const(w, b->ln2_w, 1.0f);
        if (!st)
            st = vqji_model_init_const(w, b->ln2_b, 0.0f);
        if (!st)
            st = init_linear(w, b->fc1_w, b->fc1_b, D);
        if (!st)
            st = init_linear(w, b->fc2_w, b->fc2_b, 2 * D);
    }
    return st;
}

vqj_status vqj_encoder_create(vqj_context *ctx, const vqj_encoder_params *params,
                              vqj_encoder **out)
{
    if (!ctx || !params || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_encoder_create: NULL argument");
    vqji_clear_error(ctx);
    vqj_encoder_params p;
    vqj_encoder_params_default(&p);
    vqj_status st = vqji_params_copy(ctx, &p, sizeof p, params, VQJI_V1_ENCODER_PARAMS,
                                     "vqj_encoder_params");
    if (st)
        return st;
    st = check_params(ctx, &p);
    if (st)
        return st;
    vqj_encoder *e;
    st = vqji_calloc(ctx, 1, sizeof *e, "an encoder", (void **)&e);
    if (st)
        return st;
    e->ctx = ctx;
    e->p = p;
    vqji_weights_init(&e->w, ctx);
    e->ws.owner = e;
    e->ws.keep = 1;
    e->ws.with_masks = p.relational_dropout > 0.0f;
    size_t L = (size_t)p.relational_layers;
    st = vqji_calloc(ctx, L ? L : 1, sizeof *e->blk, "encoder blocks", (void **)&e->blk);
    if (!st)
        st = vqji_calloc(ctx, L ? L : 1, sizeof *e->ws.acts, "encoder blocks",
                         (void **)&e->ws.acts);
    if (!st)
        st = build_weights(e);
    if (st) {
        vqj_encoder_destroy(e);
        return st;
    }
    *out = e;
    return VQJ_OK;
}

/* Free the buffers of a workspace (not the struct). */
static void ws_release(vqji_device *dev, vqji_encoder_ws *ws)
{
    dev->ops->free(dev, ws->arena);
    dev->ops->free(dev, ws->probs);
    dev->ops->free(dev, ws->offsets);
    dev->ops->free(dev, ws->adj);
    dev->ops->free(dev, ws->adj_offsets);
    free(ws->acts);
}

void vqj_encoder_destroy(vqj_encoder *e)
{
    if (!e)
        return;
    vqji_device *dev = e->ctx->device;
    ws_release(dev, &e->ws);
    dev->ops->free(dev, e->scratch);
    vqji_weights_release(&e->w);
    free(e->blk);
    free(e);
}

vqj_status vqji_encoder_ws_create(const vqj_encoder *e, vqji_encoder_ws **out)
{
    vqji_encoder_ws *ws;
    vqj_status st = vqji_calloc(e->ctx, 1, sizeof *ws, "an encoder workspace", (void **)&ws);
    if (st)
        return st;
    ws->owner = e;
    ws->keep = 0;
    ws->with_masks = 0;
    size_t L = (size_t)e->p.relational_layers;
    st = vqji_calloc(e->ctx, L ? L : 1, sizeof *ws->acts, "an encoder workspace",
                     (void **)&ws->acts);
    if (st) {
        free(ws);
        return st;
    }
    *out = ws;
    return VQJ_OK;
}

vqj_status vqji_encoder_train_ws_create(const vqj_encoder *e, vqji_encoder_ws **out)
{
    vqj_status st = vqji_encoder_ws_create(e, out);
    if (st)
        return st;
    (*out)->keep = e->ws.keep;
    (*out)->with_masks = e->ws.with_masks;
    return VQJ_OK;
}

void vqji_encoder_ws_swap(vqj_encoder *e, vqji_encoder_ws *ws)
{
    vqji_encoder_ws own = e->ws;
    e->ws = *ws;
    *ws = own;
}

void vqji_encoder_ws_destroy(vqji_encoder_ws *ws)
{
    if (!ws)
        return;
    ws_release(ws->owner->ctx->device, ws);
    free(ws);
}

vqj_context *vqji_encoder_context(const vqj_encoder *e) { return e->ctx; }

vqj_weights *vqj_encoder_weights(vqj_encoder *e) { return e ? &e->w : NULL; }

uint64_t vqji_encoder_step(const vqj_encoder *e) { return e->step; }
void vqji_encoder_set_step(vqj_encoder *e, uint64_t step) { e->step = step; }
const vqj_encoder_params *vqji_encoder_params(const vqj_encoder *e) { return &e->p; }

/* Carve `n` floats from the arena at *off (64-byte aligned). With base NULL
 * only the size is counted. */
static float *carve(char *base, size_t *off, size_t n)
{
    float *p = base ? (float *)(base + *off) : NULL;
    *off += (n * sizeof(float) + 63) & ~(size_t)63;
    return p;
}

/* Lay the forward activations for `cap` tokens over `base`; returns bytes.
 * Without `keep`, every block uses the buffers of block 0: block l's output
 * overwrites its input h only after h's last read (the copy into mid). */
static size_t layout_arena(const vqj_encoder *e, vqji_encoder_ws *ws, char *base, size_t cap)
{
    const size_t F = (size_t)e->p.feature_dim, D = (size_t)e->p.hidden_dim;
    const int with_masks = ws->with_masks;
    size_t off = 0;
    ws->x = carve(base, &off, cap * F);
    ws->pre1 = carve(base, &off, cap * D);
    ws->act1 = carve(base, &off, cap * D);
    ws->tmp = carve(base, &off, cap * D);
    for (int l = 0; l < e->p.relational_layers; l++) {
        block_acts *a = &ws->acts[l];
        if (!ws->keep && l > 0) {
            *a = ws->acts[0];
            continue;
        }
        a->h = carve(base, &off, cap * D);
        a->a = carve(base, &off, cap * D);
        a->qkv = carve(base, &off, cap * 3 * D);
        a->o = carve(base, &off, cap * D);
        a->mid = carve(base, &off, cap * D);
        a->f = carve(base, &off, cap * D);
        a->u = carve(base, &off, cap * 2 * D);
        a->gu = carve(base, &off, cap * 2 * D);
        a->mean1 = carve(base, &off, cap);
        a->rstd1 = carve(base, &off, cap);
        a->mean2 = carve(base, &off, cap);
        a->rstd2 = carve(base, &off, cap);
        a->mask1 = with_masks ? carve(base, &off, cap * D) : NULL;
        a->mask2 = with_masks ? carve(base, &off, cap * D) : NULL;
    }
    return off;
}

static size_t layout_scratch(vqj_encoder *e, char *base, size_t cap)
{
    const size_t D = (size_t)e->p.hidden_dim;
    size_t off = 0;
    e->g = carve(base, &off, cap * D);
    e->s3 = carve(base, &off, cap * 3 * D);
    e->s2 = carve(base, &off, cap * 2 * D);
    e->s1a = carve(base, &off, cap * D);
    e->s1b = carve(base, &off, cap * D);
    return off;
}

/* Make room for `n` tokens, `adj_bytes` adjacency bytes and `grids` grids.
 * Capacities only grow, so steady-state training allocates nothing. */
static vqj_status reserve_forward(const vqj_encoder *e, vqji_encoder_ws *ws, size_t n,
                                  size_t grids, size_t adj_bytes)
{
    vqji_device *dev = e->ctx->device;
    if (!ws->arena || n > ws->arena_tokens) {
        /* Grow by at least a quarter so slowly rising batch sizes do not
         * reallocate every step. */
        size_t grown = ws->arena_tokens + ws->arena_tokens / 4;
        size_t cap = n > grown ? n : grown;
        size_t bytes = layout_arena(e, ws, NULL, cap);
        vqj_status st = vqji_device_reserve(dev, &ws->arena, &ws->arena_cap, bytes);
        if (st)
            return st;
        ws->arena_tokens = cap;
    }
    layout_arena(e, ws, ws->arena, ws->arena_tokens);
    size_t L = (size_t)e->p.relational_layers, H = (size_t)e->p.relational_heads;
    size_t kept = ws->keep ? L : (L ? 1 : 0); /* blocks with their own probs */
    size_t per_layer = H * adj_bytes;
    vqj_status st = vqji_device_reserve(dev, &ws->probs, &ws->probs_cap,
                                       (kept ? kept : 1) * (per_layer ? per_layer : 1) *
                                           sizeof(float));
    if (st)
        return st;
    for (size_t l = 0; l < L; l++)
        ws->acts[l].probs = (float *)ws->probs + (l < kept ? l : 0) * per_layer;
    st = vqji_device_reserve(dev, (void **)&ws->offsets, &ws->offsets_cap,
                            (grids + 1) * sizeof(int32_t));
    if (!st)
        st = vqji_device_reserve(dev, (void **)&ws->adj, &ws->adj_cap, adj_bytes ? adj_bytes : 1);
    if (!st)
        st = vqji_device_reserve(dev, (void **)&ws->adj_offsets, &ws->adj_offsets_cap,
                                (grids + 1) * sizeof(int64_t));
    return st;
}

/* Name the first non-finite input feature, or return VQJ_OK. The features
 * are host memory (the tokenizer's output), read before any upload. */
static vqj_status check_features(const vqj_context *ctx, const vqj_tokens *tokens)
{
    const float *x = vqj_tokens_features(tokens);
    const int32_t *off = vqj_tokens_offsets(tokens);
    size_t n = vqj_tokens_num_objects(tokens), G = vqj_tokens_num_grids(tokens);
    size_t F = (size_t)vqj_tokens_feature_dim(tokens);
    for (size_t i = 0; i < n * F; i++) {
        if (isfinite(x[i]))
            continue;
        size_t tok = i / F, g = 0;
        while (g + 1 < G && (size_t)off[g + 1] <= tok)
            g++;
        return vqji_fail(ctx, VQJ_ERR_NUMERIC,
                         "vqj_encoder_forward: feature %zu of token %zu (grid %zu, object "
                         "%zu) is %s; input features must be finite",
                         i % F, tok, g, tok - (size_t)off[g], isnan(x[i]) ? "NaN" : "infinite");
    }
    return VQJ_OK;
}

/* The forward pass on workspace `ws`. `step` is the handle's dropout step
 * counter, advanced by a training forward; inference passes NULL (and
 * training 0), so that the handle is only read. */
static vqj_status forward_ws(const vqj_encoder *e, vqji_encoder_ws *ws, const vqj_tokens *tokens,
                             int training, uint64_t *step_counter, vqj_tensor *out)
{
    if (!tokens || !out)
        return vqji_fail(e->ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_encoder_forward: NULL argument");
    vqj_context *ctx = e->ctx;
    vqji_clear_error(ctx);
    if (ws->owner != e)
        return vqji_fail(ctx, VQJ_ERR_INTERNAL,
                         "vqj_encoder_forward: a workspace of another encoder");
    if (!vqji_same_context(out->ctx, ctx) || !vqji_same_context(tokens->ctx, ctx))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_forward: the tokens and the output tensor must come from "
                         "the encoder's context");
    const int F = e->p.feature_dim, D = e->p.hidden_dim, L = e->p.relational_layers;
    if (vqj_tokens_feature_dim(tokens) != F)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_forward: the tokens have %d features per object but the "
                         "encoder was created with feature_dim %d",
                         vqj_tokens_feature_dim(tokens), F);
    size_t N = vqj_tokens_num_objects(tokens), G = vqj_tokens_num_grids(tokens);
    if (N > (size_t)INT32_MAX / (size_t)(3 * D) || G >= (size_t)INT32_MAX)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_forward: batch of %zu tokens in %zu grids is too large",
                         N, G);
    vqj_status st = check_features(ctx, tokens);
    if (st)
        return st;
    const int64_t *adj_off = vqji_tokens_adjacency_offsets(tokens);
    size_t adj_bytes = G && adj_off ? (size_t)adj_off[G] : 0;

    /* From here on the previous activations are being overwritten. */
    ws->have_forward = 0;
    st = vqj_tensor_reshape(out, (int)N, D);
    if (!st)
        st = reserve_forward(e, ws, N, G, adj_bytes);
    if (st)
        return st;
    vqji_device *dev = ctx->device;
    const vqji_device_ops *op = dev->ops;
    const int n = (int)N;
    const int dropout = training && e->p.relational_dropout > 0.0f;
    const float p = e->p.relational_dropout;
    const uint64_t step = step_counter ? *step_counter : 0;
    /* Data-parallel: each rank draws its own masks (docs/distributed.md). */
    const uint64_t dseed = ctx->params.seed ^ (0xBF58476D1CE4E5B9ull * (uint64_t)vqji_comm_rank(ctx));
    if (training)
        (*step_counter)++;
    ws->num_tokens = n;
    ws->num_grids = (int)G;
    ws->dropout_on = dropout;
    if (N == 0) {
        ws->have_forward = 1;
        return VQJ_OK;
    }
    st = op->upload(dev, ws->x, vqj_tokens_features(tokens), N * (size_t)F * sizeof(float));
    if (!st)
        st = op->upload(dev, ws->offsets, vqj_tokens_offsets(tokens), (G + 1) * sizeof(int32_t));
    if (!st && adj_bytes)
        st = op->upload(dev, ws->adj, vqji_tokens_adjacency_all(tokens), adj_bytes);
    if (!st)
        st = op->upload(dev, ws->adj_offsets, adj_off, (G + 1) * sizeof(int64_t));
    if (st)
        return st;

    const vqj_weights *w = &e->w;
#define W(i) vqji_weights_data(w, (i))
    const size_t ND = N * (size_t)D;
    float *h0 = L > 0 ? ws->acts[0].h : vqji_tensor_data(out);
    vqji_linear_forward(dev, n, F, D, ws->x, W(e->fc1_w), W(e->fc1_b), ws->pre1);
    op->gelu_forward(dev, ND, ws->pre1, ws->act1);
    vqji_linear_forward(dev, n, D, D, ws->act1, W(e->fc2_w), W(e->fc2_b), h0);
    for (int l = 0; l < L; l++) {
        const block_idx *b = &e->blk[l];
        block_acts *a = &ws->acts[l];
        /* The last block writes straight into `out`: its output is not
         * needed by the backward pass. */
        float *next = l + 1 < L ? ws->acts[l + 1].h : vqji_tensor_data(out);
        op->layernorm_forward(dev, n, D, a->h, W(b->ln1_w), W(b->ln1_b), LN_EPS, a->a,
                              a->mean1, a->rstd1);
        vqji_linear_forward(dev, n, D, 3 * D, a->a, W(b->qkv_w), W(b->qkv_b), a->qkv);
        op->attention_forward(dev, (int)G, ws->offsets, ws->adj, ws->adj_offsets, D,
                              e->p.relational_heads, a->qkv, a->o, a->probs);
        vqji_linear_forward(dev, n, D, D, a->o, W(b->out_w), W(b->out_b), ws->tmp);
        if (dropout)
            op->dropout_forward(dev, ND, p, vqji_dropout_seed(dseed, step, 2u * l),
                                ws->tmp, ws->tmp, a->mask1);
        op->copy(dev, a->mid, a->h, ND * sizeof(float));
        op->axpy(dev, ND, 1.0f, ws->tmp, a->mid);
        op->layernorm_forward(dev, n, D, a->mid, W(b->ln2_w), W(b->ln2_b), LN_EPS, a->f,
                              a->mean2, a->rstd2);
        vqji_linear_forward(dev, n, D, 2 * D, a->f, W(b->fc1_w), W(b->fc1_b), a->u);
        op->gelu_forward(dev, 2 * ND, a->u, a->gu);
        vqji_linear_forward(dev, n, 2 * D, D, a->gu, W(b->fc2_w), W(b->fc2_b), ws->tmp);
        if (dropout)
            op->dropout_forward(dev, ND, p,
                                vqji_dropout_seed(dseed, step, 2u * l + 1u), ws->tmp,
                                ws->tmp, a->mask2);
        /* Without `keep`, next is a->h: h was last read by the copy above. */
        op->copy(dev, next, a->mid, ND * sizeof(float));
        op->axpy(dev, ND, 1.0f, ws->tmp, next);
    }
#undef W
    st = op->sync(dev);
    if (st)
        return st;
    ws->have_forward = 1;
    return VQJ_OK;
}

vqj_status vqj_encoder_forward(vqj_encoder *e, const vqj_tokens *tokens, int training,
                               vqj_tensor *out)
{
    if (!e || !tokens || !out)
        return vqji_fail(e ? e->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_forward: NULL argument");
    return forward_ws(e, &e->ws, tokens, training, &e->step, out);
}

vqj_status vqji_encoder_forward_ws(const vqj_encoder *e, vqji_encoder_ws *ws,
                                   const vqj_tokens *tokens, vqj_tensor *out)
{
    if (!e || !ws)
        return vqji_fail(e ? e->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_forward: NULL argument");
    return forward_ws(e, ws, tokens, 0, NULL, out);
}

vqj_status vqj_encoder_backward(vqj_encoder *e, const vqj_tensor *dout, vqj_tensor *dfeatures)
{
    if (!e || !dout)
        return vqji_fail(e ? e->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_backward: NULL argument");
    vqj_context *ctx = e->ctx;
    vqji_clear_error(ctx);
    if (!e->ws.have_forward)
        return vqji_fail(ctx, VQJ_ERR_STATE,
                         "vqj_encoder_backward: no forward pass to differentiate (call "
                         "vqj_encoder_forward first)");
    const int F = e->p.feature_dim, D = e->p.hidden_dim, L = e->p.relational_layers;
    const int n = e->ws.num_tokens;
    if (!vqji_same_context(dout->ctx, ctx) ||
        (dfeatures && !vqji_same_context(dfeatures->ctx, ctx)))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_backward: tensors must come from the encoder's context");
    if (dout->rows != n || dout->cols != D)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_backward: dout is %d x %d but the last forward produced "
                         "%d x %d",
                         dout->rows, dout->cols, n, D);
    if (dfeatures && (dfeatures->rows != n || dfeatures->cols != F))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_encoder_backward: dfeatures is %d x %d but the last forward had "
                         "%d x %d input features",
                         dfeatures->rows, dfeatures->cols, n, F);
    if (n == 0)
        return VQJ_OK;
    vqji_device *dev = ctx->device;
    const vqji_device_ops *op = dev->ops;
    if (!e->scratch || (size_t)n > e->scratch_tokens) {
        size_t cap = e->ws.arena_tokens; /* the forward's capacity: grow once */
        vqj_status st = vqji_device_reserve(dev, &e->scratch, &e->scratch_cap,
                                           layout_scratch(e, NULL, cap));
        if (st)
            return st;
        e->scratch_tokens = cap;
    }
    layout_scratch(e, e->scratch, e->scratch_tokens);

    const vqj_weights *w = &e->w;
#define W(i) vqji_weights_data(w, (i))
#define GR(i) vqji_weights_grad(w, (i))
    const size_t ND = (size_t)n * (size_t)D;
    const size_t bytes = ND * sizeof(float);
    float *g = e->g;
    op->copy(dev, g, vqji_tensor_data((vqj_tensor *)dout), bytes);
    for (int l = L - 1; l >= 0; l--) {
        const block_idx *b = &e->blk[l];
        const block_acts *a = &e->ws.acts[l];
        /* g holds d(block output). Every branch accumulates into g through
         * its layer norm, which turns it into d(block input): the residual
         * needs no explicit add. */
        const float *dy = g;
        if (e->ws.dropout_on) {
            op->fill(dev, ND, 0.0f, e->s1a);
            op->dropout_backward(dev, ND, a->mask2, g, e->s1a);
            dy = e->s1a;
        }
        op->fill(dev, 2 * ND, 0.0f, e->s2);
        vqji_linear_backward(dev, n, 2 * D, D, a->gu, W(b->fc2_w), dy, e->s2, GR(b->fc2_w),
                             GR(b->fc2_b));
        op->fill(dev, 2 * ND, 0.0f, e->s3);
        op->gelu_backward(dev, 2 * ND, a->u, e->s2, e->s3);
        op->fill(dev, ND, 0.0f, e->s1b);
        vqji_linear_backward(dev, n, D, 2 * D, a->f, W(b->fc1_w), e->s3, e->s1b, GR(b->fc1_w),
                             GR(b->fc1_b));
        op->layernorm_backward(dev, n, D, e->s1b, a->mid, W(b->ln2_w), a->mean2, a->rstd2, g,
                               GR(b->ln2_w), GR(b->ln2_b));
        /* Attention branch: g is now d(mid). */
        dy = g;
        if (e->ws.dropout_on) {
            op->fill(dev, ND, 0.0f, e->s1a);
            op->dropout_backward(dev, ND, a->mask1, g, e->s1a);
            dy = e->s1a;
        }
        op->fill(dev, ND, 0.0f, e->s1b);
        vqji_linear_backward(dev, n, D, D, a->o, W(b->out_w), dy, e->s1b, GR(b->out_w),
                             GR(b->out_b));
        op->fill(dev, 3 * ND, 0.0f, e->s3);
        op->attention_backward(dev, e->ws.num_grids, e->ws.offsets, e->ws.adj, e->ws.adj_offsets, D,
                               e->p.relational_heads, a->qkv, a->probs, e->s1b, e->s3);
        op->fill(dev, ND, 0.0f, e->s1a);
        vqji_linear_backward(dev, n, D, 3 * D, a->a, W(b->qkv_w), e->s3, e->s1a, GR(b->qkv_w),
                             GR(b->qkv_b));
        op->layernorm_backward(dev, n, D, e->s1a, a->h, W(b->ln1_w), a->mean1, a->rstd1, g,
                               GR(b->ln1_w), GR(b->ln1_b));
    }
    /* Feature MLP: g is d(h0). */
    op->fill(dev, ND, 0.0f, e->s1a);
    vqji_linear_backward(dev, n, D, D, e->ws.act1, W(e->fc2_w), g, e->s1a, GR(e->fc2_w),
                         GR(e->fc2_b));
    op->fill(dev, ND, 0.0f, e->s1b);
    op->gelu_backward(dev, ND, e->ws.pre1, e->s1a, e->s1b);
    vqji_linear_backward(dev, n, F, D, e->ws.x, W(e->fc1_w), e->s1b,
                         dfeatures ? vqji_tensor_data(dfeatures) : NULL, GR(e->fc1_w),
                         GR(e->fc1_b));
#undef W
#undef GR
    return op->sync(dev);
}
