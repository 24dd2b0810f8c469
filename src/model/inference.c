/* Inference for agents (vqj_model): grids -> object codes and embeddings,
 * context grids -> predicted target embedding, over borrowed, trained
 * handles, callable from many threads at once.
 *
 * Every call borrows a workspace (token batch, activation buffers, tensors,
 * host staging) from a pool in the model and gives it back when done, so
 * concurrent calls never share a buffer and the handles are only read
 * (model/workspace.h). The pool's mutex is held only to pop or push a
 * workspace; the computation itself runs unlocked on the CPU device. Other
 * devices queue every op on one stream with one error state, so there the
 * model runs one call at a time. */
#include "core/core.h"
#include "core/params.h"
#include "device/tensor.h"
#include "model/codebook.h"
#include "model/encoder.h"
#include "model/predictor.h"
#include "model/workspace.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything one call writes. */
typedef struct model_ws {
    struct model_ws *next; /* the pool's free list */
    vqj_tokens *tokens;
    vqji_encoder_ws *enc, *tenc;   /* tenc: only with a distinct target encoder */
    vqji_codebook_ws *cb;
    vqji_predictor_ws *pred, *tpred; /* tpred: only with a distinct target predictor */
    vqj_tensor *z, *q, *y;
    int32_t *codes; /* host, one per object of the batch */
    size_t codes_cap;
    int32_t *lcodes; /* host, [objects x L] per-level codes */
    size_t lcodes_cap;
    float *emb; /* host, rows x P */
    size_t emb_cap;
} model_ws;

struct vqj_model {
    vqj_context *ctx;
    vqj_tokenizer_params tp;
    const vqj_encoder *enc, *tenc; /* tenc NULL: the online encoder embeds grids */
    const vqj_codebook *cb;
    const vqj_predictor *pred, *tpred; /* tpred NULL: the online predictor */
    int P, T, K;
    int serialize; /* not the CPU device: one call at a time */
    pthread_mutex_t pool_lock;
    pthread_mutex_t run_lock; /* held for a whole call when serialize is set */
    model_ws *pool;
    /* vqji_model_adopt(): handles the model owns (vqj_model_load()). */
    vqj_encoder *own_enc, *own_tenc;
    vqj_codebook *own_cb;
    vqj_predictor *own_pred, *own_tpred;
};

static void ws_destroy(model_ws *ws)
{
    if (!ws)
        return;
    vqj_tokens_destroy(ws->tokens);
    vqji_encoder_ws_destroy(ws->enc);
    vqji_encoder_ws_destroy(ws->tenc);
    vqji_codebook_ws_destroy(ws->cb);
    vqji_predictor_ws_destroy(ws->pred);
    vqji_predictor_ws_destroy(ws->tpred);
    vqj_tensor_destroy(ws->z);
    vqj_tensor_destroy(ws->q);
    vqj_tensor_destroy(ws->y);
    free(ws->codes);
    free(ws->lcodes);
    free(ws->emb);
    free(ws);
}

static vqj_status ws_create(const vqj_model *m, model_ws **out)
{
    model_ws *ws;
    vqj_status st = vqji_calloc(m->ctx, 1, sizeof *ws, "an inference workspace", (void **)&ws);
    if (st)
        return st;
    if ((st = vqj_tokens_create(m->ctx, &m->tp, &ws->tokens)) ||
        (st = vqji_encoder_ws_create(m->enc, &ws->enc)) ||
        (m->tenc && (st = vqji_encoder_ws_create(m->tenc, &ws->tenc))) ||
        (st = vqji_codebook_ws_create(m->cb, &ws->cb)) ||
        (st = vqji_predictor_ws_create(m->pred, &ws->pred)) ||
        (m->tpred && (st = vqji_predictor_ws_create(m->tpred, &ws->tpred))) ||
        (st = vqj_tensor_create(m->ctx, 0, 0, &ws->z)) ||
        (st = vqj_tensor_create(m->ctx, 0, 0, &ws->q)) ||
        (st = vqj_tensor_create(m->ctx, 0, 0, &ws->y))) {
        ws_destroy(ws);
        return st;
    }
    *out = ws;
    return VQJ_OK;
}

/* Take a workspace from the pool, or make one when every workspace is in
 * use (the pool grows to the peak number of concurrent calls). */
static vqj_status acquire(vqj_model *m, model_ws **out)
{
    if (m->serialize)
        pthread_mutex_lock(&m->run_lock);
    pthread_mutex_lock(&m->pool_lock);
    model_ws *ws = m->pool;
    if (ws)
        m->pool = ws->next;
    pthread_mutex_unlock(&m->pool_lock);
    vqj_status st = ws ? VQJ_OK : ws_create(m, &ws);
    if (st) {
        if (m->serialize)
            pthread_mutex_unlock(&m->run_lock);
        return st;
    }
    ws->next = NULL;
    *out = ws;
    return VQJ_OK;
}

static void release(vqj_model *m, model_ws *ws)
{
    pthread_mutex_lock(&m->pool_lock);
    ws->next = m->pool;
    m->pool = ws;
    pthread_mutex_unlock(&m->pool_lock);
    if (m->serialize)
        pthread_mutex_unlock(&m->run_lock);
}

/* Prefix the calling thread's message of a failed inner call with the
 * public function's name. The message is copied first: it lives in the
 * buffer vqji_fail writes. */
static vqj_status rewrap(const vqj_context *ctx, vqj_status st, const char *fn)
{
    char message[VQJI_ERROR_MAX];
    snprintf(message, sizeof message, "%s", vqj_last_error());
    return vqji_fail(ctx, st, "%s: %s", fn, message);
}

vqj_status vqj_model_create(vqj_context *ctx, const vqj_tokenizer_params *tokenizer,
                            vqj_encoder *encoder, vqj_codebook *codebook,
                            vqj_predictor *predictor, vqj_encoder *target_encoder,
                            vqj_predictor *target_predictor, vqj_model **out)
{
    const char *fn = "vqj_model_create";
    if (!ctx || !encoder || !codebook || !predictor || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: NULL %s", fn,
                         !ctx         ? "context"
                         : !encoder   ? "encoder"
                         : !codebook  ? "codebook"
                         : !predictor ? "predictor"
                                      : "out");
    vqji_clear_error(ctx);
    if (target_encoder == encoder)
        target_encoder = NULL;
    if (target_predictor == predictor)
        target_predictor = NULL;
    if (!vqji_same_context(vqji_encoder_context(encoder), ctx) ||
        !vqji_same_context(vqji_codebook_context(codebook), ctx) ||
        !vqji_same_context(vqji_predictor_context(predictor), ctx) ||
        (target_encoder && !vqji_same_context(vqji_encoder_context(target_encoder), ctx)) ||
        (target_predictor && !vqji_same_context(vqji_predictor_context(target_predictor), ctx)))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: a handle of another context; every handle must come "
                         "from the model's context",
                         fn);

    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_status st;
    if (tokenizer &&
        (st = vqji_params_copy(ctx, &tp, sizeof tp, tokenizer, VQJI_V1_TOKENIZER_PARAMS,
                              "vqj_tokenizer_params")))
        return st;
    const vqj_encoder_params *ep = vqji_encoder_params(encoder);
    const vqj_codebook_params *cp = vqji_codebook_params(codebook);
    const vqj_predictor_params *pp = vqji_predictor_params(predictor);
    const int F = vqj_tokenizer_feature_dim(&tp), D = ep->hidden_dim;
    if (ep->feature_dim != F)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the tokenizer gives %d features per object (max_color_features "
                         "%d) but the encoder's feature_dim is %d",
                         fn, F, tp.max_color_features, ep->feature_dim);
    if (cp->dim != D)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the codebook's dim %d differs from the encoder's hidden_dim %d", fn,
                         cp->dim, D);
    if (pp->hidden_dim != D)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the predictor's hidden_dim %d differs from the encoder's %d", fn,
                         pp->hidden_dim, D);
    if (target_encoder) {
        const vqj_encoder_params *tep = vqji_encoder_params(target_encoder);
        if (tep->feature_dim != F || tep->hidden_dim != D)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: the target encoder has feature_dim %d and hidden_dim %d; the "
                             "encoder has %d and %d",
                             fn, tep->feature_dim, tep->hidden_dim, F, D);
    }
    if (target_predictor) {
        const vqj_predictor_params *tpp = vqji_predictor_params(target_predictor);
        if (tpp->hidden_dim != D || tpp->projection_dim != pp->projection_dim)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: the target predictor has hidden_dim %d and projection_dim %d; "
                             "the predictor has %d and %d",
                             fn, tpp->hidden_dim, tpp->projection_dim, D, pp->projection_dim);
    }

    vqj_model *m;
    if ((st = vqji_calloc(ctx, 1, sizeof *m, "an inference model", (void **)&m)))
        return st;
    m->ctx = ctx;
    m->tp = tp;
    m->enc = encoder;
    m->tenc = target_encoder;
    m->cb = codebook;
    m->pred = predictor;
    m->tpred = target_predictor;
    m->P = pp->projection_dim;
    m->T = pp->context_window;
    m->K = cp->num_embeddings;
    m->serialize = ctx->params.device != VQJ_DEVICE_CPU;
    if (pthread_mutex_init(&m->pool_lock, NULL)) {
        free(m);
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "%s: cannot create a mutex", fn);
    }
    if (pthread_mutex_init(&m->run_lock, NULL)) {
        pthread_mutex_destroy(&m->pool_lock);
        free(m);
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "%s: cannot create a mutex", fn);
    }
    /* One workspace up front: it checks the tokenizer params, and a
     * single-threaded caller never allocates one during a call. */
    if ((st = ws_create(m, &m->pool))) {
        vqj_model_destroy(m);
        return st;
    }
    *out = m;
    return VQJ_OK;
}

void vqj_model_destroy(vqj_model *m)
{
    if (!m)
        return;
    while (m->pool) {
        model_ws *next = m->pool->next;
        ws_destroy(m->pool);
        m->pool = next;
    }
    pthread_mutex_destroy(&m->pool_lock);
    pthread_mutex_destroy(&m->run_lock);
    vqj_encoder_destroy(m->own_enc);
    vqj_encoder_destroy(m->own_tenc);
    vqj_codebook_destroy(m->own_cb);
    vqj_predictor_destroy(m->own_pred);
    vqj_predictor_destroy(m->own_tpred);
    free(m);
}

void vqji_model_adopt(vqj_model *m, vqj_encoder *encoder, vqj_codebook *codebook,
                      vqj_predictor *predictor, vqj_encoder *target_encoder,
                      vqj_predictor *target_predictor)
{
    m->own_enc = encoder;
    m->own_cb = codebook;
    m->own_pred = predictor;
    m->own_tenc = target_encoder;
    m->own_tpred = target_predictor;
}

vqj_status vqj_model_tokenizer_params(const vqj_model *m, vqj_tokenizer_params *out)
{
    if (!m || !out)
        return vqji_fail(m ? m->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_model_tokenizer_params: NULL argument");
    vqji_clear_error(m->ctx);
    const size_t size = out->size;
    if (size < sizeof size)
        return vqji_fail(m->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_model_tokenizer_params: out->size is %zu; fill the struct with "
                         "vqj_tokenizer_params_default() first",
                         size);
    memcpy(out, &m->tp, size < sizeof m->tp ? size : sizeof m->tp);
    out->size = size;
    return VQJ_OK;
}

vqj_status vqj_model_with_tokenizer(const vqj_model *m, const vqj_tokenizer_params *tokenizer,
                                    vqj_model **out)
{
    if (!m || !tokenizer || !out)
        return vqji_fail(m ? m->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_model_with_tokenizer: NULL argument");
    return vqj_model_create(m->ctx, tokenizer, (vqj_encoder *)m->enc, (vqj_codebook *)m->cb,
                            (vqj_predictor *)m->pred, (vqj_encoder *)m->tenc,
                            (vqj_predictor *)m->tpred, out);
}

int vqj_model_embedding_dim(const vqj_model *m) { return m ? m->P : 0; }
int vqj_model_max_objects(const vqj_model *m) { return m ? m->tp.max_objects : 0; }
int vqj_model_context_window(const vqj_model *m) { return m ? m->T : 0; }
int vqj_model_num_codes(const vqj_model *m) { return m ? m->K : 0; }
int vqj_model_num_quantizers(const vqj_model *m) { return m ? vqji_codebook_levels(m->cb) : 0; }

/* Grow the host staging buffers for n objects and `rows` embeddings. */
static vqj_status reserve_host(const vqj_model *m, model_ws *ws, size_t n, size_t rows)
{
    size_t bytes;
    vqj_status st = vqji_reserve(m->ctx, (void **)&ws->codes, &ws->codes_cap,
                                 (n ? n : 1) * sizeof(int32_t), "inference codes");
    if (!st && !vqji_mul_size(rows ? rows : 1, (size_t)m->P * sizeof(float), &bytes))
        st = vqji_fail(m->ctx, VQJ_ERR_OUT_OF_MEMORY, "inference embeddings overflow");
    if (!st)
        st = vqji_reserve(m->ctx, (void **)&ws->emb, &ws->emb_cap, bytes, "inference embeddings");
    return st;
}

/* Tokenize the batch and size the host buffers. */
static vqj_status tokenize(const vqj_model *m, model_ws *ws, const vqj_grid *grids, size_t n,
                           size_t rows)
{
    vqj_status st = vqj_tokenize(m->ctx, ws->tokens, grids, n);
    if (st)
        return st;
    return reserve_host(m, ws, vqj_tokens_num_objects(ws->tokens), rows);
}

/* The online encoder and the codebook: ws->q, and codes into ws->codes when
 * `codes` is set. */
static vqj_status online(const vqj_model *m, model_ws *ws, int codes)
{
    vqj_status st = vqji_encoder_forward_ws(m->enc, ws->enc, ws->tokens, ws->z);
    if (!st)
        st = vqji_codebook_quantize_ws(m->cb, ws->cb, ws->z, ws->q, codes ? ws->codes : NULL,
                                       NULL);
    return st;
}

/* What the predictor reads: q, or z with codes beside the forward path. */
static const vqj_tensor *token_vectors(const vqj_model *m, const model_ws *ws)
{
    return vqji_predictor_params(m->pred)->vq_path == VQJ_VQ_BESIDE ? ws->z : ws->q;
}

/* The rows of ws->y into ws->emb. */
static vqj_status download(const vqj_model *m, model_ws *ws)
{
    size_t count = (size_t)vqj_tensor_rows(ws->y) * (size_t)m->P;
    return vqj_tensor_read(ws->y, ws->emb, count);
}

static vqj_status encode(const vqj_model *m, model_ws *ws, const vqj_grid *grids, size_t n,
                         int32_t *codes, size_t *num_objects, float *embeddings)
{
    vqj_status st = tokenize(m, ws, grids, n, n);
    if (st)
        return st;
    /* With a target encoder, embeddings alone need no online pass. */
    const int need_online = codes || (embeddings && !m->tenc);
    if (need_online && (st = online(m, ws, codes != NULL)))
        return st;
    if (embeddings) {
        if (m->tenc) {
            /* Like the trainer's target path: the target encoder and the
             * online codebook, which it does not update. */
            st = vqji_encoder_forward_ws(m->tenc, ws->tenc, ws->tokens, ws->z);
            if (!st)
                st = vqji_codebook_quantize_ws(m->cb, ws->cb, ws->z, ws->q, NULL, NULL);
            if (st)
                return st;
        }
        const vqj_tensor *tv = token_vectors(m, ws);
        st = m->tpred ? vqji_predictor_forward_grids_ws(m->tpred, ws->tpred, ws->tokens, tv,
                                                        ws->y)
                      : vqji_predictor_forward_grids_ws(m->pred, ws->pred, ws->tokens, tv,
                                                        ws->y);
        if (!st)
            st = download(m, ws);
        if (st)
            return st;
    }
    /* Only now, with everything computed, are the caller's buffers written. */
    const int32_t *off = vqj_tokens_offsets(ws->tokens);
    const size_t M = (size_t)m->tp.max_objects;
    for (size_t g = 0; g < n; g++) {
        size_t first = (size_t)off[g], count = (size_t)(off[g + 1] - off[g]);
        if (num_objects)
            num_objects[g] = count;
        if (codes) {
            int32_t *row = codes + g * M;
            memcpy(row, ws->codes + first, count * sizeof *row);
            for (size_t i = count; i < M; i++)
                row[i] = -1;
        }
    }
    if (embeddings)
        memcpy(embeddings, ws->emb, n * (size_t)m->P * sizeof *embeddings);
    return VQJ_OK;
}

static vqj_status predict(const vqj_model *m, model_ws *ws, const vqj_grid *context, size_t batch,
                          float *embeddings)
{
    vqj_status st = tokenize(m, ws, context, batch * (size_t)m->T, batch);
    if (!st)
        st = online(m, ws, 0);
    if (!st)
        st = vqji_predictor_forward_context_ws(m->pred, ws->pred, ws->tokens,
                                               token_vectors(m, ws), ws->y);
    if (!st)
        st = download(m, ws);
    if (st)
        return st;
    memcpy(embeddings, ws->emb, batch * (size_t)m->P * sizeof *embeddings);
    return VQJ_OK;
}

/* Batches larger than this are refused up front: every count of the batch
 * must stay an int for the device ops. */
#define MAX_BATCH_GRIDS ((size_t)1 << 24)

static vqj_status run_encode(const vqj_model *cm, const vqj_grid *grids, size_t n,
                             int32_t *codes, size_t *num_objects, float *embeddings,
                             const char *fn)
{
    if (!cm)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
    vqj_model *m = (vqj_model *)cm; /* only the pool and its locks change */
    vqji_clear_error(m->ctx);
    if (n == 0)
        return VQJ_OK;
    if (!grids)
        return vqji_fail(m->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: grids is NULL", fn);
    if (n > MAX_BATCH_GRIDS)
        return vqji_fail(m->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: %zu grids in one call; at most %zu", fn, n, MAX_BATCH_GRIDS);
    model_ws *ws;
    vqj_status st = acquire(m, &ws);
    if (st)
        return rewrap(m->ctx, st, fn);
    st = encode(m, ws, grids, n, codes, num_objects, embeddings);
    release(m, ws);
    return st ? rewrap(m->ctx, st, fn) : VQJ_OK;
}

vqj_status vqj_model_encode_grid(const vqj_model *model, const vqj_grid *grid, int32_t *codes,
                                 size_t *num_objects, float *embedding)
{
    const char *fn = "vqj_model_encode_grid";
    if (model && !grid)
        return vqji_fail(model->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: grid is NULL", fn);
    return run_encode(model, grid, 1, codes, num_objects, embedding, fn);
}

vqj_status vqj_model_encode_grids(const vqj_model *model, const vqj_grid *grids,
                                  size_t num_grids, int32_t *codes, size_t *num_objects,
                                  float *embeddings)
{
    return run_encode(model, grids, num_grids, codes, num_objects, embeddings,
                      "vqj_model_encode_grids");
}

/* The mixed-radix index of one object's level codes c_1..c_L (c_1 most
 * significant): sum_l c_l K^(L-l); -1 for every object when K^L - 1, the
 * largest index, exceeds INT64_MAX. */
static int64_t mixed_radix(const int32_t *c, int nlev, int k)
{
    uint64_t codes = 1; /* K^L, while it stays <= 2^63 */
    for (int l = 0; l < nlev; l++) {
        if (codes > ((uint64_t)1 << 63) / (uint64_t)k)
            return -1;
        codes *= (uint64_t)k;
    }
    int64_t index = 0;
    for (int l = 0; l < nlev; l++)
        index = index * k + c[l];
    return index;
}

vqj_status vqj_model_encode_grid_levels(const vqj_model *model, const vqj_grid *grid,
                                        int64_t *codes, int32_t *level_codes,
                                        size_t *num_objects)
{
    const char *fn = "vqj_model_encode_grid_levels";
    if (!model)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
    if (!grid)
        return vqji_fail(model->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: grid is NULL", fn);
    vqj_model *m = (vqj_model *)model; /* only the pool and its locks change */
    vqji_clear_error(m->ctx);
    model_ws *ws;
    vqj_status st = acquire(m, &ws);
    if (st)
        return rewrap(m->ctx, st, fn);
    const int nlev = vqji_codebook_levels(m->cb);
    size_t n = 0;
    if (!(st = tokenize(m, ws, grid, 1, 1)) && !(st = online(m, ws, 1))) {
        n = (size_t)vqj_tokens_num_objects(ws->tokens);
        st = vqji_reserve(m->ctx, (void **)&ws->lcodes, &ws->lcodes_cap,
                          (n ? n : 1) * nlev * sizeof(int32_t), "level codes");
    }
    if (!st)
        st = vqji_codebook_ws_level_codes(ws->cb, (int)n, ws->lcodes);
    if (!st) {
        const size_t M = (size_t)m->tp.max_objects;
        const int enabled = vqji_codebook_params(m->cb)->enabled;
        for (size_t i = 0; i < M; i++) {
            const int32_t *c = ws->lcodes + i * nlev;
            if (codes)
                codes[i] = i < n && enabled ? mixed_radix(c, nlev, m->K) : -1;
            for (int l = 0; level_codes && l < nlev; l++)
                level_codes[i * nlev + l] = i < n ? c[l] : -1;
        }
        if (num_objects)
            *num_objects = n;
    }
    release(m, ws);
    return st ? rewrap(m->ctx, st, fn) : VQJ_OK;
}

static vqj_status run_predict(const vqj_model *cm, const vqj_grid *context, size_t batch,
                              float *embeddings, const char *fn)
{
    if (!cm)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
    vqj_model *m = (vqj_model *)cm; /* only the pool and its locks change */
    vqji_clear_error(m->ctx);
    if (batch == 0)
        return VQJ_OK;
    if (!context || !embeddings)
        return vqji_fail(m->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                         context ? "embedding" : "context");
    if (batch > MAX_BATCH_GRIDS / (size_t)m->T)
        return vqji_fail(m->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: %zu examples in one call; at most %zu", fn, batch,
                         MAX_BATCH_GRIDS / (size_t)m->T);
    model_ws *ws;
    vqj_status st = acquire(m, &ws);
    if (st)
        return rewrap(m->ctx, st, fn);
    st = predict(m, ws, context, batch, embeddings);
    release(m, ws);
    return st ? rewrap(m->ctx, st, fn) : VQJ_OK;
}

vqj_status vqj_model_predict(const vqj_model *model, const vqj_grid *context, size_t num_grids,
                             float *embedding)
{
    const char *fn = "vqj_model_predict";
    if (model && num_grids != (size_t)model->T)
        return vqji_fail(model->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: %zu context grids given; the predictor's context_window is %d", fn,
                         num_grids, model->T);
    return run_predict(model, context, 1, embedding, fn);
}

vqj_status vqj_model_predict_batch(const vqj_model *model, const vqj_grid *context,
                                   size_t batch, float *embeddings)
{
    return run_predict(model, context, batch, embeddings, "vqj_model_predict_batch");
}

vqj_status vqj_latent_distance(const float *a, const float *b, int dim, float *out)
{
    const char *fn = "vqj_latent_distance";
    vqji_clear_error(NULL);
    if (!a || !b || !out)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                         !a ? "a" : !b ? "b" : "out");
    if (dim < 1)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: dim is %d; it must be >= 1", fn,
                         dim);
    /* Double accumulation: the result is exact to float rounding, and
     * exactly 0 for equal inputs and exactly symmetric. */
    double na = 0.0, nb = 0.0;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i]))
            return vqji_fail(NULL, VQJ_ERR_NUMERIC, "%s: %s[%d] is %s", fn,
                             isfinite(a[i]) ? "b" : "a", i,
                             isnan(isfinite(a[i]) ? b[i] : a[i]) ? "NaN" : "infinite");
        na += (double)a[i] * (double)a[i];
        nb += (double)b[i] * (double)b[i];
    }
    /* As the predictor's L2 normalization: a zero vector stays zero. */
    const double ia = 1.0 / fmax(sqrt(na), 1e-12), ib = 1.0 / fmax(sqrt(nb), 1e-12);
    double s = 0.0;
    for (int i = 0; i < dim; i++) {
        double d = (double)a[i] * ia - (double)b[i] * ib;
        s += d * d;
    }
    *out = (float)s;
    return VQJ_OK;
}

vqj_context *vqji_model_context(const vqj_model *m) { return m->ctx; }
const vqj_tokenizer_params *vqji_model_tokenizer(const vqj_model *m) { return &m->tp; }
