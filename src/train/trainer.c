/* The one-call training step (include/vqjepa.h, "Trainer"). It is built
 * from the public stage calls, in the order the header lists, so a host
 * program driving the stages itself computes exactly the same thing. */
#include "comm/comm.h"
#include "core/params.h"
#include "device/tensor.h"
#include "loss/loss.h"
#include "model/codebook.h"
#include "model/encoder.h"
#include "model/predictor.h"
#include "model/tokens.h"
#include "model/workspace.h"
#include "train/trainer.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* One invariance view kind's scratch: its grids' cells and tokens. */
typedef struct view_buffers {
    vqj_tokens *context, *target;
} view_buffers;

struct vqj_trainer {
    vqj_context *ctx;
    vqj_trainer_params p;
    vqj_encoder *encoder;
    vqj_codebook *codebook;
    vqj_predictor *predictor;
    vqj_loss *loss;
    vqj_optimizer *optimizer;
    vqj_encoder *target_encoder;     /* owned; NULL without a target network */
    vqj_predictor *target_predictor; /* owned; NULL without a target network */
    int window;                      /* T */
    vqj_context *own_ctx; /* vqji_trainer_adopt(): the handles and their context are owned */
    char *config_yaml;    /* vqji_trainer_adopt(): the configuration it was built from */

    vqj_tokens *context_tokens, *target_tokens; /* from grids */
    vqj_tokens *dropped; /* the context after object dropout */
    view_buffers view;
    uint8_t *cells; /* view grids' cells */
    size_t cells_cap;
    vqj_grid *grids; /* view grids */
    size_t grids_cap;

    /* Activations and gradients of a step. */
    vqj_tensor *z, *q, *c, *dc, *dq, *dz;
    vqj_tensor *zt, *qt, *t;
    vqj_tensor *zv, *qv, *dqv; /* a view's pass */
    vqji_encoder_ws *view_ws;  /* the views' encoder passes, beside the main pass's */
    vqj_tensor *pending; /* the cycle's target projections, pushed at its end */
    uint64_t *pending_ids; /* host: their target grids' ids (InfoNCE's duplicate mask) */
    size_t pending_ids_cap;

    vqj_tensor *codebook_copy; /* a copy of the codebook's tensors */
    int32_t *codes;       /* host: the online context tokens' codes of the last step */
    size_t codes_cap, num_codes;
    int32_t *target_codes; /* host: the target tokens' codes of the last step */
    size_t target_codes_cap, num_target_codes;
    int64_t micro_step;
    int64_t cycle_start; /* micro_step at the start of this accumulation cycle */

    /* Data-parallel (docs/distributed.md): this rank's examples of the
     * global batch, the ranks' example counts (rows, then rows x P), and the
     * global batch's projections, gradients, grid ids and codes. */
    int dist;            /* the context's communicator has size > 1 */
    int64_t first, total; /* this rank's first example; the global batch */
    int64_t *shard;      /* host [2 x size] */
    size_t shard_cap;
    vqj_tensor *gc, *gt, *gdc, *gpv, *gdpv;
    uint64_t *gids;
    size_t gids_cap;
};

void vqj_trainer_params_default(vqj_trainer_params *params)
{
    if (!params)
        return;
    memset(params, 0, sizeof *params);
    params->size = sizeof *params;
    params->grad_accum_steps = 2;
    params->target_ema_decay = 0.99f;
    params->use_target_encoder = 1;
    params->translation_max_delta = 0.1f;
    params->symmetry_modes = 3;
    params->background = 1;
    params->ema_update_passes = VQJ_EMA_PASSES_ALL_ONLINE;
}

static vqj_status check_params(const vqj_context *ctx, const vqj_trainer_params *p)
{
    const char *fn = "vqj_trainer_create";
    if (p->grad_accum_steps < VQJI_LO_GRAD_ACCUM_STEPS ||
        p->grad_accum_steps > VQJI_HI_GRAD_ACCUM_STEPS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: grad_accum_steps is %d; it must be in %d..%d", fn,
                         p->grad_accum_steps, VQJI_LO_GRAD_ACCUM_STEPS, VQJI_HI_GRAD_ACCUM_STEPS);
    if (!(p->target_ema_decay >= 0.0f && p->target_ema_decay <= 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: target_ema_decay is %g; it must be in [0, 1]", fn,
                         (double)p->target_ema_decay);
    if (!(p->translation_max_delta >= 0.0f && p->translation_max_delta <= 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: translation_max_delta is %g; it must be in [0, 1]", fn,
                         (double)p->translation_max_delta);
    if (p->ema_update_passes != VQJ_EMA_PASSES_MAIN &&
        p->ema_update_passes != VQJ_EMA_PASSES_ALL_ONLINE)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: ema_update_passes is %d; use VQJ_EMA_PASSES_MAIN (0) or "
                         "VQJ_EMA_PASSES_ALL_ONLINE (1)",
                         fn, (int)p->ema_update_passes);
    if (!(p->object_dropout >= 0.0f && p->object_dropout < 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: object_dropout is %g; it must be in [0, 1)", fn,
                         (double)p->object_dropout);
    if (p->symmetry_modes < 0 || p->symmetry_modes > 3)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: symmetry_modes is %d; use bit 0 (horizontal) and bit 1 (vertical)",
                         fn, p->symmetry_modes);
    return VQJ_OK;
}

void vqj_trainer_destroy(vqj_trainer *tr)
{
    if (!tr)
        return;
    vqj_encoder_destroy(tr->target_encoder);
    vqj_predictor_destroy(tr->target_predictor);
    vqj_tokens_destroy(tr->context_tokens);
    vqj_tokens_destroy(tr->target_tokens);
    vqj_tokens_destroy(tr->dropped);
    vqj_tokens_destroy(tr->view.context);
    vqj_tokens_destroy(tr->view.target);
    vqj_tensor *tensors[] = {tr->z,  tr->q,  tr->c,  tr->dc,  tr->dq,  tr->dz,
                             tr->zt, tr->qt, tr->t,  tr->zv,  tr->qv,  tr->dqv,
                             tr->pending, tr->codebook_copy};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        vqj_tensor_destroy(tensors[i]);
    vqji_encoder_ws_destroy(tr->view_ws);
    free(tr->cells);
    free(tr->grids);
    free(tr->codes);
    free(tr->target_codes);
    free(tr->pending_ids);
    vqj_tensor *global[] = {tr->gc, tr->gt, tr->gdc, tr->gpv, tr->gdpv};
    for (size_t i = 0; i < sizeof global / sizeof *global; i++)
        vqj_tensor_destroy(global[i]);
    free(tr->shard);
    free(tr->gids);
    /* last: the modules and tensors above live in the trainer's own context */
    if (tr->own_ctx) {
        vqj_optimizer_destroy(tr->optimizer);
        vqj_loss_destroy(tr->loss);
        vqj_predictor_destroy(tr->predictor);
        vqj_codebook_destroy(tr->codebook);
        vqj_encoder_destroy(tr->encoder);
        vqj_context_destroy(tr->own_ctx);
    }
    free(tr->config_yaml);
    free(tr);
}

/* The weights views of the online modules, in the order the optimizer and
 * the target copy use them. */
static vqj_status make_target(vqj_trainer *tr)
{
    vqj_status st = vqj_encoder_create(tr->ctx, vqji_encoder_params(tr->encoder),
                                       &tr->target_encoder);
    if (!st)
        st = vqj_predictor_create(tr->ctx, vqji_predictor_params(tr->predictor),
                                  &tr->target_predictor);
    /* decay 0: target = online. */
    if (!st)
        st = vqj_weights_ema(vqj_encoder_weights(tr->target_encoder),
                             vqj_encoder_weights(tr->encoder), 0.0f);
    if (!st)
        st = vqj_weights_ema(vqj_predictor_weights(tr->target_predictor),
                             vqj_predictor_weights(tr->predictor), 0.0f);
    return st;
}

vqj_status vqj_trainer_create(vqj_context *ctx, const vqj_trainer_params *params,
                              const vqj_tokenizer_params *tokenizer, vqj_encoder *encoder,
                              vqj_codebook *codebook, vqj_predictor *predictor, vqj_loss *loss,
                              vqj_optimizer *optimizer, vqj_trainer **out)
{
    const char *fn = "vqj_trainer_create";
    if (!ctx || !params || !encoder || !codebook || !predictor || !loss || !optimizer || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(ctx);
    vqj_trainer_params p;
    vqj_trainer_params_default(&p);
    vqj_status st = vqji_params_copy(ctx, &p, sizeof p, params, VQJI_V1_TRAINER_PARAMS,
                                     "vqj_trainer_params");
    if (st)
        return st;
    if ((st = check_params(ctx, &p)))
        return st;
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    if (tokenizer && (st = vqji_params_copy(ctx, &tp, sizeof tp, tokenizer,
                                            VQJI_V1_TOKENIZER_PARAMS, "vqj_tokenizer_params")))
        return st;

    const vqj_encoder_params *ep = vqji_encoder_params(encoder);
    const vqj_predictor_params *pp = vqji_predictor_params(predictor);
    const vqj_codebook_params *cp = vqji_codebook_params(codebook);
    if (ep->feature_dim != vqj_tokenizer_feature_dim(&tp))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the encoder takes %d features but the tokenizer makes %d", fn,
                         ep->feature_dim, vqj_tokenizer_feature_dim(&tp));
    if (ep->hidden_dim != pp->hidden_dim || ep->hidden_dim != cp->dim)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: hidden sizes differ: encoder %d, codebook %d, predictor %d", fn,
                         ep->hidden_dim, cp->dim, pp->hidden_dim);

    const vqj_loss_params *lp = vqji_loss_params(loss);
    if (lp->projection_dim != pp->projection_dim)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the loss takes projections of %d but the predictor makes %d", fn,
                         lp->projection_dim, pp->projection_dim);
    if (lp->max_objects < tp.max_objects)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: the loss's max_objects (%d) is below the tokenizer's (%d)", fn,
                         lp->max_objects, tp.max_objects);
    if (!vqji_same_context(vqj_encoder_weights(encoder)->ctx, ctx) ||
        !vqji_same_context(vqj_codebook_weights(codebook)->ctx, ctx) ||
        !vqji_same_context(vqj_predictor_weights(predictor)->ctx, ctx) ||
        !vqji_same_context(vqj_loss_weights(loss)->ctx, ctx))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: handles of another context", fn);

    vqj_trainer *tr;
    if ((st = vqji_calloc(ctx, 1, sizeof *tr, "the trainer", (void **)&tr)))
        return st;
    tr->ctx = ctx;
    tr->p = p;
    tr->encoder = encoder;
    tr->codebook = codebook;
    tr->predictor = predictor;
    tr->loss = loss;
    tr->optimizer = optimizer;
    tr->window = pp->context_window;

    vqj_tokens **tokens[] = {&tr->context_tokens, &tr->target_tokens, &tr->view.context,
                             &tr->view.target, &tr->dropped};
    for (size_t i = 0; !st && i < sizeof tokens / sizeof *tokens; i++)
        st = vqj_tokens_create(ctx, &tp, tokens[i]);
    vqj_tensor **tensors[] = {&tr->z,  &tr->q,  &tr->c,  &tr->dc,  &tr->dq,  &tr->dz,
                              &tr->zt, &tr->qt, &tr->t,  &tr->zv,  &tr->qv,  &tr->dqv,
                              &tr->pending, &tr->codebook_copy};
    for (size_t i = 0; !st && i < sizeof tensors / sizeof *tensors; i++)
        st = vqj_tensor_create(ctx, 0, 1, tensors[i]);
    vqj_tensor **global[] = {&tr->gc, &tr->gt, &tr->gdc, &tr->gpv, &tr->gdpv};
    for (size_t i = 0; !st && i < sizeof global / sizeof *global; i++)
        st = vqj_tensor_create(ctx, 0, 1, global[i]);
    if (!st && p.use_target_encoder)
        st = make_target(tr);
    if (!st)
        st = vqji_encoder_train_ws_create(encoder, &tr->view_ws);
    if (!st) /* sizes the copy now, so that a step does not allocate it */
        st = vqji_weights_save(vqj_codebook_weights(codebook), tr->codebook_copy);
    if (st) {
        vqj_trainer_destroy(tr);
        return st;
    }
    *out = tr;
    return VQJ_OK;
}

/* ---- the parts of a step ---- */

static vqj_status zero_like(vqj_tensor *t, const vqj_tensor *like)
{
    vqj_status st = vqj_tensor_reshape(t, vqj_tensor_rows(like), vqj_tensor_cols(like));
    if (!st)
        vqji_tensor_zero(t);
    return st;
}

/* With codes beside the forward path (vqj_vq_path), the predictor and the
 * relational loss read z, not q. */
static int beside(const vqj_trainer *tr)
{
    return vqji_predictor_params(tr->predictor)->vq_path == VQJ_VQ_BESIDE;
}

/* The target projections t [B x P]: no gradient, no dropout, codebook not
 * updated. Without a target network the online handles do it, which is why
 * this runs before the online forward (whose activations it would
 * overwrite). */
static vqj_status target_path(vqj_trainer *tr, const vqj_tokens *targets)
{
    tr->num_target_codes = 0;
    vqj_status rs = vqji_reserve(tr->ctx, (void **)&tr->target_codes, &tr->target_codes_cap,
                                 (targets->num_objects + 1) * sizeof *tr->target_codes,
                                 "code indices");
    if (rs)
        return rs;
    vqj_encoder *enc = tr->target_encoder ? tr->target_encoder : tr->encoder;
    vqj_predictor *pred = tr->target_predictor ? tr->target_predictor : tr->predictor;
    vqj_status st = vqj_encoder_forward(enc, targets, 0, tr->zt);
    /* The quantizer would turn a non-finite z into a finite (arbitrary)
     * code, hiding the fault from the loss: catch it here. */
    int32_t bad = !st && !vqji_tensor_all_finite(tr->zt);
    if (!st && tr->dist) /* every rank skips the step, or none */
        st = vqji_comm_allreduce_host(tr->ctx, &bad, 1, VQJ_COMM_INT32, VQJ_COMM_MAX);
    if (!st && bad)
        st = vqji_fail(tr->ctx, VQJ_ERR_NUMERIC, "the target encoder's output is not finite");
    if (!st)
        st = vqj_codebook_forward(tr->codebook, tr->zt, 0, tr->qt, tr->target_codes, NULL);
    if (!st)
        tr->num_target_codes = targets->num_objects;
    if (!st)
        st = vqj_predictor_forward_grids(pred, targets, beside(tr) ? tr->zt : tr->qt, tr->t);
    return st;
}

/* ---- data-parallel (docs/distributed.md) ----
 * Every rank is given the same global batch and trains on its share of
 * it: rank r takes examples [first, first + b_r), b_r = B/size (+1 for the
 * first B mod size ranks). The losses over the batch (InfoNCE with its
 * in-batch negatives, SIGReg, invariance) are computed on the gathered
 * projections, identically on every rank, and each rank keeps its rows of
 * the gradient; the shard gradients then sum to the global one. */

static vqj_status shard_of(vqj_trainer *tr, int batch)
{
    const int size = vqji_comm_size(tr->ctx), rank = vqji_comm_rank(tr->ctx);
    vqj_status st = vqji_reserve(tr->ctx, (void **)&tr->shard, &tr->shard_cap,
                                 2 * (size_t)size * sizeof *tr->shard, "the shard counts");
    int64_t total, first;
    if (!st) /* the ranks must agree on the batch */
        st = vqji_comm_counts(tr->ctx, batch, tr->shard, &total, &first);
    if (st)
        return st;
    for (int r = 1; r < size; r++)
        if (tr->shard[r] != tr->shard[0])
            return vqji_fail(tr->ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_trainer_step: rank %d passed a batch of %lld but rank 0 one of "
                             "%lld; every rank passes the same global batch",
                             r, (long long)tr->shard[r], (long long)tr->shard[0]);
    if (batch < size)
        return vqji_fail(tr->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_trainer_step: a global batch of %d cannot be split over %d ranks",
                         batch, size);
    tr->first = 0;
    for (int r = 0; r < size; r++) {
        tr->shard[r] = batch / size + (r < batch % size);
        if (r < rank)
            tr->first += tr->shard[r];
    }
    tr->total = batch;
    return VQJ_OK;
}

/* The global batch's rows of x [b_rank x cols], in rank order, into g. */
static vqj_status gather_rows(vqj_trainer *tr, const vqj_tensor *x, vqj_tensor *g)
{
    const int size = vqji_comm_size(tr->ctx);
    const int cols = vqj_tensor_cols(x);
    for (int r = 0; r < size; r++)
        tr->shard[size + r] = tr->shard[r] * cols;
    vqj_status st = vqj_tensor_reshape(g, (int)tr->total, cols);
    if (!st)
        st = vqji_comm_allgatherv_dev(tr->ctx, vqji_tensor_data(x), vqji_tensor_data(g),
                                      tr->shard + size, VQJ_COMM_FLOAT32);
    return st;
}

/* The global batch's c, t and target grid ids, and a zero gradient for c. */
static vqj_status gather_projections(vqj_trainer *tr, const vqj_tokens *targets)
{
    vqj_status st = gather_rows(tr, tr->c, tr->gc);
    if (!st)
        st = gather_rows(tr, tr->t, tr->gt);
    if (!st)
        st = zero_like(tr->gdc, tr->gc);
    if (!st)
        st = vqji_reserve(tr->ctx, (void **)&tr->gids, &tr->gids_cap,
                          (size_t)tr->total * sizeof *tr->gids, "grid ids");
    if (!st)
        st = vqji_comm_allgatherv_host(tr->ctx, vqj_tokens_grid_ids(targets), tr->gids,
                                       tr->shard, VQJ_COMM_INT64);
    return st;
}

/* Sum the ranks' gradients (each is its shard's share of the global
 * batch's mean) before the optimizer clips them; the loss's own parameter
 * (the temperature), whose gradient every rank computed whole from the
 * gathered batch, is averaged. */
static vqj_status allreduce_grads(vqj_trainer *tr)
{
    vqj_weights *w[] = {vqj_encoder_weights(tr->encoder), vqj_predictor_weights(tr->predictor),
                        vqj_codebook_weights(tr->codebook), vqj_loss_weights(tr->loss)};
    vqj_status st = VQJ_OK;
    for (size_t i = 0; i < 4 && !st; i++)
        if (vqj_weights_num_params(w[i]))
            st = vqji_comm_allreduce_dev(tr->ctx, vqji_weights_grads(w[i]),
                                         vqj_weights_num_params(w[i]), VQJ_COMM_FLOAT32,
                                         i == 3 ? VQJ_COMM_AVG : VQJ_COMM_SUM);
    return st;
}

/* The global batch's codes, in rank order, in place of this rank's. */
static vqj_status gather_codes(vqj_trainer *tr, int32_t **codes, size_t *cap, size_t *count)
{
    const int size = vqji_comm_size(tr->ctx);
    int64_t total, first;
    vqj_status st = vqji_comm_counts(tr->ctx, (int64_t)*count, tr->shard + size, &total, &first);
    if (!st)
        st = vqji_reserve(tr->ctx, (void **)codes, cap, ((size_t)total + 1) * sizeof **codes,
                          "code indices");
    if (st)
        return st;
    memmove(*codes + first, *codes, *count * sizeof **codes);
    st = vqji_comm_allgatherv_host(tr->ctx, *codes + first, *codes, tr->shard + size,
                                   VQJ_COMM_INT32);
    *count = st ? 0 : (size_t)total;
    return st;
}

/* Snapshot and restore of the codebook, whose training forward updates it
 * before the loss is known. */
static vqj_status codebook_save(vqj_trainer *tr, int64_t *updates, int *initialized)
{
    vqj_status st = vqji_weights_save(vqj_codebook_weights(tr->codebook), tr->codebook_copy);
    if (!st)
        st = vqj_codebook_get_progress(tr->codebook, updates, initialized);
    return st;
}

static void codebook_restore(vqj_trainer *tr, int64_t updates, int initialized)
{
    vqji_weights_restore(vqj_codebook_weights(tr->codebook), tr->codebook_copy);
    vqj_codebook_set_progress(tr->codebook, updates, initialized);
}

/* Grow the view grid buffers for n grids of the given shapes. */
static vqj_status view_reserve(vqj_trainer *tr, const vqj_grid *grids, size_t n)
{
    size_t cells = 0;
    for (size_t i = 0; i < n; i++)
        cells += (size_t)grids[i].height * (size_t)grids[i].width;
    vqj_status st = vqji_reserve(tr->ctx, (void **)&tr->cells, &tr->cells_cap, cells ? cells : 1,
                                 "view grids");
    size_t bytes = n * sizeof *tr->grids;
    if (!st)
        st = vqji_reserve(tr->ctx, (void **)&tr->grids, &tr->grids_cap, bytes ? bytes : 1,
                          "view grids");
    return st;
}

enum view_kind { VIEW_COLOR, VIEW_TRANSLATION, VIEW_SYMMETRY };

/* Build the view of `n` grids into tr->grids/tr->cells and tokenize them.
 * Grids of one example (`group` consecutive grids) share the permutation or
 * the flip so the example keeps its meaning. */
static vqj_status make_grid_view(vqj_trainer *tr, enum view_kind kind, uint64_t seed,
                                 const vqj_grid *grids, size_t n, int group, vqj_tokens *out)
{
    vqj_status st = view_reserve(tr, grids, n);
    if (st)
        return st;
    size_t off = 0;
    for (size_t i = 0; i < n && !st; i++) {
        uint64_t example = (uint64_t)(i / (size_t)group) + (uint64_t)tr->first; /* global */
        uint64_t example_seed = seed ^ (0x9E3779B97F4A7C15ull * (example + 1));
        uint8_t *cells = tr->cells + off;
        if (kind == VIEW_COLOR) {
            st = vqj_view_palette(tr->ctx, example_seed, tr->p.background, &grids[i], cells);
        } else {
            int horizontal;
            if (tr->p.symmetry_modes == 3) {
                vqji_rng rng;
                vqji_rng_seed(&rng, example_seed, 0);
                horizontal = (int)(vqji_rng_next(&rng) & 1);
            } else {
                horizontal = tr->p.symmetry_modes == 1;
            }
            st = vqj_view_flip(tr->ctx, &grids[i], horizontal, cells);
        }
        tr->grids[i] = (vqj_grid){grids[i].height, grids[i].width, cells};
        off += (size_t)grids[i].height * (size_t)grids[i].width;
    }
    if (!st)
        st = vqj_tokenize(tr->ctx, out, tr->grids, n);
    return st;
}

/* The translation view: the same tokens with the coordinate features of
 * each example's grids shifted by one (dy, dx) drawn for the example. */
static vqj_status make_translation_view(vqj_trainer *tr, uint64_t seed, const vqj_tokens *in,
                                        int group, vqj_tokens *out)
{
    vqj_status st = vqji_tokens_copy(out, in);
    if (st)
        return st;
    float d = tr->p.translation_max_delta;
    for (size_t g = 0; g < out->num_grids && !st; g++) {
        vqji_rng rng;
        vqji_rng_seed(&rng, seed, g / (size_t)group + (size_t)tr->first); /* global example */
        float dy = (2.0f * vqji_rng_uniform(&rng) - 1.0f) * d;
        float dx = (2.0f * vqji_rng_uniform(&rng) - 1.0f) * d;
        int32_t a = out->out.offsets[g], b = out->out.offsets[g + 1];
        if (b > a)
            st = vqj_view_translate_features(tr->ctx,
                                             out->out.features + (size_t)a * out->feature_dim,
                                             (size_t)(b - a), out->feature_dim, dy, dx);
    }
    return st;
}

/* One view pass: online encoder (training, on the views' workspace) ->
 * codebook (its EMA updated with ema_update_passes = all_online, as the
 * original's every training pass did) -> invariance between the view's
 * grid representations and the original's (the mean of each grid's token
 * vectors, DESIGN.md §4) -> backward. The codebook's straight-through
 * backward without commitment is dq itself, so the view's dq goes to the
 * encoder directly. The original side's gradient is accumulated into
 * `dh_original` (NULL: a constant). */
static vqj_status view_pass(vqj_trainer *tr, vqj_invariance_kind kind, const vqj_tokens *tokens,
                            const vqj_tokens *original, const vqj_tensor *h_original,
                            vqj_tensor *dh_original)
{
    vqj_status st = vqj_encoder_forward(tr->encoder, tokens, 1, tr->zv);
    if (!st)
        st = vqj_codebook_forward(tr->codebook, tr->zv,
                                  tr->p.ema_update_passes == VQJ_EMA_PASSES_ALL_ONLINE, tr->qv,
                                  NULL, NULL);
    const vqj_tensor *vin = beside(tr) ? tr->zv : tr->qv;
    if (!st)
        st = zero_like(tr->dqv, vin);
    if (!st)
        st = vqj_loss_invariance_tokens(tr->loss, kind, tokens, vin, tr->dqv, original, h_original,
                                        dh_original, NULL);
    if (!st)
        st = vqj_encoder_backward(tr->encoder, tr->dqv, NULL);
    return st;
}

static float weight_of(const vqj_loss *loss, vqj_invariance_kind kind)
{
    const vqj_loss_params *lp = vqji_loss_params(loss);
    return kind == VQJ_INVARIANCE_COLOR         ? lp->color_weight
           : kind == VQJ_INVARIANCE_TRANSLATION ? lp->translation_weight
                                                : lp->symmetry_weight;
}

/* The invariance views of every kind with a weight. The context side's
 * original is the main pass's token vectors (tv, their gradient into dtv,
 * straight through to z); the target side's is the target path's, a
 * constant. The views' encoder passes run on their own workspace, so the
 * main pass's activations wait for its backward, which comes after. */
static vqj_status invariance_views(vqj_trainer *tr, const vqj_tokens *context,
                                   const vqj_tokens *targets, const vqj_grid *context_grids,
                                   const vqj_grid *target_grids, const vqj_tensor *tv,
                                   vqj_tensor *dtv)
{
    uint64_t seed = tr->ctx->params.seed ^ (0xA24BAED4963EE407ull * (uint64_t)(tr->micro_step + 1));
    static const vqj_invariance_kind kinds[] = {VQJ_INVARIANCE_COLOR, VQJ_INVARIANCE_TRANSLATION,
                                                VQJ_INVARIANCE_SYMMETRY};
    vqj_status st = VQJ_OK;
    for (size_t k = 0; k < 3 && !st; k++) {
        vqj_invariance_kind kind = kinds[k];
        if (weight_of(tr->loss, kind) == 0.0f)
            continue;
        uint64_t kseed = seed + 0x632BE59BD9B4E019ull * (k + 1);
        if (kind == VQJ_INVARIANCE_TRANSLATION) {
            st = make_translation_view(tr, kseed, context, tr->window, tr->view.context);
            if (!st)
                st = make_translation_view(tr, kseed, targets, 1, tr->view.target);
        } else {
            if (!context_grids)
                continue; /* tokens only: no grids to permute or flip */
            enum view_kind vk = kind == VQJ_INVARIANCE_COLOR ? VIEW_COLOR : VIEW_SYMMETRY;
            st = make_grid_view(tr, vk, kseed, context_grids, context->num_grids,
                                tr->window, tr->view.context);
            if (!st)
                st = make_grid_view(tr, vk, kseed, target_grids, targets->num_grids, 1,
                                    tr->view.target);
        }
        if (!st)
            st = view_pass(tr, kind, tr->view.context, context, tv, dtv);
        if (!st)
            st = view_pass(tr, kind, tr->view.target, targets, beside(tr) ? tr->zt : tr->qt,
                           NULL);
    }
    return st;
}

static void fill_metrics(vqj_trainer *tr, const vqj_codebook_stats *cs, vqj_train_metrics *m)
{
    if (!m)
        return;
    vqj_loss_values v = {.size = sizeof v};
    if (vqj_loss_get_values(tr->loss, &v) == VQJ_OK) {
        m->loss = v.total;
        m->infonce = v.infonce;
        m->relational = v.relational;
        m->commitment = v.commitment;
        m->sigreg = v.sigreg;
        m->invariance_color = v.invariance_color;
        m->invariance_translation = v.invariance_translation;
        m->invariance_symmetry = v.invariance_symmetry;
        m->temperature = v.temperature;
    }
    if (cs) {
        m->perplexity = cs->perplexity;
        m->active_codes = cs->active_codes;
        m->refreshed = cs->refreshed;
        m->usage_ratio = cs->usage_ratio;
        /* a field newer than the first release: only where the caller has it */
        if (m->size >= offsetof(vqj_train_metrics, dead_replaced) + sizeof m->dead_replaced)
            m->dead_replaced = cs->dead_replaced;
    }
    m->micro_step = tr->micro_step;
    m->step = vqj_optimizer_steps(tr->optimizer);
}

static vqj_status check_tokens(vqj_trainer *tr, const vqj_tokens *context,
                               const vqj_tokens *targets)
{
    const char *fn = "vqj_trainer_step";
    if (!vqji_same_context(context->ctx, tr->ctx) ||
        !vqji_same_context(targets->ctx, tr->ctx))
        return vqji_fail(tr->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: tokens of another context", fn);
    if (targets->num_grids < 1 || context->num_grids != targets->num_grids * (size_t)tr->window)
        return vqji_fail(tr->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: %zu context grids and %zu target grids; a batch of B >= 1 examples "
                         "needs B * %d and B",
                         fn, context->num_grids, targets->num_grids, tr->window);
    return VQJ_OK;
}

/* A non-finite value somewhere in the step: put back what the step changed
 * and report a skip. Other errors pass through. */
static vqj_status skip_or_fail(vqj_trainer *tr, vqj_status st, int64_t updates, int initialized,
                               uint64_t dropout_step, vqj_train_metrics *m)
{
    if (st != VQJ_ERR_NUMERIC)
        return st;
    codebook_restore(tr, updates, initialized);
    tr->num_codes = tr->num_target_codes = 0;
    vqji_encoder_set_step(tr->encoder, dropout_step);
    /* The accumulated gradient cannot be trusted any more: drop the cycle. */
    vqj_optimizer_zero_grad(tr->optimizer);
    tr->micro_step = tr->cycle_start;
    vqj_tensor_reshape(tr->pending, 0, vqj_tensor_cols(tr->pending));
    vqji_clear_error(tr->ctx);
    if (m) {
        m->skipped = 1;
        m->micro_step = tr->micro_step;
        m->step = vqj_optimizer_steps(tr->optimizer);
        m->lr = vqj_optimizer_lr(tr->optimizer);
    }
    return VQJ_OK;
}

static vqj_status train_micro(vqj_trainer *tr, const vqj_tokens *context,
                              const vqj_tokens *targets, const vqj_grid *context_grids,
                              const vqj_grid *target_grids, vqj_train_metrics *m)
{
    vqj_status st = check_tokens(tr, context, targets);
    if (!st && m)
        st = vqji_result_check(tr->ctx, m->size, VQJI_V1_TRAIN_METRICS, "vqj_trainer_step",
                               "vqj_train_metrics");
    if (st)
        return st;
    /* Object dropout: this step's context without some of its objects
     * (the invariance views are still made from the whole grids). */
    if (tr->p.object_dropout > 0.0f) {
        uint64_t seed = tr->ctx->params.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(tr->micro_step + 1));
        /* data-parallel: each rank its own draws (docs/distributed.md) */
        seed ^= 0x94D049BB133111EBull * (uint64_t)vqji_comm_rank(tr->ctx);
        if ((st = vqji_tokens_drop_objects(tr->dropped, context, tr->p.object_dropout, seed)))
            return st;
        context = tr->dropped;
    }
    int64_t ntok = (int64_t)context->num_objects;
    if (tr->dist &&
        (st = vqji_comm_allreduce_host(tr->ctx, &ntok, 1, VQJ_COMM_INT64, VQJ_COMM_SUM)))
        return st;
    if (m) {
        size_t size = m->size;
        memset(m, 0, size < sizeof *m ? size : sizeof *m);
        m->size = size;
        m->batch = tr->dist ? (int)tr->total : (int)targets->num_grids;
        m->context_tokens = (int)ntok;
    }
    int64_t updates;
    int initialized;
    if ((st = codebook_save(tr, &updates, &initialized)))
        return st;
    uint64_t dropout_step = vqji_encoder_step(tr->encoder);
    vqj_loss_reset(tr->loss);

    vqj_codebook_stats cs = {.size = sizeof cs};
    st = vqji_reserve(tr->ctx, (void **)&tr->codes, &tr->codes_cap,
                      (context->num_objects + 1) * sizeof *tr->codes, "code indices");
    if (!st)
        st = target_path(tr, targets);
    if (!st)
        st = vqj_encoder_forward(tr->encoder, context, 1, tr->z);
    if (!st)
        st = vqj_codebook_forward(tr->codebook, tr->z, 1, tr->q, tr->codes, &cs);
    tr->num_codes = st ? 0 : context->num_objects;
    /* The k-means++ seeding batch is left out of the usage counts. */
    if (!st && !initialized) {
        int64_t now_updates;
        int seeded = 0;
        vqj_codebook_get_progress(tr->codebook, &now_updates, &seeded);
        if (seeded)
            tr->num_codes = tr->num_target_codes = 0;
    }
    /* Beside: the predictor and the relational loss read z and send their
     * gradient straight to dz; the codebook's backward then adds only its
     * commitment term (its dq stays zero). */
    const int bs = beside(tr);
    vqj_tensor *tv = bs ? tr->z : tr->q, *dtv = bs ? tr->dz : tr->dq;
    if (!st)
        st = vqj_predictor_forward_context(tr->predictor, context, tv, tr->c);
    /* Losses, each with its gradient. */
    if (!st)
        st = zero_like(tr->dc, tr->c);
    if (!st)
        st = zero_like(tr->dq, tr->q);
    if (!st)
        st = zero_like(tr->dz, tr->z);
    /* Data-parallel: InfoNCE and SIGReg over the gathered global batch
     * (in-batch negatives are global), this rank's rows of dc kept. */
    const vqj_tensor *bc = tr->c, *bt = tr->t;
    vqj_tensor *bdc = tr->dc;
    const uint64_t *bids = vqj_tokens_grid_ids(targets);
    if (!st && tr->dist) {
        st = gather_projections(tr, targets);
        bc = tr->gc, bt = tr->gt, bdc = tr->gdc, bids = tr->gids;
    }
    if (!st)
        st = vqj_loss_infonce_ids(tr->loss, bc, bt, bids, bdc, NULL);
    if (!st)
        st = vqj_loss_sigreg(tr->loss, bc, (uint64_t)tr->micro_step, bdc, NULL);
    if (!st && tr->dist)
        vqji_tensor_add_rows(tr->dc, tr->gdc, tr->first); /* this rank's rows */
    if (!st)
        st = vqj_loss_relational(tr->loss, context, tv, dtv, targets, bs ? tr->zt : tr->qt,
                                 NULL, NULL);
    if (!st)
        st = vqj_loss_add_commitment(tr->loss, cs.commitment_loss + cs.codebook_loss);
    /* Backward. */
    if (!st)
        st = vqj_predictor_backward_context(tr->predictor, tr->dc, dtv);
    if (!st)
        st = vqj_codebook_backward(tr->codebook, tr->dq, tr->dz);
    /* The views, on their own encoder workspace: the main pass's stays for
     * its backward, which also takes the views' gradient into the original
     * context representations (straight through the codebook, into dz). */
    if (!st) {
        vqji_encoder_ws_swap(tr->encoder, tr->view_ws);
        st = invariance_views(tr, context, targets, context_grids, target_grids, tv, tr->dz);
        vqji_encoder_ws_swap(tr->encoder, tr->view_ws);
    }
    if (!st)
        st = vqj_encoder_backward(tr->encoder, tr->dz, NULL);
    if (st)
        return skip_or_fail(tr, st, updates, initialized, dropout_step, m);

    /* Keep t and its grid ids for the queue: the push waits for the
     * optimizer step. */
    /* Data-parallel: every rank's targets, in rank order, so the queues
     * stay identical. */
    size_t have = (size_t)vqj_tensor_rows(tr->pending);
    size_t add = tr->dist ? (size_t)tr->total : targets->num_grids;
    st = vqji_reserve(tr->ctx, (void **)&tr->pending_ids, &tr->pending_ids_cap,
                      (have + add) * sizeof *tr->pending_ids, "queue grid ids");
    if (!st)
        st = vqji_tensor_append_rows(tr->pending, tr->dist ? tr->gt : tr->t);
    if (st)
        return st;
    memcpy(tr->pending_ids + have, tr->dist ? tr->gids : vqj_tokens_grid_ids(targets),
           add * sizeof *tr->pending_ids);
    tr->micro_step++;
    int boundary = (tr->micro_step - tr->cycle_start) >= tr->p.grad_accum_steps;
    vqj_step_info info = {.size = sizeof info};
    if (boundary) {
        st = tr->dist ? allreduce_grads(tr) : VQJ_OK;
        if (!st)
            st = vqj_optimizer_step(tr->optimizer, 1.0f / (float)tr->p.grad_accum_steps, &info);
        if (st)
            return st;
        if (!info.applied) {
            tr->micro_step--;
            return skip_or_fail(tr, VQJ_ERR_NUMERIC, updates, initialized, dropout_step, m);
        }
        if (tr->target_encoder) {
            st = vqj_weights_ema(vqj_encoder_weights(tr->target_encoder),
                                 vqj_encoder_weights(tr->encoder), tr->p.target_ema_decay);
            if (!st)
                st = vqj_weights_ema(vqj_predictor_weights(tr->target_predictor),
                                     vqj_predictor_weights(tr->predictor),
                                     tr->p.target_ema_decay);
        }
        if (!st)
            st = vqj_loss_queue_push_ids(tr->loss, tr->pending, tr->pending_ids);
        if (!st)
            st = vqj_tensor_reshape(tr->pending, 0, vqj_tensor_cols(tr->pending));
        if (!st)
            st = vqj_optimizer_zero_grad(tr->optimizer);
        if (st)
            return st;
        tr->cycle_start = tr->micro_step;
    }
    /* Data-parallel: the codes of the global batch, for diagnostics. */
    if (tr->dist && ((st = gather_codes(tr, &tr->codes, &tr->codes_cap, &tr->num_codes)) ||
                     (st = gather_codes(tr, &tr->target_codes, &tr->target_codes_cap,
                                        &tr->num_target_codes))))
        return st;
    if (m) {
        fill_metrics(tr, &cs, m);
        m->optimizer_step = boundary;
        m->applied = boundary && info.applied;
        m->grad_norm = boundary ? info.grad_norm : 0.0f;
        m->lr = boundary ? info.lr : vqj_optimizer_lr(tr->optimizer);
    }
    return VQJ_OK;
}

static vqj_status check_grids(vqj_trainer *tr, const vqj_grid *context, const vqj_grid *targets,
                              int batch, const char *fn)
{
    if (!tr)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: trainer is NULL", fn);
    vqji_clear_error(tr->ctx);
    if (!context || !targets)
        return vqji_fail(tr->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL grids", fn);
    if (batch < 1)
        return vqji_fail(tr->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: batch is %d; it must be >= 1",
                         fn, batch);
    vqj_status st = vqj_tokenize(tr->ctx, tr->context_tokens, context,
                                 (size_t)batch * (size_t)tr->window);
    if (!st)
        st = vqj_tokenize(tr->ctx, tr->target_tokens, targets, (size_t)batch);
    return st;
}

vqj_status vqj_trainer_step(vqj_trainer *tr, const vqj_grid *context, const vqj_grid *targets,
                            int batch, vqj_train_metrics *m)
{
    if (tr && vqji_comm_size(tr->ctx) > 1 && context && targets) {
        /* data-parallel: tokenize and train this rank's share */
        vqji_clear_error(tr->ctx);
        vqj_status st = shard_of(tr, batch);
        if (st)
            return st;
        const int rank = vqji_comm_rank(tr->ctx);
        context += tr->first * tr->window;
        targets += tr->first;
        batch = (int)tr->shard[rank];
        tr->dist = 1;
    } else if (tr) {
        tr->dist = 0;
        tr->first = 0;
    }
    vqj_status st = check_grids(tr, context, targets, batch, "vqj_trainer_step");
    if (st)
        return st;
    return train_micro(tr, tr->context_tokens, tr->target_tokens, context, targets, m);
}

vqj_status vqj_trainer_step_tokens(vqj_trainer *tr, const vqj_tokens *context,
                                   const vqj_tokens *targets, vqj_train_metrics *m)
{
    if (!tr || !context || !targets)
        return vqji_fail(tr ? tr->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_trainer_step_tokens: NULL argument");
    vqji_clear_error(tr->ctx);
    if (vqji_comm_size(tr->ctx) > 1)
        return vqji_fail(tr->ctx, VQJ_ERR_UNSUPPORTED,
                         "vqj_trainer_step_tokens: not data-parallel; with a communicator "
                         "attached pass grids to vqj_trainer_step");
    tr->dist = 0;
    tr->first = 0;
    return train_micro(tr, context, targets, NULL, NULL, m);
}

static vqj_status evaluate(vqj_trainer *tr, const vqj_grid *context, const vqj_grid *targets,
                           int batch, vqj_train_metrics *m);

/* Data-parallel: every rank evaluates the whole batch alone (the same
 * result everywhere, no traffic); the communicator is set aside meanwhile. */
vqj_status vqj_trainer_evaluate(vqj_trainer *tr, const vqj_grid *context,
                                const vqj_grid *targets, int batch, vqj_train_metrics *m)
{
    vqj_comm *comm = tr ? tr->ctx->comm : NULL;
    if (tr) {
        tr->ctx->comm = NULL;
        tr->dist = 0;
        tr->first = 0;
    }
    vqj_status st = evaluate(tr, context, targets, batch, m);
    if (tr)
        tr->ctx->comm = comm;
    return st;
}

static vqj_status evaluate(vqj_trainer *tr, const vqj_grid *context, const vqj_grid *targets,
                           int batch, vqj_train_metrics *m)
{
    vqj_status st = check_grids(tr, context, targets, batch, "vqj_trainer_evaluate");
    if (st)
        return st;
    const vqj_tokens *ctok = tr->context_tokens, *ttok = tr->target_tokens;
    if ((st = check_tokens(tr, ctok, ttok)))
        return st;
    if (m && (st = vqji_result_check(tr->ctx, m->size, VQJI_V1_TRAIN_METRICS,
                                     "vqj_trainer_evaluate", "vqj_train_metrics")))
        return st;
    if (m) {
        size_t size = m->size;
        memset(m, 0, size < sizeof *m ? size : sizeof *m);
        m->size = size;
        m->batch = batch;
        m->context_tokens = (int)ctok->num_objects;
    }
    /* The temperature's gradient is accumulated by the InfoNCE call even
     * without dc: keep the training cycle's value. */
    vqj_weights *lw = vqj_loss_weights(tr->loss);
    float saved_grad = 0.0f;
    if (vqj_weights_num_params(lw))
        vqji_weights_grad_download(lw, &saved_grad, 1);
    vqj_loss_reset(tr->loss);
    vqj_codebook_stats cs = {.size = sizeof cs};
    tr->num_codes = 0;
    st = vqji_reserve(tr->ctx, (void **)&tr->codes, &tr->codes_cap,
                      (ctok->num_objects + 1) * sizeof *tr->codes, "code indices");
    if (!st)
        st = target_path(tr, ttok);
    if (!st)
        st = vqj_encoder_forward(tr->encoder, ctok, 0, tr->z);
    if (!st)
        st = vqj_codebook_forward(tr->codebook, tr->z, 0, tr->q, tr->codes, &cs);
    if (!st)
        tr->num_codes = ctok->num_objects;
    const int bs = beside(tr);
    if (!st)
        st = vqj_predictor_forward_context(tr->predictor, ctok, bs ? tr->z : tr->q, tr->c);
    if (!st)
        st = vqj_loss_infonce_ids(tr->loss, tr->c, tr->t, vqj_tokens_grid_ids(ttok), NULL,
                                   NULL);
    if (!st)
        st = vqj_loss_sigreg(tr->loss, tr->c, (uint64_t)tr->micro_step, NULL, NULL);
    if (!st)
        st = vqj_loss_relational(tr->loss, ctok, bs ? tr->z : tr->q, NULL, ttok,
                                 bs ? tr->zt : tr->qt, NULL, NULL);
    if (!st)
        st = vqj_loss_add_commitment(tr->loss, cs.commitment_loss + cs.codebook_loss);
    if (vqj_weights_num_params(lw))
        vqji_weights_grad_upload(lw, &saved_grad, 1);
    if (st)
        tr->num_codes = tr->num_target_codes = 0;
    if (st == VQJ_ERR_NUMERIC && m) {
        m->skipped = 1;
        vqji_clear_error(tr->ctx);
        return VQJ_OK;
    }
    if (st)
        return st;
    fill_metrics(tr, &cs, m);
    if (m)
        m->lr = vqj_optimizer_lr(tr->optimizer);
    return VQJ_OK;
}

vqj_encoder *vqj_trainer_target_encoder(vqj_trainer *tr)
{
    return tr ? tr->target_encoder : NULL;
}

vqj_predictor *vqj_trainer_target_predictor(vqj_trainer *tr)
{
    return tr ? tr->target_predictor : NULL;
}

vqj_weights *vqj_trainer_target_encoder_weights(vqj_trainer *tr)
{
    return tr && tr->target_encoder ? vqj_encoder_weights(tr->target_encoder) : NULL;
}

vqj_weights *vqj_trainer_target_predictor_weights(vqj_trainer *tr)
{
    return tr && tr->target_predictor ? vqj_predictor_weights(tr->target_predictor) : NULL;
}

const vqj_tensor *vqj_trainer_context_projections(const vqj_trainer *tr)
{
    return tr ? (tr->dist ? tr->gc : tr->c) : NULL;
}

const vqj_tensor *vqj_trainer_target_projections(const vqj_trainer *tr)
{
    return tr ? (tr->dist ? tr->gt : tr->t) : NULL;
}

const int32_t *vqj_trainer_codes(const vqj_trainer *tr, size_t *count)
{
    if (count)
        *count = tr ? tr->num_codes : 0;
    return tr && tr->num_codes ? tr->codes : NULL;
}

const int32_t *vqj_trainer_target_codes(const vqj_trainer *tr, size_t *count)
{
    if (count)
        *count = tr ? tr->num_target_codes : 0;
    return tr && tr->num_target_codes ? tr->target_codes : NULL;
}

vqj_status vqj_trainer_get_counters(const vqj_trainer *tr, int64_t *micro_step,
                                    uint64_t *dropout_step)
{
    if (!tr || !micro_step || !dropout_step)
        return vqji_fail(tr ? tr->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_trainer_get_counters: NULL argument");
    *micro_step = tr->micro_step;
    *dropout_step = vqji_encoder_step(tr->encoder);
    return VQJ_OK;
}

bool vqji_trainer_cycle_open(const vqj_trainer *tr) { return tr->micro_step != tr->cycle_start; }

vqj_status vqj_trainer_set_counters(vqj_trainer *tr, int64_t micro_step, uint64_t dropout_step)
{
    if (!tr)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_trainer_set_counters: NULL");
    if (micro_step < 0)
        return vqji_fail(tr->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_trainer_set_counters: micro_step is %lld; it must be >= 0",
                         (long long)micro_step);
    tr->micro_step = micro_step;
    /* A checkpoint is written at an optimizer step, so a cycle starts here. */
    tr->cycle_start = micro_step;
    vqji_encoder_set_step(tr->encoder, dropout_step);
    return VQJ_OK;
}

vqji_trainer_parts vqji_trainer_get_parts(const vqj_trainer *tr)
{
    return (vqji_trainer_parts){tr->encoder,   tr->codebook,       tr->predictor,
                                tr->loss,      tr->optimizer,      tr->target_encoder,
                                tr->target_predictor};
}

const vqj_trainer_params *vqji_trainer_params(const vqj_trainer *tr) { return &tr->p; }

const vqj_tokenizer_params *vqji_trainer_tokenizer(const vqj_trainer *tr)
{
    return &tr->context_tokens->params;
}

void vqji_trainer_adopt(vqj_trainer *tr, vqj_context *ctx, char *config_yaml)
{
    tr->own_ctx = ctx;
    tr->config_yaml = config_yaml;
}

const char *vqji_trainer_config_yaml(const vqj_trainer *tr) { return tr->config_yaml; }
